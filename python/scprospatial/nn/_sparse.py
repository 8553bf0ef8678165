"""Sparse token matrices: scipy CSR <-> torch sparse COO, dropping and building tokens."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def sparse_tensor(x: sp.csr_matrix, device: str | torch.device = "cpu") -> torch.Tensor:
    """scipy CSR (sorted indices) -> coalesced torch sparse COO in the same row-major order."""
    coo = x.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    vals = torch.from_numpy(coo.data.astype(np.float32, copy=False))
    return torch.sparse_coo_tensor(idx, vals, x.shape, is_coalesced=True, check_invariants=False).to(device)


def drop_tokens(tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Remove the entries of a sparse matrix where `drop` (same nnz order) is true."""
    tokens = tokens.coalesce()
    keep = ~drop
    return torch.sparse_coo_tensor(tokens.indices()[:, keep], tokens.values()[keep], tokens.shape,
                                   is_coalesced=True, check_invariants=False)


def dense_tokens(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Dense values + presence mask -> sparse tokens (present entries only, zeros included)."""
    idx = present.nonzero().T
    return torch.sparse_coo_tensor(idx, values[present], values.shape, is_coalesced=True, check_invariants=False)
