"""Input checks that end in a one-line `InputError` naming the file."""
from __future__ import annotations

import warnings
from collections.abc import Iterable

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._logging import logger
from ..errors import InputError


class LogNormalisedInputWarning(UserWarning):
    """RNA values look log-normalised and no raw counts were found; they are used as they are."""


def _values(x) -> np.ndarray:
    return x.data if sp.issparse(x) else np.asarray(x).ravel()


CHECK_BLOCK = 1 << 22   # values per block of the checks below: their temporaries stay ~32 MB, not the input's size


def _blocks(data: np.ndarray):
    """`data` (1-D) in blocks of CHECK_BLOCK values, as float arrays (ints and bools converted block by block,
    anything else, e.g. strings, fails as np.asarray(..., float64) does)."""
    for start in range(0, data.size, CHECK_BLOCK):
        block = data[start:start + CHECK_BLOCK]
        yield block if block.dtype.kind == "f" else np.asarray(block, dtype=np.float64)


def _count(data: np.ndarray, test) -> int:
    return sum(int(np.count_nonzero(test(b))) for b in _blocks(data))


def _all_integer(data: np.ndarray) -> bool:
    return all(np.all(np.mod(b, 1) == 0) for b in _blocks(data))


def check_not_empty(adata: ad.AnnData, path, what: str = "matrix") -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"empty {what}: {adata.n_obs} cells x {adata.n_vars} features", path)
    x = adata.X
    nnz = x.nnz if sp.issparse(x) else int(np.count_nonzero(np.asarray(x)))
    if nnz == 0:
        raise InputError(f"empty {what}: every value is zero", path)


def check_unique_cells(names: pd.Index, path) -> None:
    if not names.is_unique:
        dup = names[names.duplicated()].unique()
        raise InputError(f"duplicate cell ids: {len(dup)} repeated (e.g. {list(dup[:3])})", path)


def check_finite(values, path, what: str, *, allow_negative: bool = False) -> None:
    data = _values(values) if not isinstance(values, pd.DataFrame) else values.to_numpy().ravel()
    bad = _count(data, lambda b: ~np.isfinite(b))
    if bad:
        raise InputError(f"{what} contain NaN or Inf ({bad} values)", path)
    negative = 0 if allow_negative else _count(data, lambda b: b < 0)
    if negative:
        raise InputError(f"{what} contain negative values ({negative}); raw counts expected", path)


def looks_log_normalised(x) -> bool:
    """Non-negative, non-integer, max below 30 and expm1 row sums nearly constant (a target sum)."""
    data = _values(x)
    if data.size == 0 or data.min() < 0 or data.max() > 30 or _all_integer(data):
        return False
    rows = x[: min(x.shape[0], 500)]
    rows = rows.expm1() if sp.issparse(rows) else np.expm1(np.asarray(rows))
    sums = np.asarray(rows.sum(axis=1)).ravel()
    sums = sums[sums > 0]
    return sums.size > 0 and float(np.std(sums) / np.mean(sums)) < 0.05


INPUT_SAMPLE_ROWS = 2000  # rows inspected to tell raw counts from log-normalised values
RAW_COUNTS_HINT = ("run scanpy.pp.normalize_total + scanpy.pp.log1p on raw counts, or scprospatial.pp.normalize "
                   "(or scprospatial.pp.read, which prepares any input) first")


def rna_input_state(x, path=None) -> str:
    """What a model input's X holds: 'counts' (non-negative integers) or 'lognorm' (log-normalised values).

    Looks at the first rows only. Values that are neither (negative, e.g. scaled with scanpy.pp.scale, or too
    large for log scale) raise an InputError saying what to run first.

    Parameters
    ----------
    x
        Cells x genes matrix (dense or sparse), e.g. ``adata.X``.
    path
        Input named in the error message.

    Returns
    -------
    'counts' or 'lognorm'.
    """
    sample = x[: min(x.shape[0], INPUT_SAMPLE_ROWS)]
    data = np.asarray(_values(sample), dtype=np.float64)
    if data.size and not np.isfinite(data).all():
        raise InputError("X contains NaN or Inf values; " + RAW_COUNTS_HINT, path)
    if data.size == 0 or (data.min() >= 0 and np.all(np.mod(data, 1) == 0)):
        return "counts"
    if data.min() < 0 or data.max() > 30:
        raise InputError(f"X looks neither like raw counts nor log-normalised values (range {data.min():.3g} to "
                         f"{data.max():.3g}; scaled or batch-corrected data cannot be used); {RAW_COUNTS_HINT}",
                         path)
    if not looks_log_normalised(sample):
        logger.info("X is not integer and its cells do not share one library size after expm1 (a gene subset or "
                    "another normalisation?); it is used as log-normalised values")
    return "lognorm"


def rna_counts_status(x, path) -> str:
    """'counts' for raw integer counts, 'lognorm' for log-normalised values (warned about); else InputError."""
    check_finite(x, path, "RNA values")
    data = _values(x)
    if _all_integer(data):
        return "counts"
    if looks_log_normalised(x):
        warnings.warn(f"{path}: RNA values look log-normalised and no raw counts (layers['counts'] or raw.X) "
                      "were found; they are used as they are (no counts layer is written)",
                      LogNormalisedInputWarning, stacklevel=3)
        return "lognorm"
    frac = _count(data, lambda b: np.mod(b, 1) != 0) / max(data.size, 1)
    raise InputError(f"RNA values are not integer counts ({frac:.1%} non-integer) and do not look "
                     "log-normalised; provide raw UMI counts (X, layers['counts'] or raw.X)", path)


def check_genes_shared(adata: ad.AnnData, genes: Iterable[str], path=None, *, min_shared: int = 1) -> int:
    """Number of `adata.var_names` in `genes`; InputError when fewer than `min_shared`."""
    shared = int(adata.var_names.isin(list(genes)).sum())
    if shared < min_shared:
        raise InputError(f"no genes shared with the model's vocabulary ({shared} of {adata.n_vars} input genes "
                         "found); are the var_names gene symbols of the same species?", path)
    return shared
