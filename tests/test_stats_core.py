"""The C++ core behind neighbourhood enrichment and Moran's I, against the numpy/scipy code it replaced (still the
path without the compiled extension): Moran's sums and graph moments equal to rounding, the enrichment null equal
in distribution (another random stream) and exactly reproducible whatever the thread count."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scprospatial import _ext
from scprospatial.spatial._stats import _moran_sums_scipy, _null_numpy, enrichment_zscores, morans_i

core = _ext.core()
pytestmark = pytest.mark.skipif(core is None, reason="compiled extension scprospatial._core is not built")


def knn(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2)) * np.sqrt(n)
    indptr, indices, _ = core.knn_graph(xy, k, threads=2)
    return xy, sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, n))


def test_moran_sums_equal_scipys_with_isolated_cells_and_either_row_order():
    xy, g = knn(3000, 6)
    g = g.tolil()
    g[[5, 17], :] = 0            # cells without neighbours
    g[3, 40] = 1                 # rows of unequal degree, some edges reciprocal and some not
    g = g.tocsr()
    g.eliminate_zeros()
    rng = np.random.default_rng(1)
    vals = np.column_stack([np.sin(xy[:, 0] / 5) + rng.normal(0, .3, len(xy)), rng.normal(1000, 1, len(xy)),
                            np.ones(len(xy))])
    mean = vals.mean(0)
    num, den, s = _moran_sums_scipy(vals - mean, g)
    shuffled = g.copy()
    for i in range(g.shape[0]):  # same graph, each row's indices in another order
        lo, hi = shuffled.indptr[i], shuffled.indptr[i + 1]
        shuffled.indices[lo:hi] = shuffled.indices[lo:hi][::-1]
    shuffled.has_sorted_indices = False
    g.sort_indices()
    for graph, is_sorted in ((g, True), (shuffled, False)):
        for threads in (1, 3):
            c_num, c_den, c_s = core.moran_sums(graph.indptr, graph.indices, vals, mean, sorted_rows=is_sorted,
                                                threads=threads)
            np.testing.assert_allclose(c_num, num, rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(c_den, den, rtol=1e-12)
            np.testing.assert_allclose(c_s, s, rtol=1e-12)
    res = morans_i(vals, g)
    assert res["I"][0] > 0.5 and abs(res["I"][1]) < 0.05 and np.isnan(res["I"][2])


def test_enrichment_null_matches_numpys_and_does_not_depend_on_threads():
    _, g = knn(2000, 6, seed=3)
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 4, g.shape[0])
    codes[rng.random(len(codes)) < 0.05] = -1          # missing labels: not moved, edges not counted
    groups = (np.arange(len(codes)) % 3 == 0).astype(np.int64)  # two libraries, interleaved
    count, z1 = enrichment_zscores(codes, g, 4, n_perms=4000, rng=np.random.default_rng(0), groups=groups,
                                   threads=1)
    _, z3 = enrichment_zscores(codes, g, 4, n_perms=4000, rng=np.random.default_rng(0), groups=groups, threads=3)
    np.testing.assert_array_equal(z1, z3)
    coo = g.tocoo()
    keep = (codes[coo.row] >= 0) & (codes[coo.col] >= 0)
    labelled = np.flatnonzero(codes >= 0)
    members = [labelled[groups[labelled] == k] for k in (0, 1)]
    mean, sd = _null_numpy(codes, coo.row[keep], coo.col[keep], 4, members, n_perms=4000,
                           rng=np.random.default_rng(1))
    z_numpy = (count - mean) / sd
    # two independent sets of 4,000 permutations: z's noise is about sqrt((1 + z^2 / 2) / 4000) each
    noise = np.sqrt(2 * (1 + z_numpy ** 2 / 2) / 4000)
    assert np.all(np.abs(z1 - z_numpy) < 5 * noise), (z1, z_numpy)
    # the permutations keep every library's label counts: a library of one type only gives sd 0 (NaN z)
    one_type = np.where(groups == 1, 0, codes)
    _, z = enrichment_zscores(one_type, g, 4, n_perms=50, rng=np.random.default_rng(0),
                              groups=np.where(one_type == 0, 1, 0))
    assert np.isnan(z[0, 0])


def test_enrichment_null_rejects_bad_labels():
    _, g = knn(100, 4)
    with pytest.raises(IndexError, match="label 7"):
        core.enrichment_null(g.indptr, g.indices, np.full(100, 7, np.int32), np.arange(100), np.array([0, 100]),
                             n_types=3, n_perms=10, seed=0)
