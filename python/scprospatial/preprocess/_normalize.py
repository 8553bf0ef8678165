"""Normalisation of each modality, scanpy-style (`fn(adata, *, ..., copy=False)`), recorded in
`uns['scprospatial']['normalisation']` as docs/anndata_layout.md describes."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K

COUNTS_LIKE_P99 = 1000.0  # panels whose typical marker 99th percentile stays below this are count-scale
DEFAULT_COFACTOR = 5.0
TRANSFORMED_P99 = 20.0    # a panel with negative values whose typical 99th percentile stays below this is already
#                           transformed (arcsinh, log, z-scores); raw intensities, background-subtracted ones too,
#                           reach hundreds


def _record(adata: ad.AnnData, modality: str, entry: dict) -> None:
    info = adata.uns.setdefault(K.UNS, {})
    info.setdefault(K.NORMALISATION, {})[modality] = entry


# --- RNA ---------------------------------------------------------------------------------------------
def log1p_library_size(counts, target_sum: float = 1e4) -> sp.csr_matrix:
    """log1p of each cell's counts scaled to `target_sum` (row-wise, so a block of rows is normalised exactly as
    in the whole matrix); CSR float32, the input is not modified."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    x = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ counts, dtype=np.float32)
    np.log1p(x.data, out=x.data)
    return x


def normalize_rna(adata: ad.AnnData, *, target_sum: float = 1e4, copy: bool = False) -> ad.AnnData | None:
    """Library-size normalise to `target_sum` and log1p; raw counts kept in layers['counts'] (CSR float32).

    Parameters
    ----------
    adata
        Cells with raw RNA counts in X.
    target_sum
        Counts each cell is scaled to before log1p.
    copy
        Return a new AnnData instead of writing into `adata`.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    adata = adata.copy() if copy else adata
    counts = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.layers[K.COUNTS_LAYER] = counts
    adata.X = log1p_library_size(counts, target_sum)
    _record(adata, "rna", {"method": "log1p_library_size", "target_sum": float(target_sum)})
    return adata if copy else None


# --- ADT -----------------------------------------------------------------------------------------------
def clr_transform(x: np.ndarray, *, axis: str = "cell", pseudocount: float = 1.0) -> np.ndarray:
    """Seurat's CLR: log1p(x / g) with g = exp(mean(log(x + 1))) over proteins of a cell (axis='cell')
    or over cells of a protein (axis='protein')."""
    x = np.asarray(x, dtype=np.float64)
    ax = {"cell": 1, "protein": 0}[axis]
    log_gm = np.log(x + pseudocount).mean(axis=ax, keepdims=True)
    return np.log(x / np.exp(log_gm) + pseudocount).astype(np.float32)


def clr(adata: ad.AnnData, *, key: str = K.PROTEIN_RAW, key_added: str = K.PROTEIN, axis: str = "cell",
        pseudocount: float = 1.0, copy: bool = False) -> ad.AnnData | None:
    """CLR-normalise the ADT counts in obsm[key] into obsm[key_added] (same columns).

    Parameters
    ----------
    adata
        Cells with ADT counts in ``obsm[key]`` (DataFrame).
    key, key_added
        obsm keys of the counts and of the result.
    axis
        'cell' (each cell's proteins, the default) or 'protein'.
    pseudocount
        Added before the log.
    copy
        Return a new AnnData instead of writing into `adata`.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    if axis not in ("cell", "protein"):
        raise ValueError(f"axis must be 'cell' or 'protein', not {axis!r}")
    adata = adata.copy() if copy else adata
    raw = adata.obsm[key]
    values = clr_transform(raw.to_numpy(), axis=axis, pseudocount=pseudocount)
    adata.obsm[key_added] = pd.DataFrame(values, index=raw.index, columns=raw.columns)
    entry = {"method": "clr", "axis": axis, "pseudocount": float(pseudocount)}
    iso = adata.obsm.get(K.ISOTYPE_CONTROLS)
    if isinstance(iso, pd.DataFrame) and iso.shape[1]:
        entry["background"] = "isotype_controls"
        entry["isotype_controls"] = [str(c) for c in iso.columns]
    else:
        entry["background"] = "none"
    _record(adata, "protein", entry)
    return adata if copy else None


# --- imaging -------------------------------------------------------------------------------------------
def choose_cofactor(x: np.ndarray) -> float:
    """Arcsinh cofactor from the data's scale.

    Count-scale panels (CyTOF, IMC, MIBI: the typical marker's 99th percentile <= 1000) get the customary 5.
    Fluorescence intensities (CODEX, CyCIF: 16-bit means in the hundreds to tens of thousands) get a
    cofactor at the panel's background level, so unstained cells sit in the linear part of arcsinh and
    stained cells on its log part: the median over markers of each marker's 20th percentile of positive
    values, rounded to two significant digits and never below 5.
    """
    x = np.asarray(x, dtype=np.float64)
    p99 = np.nanmedian(np.nanpercentile(x, 99, axis=0))
    if p99 <= COUNTS_LIKE_P99:
        return DEFAULT_COFACTOR
    lows = [np.percentile(col[col > 0], 20) for col in x.T if (col > 0).any()]
    level = float(np.median(lows)) if lows else DEFAULT_COFACTOR
    digits = 1 - int(np.floor(np.log10(level))) if level > 0 else 0
    return max(DEFAULT_COFACTOR, float(round(level, digits)))


def already_transformed(x: np.ndarray) -> bool:
    """True when an imaging table is already on a transformed scale (TRANSFORMED_P99): negative values and a
    median over markers of the 99th percentile of |value| at most TRANSFORMED_P99, as for tables arcsinh-transformed
    and z-scored by their authors. arcsinh is not applied to such a table a second time."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or not (x < 0).any():
        return False
    return bool(np.nanmedian(np.nanpercentile(np.abs(x), 99, axis=0)) <= TRANSFORMED_P99)


def as_given(adata: ad.AnnData, reason: str) -> None:
    """Keep the imaging values as they are (X and obsm['protein']) and record why no transform was applied."""
    _set_imaging(adata, _imaging_input(adata, None), None, {"method": "none", "reason": reason})


def _imaging_input(adata: ad.AnnData, layer: str | None) -> np.ndarray:
    x = adata.layers[layer] if layer is not None else adata.X
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def _set_imaging(adata: ad.AnnData, values: np.ndarray, layer: str | None, entry: dict) -> None:
    if layer is not None and layer not in adata.layers:
        raise KeyError(layer)
    if K.RAW_LAYER not in adata.layers:
        adata.layers[K.RAW_LAYER] = _imaging_input(adata, None)
    adata.X = values.astype(np.float32)
    adata.obsm[K.PROTEIN] = pd.DataFrame(adata.X, index=adata.obs_names, columns=adata.var_names)
    _record(adata, "protein", entry)


def arcsinh(adata: ad.AnnData, *, cofactor: float | str = DEFAULT_COFACTOR, layer: str | None = None,
            copy: bool = False) -> ad.AnnData | None:
    """X <- arcsinh(raw / cofactor); raw intensities kept in layers['raw']. cofactor='auto' uses
    `choose_cofactor`.

    Parameters
    ----------
    adata
        Imaged cells with raw marker intensities in X (or `layer`).
    cofactor
        Divisor before arcsinh, or 'auto'.
    layer
        Layer to read instead of X.
    copy
        Return a new AnnData instead of writing into `adata`.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    adata = adata.copy() if copy else adata
    raw = _imaging_input(adata, layer)
    c = choose_cofactor(raw) if cofactor == "auto" else float(cofactor)
    if not c > 0:
        raise ValueError(f"cofactor must be positive, not {cofactor!r}")
    entry = {"method": "arcsinh", "cofactor": c, "cofactor_rule": "auto" if cofactor == "auto" else "given"}
    _set_imaging(adata, np.arcsinh(raw / c), layer, entry)
    return adata if copy else None


def quantile_scale(adata: ad.AnnData, *, lower: float = 0.01, upper: float = 0.99, layer: str | None = None,
                   copy: bool = False) -> ad.AnnData | None:
    """Per marker: (x - q_lower) / (q_upper - q_lower), clipped to [0, 1]."""
    if not 0 <= lower < upper <= 1:
        raise ValueError("need 0 <= lower < upper <= 1")
    adata = adata.copy() if copy else adata
    raw = _imaging_input(adata, layer)
    lo, hi = np.quantile(raw, lower, axis=0), np.quantile(raw, upper, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    entry = {"method": "quantile", "lower": float(lower), "upper": float(upper)}
    _set_imaging(adata, np.clip((raw - lo) / span, 0.0, 1.0), layer, entry)
    return adata if copy else None
