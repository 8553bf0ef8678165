"""spatial_neighbors / graph builders / graph_file: squidpy-compatible keys, library blocks, fallback,
and the kNN graph on the real CODEX and CyCIF coordinates against cKDTree."""
from __future__ import annotations

import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import Delaunay, cKDTree

from scprospatial import _constants as K
from scprospatial import _ext
from scprospatial.errors import InputError
from scprospatial.spatial import (
    DelaunayBuilder,
    KNNBuilder,
    RadiusBuilder,
    graph_file,
    graph_keys,
    knn_graph,
    spatial_neighbors,
)

core = _ext.core()


def make_adata(n=600, dim=2, seed=0, libraries=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    adata.obsm[K.SPATIAL] = rng.random((n, dim)) * 100
    adata.obs["library"] = pd.Categorical(rng.choice(libraries, n))
    return adata


def row_sets(m):
    return [set(m.indices[m.indptr[i]:m.indptr[i + 1]]) for i in range(m.shape[0])]


def test_knn_writes_squidpy_keys():
    adata = make_adata()
    spatial_neighbors(adata, n_neighs=6)
    conns, dists = adata.obsp[K.SPATIAL_CONNECTIVITIES], adata.obsp[K.SPATIAL_DISTANCES]
    assert conns.format == dists.format == "csr"
    assert set(np.unique(conns.data)) == {1.0} and conns.dtype == np.float64
    assert (np.diff(conns.indptr) == 6).all() and conns.diagonal().sum() == 0
    assert (conns != (dists != 0)).nnz == 0  # same structure (no duplicate positions here)
    assert dists.has_sorted_indices
    ref = knn_graph(adata.obsm[K.SPATIAL], 6)
    assert abs(dists - ref).max() == 0
    info = adata.uns[K.SPATIAL_NEIGHBORS]
    assert info["connectivities_key"] == K.SPATIAL_CONNECTIVITIES
    assert info["distances_key"] == K.SPATIAL_DISTANCES
    assert info["params"]["n_neighbors"] == 6 and info["params"]["method"] == "knn"
    assert info["params"]["backend"] == ("cpp" if core is not None else "scipy")


def test_radius_and_delaunay_are_symmetric_and_correct():
    adata = make_adata(seed=1)
    x = adata.obsm[K.SPATIAL]
    spatial_neighbors(adata, method="radius", radius=7.5)
    d = adata.obsp[K.SPATIAL_DISTANCES]
    assert (d != d.T).nnz == 0 and d.data.max() <= 7.5
    pairs = cKDTree(x).query_pairs(7.5, output_type="ndarray")
    assert d.nnz == 2 * len(pairs)
    spatial_neighbors(adata, method="delaunay")
    c = adata.obsp[K.SPATIAL_CONNECTIVITIES]
    indptr, indices = Delaunay(x).vertex_neighbor_vertices
    assert row_sets(c) == [set(indices[indptr[i]:indptr[i + 1]]) for i in range(len(x))]
    assert (c != c.T).nnz == 0
    pruned = spatial_neighbors(adata, method="delaunay", radius=5.0, copy=True)
    assert pruned.obsp[K.SPATIAL_DISTANCES].data.max() <= 5.0
    assert pruned.obsp[K.SPATIAL_CONNECTIVITIES].nnz < c.nnz


def test_knn_radius_prunes_long_edges():
    x = make_adata(seed=2).obsm[K.SPATIAL]
    full, _ = KNNBuilder(8).build(x)
    pruned, _ = KNNBuilder(8, radius=4.0).build(x)
    assert pruned.nnz == int((full.data <= 4.0).sum()) and pruned.data.max() <= 4.0
    kept = full.copy()
    kept.data[kept.data > 4.0] = 0
    kept.eliminate_zeros()
    assert abs(pruned - kept).max() == 0


def test_library_key_gives_block_diagonal_graph():
    adata = make_adata(n=900, seed=3)
    spatial_neighbors(adata, n_neighs=5, library_key="library")
    conns = adata.obsp[K.SPATIAL_CONNECTIVITIES].tocoo()
    lib = adata.obs["library"].to_numpy()
    assert (lib[conns.row] == lib[conns.col]).all()
    for name in ("a", "b", "c"):
        cells = np.flatnonzero(lib == name)
        block = adata.obsp[K.SPATIAL_DISTANCES][cells][:, cells]
        assert abs(block - knn_graph(adata.obsm[K.SPATIAL][cells], 5)).max() == 0
    assert adata.uns[K.SPATIAL_NEIGHBORS]["params"]["library_key"] == "library"
    small = make_adata(n=30, seed=4, libraries=("big",) * 9 + ("tiny",))
    with pytest.raises(InputError, match="tiny"):
        spatial_neighbors(small, n_neighs=6, library_key="library")


def test_copy_key_added_and_bad_input():
    adata = make_adata(seed=5)
    out = spatial_neighbors(adata, n_neighs=4, key_added="cells", copy=True)
    assert not adata.obsp.keys() and out is not adata
    conns_key, dists_key, uns_key = graph_keys("cells")
    assert {conns_key, dists_key} <= set(out.obsp.keys()) and uns_key in out.uns
    assert out.uns[uns_key]["connectivities_key"] == conns_key
    with pytest.raises(InputError, match="method"):
        spatial_neighbors(adata, method="voronoi")
    with pytest.raises(InputError, match="radius"):
        RadiusBuilder(None)
    with pytest.raises(InputError, match="library_key"):
        spatial_neighbors(adata, library_key="nope")
    with pytest.raises(InputError, match="line or plane"):
        DelaunayBuilder().build(np.column_stack([np.arange(10.0), np.zeros(10)]))


def test_missing_extension_falls_back_with_one_warning(monkeypatch):
    import scprospatial

    monkeypatch.setitem(sys.modules, "scprospatial._core", None)  # import now fails
    monkeypatch.delattr(scprospatial, "_core", raising=False)
    monkeypatch.setattr(_ext, "_core", None)
    monkeypatch.setattr(_ext, "_tried", False)
    x = make_adata(seed=6).obsm[K.SPATIAL]
    with pytest.warns(_ext.ExtensionMissingWarning):
        graph = knn_graph(x, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process, not on every call
        again = knn_graph(x, 5, backend="auto")
    dist, _ = cKDTree(x).query(x, 6)
    np.testing.assert_array_equal(graph.data.reshape(-1, 5), dist[:, 1:])
    assert (graph != again).nnz == 0
    with pytest.raises(InputError, match="compiled extension"):
        knn_graph(x, 5, backend="cpp")
    adata = make_adata(seed=6)
    spatial_neighbors(adata, n_neighs=5)
    assert adata.uns[K.SPATIAL_NEIGHBORS]["params"]["backend"] == "scipy"


def test_graph_file_writes_h5ad(tmp_path):
    rng = np.random.default_rng(7)
    table = pd.DataFrame({"CellID": np.arange(400), "X": rng.random(400) * 1000, "Y": rng.random(400) * 1000,
                          "CD3": rng.gamma(2, size=400), "CD20": rng.gamma(2, size=400),
                          "sample": np.repeat(["s1", "s2"], 200)})
    table.to_csv(tmp_path / "cells.csv", index=False)
    out = graph_file(tmp_path / "cells.csv", tmp_path / "graph.h5ad", method="knn", k=7, library_key="sample")
    back = ad.read_h5ad(out)
    conns = back.obsp[K.SPATIAL_CONNECTIVITIES]
    assert (np.diff(conns.indptr) == 7).all()
    params = back.uns[K.SPATIAL_NEIGHBORS]["params"]
    assert params["n_neighbors"] == 7 and params["library_key"] == "sample"
    assert not list(tmp_path.glob(".graph.h5ad*"))  # atomic: no temporary left behind


@pytest.mark.realdata
@pytest.mark.parametrize("table,xcol,ycol", [
    ("codex_crc_schurch2020_reg009.csv", "X", "Y"),
    ("cycif_scimap_example.csv", "X_position", "Y_position"),
])
def test_real_coordinates_match_ckdtree(shared_data, table, xcol, ycol):
    x = pd.read_csv(shared_data / "spatial" / table, usecols=[xcol, ycol])[[xcol, ycol]].to_numpy(np.float64)
    k = 10
    graph = knn_graph(x, k)
    dist, idx = cKDTree(x).query(x, k + 2)
    np.testing.assert_array_equal(graph.data.reshape(-1, k), dist[:, 1:k + 1])
    distinct = (np.diff(dist, axis=1) > 0).all(axis=1)
    assert distinct.mean() > 0.5
    np.testing.assert_array_equal(graph.indices.reshape(-1, k)[distinct], idx[distinct, 1:k + 1])
    # tied rows: the same multiset of distances, and every neighbour really is at its distance
    ours = graph.indices.reshape(-1, k)
    np.testing.assert_allclose(np.linalg.norm(x[ours] - x[:, None, :], axis=2), dist[:, 1:k + 1], rtol=0, atol=1e-9)
