"""squidpy itself against our spatial statistics, on the real CODEX table (../shared/data).

On the same graph: neighbourhood-enrichment z-scores agree within permutation noise and are stored in the
category order squidpy reads; Moran's I, its variance and p-values equal squidpy's (to 1e-6); uns['moranI'] has
squidpy's layout; and squidpy's own functions and plots run on our outputs.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from scprospatial import _constants as K
from scprospatial.spatial import nhood_enrichment, spatial_autocorr, spatial_neighbors

matplotlib.use("Agg")
sq = pytest.importorskip("squidpy", reason="squidpy is in the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.realdata

CODEX = "spatial/codex_crc_schurch2020_reg009.csv"


@pytest.fixture(scope="module")
def codex(shared_data):
    from scprospatial.io import load

    adata = load(shared_data / CODEX, kind="spatial")
    key = "ClusterName"
    assert key in adata.obs, list(adata.obs.columns)
    # a category order that is not alphabetical (largest cluster first), as a user's categorical often is
    order = list(adata.obs[key].astype(str).value_counts().index)
    assert order != sorted(order)
    adata.obs[key] = pd.Categorical(adata.obs[key].astype(str), categories=order)
    spatial_neighbors(adata, n_neighs=6, coord_type="generic")  # squidpy's call, verbatim
    return adata


def test_graph_equals_squidpys_knn_graph(codex):
    theirs = sq.gr.spatial_neighbors(codex, n_neighs=6, coord_type="generic", copy=True)
    ours, ours_d = codex.obsp[K.SPATIAL_CONNECTIVITIES], codex.obsp[K.SPATIAL_DISTANCES]
    assert ours.nnz == theirs[0].nnz
    # the same neighbours but where two candidates lie at exactly the same distance (ties broken either way):
    # every cell's sorted neighbour distances are equal
    rows = np.unique((ours != theirs[0]).tocoo().row)
    assert len(rows) < 0.01 * codex.n_obs
    for r in rows:
        np.testing.assert_allclose(np.sort(ours_d[r].data), np.sort(theirs[1][r].data), rtol=1e-6)


def test_nhood_enrichment_agrees_with_squidpy_in_squidpys_category_order(codex):
    key = "ClusterName"
    a = codex.copy()
    nhood_enrichment(a, cluster_key=key, n_perms=1000, seed=0)
    ours = a.uns[f"{key}_nhood_enrichment"]
    assert list(ours["categories"]) == list(codex.obs[key].cat.categories)
    z_theirs, count_theirs = sq.gr.nhood_enrichment(codex, cluster_key=key, n_perms=1000, seed=1, copy=True,
                                                    show_progress_bar=False)
    np.testing.assert_array_equal(ours["count"], count_theirs)
    ok = np.isfinite(ours["zscore"]) & np.isfinite(z_theirs)
    assert ok.sum() > 0.9 * ok.size
    diff = np.abs(ours["zscore"][ok] - z_theirs[ok])
    # two independent sets of 1,000 permutations: z differs by the noise of the permutation mean and SD
    assert np.median(diff) < 0.1 and diff.max() < 0.15 * np.abs(z_theirs[ok]).max() + 0.5
    assert np.corrcoef(ours["zscore"][ok], z_theirs[ok])[0, 1] > 0.995


def test_morans_i_equals_squidpy_and_has_its_layout(codex):
    a = codex.copy()
    spatial_autocorr(a)
    ours = a.uns["moranI"]
    assert list(ours.columns) == ["I", "pval_norm", "var_norm", "pval_norm_fdr_bh"]
    assert ours["I"].is_monotonic_decreasing
    # squidpy on the same values and graph: the measured markers as X
    proteins = a.obsm[K.PROTEIN]
    b = codex.copy()
    b.X = proteins.to_numpy(np.float64)
    b.var_names = [str(c) for c in proteins.columns]
    theirs = sq.gr.spatial_autocorr(b, mode="moran", genes=list(b.var_names), n_perms=None, copy=True)
    theirs = theirs.loc[ours.index]
    for col in ours.columns:
        np.testing.assert_allclose(ours[col].to_numpy(), theirs[col].to_numpy(), rtol=1e-6, atol=1e-6, err_msg=col)


def test_squidpys_functions_and_plots_run_on_our_outputs(codex, tmp_path):
    import matplotlib.pyplot as plt

    key = "ClusterName"
    a = codex.copy()
    nhood_enrichment(a, cluster_key=key, n_perms=100, seed=0)
    spatial_autocorr(a)
    sq.pl.nhood_enrichment(a, cluster_key=key)
    plt.close("all")
    sq.gr.co_occurrence(a, cluster_key=key, interval=10, show_progress_bar=False)
    assert a.uns[f"{key}_co_occurrence"]["occ"].shape[0] == len(a.obs[key].cat.categories)
    sq.gr.centrality_scores(a, cluster_key=key, show_progress_bar=False)
    assert f"{key}_centrality_scores" in a.uns
    sq.gr.interaction_matrix(a, cluster_key=key)
    assert a.uns[f"{key}_interactions"].sum() == a.obsp[K.SPATIAL_CONNECTIVITIES].nnz
    sq.pl.spatial_scatter(a, shape=None, color=key, size=5)
    plt.savefig(tmp_path / "scatter.png")
    plt.close("all")
    assert (tmp_path / "scatter.png").stat().st_size > 1000
