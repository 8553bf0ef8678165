"""The compiled kNN / radius kernels against references: scipy cKDTree, and an exact brute force
(same (distance, index) order) where ties matter."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from scprospatial import _ext
from scprospatial.errors import InputError
from scprospatial.spatial import knn_graph, radius_graph
from scprospatial.spatial._kernels import knn_arrays

core = _ext.core()
pytestmark = pytest.mark.skipif(core is None, reason="compiled extension scprospatial._core is not built")


def brute_knn(x: np.ndarray, k: int):
    """Exact k nearest other points, ordered by (squared distance, index) as the kernel promises."""
    diff = x[:, None, :] - x[None, :, :]
    d2 = (diff * diff).sum(axis=-1)
    np.fill_diagonal(d2, np.inf)
    n = len(x)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), d2), axis=-1)[:, :k]
    return order, np.sqrt(np.take_along_axis(d2, order, axis=1))


def rows(graph, k):
    return graph.indices.reshape(-1, k), graph.data.reshape(-1, k)


def assert_matches_ckdtree(x: np.ndarray, k: int, graph) -> None:
    """Distances bit-identical to cKDTree's; neighbour sets identical wherever distances are unique."""
    dist, idx = cKDTree(x).query(x, k + 2)  # one extra to see whether the k-th is tied with the next
    ours_i, ours_d = rows(graph, k)
    np.testing.assert_array_equal(ours_d, dist[:, 1:k + 1])
    # rows whose distances are all distinct: the neighbour lists must agree exactly
    distinct = (np.diff(dist, axis=1) > 0).all(axis=1)
    dist, idx = dist[:, :k + 1], idx[:, :k + 1]
    assert distinct.mean() > 0.5
    np.testing.assert_array_equal(ours_i[distinct], idx[distinct, 1:])


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("k", [1, 5, 16])
def test_uniform_matches_ckdtree(dim, k):
    x = np.random.default_rng(dim * 100 + k).random((3000, dim)) * 500
    assert_matches_ckdtree(x, k, knn_graph(x, k, backend="cpp"))


def test_clustered_unsorted_matches_brute_force():
    rng = np.random.default_rng(7)
    centres = rng.random((6, 2)) * 1e4
    blobs = [c + rng.normal(scale=s, size=(m, 2)) for c, s, m in zip(centres, [0.1, 1, 5, 30, 200, 1000],
                                                                        [400, 300, 300, 200, 200, 100])]
    outliers = rng.random((5, 2)) * 1e5 - 5e4
    x = np.concatenate(blobs + [outliers])[rng.permutation(1505)]
    idx, dist = brute_knn(x, 7)
    got_i, got_d = rows(knn_graph(x, 7, backend="cpp"), 7)
    np.testing.assert_array_equal(got_i, idx)
    np.testing.assert_array_equal(got_d, dist)


def clustered(n: int, seed: int) -> np.ndarray:
    """Blobs whose densities differ ~10^4-fold on a sparse background, shuffled (crowded cells get split)."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(n) * 10.0
    centres = rng.random((12, 2)) * side
    widths = side * np.geomspace(0.001, 0.05, 12)
    which = rng.integers(0, 12, n - n // 10)
    blobs = centres[which] + rng.normal(size=(len(which), 2)) * widths[which, None]
    pts = np.concatenate([blobs, rng.random((n // 10, 2)) * side])
    return pts[rng.permutation(n)]


@pytest.mark.parametrize("k", [1, 10, 30])
def test_clustered_matches_ckdtree(k):
    """Dense blobs (split cells, blocks next to them, searches leaving a split cell) and sparse background."""
    x = clustered(40000, seed=k)
    assert_matches_ckdtree(x, k, knn_graph(x, k, backend="cpp"))


def test_clustered_threads_and_self():
    x = clustered(30000, seed=5)
    one = knn_graph(x, 8, threads=1)
    two = knn_graph(x, 8, threads=3, include_self=True)
    np.testing.assert_array_equal(two.indices.reshape(-1, 9)[:, 0], np.arange(len(x)))
    np.testing.assert_array_equal(two.indices.reshape(-1, 9)[:, 1:], one.indices.reshape(-1, 8))
    np.testing.assert_array_equal(two.data.reshape(-1, 9)[:, 1:], one.data.reshape(-1, 8))


@pytest.mark.parametrize("dim", [2, 3])
def test_ties_and_duplicates_broken_by_index(dim):
    rng = np.random.default_rng(3)
    lattice = np.stack(np.meshgrid(*[np.arange(9.0)] * dim, indexing="ij"), -1).reshape(-1, dim)
    x = np.concatenate([lattice, lattice[rng.integers(0, len(lattice), 60)], np.repeat(lattice[:1], 20, 0)])
    x = x[rng.permutation(len(x))]
    for k in (1, 6, 26):
        idx, dist = brute_knn(x, k)
        got_i, got_d = rows(knn_graph(x, k), k)
        np.testing.assert_array_equal(got_i, idx)
        np.testing.assert_array_equal(got_d, dist)


def test_degenerate_layouts():
    same = np.ones((12, 2)) * 3.5
    got_i, got_d = rows(knn_graph(same, 4), 4)
    assert (got_d == 0).all()
    np.testing.assert_array_equal(got_i[5], [0, 1, 2, 3])  # ties: smallest other indices
    line = np.column_stack([np.random.default_rng(0).random(500), np.zeros(500)])
    flat3d = np.column_stack([np.random.default_rng(1).random((500, 2)), np.full(500, 2.0)])
    far = 1e7 + np.random.default_rng(2).random((500, 2)) * 1e-3  # large offset, tiny spread
    for x in (line, flat3d, far):
        idx, dist = brute_knn(x, 5)
        got_i, got_d = rows(knn_graph(x, 5), 5)
        np.testing.assert_array_equal(got_d, dist)
        np.testing.assert_array_equal(got_i, idx)


def test_k_edge_cases():
    x = np.random.default_rng(4).random((11, 3))
    full = knn_graph(x, 10)  # k = n - 1: every other point
    assert all(sorted(full.indices[full.indptr[i]:full.indptr[i + 1]]) == [j for j in range(11) if j != i]
               for i in range(11))
    with pytest.raises(InputError, match="at least 12"):
        knn_graph(x, 11)
    with pytest.raises(ValueError, match="at least 12"):
        core.knn_graph(x, 11)
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="positive integer"):
            knn_graph(x, bad_k)


def test_bad_coordinates():
    with pytest.raises(InputError, match="n x 2 or n x 3"):
        knn_graph(np.zeros((10, 4)), 2)
    bad = np.random.default_rng(0).random((10, 2))
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="not finite"):
        knn_graph(bad, 2)
    with pytest.raises(ValueError, match="not finite"):
        core.knn_graph(bad, 2)


def test_threads_do_not_change_results():
    x = np.random.default_rng(5).random((20000, 2))
    one = knn_graph(x, 10, threads=1)
    many = knn_graph(x, 10, threads=4)
    np.testing.assert_array_equal(one.indices, many.indices)
    np.testing.assert_array_equal(one.data, many.data)
    np.testing.assert_array_equal(one.indptr, many.indptr)


def test_include_self_dtypes_and_index_width():
    x = np.random.default_rng(6).random((400, 2))
    base = knn_graph(x, 5)
    with_self = knn_graph(x, 5, include_self=True)
    got_i, got_d = rows(with_self, 6)
    np.testing.assert_array_equal(got_i[:, 0], np.arange(400))
    assert (got_d[:, 0] == 0).all()
    np.testing.assert_array_equal(got_i[:, 1:], base.indices.reshape(-1, 5))
    single = knn_graph(x, 5, dtype=np.float32)
    assert single.dtype == np.float32
    np.testing.assert_array_equal(single.data, base.data.astype(np.float32))
    indptr, indices, dist = core.knn_graph(x, 5, index64=True)
    assert indptr.dtype == indices.dtype == np.int64
    np.testing.assert_array_equal(indices, base.indices)


def test_outputs_are_not_copied():
    x = np.random.default_rng(8).random((1000, 2))
    arrays = knn_arrays(x, 6)
    for a in (arrays.indptr, arrays.indices, arrays.distances):
        assert a.flags.owndata and a.flags.c_contiguous  # allocated once, by numpy, filled in C++
    graph = arrays.to_csr()
    assert graph.indptr.dtype == graph.indices.dtype  # scipy would copy mismatched index arrays
    assert np.shares_memory(graph.indices, arrays.indices)
    assert np.shares_memory(graph.indptr, arrays.indptr)
    assert np.shares_memory(graph.data, arrays.distances)


@pytest.mark.parametrize("dim", [2, 3])
def test_radius_matches_scipy(dim):
    rng = np.random.default_rng(9 + dim)
    x = np.concatenate([rng.random((1500, dim)) * 50, np.repeat(rng.random((1, dim)) * 50, 5, 0)])
    for radius in (0.5, 3.0, 80.0):
        ours = radius_graph(x, radius, backend="cpp")
        ref = radius_graph(x, radius, backend="scipy")
        np.testing.assert_array_equal(ours.indptr, ref.indptr)
        np.testing.assert_array_equal(ours.indices, ref.indices)
        np.testing.assert_array_equal(ours.data, ref.data)
        assert (ours.data <= radius).all()
    assert (ours != ours.T).nnz == 0  # symmetric
    with_self = radius_graph(x, 3.0, include_self=True)
    np.testing.assert_array_equal(with_self.indices[with_self.indptr[:-1]], np.arange(len(x)))


def test_scipy_backend_matches_kernel():
    x = np.random.default_rng(10).random((2000, 3))
    ours, ref = knn_graph(x, 8), knn_graph(x, 8, backend="scipy")
    np.testing.assert_array_equal(ours.data, ref.data)
    assert (ours != ref).nnz == 0


def test_cuda_backend():
    x = np.random.default_rng(11).random((5000, 2))
    if not (core.compiled_with_cuda() and core.cuda_device_count() > 0):
        with pytest.raises(InputError, match="cuda"):
            knn_graph(x, 10, backend="cuda")
        pytest.skip("no CUDA kernels or no CUDA device here: the CUDA twin is only compile-checked")
    cpu = knn_graph(x, 10)
    gpu = knn_graph(x, 10, backend="cuda")
    np.testing.assert_array_equal(gpu.indices, cpu.indices)
    np.testing.assert_array_equal(gpu.data, cpu.data)
