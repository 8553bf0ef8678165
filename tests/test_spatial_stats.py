"""Spatial statistics on hand-checkable layouts (checkerboard, gradient, segregated vs mixed types) and
against dense brute-force references (squidpy is not a dependency), plus the spatial-stats file step."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scprospatial import _constants as K
from scprospatial.errors import InputError, MissingStepError
from scprospatial.spatial import (
    morans_i,
    nhood_enrichment,
    niche_composition,
    spatial_autocorr,
    spatial_neighbors,
    spatial_stats_file,
)
from scprospatial.spatial._stats import NICHE, connectivities, enrichment_key


def grid(side: int, labels=None, values: dict | None = None, library=None) -> ad.AnnData:
    """side x side lattice with a rook (4-neighbour) graph: radius 1 on unit spacing."""
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2).astype(float)
    a = ad.AnnData(np.zeros((len(xy), 1), np.float32), obs=pd.DataFrame(index=[f"c{i}" for i in range(len(xy))]))
    a.obsm[K.SPATIAL] = xy
    if labels is not None:
        a.obs["ct"] = pd.Categorical(labels(xy))
    if values:
        a.obsm[K.PROTEIN] = pd.DataFrame({k: f(xy) for k, f in values.items()}, index=a.obs_names)
    if library is not None:
        a.obs["lib"] = library(xy)
    spatial_neighbors(a, method="radius", radius=1.0, library_key=None if library is None else "lib")
    return a


def checker(xy):
    return (xy.sum(1) % 2).astype(float)


def brute_moran(x: np.ndarray, w: np.ndarray):
    """Dense textbook Moran's I with esda's normality variance (row-standardised weights)."""
    w = w / w.sum(1, keepdims=True)
    n, s0 = len(x), w.sum()
    z = x - x.mean()
    i = n / s0 * sum(w[a, b] * z[a] * z[b] for a in range(n) for b in range(n)) / (z ** 2).sum()
    s1 = 0.5 * ((w + w.T) ** 2).sum()
    s2 = ((w.sum(1) + w.sum(0)) ** 2).sum()
    e = -1 / (n - 1)
    var = (n * n * s1 - n * s2 + 3 * s0 ** 2) / ((n * n - 1) * s0 ** 2) - e ** 2
    return i, var, stats.norm.sf(abs((i - e) / np.sqrt(var)))  # one-sided, as squidpy


def test_moran_checkerboard_is_minus_one_and_gradient_is_strongly_positive():
    a = grid(10, values={"chk": checker, "grad": lambda xy: xy[:, 0] + 0.01 * xy[:, 1]})
    res = morans_i(a.obsm[K.PROTEIN].to_numpy(), connectivities(a))
    assert res.loc[0, "I"] == pytest.approx(-1.0)
    assert res.loc[1, "I"] > 0.85
    assert (res["pval_norm"] < 1e-10).all()


def test_moran_matches_dense_brute_force_on_an_irregular_knn_graph():
    rng = np.random.default_rng(0)
    a = ad.AnnData(np.zeros((60, 1), np.float32))
    a.obsm[K.SPATIAL] = rng.uniform(0, 10, (60, 2))
    spatial_neighbors(a, method="knn", n_neighs=4)  # directed: W is not symmetric
    x = a.obsm[K.SPATIAL][:, 0] + rng.normal(0, 3, 60)
    res = morans_i(x[:, None], connectivities(a))
    i, var, p = brute_moran(x, connectivities(a).toarray())
    assert res.loc[0, "I"] == pytest.approx(i)
    assert res.loc[0, "var_norm"] == pytest.approx(var)
    assert res.loc[0, "pval_norm"] == pytest.approx(p)
    two = morans_i(x[:, None], connectivities(a), two_tailed=True)
    assert two.loc[0, "pval_norm"] == pytest.approx(min(2 * p, 1.0))


def test_moran_of_noise_is_not_significant_and_constant_is_nan():
    rng = np.random.default_rng(1)
    a = grid(12)
    x = rng.standard_normal((144, 40))
    x[:, 0] = 3.0
    res = morans_i(x, connectivities(a))
    assert np.isnan(res.loc[0, "I"])
    assert (res["pval_norm"][1:] < 0.01).mean() < 0.1  # about 1 % by chance
    assert abs(res["I"][1:].mean() - res.loc[1, "expected_I"]) < 0.03


def test_autocorr_on_measured_and_predicted_with_bh_per_library():
    a = grid(8, values={"CD3": checker, "CD20": lambda xy: xy[:, 0]},
             library=lambda xy: np.where(xy[:, 1] < 4, "L1", "L2"))
    a.obsm[K.PROTEIN_PREDICTED] = a.obsm[K.PROTEIN][["CD20"]] * 2
    spatial_autocorr(a, library_key="lib")
    t = a.uns["scprospatial_moranI"]
    assert set(t["library"]) == {"all", "L1", "L2"} and set(t["source"]) == {"measured", "predicted"}
    # squidpy's layout under squidpy's key: pooled, imputed proteins, indexed by protein, sorted by I
    sq = a.uns["moranI"]
    assert list(sq.index) == ["CD20"] and list(sq.columns) == ["I", "pval_norm", "var_norm", "pval_norm_fdr_bh"]
    m = t[(t.library == "all") & (t.source == "measured")].set_index("protein")
    pred = t[(t.library == "all") & (t.source == "predicted")].set_index("protein")
    assert pred.loc["CD20", "I"] == pytest.approx(m.loc["CD20", "I"])  # scale invariant
    from scipy.stats import false_discovery_control

    np.testing.assert_allclose(m["pval_norm_fdr_bh"], false_discovery_control(m["pval_norm"]))
    with pytest.raises(InputError, match="neither measured nor imputed"):
        spatial_autocorr(a, proteins=["CD999"])


def test_enrichment_segregated_vs_mixed_and_brute_force_counts():
    seg = grid(10, labels=lambda xy: np.where(xy[:, 0] < 5, "A", "B"))
    mix = grid(10, labels=lambda xy: np.where(checker(xy) > 0, "A", "B"))
    for a in (seg, mix):
        nhood_enrichment(a, cluster_key="ct", n_perms=300, seed=0)
    zs, zm = seg.uns["ct_nhood_enrichment"]["zscore"], mix.uns["ct_nhood_enrichment"]["zscore"]
    assert zs[0, 0] > 5 and zs[1, 1] > 5 and zs[0, 1] < -5
    assert zm[0, 0] < -5 and zm[0, 1] > 5
    # Counts: every directed edge once, by the types at its ends.
    g = connectivities(seg).tocoo()
    codes = seg.obs["ct"].cat.codes.to_numpy()
    brute = np.zeros((2, 2), int)
    for r, c in zip(g.row, g.col):
        brute[codes[r], codes[c]] += 1
    np.testing.assert_array_equal(seg.uns["ct_nhood_enrichment"]["count"], brute)
    assert seg.uns["ct_nhood_enrichment"]["n_perms"] == 300


def test_enrichment_z_matches_a_plain_permutation_loop_and_is_seeded():
    rng = np.random.default_rng(2)
    a = grid(9, labels=lambda xy: rng.choice(list("ABC"), len(xy)))
    nhood_enrichment(a, cluster_key="ct", n_perms=2000, seed=5)
    again = nhood_enrichment(a, cluster_key="ct", n_perms=2000, seed=5, copy=True)
    np.testing.assert_array_equal(a.uns["ct_nhood_enrichment"]["zscore"], again.uns["ct_nhood_enrichment"]["zscore"])
    g = connectivities(a).tocoo()
    codes = a.obs["ct"].cat.codes.to_numpy()
    perm_rng = np.random.default_rng(99)
    counts = []
    for _ in range(2000):
        p = perm_rng.permutation(codes)
        counts.append(np.bincount(p[g.row] * 3 + p[g.col], minlength=9).reshape(3, 3))
    counts = np.array(counts, float)
    z = (a.uns["ct_nhood_enrichment"]["count"] - counts.mean(0)) / counts.std(0)
    np.testing.assert_allclose(a.uns["ct_nhood_enrichment"]["zscore"], z, atol=0.15)


def test_enrichment_permutes_within_libraries():
    # Library L1 holds only A, L2 only B: shuffling within libraries changes nothing (sd 0 -> NaN).
    lab = lambda xy: np.where(xy[:, 0] < 4, "A", "B")  # noqa: E731
    a = grid(8, labels=lab, library=lab)
    nhood_enrichment(a, cluster_key="ct", n_perms=50, library_key="lib")
    assert np.isnan(a.uns["ct_nhood_enrichment"]["zscore"]).all()
    nhood_enrichment(a, cluster_key="ct", n_perms=50)
    assert np.isfinite(a.uns["ct_nhood_enrichment"]["zscore"]).all()


def test_niche_composition_fractions():
    a = grid(6, labels=lambda xy: np.where(xy[:, 0] < 3, "A", "B"))
    niche_composition(a, cluster_key="ct")
    frac = a.obsm[NICHE]
    np.testing.assert_allclose(frac.sum(1), 1.0)
    # A cell at x=2 (border) has 1 B neighbour out of 3 or 4; at x=0 none.
    xy = a.obsm[K.SPATIAL]
    assert (frac.loc[xy[:, 0] == 0, "B"] == 0).all()
    interior = (xy[:, 0] == 2) & (xy[:, 1] > 0) & (xy[:, 1] < 5)
    np.testing.assert_allclose(frac.loc[interior, "B"], 0.25)
    table = a.uns[f"ct_{NICHE}"]
    row = table[table.cell_type == "A"].iloc[0]
    assert row["A"] == pytest.approx(frac.loc[xy[:, 0] < 3, "A"].mean()) and row["n_cells"] == 18


def test_stats_without_graph_is_a_missing_step():
    a = ad.AnnData(np.zeros((5, 1), np.float32))
    with pytest.raises(MissingStepError):
        connectivities(a)


def test_spatial_stats_file_writes_tables_figures_and_h5ad(tmp_path, cli):
    a = grid(10, labels=lambda xy: np.where(xy[:, 0] < 5, "A", "B"),
             values={"CD3": checker, "CD20": lambda xy: xy[:, 0]},
             library=lambda xy: np.where(xy[:, 1] < 5, "L1", "L2"))
    a.obsm[K.PROTEIN_PREDICTED] = a.obsm[K.PROTEIN] + 0.1
    a.uns[K.UNS] = {K.KIND: "spatial", K.NORMALISATION: {}, "cell_type_key": "ct"}  # as prepare writes
    del a.obsp[K.SPATIAL_CONNECTIVITIES], a.obsp[K.SPATIAL_DISTANCES]  # the step builds a graph itself
    src = tmp_path / "sample.h5ad"
    a.write_h5ad(src)
    out = spatial_stats_file(src, tmp_path / "stats", n_perms=100, library_key="lib", threads=1)
    assert out.name == "sample.stats.h5ad"
    res = ad.read_h5ad(out)
    assert enrichment_key("ct") in res.uns and K.SPATIAL_CONNECTIVITIES in res.obsp
    enr = pd.read_csv(tmp_path / "stats" / "nhood_enrichment.csv")
    assert set(enr["library"]) == {"all", "L1", "L2"} and len(enr) == 3 * 4
    moran = pd.read_csv(tmp_path / "stats" / "moran.csv")
    assert {"I", "pval_norm", "pval_norm_fdr_bh", "source", "protein", "library"} <= set(moran.columns)
    niche = pd.read_csv(tmp_path / "stats" / "niche_composition.csv")
    assert list(niche.columns[:3]) == ["library", "cell_type", "n_cells"]
    for png in ("nhood_enrichment.png", "protein_maps.png"):
        assert (tmp_path / "stats" / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="cluster key"):
        spatial_stats_file(src, tmp_path / "bad", cluster_key="nope", n_perms=10)
    # The command: same z-scores for the same seed; a bad cluster key is exit code 2.
    proc = cli("spatial-stats", src, "--out", tmp_path / "cli", "--n-perms", "100", "--library-key", "lib",
               "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / "nhood_enrichment.csv"), enr)
    assert cli("spatial-stats", src, "--out", tmp_path / "bad", "--cluster-key", "nope").returncode == 2


def test_codex_real_data_tumour_cells_cluster(shared_data, tmp_path):
    out = spatial_stats_file(shared_data / "spatial" / "codex_crc_schurch2020_reg009.csv", tmp_path, n_perms=100,
                             threads=1)
    enr = pd.read_csv(tmp_path / "nhood_enrichment.csv")
    self_z = enr[enr.cluster_a == enr.cluster_b].set_index("cluster_a")["zscore"]
    assert self_z["tumor cells"] > 3  # epithelial tumour nests are contiguous
    moran = pd.read_csv(tmp_path / "moran.csv").set_index("protein")
    assert moran.loc["Pan-Keratin", "I"] > 0.3 and out.exists()
