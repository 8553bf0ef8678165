"""The compiled top-k similarity kernel (and the CUDA twins of the core) at the extension level.

Imports nothing beyond numpy and scprospatial._core, so it also runs on the GPU machine (no anndata there).
Every score is the FMA chain s = fma(q[d], r[d], s) over d in order on every path, so the CPU instruction
sets (AVX-512, AVX2, portable) and CUDA must agree bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from scprospatial import _ext

core = _ext.core()
pytestmark = pytest.mark.skipif(core is None, reason="compiled extension scprospatial._core is not built")
ISA_ENV = "SCPROSPATIAL_TOPK_ISA"


def has_gpu() -> bool:
    return bool(core.compiled_with_cuda() and core.cuda_device_count() > 0)


def embeddings(nq: int, nr: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    r = rng.standard_normal((nr, dim)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True), r / np.linalg.norm(r, axis=1, keepdims=True)


def brute(q: np.ndarray, r: np.ndarray, k: int):
    """Exact (float64) top-k, ordered by (similarity descending, index)."""
    s = q.astype(np.float64) @ r.astype(np.float64).T
    order = np.lexsort((np.broadcast_to(np.arange(len(r)), s.shape), -s), axis=1)[:, :k]
    return order, np.take_along_axis(s, order, 1), s


# Sizes off every tile edge: 12 x 32 (AVX-512), 6 x 16 (AVX2), 4 x 8 (portable), 96-row query blocks.
SHAPES = [(1, 5, 3, 5), (13, 33, 1, 2), (97, 1000, 64, 10), (50, 257, 130, 40)]


@pytest.mark.parametrize("nq,nr,dim,k", SHAPES)
def test_matches_brute_force(nq, nr, dim, k):
    q, r = embeddings(nq, nr, dim, seed=nq + dim)
    idx, sim = core.topk_similarity(q, r, k, threads=2)
    assert idx.shape == sim.shape == (nq, k) and idx.dtype == np.int64 and sim.dtype == np.float32
    bi, bs, exact = brute(q, r, k)
    np.testing.assert_allclose(sim, bs, atol=2e-6 * max(1, dim ** 0.5))
    # the chosen references are as similar as the exact top-k (float32 rounding may swap near-ties)
    np.testing.assert_allclose(np.take_along_axis(exact, idx, 1), bs, atol=2e-6 * max(1, dim ** 0.5))
    assert (idx == bi).mean() > 0.97
    assert (np.diff(sim, axis=1) <= 0).all()
    assert all(len(set(row)) == k for row in idx.tolist())


@pytest.mark.parametrize("nq,nr,dim,k", SHAPES[1:])
def test_instruction_sets_agree_bit_for_bit(monkeypatch, nq, nr, dim, k):
    q, r = embeddings(nq, nr, dim, seed=7)
    results = {}
    for isa in ("avx512", "avx2", "portable"):
        monkeypatch.setenv(ISA_ENV, isa)
        used = core.topk_isa()  # capped by what this CPU supports
        results[used] = core.topk_similarity(q, r, k, threads=2)
    monkeypatch.delenv(ISA_ENV)
    assert "portable" in results and core.topk_isa() in results
    (i0, s0), *rest = results.values()
    for i1, s1 in rest:
        np.testing.assert_array_equal(i1, i0)
        np.testing.assert_array_equal(s1.view(np.int32), s0.view(np.int32))


def test_ties_keep_the_smaller_index_across_panels():
    base, _ = embeddings(40, 1, 8, seed=3)  # unit rows: each row's best match is itself
    ref = np.concatenate([base] * 5)  # every row five times, copies 40 rows apart (several 32-row panels)
    idx, sim = core.topk_similarity(base[:25], ref, 5, threads=3)
    np.testing.assert_array_equal(idx, np.arange(25)[:, None] + 40 * np.arange(5))
    assert (sim == sim[:, :1]).all()


def test_threads_do_not_change_results():
    q, r = embeddings(1000, 3000, 24, seed=4)
    a = core.topk_similarity(q, r, 9, threads=1)
    b = core.topk_similarity(q, r, 9, threads=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_bad_arguments():
    q, r = embeddings(4, 6, 3, seed=5)
    with pytest.raises(ValueError, match="reference rows"):
        core.topk_similarity(q, r, 7)
    with pytest.raises(ValueError, match="same number of columns"):
        core.topk_similarity(q, r[:, :2], 2)
    with pytest.raises(ValueError, match="unknown device"):
        core.topk_similarity(q, r, 2, device="tpu")
    if not core.compiled_with_cuda():
        with pytest.raises(RuntimeError, match="without CUDA"):
            core.topk_similarity(q, r, 2, device="cuda")


@pytest.mark.skipif(core is None or not has_gpu(), reason="no CUDA kernels or no CUDA device here")
@pytest.mark.parametrize("nq,nr,dim,k", SHAPES + [(3000, 20000, 64, 10)])
def test_cuda_topk_equals_cpu(nq, nr, dim, k):
    q, r = embeddings(nq, nr, dim, seed=11)
    ci, cs = core.topk_similarity(q, r, k, threads=2)
    gi, gs = core.topk_similarity(q, r, k, device="cuda")
    np.testing.assert_array_equal(gi, ci)
    np.testing.assert_array_equal(gs.view(np.int32), cs.view(np.int32))


@pytest.mark.skipif(core is None or not has_gpu(), reason="no CUDA kernels or no CUDA device here")
@pytest.mark.parametrize("layout", ["uniform", "clustered"])
def test_cuda_knn_equals_cpu(layout):
    rng = np.random.default_rng(12)
    n = 50000
    if layout == "uniform":
        x = rng.random((n, 2)) * 2000
    else:
        which = rng.integers(0, 8, n)
        x = (rng.random((8, 2)) * 2000)[which] + rng.normal(size=(n, 2)) * np.geomspace(0.5, 100, 8)[which, None]
    for k in (1, 10, 30):
        cpu = core.knn_graph(x, k)
        gpu = core.knn_graph(x, k, device="cuda")
        for a, b in zip(cpu, gpu):
            np.testing.assert_array_equal(a, b)
