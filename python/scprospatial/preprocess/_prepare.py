"""`prepare`: a raw standard AnnData (from `scprospatial.io`) -> the documented prepared layout."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from ..vocab import get_vocabulary
from ._normalize import TRANSFORMED_P99, already_transformed, arcsinh, as_given, clr, normalize_rna, quantile_scale
from ._validate import check_finite, check_not_empty, check_unique_cells, rna_counts_status


def _panel(names, path) -> tuple[list[str], list[bool], list[str], list[str]]:
    """Canonical names, isotype flags, unrecognised names, and duplicate canonical names (warned)."""
    vocab = get_vocabulary()
    matches = [vocab.match(n) for n in names]
    canonical = [m.canonical for m in matches]
    unrecognised = [str(n) for n, m in zip(names, matches) if not m.recognised]
    duplicates = [c for c, again in zip(canonical, pd.Index(canonical).duplicated()) if again]
    if duplicates:
        logger.warning("%s: several columns map to %s; the first of each is kept", path, sorted(set(duplicates)))
    return canonical, [m.is_isotype for m in matches], unrecognised, duplicates


def _split_panel(raw: pd.DataFrame, path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Rename to canonical names, set isotype controls apart, drop repeated canonical columns."""
    canonical, isotype, unrecognised, _ = _panel(list(raw.columns), path)
    renamed = raw.set_axis(canonical, axis=1)
    keep = ~pd.Index(canonical).duplicated()
    iso_mask = np.asarray(isotype) & keep
    prot_mask = ~np.asarray(isotype) & keep
    protein, controls = renamed.loc[:, prot_mask], renamed.loc[:, iso_mask]
    info = {"panel": [str(c) for c in protein.columns],
            "panel_original": [str(c) for c, m in zip(raw.columns, prot_mask) if m],
            "isotype_controls": [str(c) for c in controls.columns],
            "unrecognised_proteins": unrecognised}
    return protein.astype(np.float32), controls.astype(np.float32), info


def _provenance(adata: ad.AnnData, kind: str, dataset: str, batch: str | None, extra: dict) -> None:
    old = dict(adata.uns.get(K.UNS, {}))
    info = {K.KIND: kind, K.DATASET: dataset, "source": old.get("source", ""), "reader": old.get("reader", ""),
            K.NORMALISATION: old.get(K.NORMALISATION, {}), "unrecognised_proteins": [], **extra}
    for key in ("counts_source", "cell_type_key", "coordinate_columns", K.LIBRARY_KEY, K.SPATIALDATA):
        if key in old:
            info[key] = old[key]
    adata.uns[K.UNS] = info
    if K.BATCH in adata.obs and batch is None:  # the input's own per-cell batches win over the default
        adata.obs[K.BATCH] = adata.obs[K.BATCH].astype(str).astype("category")
        logger.debug("%s: using the input's obs['%s'] (%d batches)", dataset, K.BATCH, adata.obs[K.BATCH].nunique())
        return
    if K.BATCH in adata.obs:
        adata.obs[f"{K.BATCH}_original"] = adata.obs.pop(K.BATCH)
        logger.info("%s: --batch given; the input's obs['%s'] is kept as obs['%s_original']", dataset, K.BATCH,
                    K.BATCH)
    adata.obs[K.BATCH] = pd.Categorical([batch or dataset] * adata.n_obs)


def _prepare_rna(raw: ad.AnnData, kind: str, path, target_sum: float) -> tuple[ad.AnnData, dict]:
    check_not_empty(raw, path, "RNA matrix")
    check_unique_cells(raw.obs_names, path)
    adata = ad.AnnData(X=sp.csr_matrix(raw.X, dtype=np.float32), obs=raw.obs.copy(), var=raw.var.copy(),
                       uns={K.UNS: dict(raw.uns.get(K.UNS, {}))})
    extra: dict = {}
    if rna_counts_status(adata.X, path) == "counts":
        normalize_rna(adata, target_sum=target_sum)
    else:
        adata.uns[K.UNS][K.NORMALISATION] = {"rna": {"method": "log1p_library_size", "target_sum": None,
                                                     "as_given": True}}
    if kind == "citeseq":
        protein_raw = raw.obsm[K.PROTEIN_RAW]
        if protein_raw.shape[1] == 0:
            raise InputError("no protein columns found", path)
        check_finite(protein_raw, path, "protein counts")
        protein, controls, extra = _split_panel(protein_raw, path)
        if protein.shape[1] == 0:
            raise InputError("every protein column is an isotype control; no proteins to use", path)
        adata.obsm[K.PROTEIN_RAW] = protein.set_axis(adata.obs_names, axis=0)
        adata.obsm[K.ISOTYPE_CONTROLS] = controls.set_axis(adata.obs_names, axis=0)
        clr(adata)
    return adata, extra


def _prepare_spatial(raw: ad.AnnData, path, method: str, cofactor) -> tuple[ad.AnnData, dict]:
    check_not_empty(raw, path, "marker table")
    check_unique_cells(raw.obs_names, path)
    x = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    check_finite(x, path, "marker intensities", allow_negative=True)
    originals = [str(v) for v in raw.var_names]
    canonical, isotype, unrecognised, _ = _panel(originals, path)
    keep = ~pd.Index(canonical).duplicated() & ~np.asarray(isotype)
    var = pd.DataFrame({"original_name": np.asarray(originals)[keep]}, index=np.asarray(canonical)[keep])
    adata = ad.AnnData(X=x[:, keep].astype(np.float32), obs=raw.obs.copy(), var=var,
                       uns={K.UNS: dict(raw.uns.get(K.UNS, {}))})
    adata.obsm[K.SPATIAL] = np.asarray(raw.obsm[K.SPATIAL], dtype=np.float64)
    adata.layers[K.RAW_LAYER] = adata.X.copy()
    if method == "arcsinh" and already_transformed(adata.X):
        logger.warning("%s: marker values are already transformed (negative values, 99th percentiles <= %g): "
                       "used as given, arcsinh not applied again", path, TRANSFORMED_P99)
        as_given(adata, "input already transformed (negative values, 99th percentiles <= "
                        f"{TRANSFORMED_P99:g}): used as given")
    elif method == "arcsinh":
        arcsinh(adata, cofactor=cofactor)
    elif method == "quantile":
        quantile_scale(adata)
    else:
        raise InputError(f"unknown imaging normalisation {method!r} (arcsinh or quantile)", path)
    extra = {"panel": list(adata.var_names), "panel_original": list(var["original_name"]),
             "unrecognised_proteins": unrecognised}
    return adata, extra


def prepare(adata: ad.AnnData, kind: str, *, dataset: str, batch: str | None = None, target_sum: float = 1e4,
            imaging_method: str = "arcsinh", cofactor: float | str = "auto") -> ad.AnnData:
    """Validate and normalise a raw standard AnnData into the prepared layout (a new object).

    citeseq/rna: X log1p library-size RNA, layers['counts']; citeseq adds obsm['protein'] (CLR),
    obsm['protein_raw'], obsm['isotype_controls']. spatial: X arcsinh (or quantile) markers with canonical
    var_names, layers['raw'], obsm['protein'], obsm['spatial']. Everything applied goes to
    uns['scprospatial']['normalisation'].
    """
    if kind not in K.KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(K.KINDS)}")
    path = adata.uns.get(K.UNS, {}).get("source") or dataset
    if kind == "spatial":
        out, extra = _prepare_spatial(adata, path, imaging_method, cofactor)
    else:
        out, extra = _prepare_rna(adata, kind, path, target_sum)
    _provenance(out, kind, dataset, batch, extra)
    return out
