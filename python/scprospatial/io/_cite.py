"""CITE-seq / scRNA-seq readers -> raw AnnData.

The raw layout every reader returns: `X` raw RNA counts as found (CSR), `var_names` gene symbols,
`var['gene_ids']` where known, `obsm['protein_raw']` raw ADT counts (DataFrame, names as found; absent
for RNA-only inputs), `uns['scprospatial'] = {'source', 'reader', 'counts_source'}`.
"""
from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from ..vocab import get_vocabulary

# obsm keys that hold ADT counts in common layouts (scvi-tools, muon exports, 10x conversions)
PROTEIN_KEYS = ("protein_expression", "protein_counts", K.PROTEIN_RAW, "adt", "ADT", "adt_counts", "prot",
                "protein", "antibody", "cite", "CITE")
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "feature_name", "symbol", "gene_name", "gene_names", "name")
ENSEMBL = re.compile(r"^ENS[A-Z]*G\d+")


def protein_frame(adata: ad.AnnData, path, key: str | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """ADT counts as a DataFrame (cells x names) and the obsm key it came from; (None, None) if absent."""
    if key is not None:
        if key not in adata.obsm:
            raise InputError(f"obsm[{key!r}] not found (obsm has {sorted(adata.obsm)})", path)
        keys = [key]
    else:
        keys = [k for k in PROTEIN_KEYS if k in adata.obsm]
        keys += [k for k in adata.obsm if k not in keys and isinstance(adata.obsm[k], pd.DataFrame)
                 and _looks_like_panel(adata.obsm[k].columns)]
    if not keys:
        return None, None
    k = keys[0]
    value = adata.obsm[k]
    if isinstance(value, pd.DataFrame):
        df = value.copy()
    else:
        names = adata.uns.get(f"{k.rsplit('_', 1)[0]}_names", adata.uns.get("protein_names"))
        arr = value.toarray() if sp.issparse(value) else np.asarray(value)
        if names is None or len(names) != arr.shape[1]:
            raise InputError(f"obsm[{k!r}] is an array without matching protein names "
                             f"(expected uns['protein_names'] with {arr.shape[1]} entries)", path)
        df = pd.DataFrame(arr, columns=[str(n) for n in names])
    df.index = adata.obs_names
    df.columns = [str(c) for c in df.columns]
    return df, k


def _looks_like_panel(columns) -> bool:
    vocab = get_vocabulary()
    return bool(len(columns) > 0 and np.mean([vocab.match(c).recognised for c in columns]) >= 0.5)


def _gene_symbols(adata: ad.AnnData) -> None:
    """Use gene symbols as var_names (keep Ensembl ids in var['gene_ids']); make them unique, warning once."""
    if len(adata.var_names) and np.mean([bool(ENSEMBL.match(v)) for v in adata.var_names[:200]]) > 0.9:
        col = next((c for c in SYMBOL_COLUMNS if c in adata.var.columns), None)
        if col is not None:
            adata.var["gene_ids"] = adata.var_names.astype(str)
            adata.var_names = adata.var[col].astype(str).to_numpy()
    if not adata.var_names.is_unique:
        n = int(adata.var_names.duplicated().sum())
        logger.warning("%d duplicated gene symbols made unique by suffixing (-1, -2, ...)", n)
        adata.var_names_make_unique()


def _counts_matrix(adata: ad.AnnData) -> tuple[sp.csr_matrix, str]:
    """The raw counts: layers['counts'] if present, else raw.X when X is not integer and raw matches, else X."""
    if K.COUNTS_LAYER in adata.layers:
        return sp.csr_matrix(adata.layers[K.COUNTS_LAYER]), "layers['counts']"
    if adata.raw is not None and adata.raw.n_vars == adata.n_vars and not _is_integer(adata.X) \
            and _is_integer(adata.raw.X) and (adata.raw.var_names == adata.var_names).all():
        return sp.csr_matrix(adata.raw.X), "raw.X"
    return sp.csr_matrix(adata.X), "X"


def _is_integer(x) -> bool:
    data = x.data if sp.issparse(x) else np.asarray(x).ravel()
    return bool(np.all(np.mod(data[np.isfinite(data)], 1) == 0))


def rna_from_anndata(adata: ad.AnnData, path, reader: str, protein: pd.DataFrame | None = None) -> ad.AnnData:
    """Raw standard layout from any AnnData of RNA (plus optional ADT DataFrame aligned to its cells)."""
    counts, where = _counts_matrix(adata)
    var = adata.var.loc[:, [c for c in ("gene_ids", *SYMBOL_COLUMNS) if c in adata.var.columns]].copy()
    out = ad.AnnData(X=counts, obs=adata.obs.copy(), var=var)
    _gene_symbols(out)
    if protein is not None:
        out.obsm[K.PROTEIN_RAW] = protein.set_axis(out.obs_names, axis=0)
    out.uns[K.UNS] = {"source": str(path), "reader": reader, "counts_source": where}
    return out


def read_h5ad_cite(adata: ad.AnnData, path, *, protein_key: str | None = None, rna_only: bool = False) -> ad.AnnData:
    """An in-memory .h5ad (CITE-seq or RNA-only) -> raw standard layout."""
    protein, key = (None, None) if rna_only else protein_frame(adata, path, protein_key)
    out = rna_from_anndata(adata, path, reader="h5ad" if key is None else f"h5ad:obsm[{key}]", protein=protein)
    return out


def align_pair(rna: ad.AnnData, protein: pd.DataFrame, path) -> pd.DataFrame:
    """Reorder protein rows to the RNA cells; any cell present in one modality only is an input error."""
    if not protein.index.is_unique:
        raise InputError(f"duplicate cell ids in the protein data ({int(protein.index.duplicated().sum())})", path)
    only_rna = rna.obs_names.difference(protein.index)
    only_prot = protein.index.difference(rna.obs_names)
    if len(only_rna) or len(only_prot):
        example = (list(only_rna[:2]) + list(only_prot[:2]))
        raise InputError(f"RNA and protein cells do not match: {len(only_rna)} only in RNA, {len(only_prot)} "
                         f"only in protein (e.g. {example})", path)
    return protein.loc[rna.obs_names]


def protein_from_modality(prot: ad.AnnData) -> pd.DataFrame:
    """ADT counts of a protein AnnData/modality (layers['counts'] if present, else X)."""
    x = prot.layers[K.COUNTS_LAYER] if K.COUNTS_LAYER in prot.layers else prot.X
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    return pd.DataFrame(x, index=prot.obs_names.astype(str), columns=[str(v) for v in prot.var_names])


def split_10x(adata: ad.AnnData, path, reader: str, rna_only: bool) -> ad.AnnData:
    """A Cell Ranger matrix (all feature types) -> RNA counts + 'Antibody Capture' as protein."""
    types = adata.var.get("feature_types", pd.Series("Gene Expression", index=adata.var_names))
    gex = (types == "Gene Expression").to_numpy()
    adt = (types == "Antibody Capture").to_numpy()
    other = sorted(set(types[~(gex | adt)]))
    if other:
        logger.warning("%s: ignoring feature types %s (only Gene Expression and Antibody Capture are used)",
                       path, other)
    protein = None
    if adt.any() and not rna_only:
        x = adata.X[:, adt]
        protein = pd.DataFrame(x.toarray() if sp.issparse(x) else x, index=adata.obs_names,
                               columns=[str(v) for v in adata.var_names[adt]])
    rna = adata[:, gex].copy()
    return rna_from_anndata(rna, path, reader=reader, protein=protein)
