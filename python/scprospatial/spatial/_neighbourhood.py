"""Cell-type labels and the stored neighbour graph of an AnnData, as mapping (`_mapping`) and spatial statistics
(`_stats`) both read them."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _constants as K
from ..errors import InputError


def spatial_cell_type_key(adata) -> str | None:
    """The obs column of cell types a prepared spatial table records (uns['scprospatial']['cell_type_key'])."""
    return adata.uns.get(K.UNS, {}).get(K.CELL_TYPE_KEY)


def connectivities(adata, *, connectivity_key: str = K.SPATIAL_CONNECTIVITIES) -> sparse.csr_matrix:
    """The stored graph as binary CSR without self-loops, or MissingStepError."""
    from ..errors import MissingStepError

    if connectivity_key not in adata.obsp:
        raise MissingStepError(f"no spatial graph: obsp[{connectivity_key!r}] is missing (run spatial-graph)")
    a = sparse.csr_matrix(adata.obsp[connectivity_key], copy=True)
    if a.diagonal().any():   # setdiag goes through COO and back: only when there is a self-loop to drop
        a.setdiag(0)
    a.eliminate_zeros()
    a.data[:] = 1.0
    return a


def neighbour_counts(graph: sparse.csr_matrix, codes: np.ndarray, n_types: int) -> tuple[np.ndarray, np.ndarray]:
    """How many of each cell's neighbours in the binary `graph` are of each type (cells x types; cells with code
    < 0 count for no type), and each row's total (cells x 1)."""
    ok = codes >= 0
    onehot = sparse.csr_matrix((np.ones(ok.sum()), (np.flatnonzero(ok), codes[ok])), shape=(len(codes), n_types))
    counts = np.asarray((graph @ onehot).todense())
    return counts, counts.sum(axis=1, keepdims=True)


def cluster_codes(adata, key: str) -> tuple[np.ndarray, list[str]]:
    """Integer code of each cell's label in obs[key] (-1: missing) and the label names: a categorical column's
    categories in their stored order (as squidpy reads them, so its plots label rows right), else the sorted
    labels."""
    if key not in adata.obs:
        raise InputError(f"cluster key {key!r} is not an obs column")
    labels = adata.obs[key]
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return labels.cat.codes.to_numpy().astype(np.int64), [str(c) for c in labels.cat.categories]
    codes, names = pd.factorize(labels.astype("string"), sort=True, use_na_sentinel=True)
    return codes, [str(n) for n in names]
