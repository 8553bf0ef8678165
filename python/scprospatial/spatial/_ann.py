"""Top-k search over a fixed reference, built once and queried block by block.

`make_search(ref, n_query, backend=...)` returns a search object with `.search(query, k) -> (idx, sim)` and
`.info` (what `uns` records). Backends:
  cpp        the exact C++ kernel (blocked, multithreaded, never holds the score matrix);
  torch/cuda the same blocks in torch (CPU, or the GPU);
  faiss-flat faiss's exact inner-product index (IndexFlatIP), for comparison with cpp;
  faiss-ivf  approximate: faiss's inverted-file index (IVF-Flat). k-means splits the reference into `nlist`
             lists; each query is compared with the references of its `nprobe` nearest lists only, about
             n_query × (nlist + nprobe × n_ref / nlist) inner products instead of n_query × n_ref.
  auto       faiss-ivf when n_query × n_ref reaches ANN_MIN_PAIRS (and the reference is large enough to
             split), else the exact C++ kernel (torch where the extension is missing; cuda on a GPU device).
IVF rather than a graph index (HNSW): its build is seeded k-means plus an exact assignment, so the same seed
and inputs give the same neighbours; HNSW's multithreaded insertion is order-dependent.
Every backend returns rows sorted by similarity (descending), ties by index, as the C++ kernel does.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .._logging import logger
from ..errors import InputError

ANN_MIN_PAIRS = 5e10        # auto switches to faiss-ivf from this many query x reference pairs (see benchmarks)
ANN_MIN_REF = 20_000        # ... and only for references this large (smaller ones are fast exactly)


@dataclass(frozen=True)
class IVFParams:
    """IVF-Flat settings. nlist None: 4·sqrt(n_ref) rounded to a power of two (faiss's guideline range is
    4-16·sqrt(n)); nprobe: lists visited per query; train_per_list: k-means training points per list."""
    nlist: int | None = None
    nprobe: int = 32
    train_per_list: int = 64
    seed: int = 0

    def lists(self, n_ref: int) -> int:
        if self.nlist is not None:
            return int(self.nlist)
        return int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(n_ref))))))


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # a core dependency: only a broken installation lands here
        raise InputError("backend 'faiss-ivf'/'faiss-flat' needs the faiss-cpu package "
                         "(pip install faiss-cpu)") from exc
    return faiss


class _FaissThreads:
    """faiss's OpenMP thread count for the duration of a call (it is process-wide), restored afterwards."""

    def __init__(self, faiss, threads: int | None):
        self.faiss, self.threads = faiss, threads

    def __enter__(self):
        self.before = self.faiss.omp_get_max_threads()
        if self.threads:
            self.faiss.omp_set_num_threads(int(self.threads))

    def __exit__(self, *exc):
        self.faiss.omp_set_num_threads(self.before)


def sort_rows(idx: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows by similarity descending, ties by index (the C++ kernel's order)."""
    if idx.shape[1] <= 1:
        return idx, sim
    order = np.lexsort((idx, -sim), axis=1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(sim, order, 1)


class FaissSearch:
    """faiss over `ref` (float32, C-contiguous): 'flat' (exact) or 'ivf' (approximate)."""

    def __init__(self, ref: np.ndarray, kind: str, *, params: IVFParams | None = None, threads: int | None = None):
        self.faiss, self.ref, self.kind, self.threads = _faiss(), ref, kind, threads
        self.params = params or IVFParams()
        d = ref.shape[1]
        with _FaissThreads(self.faiss, threads):
            if kind == "flat":
                self.index = self.faiss.IndexFlatIP(d)
                self.info = {"backend": "faiss-flat", "approximate": False}
            else:
                nlist = self.params.lists(len(ref))
                self.index = self.faiss.IndexIVFFlat(self.faiss.IndexFlatIP(d), d, nlist,
                                                     self.faiss.METRIC_INNER_PRODUCT)
                n_train = min(len(ref), nlist * self.params.train_per_list)
                sample = np.random.default_rng(self.params.seed).choice(len(ref), n_train, replace=False)
                self.index.cp.seed = int(self.params.seed)
                self.index.cp.min_points_per_centroid = 1  # a small training sample is deliberate, not a mistake
                self.index.train(ref[np.sort(sample)])
                self.index.nprobe = min(int(self.params.nprobe), nlist)
                self.info = {"backend": "faiss-ivf", "approximate": True, "nlist": nlist,
                             "nprobe": int(self.index.nprobe), "n_train": int(n_train), "seed": int(self.params.seed)}
            self.index.add(ref)
        self.info["faiss"] = self.faiss.__version__

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with _FaissThreads(self.faiss, self.threads):
            sim, idx = self.index.search(query, int(k))
        missing = idx < 0
        if missing.any():  # IVF: the visited lists held fewer than k references; complete those rows exactly
            rows = np.flatnonzero(missing.any(axis=1))
            exact = self.faiss.IndexFlatIP(self.ref.shape[1])
            exact.add(self.ref)
            sim[rows], idx[rows] = exact.search(query[rows], int(k))
            logger.debug("faiss-ivf: %d query rows completed by exact search", len(rows))
        return sort_rows(idx.astype(np.int64, copy=False), sim.astype(np.float32, copy=False))


class KernelSearch:
    """The exact blocked kernels (C++, or torch on CPU/GPU): nothing to build."""

    def __init__(self, ref: np.ndarray, backend: str, *, threads: int | None, device: str, run):
        self.ref, self.backend, self.threads, self.device, self.run = ref, backend, threads, device, run
        self.info = {"backend": backend, "approximate": False}

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.run(query, self.ref, int(k), self.backend, self.threads, self.device)


def choose_ann(n_query: int, n_ref: int) -> bool:
    """auto's rule: approximate search from ANN_MIN_PAIRS pairs, for references of at least ANN_MIN_REF cells."""
    return n_ref >= ANN_MIN_REF and float(n_query) * float(n_ref) >= ANN_MIN_PAIRS


def ivf_params(params: IVFParams | dict | None) -> IVFParams:
    if params is None or isinstance(params, IVFParams):
        return params or IVFParams()
    unknown = set(params) - set(asdict(IVFParams()))
    if unknown:
        raise InputError(f"unknown IVF parameter(s): {', '.join(sorted(unknown))}; known: nlist, nprobe, "
                         "train_per_list, seed")
    return IVFParams(**params)
