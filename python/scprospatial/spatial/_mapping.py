"""Map scRNA-seq cells onto imaged cells through the model and impute their proteome.

No marker has to be measured on both sides, but the default score needs the markers' coding genes: the default
("fused", see _fuse.py, joint-space weight 0) is the correlation of the imaged cell's measured markers with the
model's prediction of the same markers from each scRNA-seq cell's RNA (the training panel from the translator head,
other markers through their coding gene's RNA: a marker outside the training panel takes part only when its coding
gene is in the model's gene vocabulary). A joint-space term (RNA encoder against the protein encoder adapted to the
imaged panel, self-supervised) can be weighed in; on the development markers it added nothing. Each imaged cell
takes its k best-scoring scRNA-seq cells (blocked top-k that never holds the full score matrix), weights
them by softmax(score / temperature) and receives the weighted mixture of their predicted proteomes:

    mean = sum_j w_j mu_j,   sd^2 = sum_j w_j (sigma_j^2 + mu_j^2) - mean^2

(the mixture variance: neighbours' predictive variance plus their spread around the mean).
The default temperature is the model's learned CLIP temperature (the scale its similarities were trained on).

Outputs on the imaged cells: obsm['protein_predicted'] / ['protein_predicted_sd'], uns['protein_predicted'],
obs['mapping_confidence'] = sum_j w_j s_j (weighted mean score of the chosen scRNA-seq cells, in [-1, 1];
near 1 when the cell sits on scRNA-seq cells), obsm['X_scprospatial'] and,
when both sides are labelled, obs['mapped_cell_type'] (weighted vote). On the scRNA-seq cells (the second
file `<out stem>.rna.h5ad`), each cell's location distribution: the imaged cells that chose it, weighted by w
and normalised to sum 1 (obsm['mapped_cells'], sparse, one column per imaged cell in the order of the imaged
output), its mean (obsm['mapped_location']) and spread (obs['mapped_location_sd'], root mean squared distance
to that mean: small when the cell belongs to one place, large when it matches cells all over the section),
obs['mapping_weight'] (total weight received; the distribution is empty and the location NaN where it is 0),
obs['mapped_cell_type'] (weighted vote of those imaged cells' labels) and, when the imaged cells are labelled,
obsm['mapped_niche']: the cell-type mix of the spatial neighbourhoods of those imaged cells (each imaged cell's
neighbours in obsp['spatial_connectivities'], or its NICHE_NEIGHBOURS nearest cells when the input has no graph),
averaged over the distribution: the spatial niche the scRNA-seq cell belongs to. Plus the model's predictions.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _constants as K
from .. import _ext
from .._logging import logger, progress
from .._settings import scoped_threads
from ..errors import InputError
from ._adapt import ADAPT_EPOCHS
from ._ann import FaissSearch, IVFParams, KernelSearch, choose_ann, ivf_params
from ._fuse import FUSE_WEIGHT, MIN_PANEL_MARKERS, mapping_space, panel_markers, predict_panel, zscore_columns
from ._gather import gather_mixture
from ._kernels import _threads, knn_graph, resolve_backend
from ._neighbourhood import cluster_codes, connectivities, neighbour_counts, spatial_cell_type_key
from ._regress import DEFAULT_IMPUTE, IMPUTE_METHODS, blend, fit_panel_regression

TOPK_BACKENDS = ("auto", "cpp", "cuda", "torch", "faiss-ivf", "faiss-flat")
RNA_CELL_TYPE_KEY = "cell_type"           # default obs column of scRNA-seq cell types
RNA_SUFFIX = ".rna.h5ad"
QUERY_BLOCK = 65536                       # imaged cells per mapping block (bounds every temporary)
NICHE_NEIGHBOURS = 10                     # an imaged cell's niche when the input has no spatial graph


# ----------------------------------------------------------------------------- top-k search
def _as_embedding(x, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputError(f"{what} must be a 2-d array with at least one column, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} hold non-finite values")
    return arr


def resolve_topk_backend(backend: str, device: str = "cpu", n_query: int = 0, n_ref: int = 0) -> str:
    """'auto': the core's CUDA kernel when `device` is a GPU (torch on the GPU, logged, where the core has no CUDA
    kernels); on the CPU faiss-ivf (approximate) when the search is large (_ann.choose_ann: n_query x n_ref
    pairs), else the C++ kernel (torch, warned, when it is missing). 'cuda': the CUDA kernel or an InputError."""
    if backend not in TOPK_BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(TOPK_BACKENDS)}")
    if backend == "cuda" or (backend == "auto" and str(device).startswith("cuda")):
        reason = _ext.cuda_unavailable_reason()
        if reason is None:
            return "cuda"
        if backend == "cuda":
            raise InputError(f"backend 'cuda': {reason}")
        logger.info("top-k search with torch on the GPU: %s", reason)
        return "torch"
    if backend == "cpp" and _ext.core() is None:
        raise InputError("backend 'cpp' needs the compiled extension, which is not available")
    if backend == "auto" and choose_ann(n_query, n_ref):
        return "faiss-ivf"
    if backend == "auto":
        return "cpp" if _ext.core() is not None else "torch"  # _ext warned once already
    return backend


def _topk_torch(query: np.ndarray, ref: np.ndarray, k: int, device: str, block: int | None = None):
    """Same blocks as the C++ kernel in torch: a running top-k per query row merged block by block.

    block: rows per query and reference block (4096 on CPU; 16384 on a GPU, a 1 GiB score tile)."""
    import torch

    block = block or (16384 if str(device).startswith("cuda") else 4096)
    r = torch.from_numpy(ref).to(device)
    idx_out = np.empty((len(query), k), np.int64)
    sim_out = np.empty((len(query), k), np.float32)
    for q0 in range(0, len(query), block):
        q = torch.from_numpy(query[q0:q0 + block]).to(device)
        best_s = torch.full((len(q), k), -torch.inf, device=device)
        best_i = torch.zeros((len(q), k), dtype=torch.long, device=device)
        for r0 in range(0, len(r), block):
            s = q @ r[r0:r0 + block].T
            kk = min(k, s.shape[1])
            bs, bi = torch.topk(s, kk, dim=1)
            cand_s, cand_i = torch.cat([best_s, bs], 1), torch.cat([best_i, bi + r0], 1)
            best_s, pos = torch.topk(cand_s, k, dim=1)
            best_i = torch.gather(cand_i, 1, pos)
        sim_out[q0:q0 + block], idx_out[q0:q0 + block] = best_s.cpu().numpy(), best_i.cpu().numpy()
    # Same order as the C++ kernel: similarity descending, ties by index.
    order = np.lexsort((idx_out, -sim_out), axis=1) if k > 1 else np.zeros((len(query), 1), np.int64)
    return np.take_along_axis(idx_out, order, 1), np.take_along_axis(sim_out, order, 1)


def _exact_topk(query, ref, k: int, backend: str, threads: int | None, device: str):
    """The exact kernels on host arrays: torch on `device`, else the core's C++ kernel or its CUDA twin."""
    if backend == "torch":
        return _topk_torch(query, ref, k, device)
    kernel_device = "cuda" if backend == "cuda" else "cpu"
    return _ext.require().topk_similarity(query, ref, k, threads=_threads(threads), device=kernel_device)


def _check_k(k, n_ref: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if n_ref < k:
        raise InputError(f"k={k} neighbours need at least {k} reference cells, got {n_ref}")


def make_search(ref, n_query: int, k: int = 10, *, backend: str = "auto", threads: int | None = None,
                device: str = "cpu", ivf: IVFParams | dict | None = None):
    """A top-k search over `ref`, built once (faiss's index) and queried block by block: `.search(query, k)`
    returns (indices, similarities) as `topk_similarity` does; `.info` is what `uns` records (backend, and for
    faiss-ivf its parameters). n_query: the queries to come (auto's choice depends on n_query x n_ref)."""
    r = _as_embedding(ref, "reference embedding")
    _check_k(k, len(r))
    used = resolve_topk_backend(backend, device, n_query, len(r))
    if used.startswith("faiss-"):
        return FaissSearch(r, used.split("-")[1], params=ivf_params(ivf), threads=_threads(threads))
    return KernelSearch(r, used, threads=threads, device=device, run=_exact_topk)


def topk_similarity(query, ref, k: int = 10, *, backend: str = "auto", threads: int | None = None,
                    device: str = "cpu", ivf: IVFParams | dict | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The k reference rows with the largest inner product for every query row (cosine similarity
    for L2-normalised rows), without materialising the n_query x n_ref matrix.

    Returns (indices int64 n x k, similarities float32 n x k, backend used), rows sorted by similarity
    (descending), ties by index. backend: 'cpp' (multithreaded C++ kernel, GIL released, outputs
    returned without a copy), 'torch' (the same blocks in torch on `device`), 'cuda' (the C++ kernel's
    CUDA twin, the same results bit for bit), 'faiss-flat' (faiss's exact index), 'faiss-ivf' (approximate,
    `ivf` its parameters; see _ann.py) or 'auto' (see `resolve_topk_backend`). torch CUDA tensors run the CUDA
    kernel in place and give tensors on their GPU (see _device.py).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if _ext.is_device_array(query) or _ext.is_device_array(ref):
        from ._device import topk_on_device

        return topk_on_device(query, ref, int(k), backend=backend)
    q, r = _as_embedding(query, "query embedding"), _as_embedding(ref, "reference embedding")
    if q.shape[1] != r.shape[1]:
        raise InputError(f"query ({q.shape[1]} columns) and reference ({r.shape[1]} columns) differ in width")
    search = make_search(r, len(q), k, backend=backend, threads=threads, device=device, ivf=ivf)
    idx, sim = search.search(q, int(k))
    return idx, sim, search.info["backend"]


# ----------------------------------------------------------------------------- weights and transfer
def softmax_weights(sim: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax(sim / temperature) (float64, rows sum to 1)."""
    if not temperature > 0:
        raise InputError(f"temperature must be positive, got {temperature!r}")
    z = sim.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=1, keepdims=True)


def weights_matrix(idx: np.ndarray, w: np.ndarray, n_ref: int) -> sparse.csr_matrix:
    """n_query x n_ref CSR with each query row's k weights."""
    n, k = idx.shape
    return sparse.csr_matrix((w.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_ref))


def mixture(idx: np.ndarray, w: np.ndarray, mean: np.ndarray, sd: np.ndarray, *, threads: int | None = None,
            out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mixture mean and SD of the neighbours' Gaussians (predictive variance + spread): the compiled
    gather-average over the top-k (scipy reference without the extension); no float64 copy of the profiles."""
    got = gather_mixture(idx, w, mean, sd, as_sd=True, threads=threads, out=out)
    assert got.var is not None  # variance=True (the default) computes it
    return got.mean, got.var


class _HostSearch:
    """Search, weights and mixture for blocks of imaged cells with host arrays (the GPU twin: _device.DeviceSearch).
    search(rows, out_mean, out_sd) -> (idx, w, sim), the block's mixture mean and SD written into out_mean, out_sd."""

    def __init__(self, query, ref, mean, sd, *, k: int, temperature: float, backend: str, threads, device,
                 ivf: IVFParams | dict | None = None):
        self.query, self.mean, self.sd = _as_embedding(query, "query embedding"), mean, sd
        self.k, self.temperature, self.threads = k, temperature, threads
        self.searcher = make_search(ref, len(self.query), k, backend=backend, threads=threads, device=device, ivf=ivf)
        self.info = self.searcher.info  # backend, and for faiss-ivf its parameters: recorded in uns
        self.backend = self.info["backend"]
        self.gather_backend = resolve_backend("auto")

    def __call__(self, rows: slice, out_mean: np.ndarray, out_sd: np.ndarray):
        idx, sim = self.searcher.search(self.query[rows], self.k)
        w = softmax_weights(sim, self.temperature)
        mixture(idx, w, self.mean, self.sd, threads=self.threads, out=(out_mean, out_sd))
        return idx, w, sim


def _block_search(query, ref, mean, sd, *, k: int, temperature: float, backend: str, threads, device,
                  ivf: IVFParams | dict | None = None):
    """The block search of `map_cells`, built once per map: on the GPU (search and mixture chained there) when the
    top-k backend resolves to the CUDA kernel and the model sits on a GPU, else on the host (a faiss index, when
    chosen, is built here once and searched block by block)."""
    used = resolve_topk_backend(backend, device, len(query), len(ref))
    if used == "cuda" and str(device).startswith("cuda"):
        from ._device import DeviceSearch

        return DeviceSearch(query, ref, mean, sd, k=k, temperature=temperature, device=device)
    return _HostSearch(query, ref, mean, sd, k=k, temperature=temperature, backend=used, threads=threads,
                       device=device, ivf=ivf)


def vote(weights: sparse.csr_matrix, labels: pd.Series) -> tuple[pd.Categorical, np.ndarray]:
    """Weighted vote of `labels` (one per column of `weights`) for every row; rows with no weight get NaN.

    Returns (winning label per row, its share of the row's weight)."""
    codes, names = pd.factorize(labels.astype("string"), use_na_sentinel=True)
    ok = codes >= 0
    onehot = sparse.csr_matrix((np.ones(ok.sum()), (np.flatnonzero(ok), codes[ok])), shape=(len(codes), len(names)))
    score = np.asarray((weights @ onehot).todense())
    total = score.sum(axis=1)
    best = score.argmax(axis=1)
    share = np.where(total > 0, score[np.arange(len(best)), best] / np.where(total > 0, total, 1), np.nan)
    cats = pd.Categorical.from_codes(np.where(total > 0, best, -1), categories=list(names))
    return cats, share


def _temperature(model, temperature: float | None) -> float:
    if temperature is not None:
        return float(temperature)
    return float(np.exp(model.module.log_temperature.detach().cpu().item()))


def map_cells(model, rna, spatial, *, k: int = 10, proteins: Sequence[str] | None = None,
              all_proteins: bool = False, temperature: float | None = None, backend: str = "auto",
              threads: int | None = None, rna_cell_type_key: str | None = None,
              spatial_key: str = K.SPATIAL, block_size: int = QUERY_BLOCK, method: str = "fused",
              fuse_weight: float = FUSE_WEIGHT, adapt_epochs: int = ADAPT_EPOCHS, seed: int = 0,
              copy: bool = False, key_added: str = K.PROTEIN_PREDICTED, min_support: str = "any",
              ivf: IVFParams | dict | None = None, impute: str = DEFAULT_IMPUTE):
    """Map the scRNA-seq cells in `rna` onto the imaged cells in `spatial` and impute the imaged cells' proteome.

    Writes the mapping keys described in docs/anndata_layout.md onto both AnnData objects (in place unless copy=True,
    then returns (spatial, rna) copies). `rna_cell_type_key`: obs column of scRNA-seq labels (default
    'cell_type' when present); spatial labels come from uns['scprospatial']['cell_type_key'].
    method: 'fused' (default: agreement of the measured panel with the model's prediction of it from each
    cell's RNA, plus weight `fuse_weight` on the joint-space cosine of the adapted encoder; the default weight is
    0, the predicted panel alone, see _fuse.py) or 'joint' (the joint space of the unadapted encoder alone);
    adapt_epochs: epochs of the encoder's self-supervised adaptation to the panel (0: none; only used when the
    joint space is in the score); seed: the adaptation's seed.
    key_added: obsm/uns key of the predicted proteins on both sides (SDs under key_added + '_sd'; default
    'protein_predicted'). `rna` may hold raw counts (see ScProSpatial.predict); `spatial` must be prepared
    (scprospatial.pp.read(..., kind='spatial')).

    Parameters
    ----------
    model
        A trained ScProSpatial.
    rna, spatial
        scRNA-seq cells and prepared imaged cells (``obsm['protein']``, ``obsm[spatial_key]``).
    k, temperature
        Neighbours per imaged cell and the softmax temperature of their weights (default: the model's).
    proteins, all_proteins
        Proteins to impute (as in `ScProSpatial.predict`); by default the training panel plus every marker of
        the imaged panel the model can predict (measured in training or through its coding gene), so a marker
        left out of the panel given to the mapping, or poorly stained, is imputed too.
    backend, threads, block_size
        Similarity search backend ('auto': approximate faiss-ivf for searches of at least
        ``spatial._ann.ANN_MIN_PAIRS`` pairs, else exact; see `make_search`), CPU threads and imaged
        cells per block. The backend and, when approximate, its parameters are recorded in
        ``uns[key_added]``.
    ivf
        faiss-ivf parameters (``IVFParams`` or a dict: nlist, nprobe, train_per_list, seed; default: the
        defaults with `seed`).
    rna_cell_type_key, spatial_key
        obs column of scRNA-seq labels; obsm key of the coordinates.
    method, fuse_weight, adapt_epochs, seed
        Mapping space (see above).
    copy
        Work on copies and return them instead of writing into `rna` and `spatial`.
    key_added
        Key of the predictions.
    min_support
        Keep only proteins with this support or better in `rna` (as in `ScProSpatial.predict`).
    impute
        How the imaged cells' proteome is imputed (see _regress.py): 'knn' (mixture of the mapped scRNA-seq
        cells' predictions), 'regression' (ridge from the predicted panel to each protein, fitted on the
        scRNA-seq cells, applied to the measured panel) or 'blend' (the two as an equal mixture); default 'knn'
        (the development markers' choice, _regress.py).

    Returns
    -------
    None (copy=False), or the (spatial, rna) copies holding the results (copy=True).
    """
    if copy:
        rna, spatial = rna.copy(), spatial.copy()
    if spatial_key not in spatial.obsm:
        raise InputError(f"no coordinates: obsm[{spatial_key!r}] is missing from the spatial input")
    tau = _temperature(model, temperature)
    if impute not in IMPUTE_METHODS:
        raise InputError(f"unknown impute method {impute!r}; choose one of {', '.join(IMPUTE_METHODS)}")
    markers = panel_markers(model, spatial)
    if proteins is None and not all_proteins:   # the training panel and every imaged marker the model predicts
        proteins = list(dict.fromkeys([*model.vocab.measured, *markers]))
    model.predict(rna, proteins=proteins, all_proteins=all_proteins, copy=False, key_added=key_added,
                  min_support=min_support)  # predict once per RNA cell
    # the model's prediction of the panel: the fused score's and the panel regression's predictors
    rna_panel = (_rna_panel(model, rna, markers, rna.obsm[key_added]) if method == "fused" or impute != "knn"
                 else None)
    space = mapping_space(model, spatial, rna.obsm[K.EMBEDDING], rna_panel, markers if method == "fused" else [],
                          method=method, weight=fuse_weight, adapt_epochs=adapt_epochs, seed=seed)
    mean = np.ascontiguousarray(rna.obsm[key_added].to_numpy(np.float32))
    sd = np.ascontiguousarray(rna.obsm[key_added + K.SD_SUFFIX].to_numpy(np.float32))
    names = list(rna.obsm[key_added].columns)
    regression = _PanelImputer.build(impute, spatial, markers, rna_panel, mean, sd, threads)
    n = spatial.n_obs
    out_mean, out_sd = np.empty((n, len(names)), np.float32), np.empty((n, len(names)), np.float32)
    confidence = np.empty(n, np.float32)
    blocks = []
    search = _block_search(space.query, space.ref, mean, sd, k=k, temperature=tau, backend=backend,
                           threads=threads, device=model.device, ivf=IVFParams(seed=seed) if ivf is None else ivf)
    starts = range(0, n, block_size)
    for q0 in progress(starts, desc="map", total=len(starts), unit="block"):
        rows = slice(q0, min(q0 + block_size, n))
        idx, w, sim = search(rows, out_mean[rows], out_sd[rows])
        if regression is not None:
            regression(rows, idx, w, out_mean[rows], out_sd[rows])
        confidence[rows] = (w * sim).sum(axis=1)
        blocks.append(weights_matrix(idx, w, rna.n_obs))
    weights = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, rna.n_obs))
    _write_spatial(spatial, names, out_mean, out_sd, confidence, space.joint, rna.uns[key_added], key_added,
                   {**search.info, "gather_backend": search.gather_backend, "k": int(k), "temperature": tau,
                    "n_rna_cells": int(rna.n_obs), **space.info,
                    **(regression.info if regression is not None else {"impute": "knn"})})
    distribution = _write_rna(rna, weights, np.asarray(spatial.obsm[spatial_key], dtype=np.float64))
    _transfer_labels(rna, spatial, weights, rna_cell_type_key)
    _mapped_niche(rna, spatial, distribution, spatial_key, threads)
    logger.info("mapped %d imaged cells onto %d scRNA-seq cells (%s, k=%d, %s, temperature %.3g); median "
                "confidence %.3f", n, rna.n_obs, space.info["method"], k, search.info["backend"], tau,
                float(np.median(confidence)) if n else float("nan"))
    return (spatial, rna) if copy else None


def _rna_panel(model, rna, markers: list[str], predicted: pd.DataFrame) -> np.ndarray:
    """The model's predicted means of `markers` on the scRNA-seq cells: the columns `predict` has just written
    (by default every marker is among them), else a second pass of the model over the cells (explicit
    `proteins` without them, or markers dropped by `min_support`). Both are the same prediction; they differ
    only by float32 rounding (the last bit: the translator sees another batch shape)."""
    if all(m in predicted.columns for m in markers):
        return np.ascontiguousarray(predicted[markers].to_numpy(np.float32))
    return predict_panel(model, rna, markers)


class _PanelImputer:
    """The panel regression of _regress.py applied block by block after the top-k search: writes the
    'regression' or 'blend' imputation over the block's kNN mixture (out_mean, out_sd)."""

    def __init__(self, impute: str, panel_z: np.ndarray, reg, sd: np.ndarray, threads: int | None, info: dict):
        self.impute, self.panel_z, self.reg, self.sd, self.threads, self.info = impute, panel_z, reg, sd, threads, info

    @classmethod
    def build(cls, impute: str, spatial, markers: list[str], rna_panel: np.ndarray | None, mean: np.ndarray,
              sd: np.ndarray, threads: int | None):
        """None for 'knn', or when the panel has too few predictable markers to regress on (warned)."""
        if impute == "knn" or rna_panel is None:
            return None
        if len(markers) < MIN_PANEL_MARKERS:
            logger.warning("impute=%r needs at least %d imaged markers the model can predict, found %d: imputing "
                           "by 'knn' (the mapped scRNA-seq cells' predictions)", impute, MIN_PANEL_MARKERS,
                           len(markers))
            return None
        reg = fit_panel_regression(rna_panel, mean)
        panel_z = zscore_columns(spatial.obsm[K.PROTEIN][markers].to_numpy(np.float64))
        info = {"impute": impute, "panel_regression": {"alpha": reg.alpha, "n_markers": len(markers),
                                                       "markers": list(markers)}}
        return cls(impute, panel_z, reg, sd, threads, info)

    def __call__(self, rows: slice, idx: np.ndarray, w: np.ndarray, out_mean: np.ndarray,
                 out_sd: np.ndarray) -> None:
        reg_mean = self.reg.predict(self.panel_z[rows])
        # the model's predictive variance over the mapped cells, sum_j w_j sigma_j^2 = var + mean^2 of sigma
        got = gather_mixture(idx, w, self.sd, threads=self.threads)
        assert got.var is not None
        model_var = got.var.astype(np.float64) + got.mean.astype(np.float64) ** 2
        reg_sd = np.sqrt(self.reg.resid_var + model_var).astype(np.float32)
        if self.impute == "regression":
            out_mean[...], out_sd[...] = reg_mean, reg_sd
        else:
            blend(out_mean, out_sd, reg_mean, reg_sd, out=(out_mean, out_sd))


def _write_spatial(spatial, names, mean, sd, confidence, emb, info: dict, key: str, extra: dict) -> None:
    idx = spatial.obs_names
    spatial.obsm[key] = pd.DataFrame(mean, index=idx, columns=names)
    spatial.obsm[key + K.SD_SUFFIX] = pd.DataFrame(sd, index=idx, columns=names)
    spatial.obsm[K.EMBEDDING] = emb
    spatial.obs[K.MAPPING_CONFIDENCE] = confidence
    keep = ("model_id", "scale", "measured_in_training", "predicted_via_gene_link", "sd_scale", "coverage_nominal",
            K.PROTEIN_TABLE, K.RELIABILITY, "ensemble_size")
    spatial.uns[key] = {**{k: info[k] for k in keep if k in info}, **extra}


def _write_rna(rna, weights: sparse.csr_matrix, coords: np.ndarray) -> sparse.csr_matrix:
    """Each scRNA-seq cell's location distribution over the imaged cells, its mean and spread (module docstring).
    Returns the distribution (scRNA-seq cells x imaged cells, rows summing to 1 or empty)."""
    received = np.asarray(weights.sum(axis=0)).ravel()
    inverse = np.divide(1.0, received, out=np.zeros_like(received), where=received > 0)
    distribution = (sparse.diags(inverse) @ weights.T).tocsr().astype(np.float32)
    loc = np.asarray(distribution @ coords)
    second = np.asarray(distribution @ (coords ** 2).sum(axis=1)).ravel()
    spread = np.sqrt(np.maximum(second - (loc ** 2).sum(axis=1), 0.0))
    loc[received == 0] = np.nan
    spread[received == 0] = np.nan
    rna.obsm[K.MAPPED_LOCATION] = loc
    rna.obs[K.MAPPED_LOCATION_SD] = spread
    rna.obsm[K.MAPPED_CELLS] = distribution
    rna.obs[K.MAPPING_WEIGHT] = received
    return distribution


def _mapped_niche(rna, spatial, distribution: sparse.csr_matrix, spatial_key: str, threads: int | None) -> None:
    """obsm['mapped_niche'] on the scRNA-seq cells when the imaged cells carry labels (module docstring): the
    niche of spatial-stats' niche_composition, averaged over each scRNA-seq cell's location distribution."""
    sp_key = spatial_cell_type_key(spatial)
    if sp_key is None or sp_key not in spatial.obs:
        return
    if K.SPATIAL_CONNECTIVITIES in spatial.obsp:
        graph = connectivities(spatial)
    elif spatial.n_obs > 1:
        graph = knn_graph(np.asarray(spatial.obsm[spatial_key], dtype=np.float64),
                          min(NICHE_NEIGHBOURS, spatial.n_obs - 1), threads=threads)
        graph = sparse.csr_matrix((np.ones(graph.nnz), graph.indices, graph.indptr), shape=graph.shape)
    else:
        return
    codes, names = cluster_codes(spatial, sp_key)
    counts, total = neighbour_counts(graph, codes, len(names))
    composition = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    has = np.asarray(distribution @ (total[:, 0] > 0).astype(np.float64)).ravel()
    niche = np.asarray(distribution @ composition)
    niche = np.divide(niche, has[:, None], out=np.full_like(niche, np.nan), where=has[:, None] > 0)
    rna.obsm[K.MAPPED_NICHE] = pd.DataFrame(niche, index=rna.obs_names, columns=names)


def _transfer_labels(rna, spatial, weights: sparse.csr_matrix, rna_key: str | None) -> None:
    sp_key = spatial_cell_type_key(spatial)
    if rna_key is not None and rna_key not in rna.obs:
        raise InputError(f"rna_cell_type_key {rna_key!r} is not an obs column of the scRNA-seq input")
    rna_key = rna_key or (RNA_CELL_TYPE_KEY if RNA_CELL_TYPE_KEY in rna.obs else None)
    if sp_key is None or sp_key not in spatial.obs or rna_key is None:
        logger.info("cell types not transferred: labels on the %s side are missing",
                    "scRNA-seq" if rna_key is None else "spatial")
        return
    spatial.obs[K.MAPPED_CELL_TYPE], _ = vote(weights, rna.obs[rna_key])
    rna.obs[K.MAPPED_CELL_TYPE], _ = vote(weights.T.tocsr(), spatial.obs[sp_key])


def rna_output_path(out: str | os.PathLike) -> Path:
    """`<out stem>.rna.h5ad` beside `out`: the scRNA-seq side of a mapping."""
    out = Path(out)
    return out.with_name(out.name[:-len(".h5ad")] + RNA_SUFFIX if out.name.endswith(".h5ad") else out.name + RNA_SUFFIX)


@scoped_threads
def map_files(model, rna, spatial, out, *, k: int = 10, proteins: Sequence[str] | None = None,
              all_proteins: bool = False, device: str = "auto", threads: int | None = None, backend: str = "auto",
              seed: int = 0, temperature: float | None = None, rna_cell_type_key: str | None = None,
              method: str = "fused", fuse_weight: float = FUSE_WEIGHT, adapt_epochs: int = ADAPT_EPOCHS,
              min_support: str = "any", ivf: IVFParams | dict | None = None, impute: str = DEFAULT_IMPUTE,
              **overrides) -> Path:
    """`scprospatial map`: read the scRNA-seq and spatial inputs (any supported layout; `overrides` are the
    spatial table's format overrides), map, write `out` (imaged cells) and `<out stem>.rna.h5ad`
    (scRNA-seq cells with mapped_location), both atomically. Returns `out`."""
    from .._settings import resolve_device, seed_everything
    from ..io import load, write_h5ad
    from ..model import ScProSpatial

    seed_everything(seed)
    if not isinstance(model, ScProSpatial):
        model = ScProSpatial.load(model, device=device)
    else:
        model.to(resolve_device(device))
    rna_data = load(rna, kind="rna")
    spatial_data = load(spatial, kind="spatial", **overrides)
    if rna_data.n_obs < k:
        raise InputError(f"k={k} neighbours need at least {k} scRNA-seq cells, got {rna_data.n_obs}", rna)
    map_cells(model, rna_data, spatial_data, k=k, proteins=proteins, all_proteins=all_proteins,
              temperature=temperature, backend=backend, threads=threads, rna_cell_type_key=rna_cell_type_key,
              method=method, fuse_weight=fuse_weight, adapt_epochs=adapt_epochs, seed=seed, min_support=min_support,
              ivf=ivf, impute=impute)
    rna_path = rna_output_path(out)
    write_h5ad(rna_data, rna_path)
    return write_h5ad(spatial_data, out)
