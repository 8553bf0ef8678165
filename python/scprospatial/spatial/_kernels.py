"""Neighbour-graph kernels over cell coordinates: the compiled grid search, its CUDA twin and the
scipy cKDTree reference (also the fallback when the extension is missing). `device` ('auto', 'cpu',
'cuda'; the CLI's --device) picks between the C++ kernel and its CUDA twin, which give the same graph.

Every kernel returns CSR arrays whose rows are sorted by distance, ties broken by column index.
"""
from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np
from scipy import sparse

from .. import _ext
from .._settings import DEVICES, get_threads
from ..errors import InputError

BACKENDS = ("auto", "cpp", "cuda", "scipy")


class CSRArrays(NamedTuple):
    indptr: np.ndarray
    indices: np.ndarray
    distances: np.ndarray
    backend: str  # the backend that computed them

    def to_csr(self) -> sparse.csr_matrix:
        """A scipy CSR sharing these arrays (scipy copies nothing when indptr and indices share a dtype)."""
        n = len(self.indptr) - 1
        return sparse.csr_matrix((self.distances, self.indices, self.indptr), shape=(n, n), copy=False)


def as_coordinates(coords, what: str = "coordinates") -> np.ndarray:
    """C-contiguous float64 n x 2 / n x 3 array of finite values, or InputError."""
    arr = np.ascontiguousarray(np.asarray(coords, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise InputError(f"{what} must be an n x 2 or n x 3 array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{what} hold no cells")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InputError(f"{what} of {int(bad.sum())} cells are not finite (first: row {int(np.argmax(bad))})")
    return arr


def resolve_backend(backend: str, *, device: str | None = None, cuda_kernel: bool = True) -> str:
    """The backend that runs a graph kernel.

    backend 'auto' follows `device`: 'cuda', or 'auto' where the core has CUDA kernels and sees a GPU, gives
    'cuda'; otherwise 'cpp' when the extension is built, else 'scipy' (with the extension's one warning). device
    None leaves the choice to `backend` ('auto' -> 'cpp'). An explicit backend must agree with an explicit device.
    cuda_kernel=False (a graph or a size the CUDA kernel lacks): the C++ CPU kernel instead, warned about when the
    GPU was asked for by name.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in (None, *DEVICES):
        raise InputError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    core = _ext.core()
    asked = backend == "cuda" or device == "cuda"  # the GPU named explicitly
    if backend == "auto":
        gpu = asked or (device == "auto" and _ext.cuda_ready())
        backend = "cuda" if gpu else "cpp" if core is not None else "scipy"
    elif device == "cuda" and backend != "cuda":
        raise InputError(f"backend {backend!r} runs on the CPU but device 'cuda' was asked for "
                         "(use backend 'cuda' or 'auto')")
    elif device == "cpu" and backend == "cuda":
        raise InputError("backend 'cuda' runs on the GPU but device 'cpu' was asked for (use backend 'cpp' or 'auto')")
    if backend == "cuda":
        reason = _ext.cuda_unavailable_reason()
        if reason is not None:
            raise InputError(f"device 'cuda': {reason}")
        if not cuda_kernel:
            if asked:
                warnings.warn("this graph has no CUDA kernel; computing it with the C++ CPU kernel", UserWarning,
                              stacklevel=3)
            return "cpp"
    elif backend == "cpp" and core is None:
        raise InputError("backend 'cpp' needs the compiled extension, which is not available")
    return backend


def _threads(threads: int | None) -> int:
    """Explicit count, else the run-wide setting capped at the CPUs this process may use (taskset, cgroups)."""
    if threads:
        return int(threads)
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else get_threads()
    return max(1, min(get_threads(), allowed))


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if n < k + 1:
        raise InputError(f"k={k} neighbours need at least {k + 1} cells, got {n}")
    return int(k)


def sort_rows(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, n: int, include_self: bool,
               dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays from edge lists, rows ordered by (distance, column); self first when included."""
    if include_self:
        rows = np.concatenate([np.arange(n), rows])
        cols = np.concatenate([np.arange(n), cols])
        dist = np.concatenate([np.full(n, -1.0), dist])  # sorts self first, reset to 0 below
    order = np.lexsort((cols, dist, rows))
    index_dtype = np.int32 if max(n, len(order)) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[order].astype(index_dtype), np.maximum(dist[order], 0).astype(dtype)


def _knn_scipy(x: np.ndarray, k: int, threads: int, include_self: bool,
               dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    n = len(x)
    dist, idx = cKDTree(x).query(x, k=k + 1, workers=threads)
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True  # self not among the k + 1 (duplicates): drop the farthest
    keep = ~is_self
    rows = np.repeat(np.arange(n), k)
    return sort_rows(rows, idx[keep], dist[keep], n, include_self, dtype)


def _radius_scipy(x: np.ndarray, radius: float, threads: int, include_self: bool,
                  dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    n = len(x)
    found = cKDTree(x).query_ball_point(x, radius, workers=threads, return_sorted=False)
    counts = np.fromiter((len(f) for f in found), dtype=np.int64, count=n)
    cols = np.concatenate([np.asarray(f, dtype=np.int64) for f in found]) if counts.sum() else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(n), counts)
    other = rows != cols
    rows, cols = rows[other], cols[other]
    dist = np.sqrt(((x[rows] - x[cols]) ** 2).sum(axis=1))
    return sort_rows(rows, cols, dist, n, include_self, dtype)


def knn_arrays(coords, k: int = 10, *, backend: str = "auto", threads: int | None = None,
               include_self: bool = False, dtype=np.float64, device: str | None = None) -> CSRArrays:
    """CSR arrays of the k-nearest-neighbour graph and the backend used (see `knn_graph`)."""
    x = as_coordinates(coords)
    k = _check_k(k, len(x))
    core = _ext.core()
    used = resolve_backend(backend, device=device, cuda_kernel=core is None or k <= core.CUDA_KNN_MAX_K)
    float32 = np.dtype(dtype) == np.float32
    if used == "scipy":
        return CSRArrays(*_knn_scipy(x, k, _threads(threads), include_self, np.dtype(dtype)), used)
    device = "cuda" if used == "cuda" else "cpu"
    indptr, indices, distances = _ext.require().knn_graph(x, k, include_self=include_self, threads=_threads(threads),
                                                          device=device, float32=float32)
    return CSRArrays(indptr, indices, distances, used)


def radius_arrays(coords, radius: float, *, backend: str = "auto", threads: int | None = None,
                  include_self: bool = False, dtype=np.float64, device: str | None = None) -> CSRArrays:
    """CSR arrays of the radius graph and the backend used (see `radius_graph`)."""
    x = as_coordinates(coords)
    if radius is None or not np.isfinite(radius) or radius <= 0:
        raise InputError(f"radius must be a positive number, got {radius!r}")
    used = resolve_backend(backend, device=device, cuda_kernel=False)
    if used == "scipy":
        return CSRArrays(*_radius_scipy(x, float(radius), _threads(threads), include_self, np.dtype(dtype)), used)
    indptr, indices, distances = _ext.require().radius_graph(x, float(radius), include_self=include_self,
                                                             threads=_threads(threads),
                                                             float32=np.dtype(dtype) == np.float32)
    return CSRArrays(indptr, indices, distances, used)


def knn_graph(coords, k: int = 10, *, backend: str = "auto", threads: int | None = None,
              include_self: bool = False, dtype=np.float64, device: str | None = None) -> sparse.csr_matrix:
    """k-nearest-neighbour graph of n x 2 / n x 3 coordinates as a CSR matrix of Euclidean distances.

    Each row holds the k nearest other cells, sorted by distance (ties by index); `include_self` adds
    the cell itself first (distance 0, stored explicitly). Duplicate positions give explicit zeros.
    backend: 'auto' (C++ when built, else scipy with a warning), 'cpp', 'cuda' (the CUDA kernel, k <= 64:
    the same graph bit for bit) or 'scipy' (cKDTree). device: None (the backend decides), 'cpu', 'cuda' or
    'auto' (the CUDA kernel where the core has it and sees a GPU); see `resolve_backend`.
    threads: CPU threads (default: scprospatial's thread setting, i.e. all cores). The matrix shares
    the arrays the kernel filled: nothing is copied.
    """
    return knn_arrays(coords, k, backend=backend, threads=threads, include_self=include_self, dtype=dtype,
                      device=device).to_csr()


def radius_graph(coords, radius: float, *, backend: str = "auto", threads: int | None = None,
                 include_self: bool = False, dtype=np.float64, device: str | None = None) -> sparse.csr_matrix:
    """All pairs of cells within `radius` (inclusive) as a CSR matrix of distances, rows sorted by distance
    (a CPU kernel: device 'cuda' computes it with the C++ CPU kernel, warned)."""
    return radius_arrays(coords, radius, backend=backend, threads=threads, include_self=include_self,
                         dtype=dtype, device=device).to_csr()
