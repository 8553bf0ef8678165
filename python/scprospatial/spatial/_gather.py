"""Weighted gather-average of predicted profiles: the mixture that mapping gives every imaged cell.

Each output row i mixes the k Gaussians its indices pick from the rows of (mean, sd):

    mean_i = sum_j w_ij mu_idx(i,j),   var_i = max(0, sum_j w_ij (sd_idx(i,j)^2 + mu_idx(i,j)^2) - mean_i^2)

Weights are used as given (rows need not sum to 1; a zero weight still multiplies its row, so a NaN or inf
there gives NaN, as in the sparse product). Backends: 'cpp' (the compiled kernel: multithreaded over output
rows, GIL released, reads float32 profiles in place, float64 sums), 'cuda' (its CUDA twin: host arrays are copied
to the GPU and back; torch CUDA tensors are read and written in place), 'scipy' (the
reference: a CSR weight matrix times float64 copies of the profiles, taken a few columns at a time so the
copies stay small) and 'auto' (cpp when the extension is built, else scipy, with the extension's one
warning). All three give the same float32 results bit for bit: every backend sums in float64 over j in
order, one rounding per operation.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse

from .. import _ext
from ..errors import InputError
from ._kernels import _threads, resolve_backend

SCIPY_CHUNK_BYTES = 256 * 2**20  # float64 temporaries of the scipy backend per column chunk


class Mixture(NamedTuple):
    mean: np.ndarray        # n x p float32
    var: np.ndarray | None  # n x p float32 (the SD with as_sd=True); None with variance=False
    backend: str            # the backend that computed them


def _profiles(x, what: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """float32 C-contiguous 2-d view of x (copied only when x is not already in that layout)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-d array, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{what} has shape {arr.shape}, expected {shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _index_error(idx: np.ndarray, m: int) -> str | None:
    bad = (idx < 0) | (idx >= m)
    if not bad.any():
        return None
    row, col = np.unravel_index(int(np.argmax(bad)), idx.shape)
    return (f"index {int(idx[row, col])} (row {row}, column {col}) is out of range for {m} profile rows")


def _scipy(idx, w, mean, sd, variance: bool, as_sd: bool, out_mean, out_var) -> None:
    """The reference: CSR(w) @ float64 profiles, a column chunk at a time."""
    n, k = idx.shape
    m, p = mean.shape
    weights = sparse.csr_matrix((w.astype(np.float64).ravel(), idx.ravel(), np.arange(0, n * k + 1, k)),
                                shape=(n, m))
    per_column = 8 * (m * (3 if variance else 1) + n * (2 if variance else 1))
    step = max(1, min(p, SCIPY_CHUNK_BYTES // max(per_column, 1)))
    for c0 in range(0, p, step):
        cols = slice(c0, min(p, c0 + step))
        mu = mean[:, cols].astype(np.float64)
        mm = np.asarray(weights @ mu)
        out_mean[:, cols] = mm
        if variance:
            x2 = mu ** 2 if sd is None else sd[:, cols].astype(np.float64) ** 2 + mu ** 2
            v = np.maximum(np.asarray(weights @ x2) - mm ** 2, 0.0)
            out_var[:, cols] = np.sqrt(v) if as_sd else v


def gather_mixture(idx, w, mean, sd=None, *, variance: bool = True, as_sd: bool = False, backend: str = "auto",
                   threads: int | None = None, out: tuple[np.ndarray, np.ndarray | None] | None = None) -> Mixture:
    """Mixture mean and variance of the k profiles each row of `idx` picks, weighted by `w`.

    idx: n x k integer indices into the rows of mean/sd (e.g. topk_similarity's indices); w: n x k weights,
    float32 or float64, used as given. mean, sd: m x p profiles (sd optional: components of variance 0);
    float32 C-contiguous arrays are read in place, anything else is first copied to that layout (a caller
    that loops over row blocks should convert once, outside the loop). variance=False: means only.
    as_sd=True: the second array holds the mixture SD (square root taken in float64 before rounding to float32,
    as mapping's former mixture() did).
    out: optional preallocated (mean, var) float32 C-contiguous n x p arrays, e.g. row slices of the full
    output (var may be None when variance=False); the results are written there and returned.
    Returns Mixture(mean, var, backend). An index outside [0, m) raises InputError naming the first one.
    torch CUDA tensors (all four inputs, and `out` if given, on one GPU) run the CUDA kernel in place, without a
    copy to the host: the results are then float32 tensors on that GPU, backend 'cuda' (see _device.py).
    """
    if any(_ext.is_device_array(a) for a in (idx, w, mean, sd)):
        from ._device import gather_on_device

        on_device = gather_on_device(idx, w, mean, sd, variance=variance, as_sd=as_sd, backend=backend, out=out)
        return Mixture(on_device[0], on_device[1], "cuda")
    used = resolve_backend(backend)
    ix = np.asarray(idx)
    if ix.ndim != 2 or ix.shape[1] < 1 or not np.issubdtype(ix.dtype, np.integer):
        raise InputError(f"idx must be an n x k integer array with k >= 1, got {ix.dtype} {ix.shape}")
    ix = np.ascontiguousarray(ix, dtype=np.int64)
    wt = np.asarray(w)
    if wt.shape != ix.shape:
        raise InputError(f"w has shape {wt.shape}, expected {ix.shape} (one weight per index)")
    wt = np.ascontiguousarray(wt, dtype=wt.dtype if wt.dtype in (np.float32, np.float64) else np.float64)
    mu = _profiles(mean, "mean")
    s = None if sd is None else _profiles(sd, "sd", mu.shape)
    n, p = len(ix), mu.shape[1]
    if out is None:
        om = np.empty((n, p), np.float32)
        ov = np.empty((n, p), np.float32) if variance else None
    else:
        om, ov = out
        for arr, what in [(om, "out mean")] + ([(ov, "out var")] if variance else []):
            if not (isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (n, p)
                    and arr.flags.c_contiguous and arr.flags.writeable):
                raise InputError(f"{what} must be a writable C-contiguous float32 array of shape {(n, p)}")
    if used == "scipy":
        bad = _index_error(ix, len(mu))
        if bad:
            raise InputError(bad)
        _scipy(ix, wt, mu, s, variance, as_sd, om, ov)
    else:
        try:
            _ext.require().gather_mixture(ix, wt, mu, s, threads=_threads(threads),
                                          device="cuda" if used == "cuda" else "cpu", variance=variance,
                                          as_sd=as_sd, out_mean=om, out_var=ov)
        except IndexError as exc:
            raise InputError(str(exc)) from None
    return Mixture(om, ov, used)
