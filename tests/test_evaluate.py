"""Evaluation: metrics against scipy/numpy, splits, baselines, the evaluate loop and files."""
from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from scprospatial import _constants as K
from scprospatial import evaluate as E
from scprospatial.errors import InputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "citeseq"
LINKS = {"CD4": ["CD4"], "CD16": ["FCGR3A", "FCGR3B"], "CD19": ["CD19"], "CD8": ["CD8A"]}  # as the shipped vocabulary


def cohort(n: int = 300, seed: int = 0, n_noise: int = 120, name: str = "toy") -> ad.AnnData:
    """Prepared-layout CITE-seq: 3 cell types; each protein follows its coding gene(s) and the type."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n)
    genes = ["CD4", "FCGR3A", "FCGR3B", "CD19", "CD8A"] + [f"N{i}" for i in range(n_noise)]
    rate = rng.gamma(1.0, 1.0, (3, len(genes))) + 0.1
    rate[:, :5] *= np.array([[8, 1, 1, 4, 0.5], [1, 6, 6, 4, 0.5], [0.5, 1, 1, 0.2, 0.5]])
    counts = rng.poisson(rate[types]).astype(np.float32)
    x = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    prot = np.column_stack([x[:, 0], x[:, 1:3].mean(1), x[:, 3], x[:, 4]]) * 0.8 + types[:, None] * 0.5
    prot += rng.normal(0, 0.3, prot.shape)
    a = ad.AnnData(X=sp.csr_matrix(x), obs=pd.DataFrame({K.BATCH: name, "truth_type": types.astype(str)},
                                                         index=[f"{name}_{i}" for i in range(n)]),
                   var=pd.DataFrame(index=genes))
    a.layers[K.COUNTS_LAYER] = sp.csr_matrix(counts)
    a.obsm[K.PROTEIN] = pd.DataFrame(prot, index=a.obs_names, columns=list(LINKS))
    a.uns[K.UNS] = {K.KIND: "citeseq", K.DATASET: name, "panel": list(LINKS),
                    K.NORMALISATION: {"rna": {"method": "log1p_library_size"}, "protein": {"method": "clr"}}}
    return a


# ---------------------------------------------------------------------------------------- metrics
def test_correlations_match_scipy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    p = y + rng.normal(size=200)
    assert E.pearson(y, p) == pytest.approx(stats.pearsonr(y, p)[0])
    assert E.spearman(y, p) == pytest.approx(stats.spearmanr(y, p)[0])
    assert E.rmse(y, p) == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert E.pearson(y, np.full(200, 3.0)) == 0.0  # constant prediction: no association


def test_ccc_identical_shifted_scaled():
    y = np.linspace(-2, 2, 101)
    assert E.ccc(y, y) == pytest.approx(1.0)
    shifted = E.ccc(y, y + 0.5)
    assert shifted < 1.0 and E.pearson(y, y + 0.5) == pytest.approx(1.0)
    assert shifted == pytest.approx(2 * y.var() / (2 * y.var() + 0.25))
    assert E.ccc(y, 2 * y) < 1.0
    assert E.ccc(y, -y) == pytest.approx(-1.0)


def test_pooled_cosine_as_defined():
    rng = np.random.default_rng(2)
    t, p = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    blocks = [(t[i:i + 16].ravel(), p[i:i + 16].ravel()) for i in (0, 16, 32)]
    want = np.mean([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in blocks])
    assert E.pooled_cosine(t, p) == pytest.approx(want)
    assert E.pooled_cosine(t, t) == pytest.approx(1.0)
    assert E.pooled_cosine(t, 3 * t) == pytest.approx(1.0)  # scale-blind, unlike CCC/RMSE


def test_interval_coverage_nominal():
    rng = np.random.default_rng(3)
    y = rng.normal(size=20000)
    assert E.interval_coverage(y, np.zeros_like(y), np.ones_like(y)) == pytest.approx(0.90, abs=0.01)
    assert E.interval_coverage(y, np.zeros_like(y), np.full_like(y, 0.1)) < 0.2


# ---------------------------------------------------------------------------------------- splits
def _check(split, n_train_cohort, n_test_cohort, same_cohort=True):
    assert len(np.intersect1d(split.train, split.val)) == 0
    assert len(split.val) >= 1 and split.train.max() < n_train_cohort and split.val.max() < n_train_cohort
    if same_cohort:
        assert len(np.intersect1d(np.union1d(split.train, split.val), split.test)) == 0
    assert split.test.max() < n_test_cohort


def test_random_splits_disjoint_and_seeded():
    a = cohort(200)
    s1, s2 = E.random_splits(a, n_seeds=3, seed=5), E.random_splits(a, n_seeds=3, seed=5)
    for x, y in zip(s1, s2):
        assert np.array_equal(x.test, y.test) and np.array_equal(x.val, y.val)
        _check(x, a.n_obs, a.n_obs)
        assert len(x.test) == 40 and len(x.train) + len(x.val) + len(x.test) == a.n_obs
    assert not np.array_equal(s1[0].test, s1[1].test)


def test_few_shot_trains_on_a_fraction_of_the_training_part():
    a = cohort(500)
    splits = E.few_shot_splits(a, fractions=(0.05, 0.2), n_seeds=2)
    full = {s.seed: s for s in E.random_splits(a, n_seeds=2)}
    for s in splits:
        _check(s, a.n_obs, a.n_obs)
        assert np.array_equal(s.test, full[s.seed].test)  # same test cells at every fraction
        frac = float(s.label.split("=")[1])
        assert len(s.train) + len(s.val) == int(np.ceil(frac * 400))


def test_leave_type_out_and_leiden():
    a = cohort(300)
    splits = E.leave_type_out_splits(a, a.obs["truth_type"], min_cells=10)
    assert len(splits) == 3
    for s in splits:
        _check(s, a.n_obs, a.n_obs)
        held = set(a.obs["truth_type"].iloc[s.test])
        assert len(held) == 1 and held.isdisjoint(a.obs["truth_type"].iloc[np.r_[s.train, s.val]])
    pytest.importorskip("igraph")
    leiden = E.cell_types(a, seed=0)
    assert leiden.nunique() >= 2 and len(leiden) == a.n_obs
    # clusters recover the simulated types: a cluster is mostly one type
    purity = pd.crosstab(leiden.to_numpy(), a.obs["truth_type"].to_numpy()).max(1).sum() / a.n_obs
    assert purity > 0.8


def test_cross_cohort_and_leave_protein_out_splits():
    a, b = cohort(120), cohort(80, seed=1, name="other")
    for s in E.cross_cohort_splits(a, [b], n_seeds=2):
        _check(s, a.n_obs, b.n_obs, same_cohort=False)
        assert (s.train_cohort, s.test_cohort) == (0, 1) and len(s.test) == b.n_obs
    lpo = E.leave_protein_out_splits(a)
    assert [s.hidden_proteins for s in lpo] == [(p,) for p in LINKS]
    with pytest.raises(InputError):
        E.leave_protein_out_splits(a, proteins=["NOPE"])


# ---------------------------------------------------------------------------------------- baselines and loop
def _baselines():
    return [E.MeanPredictor(), E.Ridge(n_hvg=50), E.Ridge(n_pcs=10, n_hvg=50), E.KNN(n_pcs=10, n_hvg=50),
            E.CodingGene(LINKS)]


def test_baselines_beat_mean_predictor():
    a = cohort(300)
    out = E.run_splits([a], E.random_splits(a, n_seeds=2), _baselines())
    res = out["per_split"].groupby("method")[["pearson", "rmse"]].mean()
    assert res.loc["mean", "pearson"] == 0.0
    for m in ("ridge_hvg", "ridge_pca10", "knn_pca10"):
        assert res.loc[m, "rmse"] < res.loc["mean", "rmse"] and res.loc[m, "pearson"] > 0.5
    assert res.loc["coding_gene", "pearson"] > 0.5
    per_protein = out["per_protein"]
    assert set(per_protein["protein"]) == set(LINKS) and per_protein["pearson"].between(-1, 1).all()


def test_hyperparameters_picked_on_validation_cells():
    a = cohort(300)
    s = E.random_splits(a, n_seeds=1)[0]
    knn = E.KNN(n_pcs=10, n_hvg=50)
    knn.fit(a[s.train].copy(), a[s.val].copy())
    assert knn.chosen in E.baselines.KNN_KS and knn.chosen <= len(s.train)
    # the one-pass validation paths equal refitting sklearn at every grid value
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 3))
    for m, grid in ((E.Ridge(), [0.1, 10.0, 1e3]), (E.KNN(), [1, 5, 20])):
        fast = m._val_losses(x[:40], y[:40], x[40:], y[40:], grid)
        slow = E.baselines._Regression._val_losses(m, x[:40], y[:40], x[40:], y[40:], grid)
        np.testing.assert_allclose(fast, slow, rtol=1e-6)
    tiny = E.KNN(n_pcs=2, n_hvg=50)
    tiny.fit(a[:4].copy(), a[4:6].copy())  # grid clipped to the cells there are
    assert tiny.chosen <= 4


def test_coding_gene_uses_the_vocabulary_link():
    a = cohort(100)
    pred = E.CodingGene(LINKS).predict(a, ["CD16", "CD4"])
    x = a.X.toarray()
    np.testing.assert_allclose(pred["CD16"], x[:, 1:3].mean(1), rtol=1e-6)  # two-gene protein: mean of its genes
    np.testing.assert_allclose(pred["CD4"], x[:, 0], rtol=1e-6)
    assert E.coding_gene_links(list(LINKS)) == LINKS  # the shipped vocabulary by default


class _Spy:
    """Records what it was trained on."""

    name = "spy"

    def fit(self, train, val):
        self.seen = (list(train.obsm[K.PROTEIN].columns), list(val.obsm[K.PROTEIN].columns),
                     set(train.obs_names) | set(val.obs_names))

    def predict(self, adata, proteins):
        return pd.DataFrame({p: np.zeros(adata.n_obs) for p in proteins if p in self.seen[0]}, index=adata.obs_names)


def test_leave_protein_out_hides_the_protein():
    a = cohort(150)
    spy, coding = _Spy(), E.CodingGene(LINKS)
    split = E.leave_protein_out_splits(a, proteins=["CD16"])[0]
    out = E.run_splits([a], [split], [spy, E.Ridge(n_hvg=50), coding])
    assert "CD16" not in spy.seen[0] and "CD16" not in spy.seen[1]
    assert spy.seen[2].isdisjoint(a.obs_names[split.test])
    assert list(out["per_split"]["method"]) == ["coding_gene"]  # only the gene link can predict it
    assert list(out["per_protein"]["protein"]) == ["CD16"] and out["per_protein"]["pearson"].iloc[0] > 0.3
    assert "CD16" in a.obsm[K.PROTEIN].columns  # the input is untouched


def test_summary_over_seeds():
    a = cohort(200)
    out = E.run_splits([a], E.random_splits(a, n_seeds=3), [E.MeanPredictor(), E.CodingGene(LINKS)])
    summary = E.summarise(out["per_split"])
    row = summary.set_index("method").loc["coding_gene"]
    vals = out["per_split"].query("method == 'coding_gene'")["pearson"]
    assert row["n_repeats"] == 3 and row["pearson_mean"] == pytest.approx(vals.mean())
    assert row["pearson_sd"] == pytest.approx(vals.std(ddof=1))
    assert "± " in E.summary_markdown(summary)


def test_evaluate_files_writes_tables(tmp_path):
    a, b = cohort(160), cohort(100, seed=1, name="other")
    paths = []
    for x in (a, b):
        p = tmp_path / f"{x.uns[K.UNS][K.DATASET]}.h5ad"
        x.write_h5ad(p)
        paths.append(p)
    out = E.evaluate_files(paths, tmp_path / "eval", split="cross-cohort", seeds=2,
                           methods=["mean", "knn_pca50", "coding_gene"], threads=1)
    for name in ("metrics_per_protein.csv", "metrics_per_split.csv", "summary.csv", "summary.md", "run.json"):
        assert (out / name).is_file()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["method"]) == {"mean", "knn_pca50", "coding_gene"} and (summary["n_repeats"] == 2).all()
    with pytest.raises(InputError):
        E.evaluate_files(paths, tmp_path / "bad", split="nonsense", methods=["mean"])
    with pytest.raises(InputError):
        E.evaluate_files(paths[:1], tmp_path / "bad", split="cross-cohort", methods=["mean"])


def test_krr_svd_validation_path_and_accuracy():
    a = cohort(300)
    krr = E.KernelRidgeSVD(n_components=20)
    out = E.run_splits([a], E.random_splits(a, n_seeds=2), [E.MeanPredictor(), krr])
    res = out["per_split"].groupby("method")[["pearson", "rmse"]].mean()
    assert res.loc["krr_svd", "pearson"] > 0.5 and res.loc["krr_svd", "rmse"] < res.loc["mean", "rmse"]
    alpha, scale = krr.chosen
    assert alpha in E.baselines.KRR_ALPHAS and scale in E.baselines.KRR_GAMMA_SCALES
    # the eigendecomposition path equals refitting the centred kernel ridge at every grid value
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 3))
    grid = [(0.1, 0.3), (1.0, 1.0), (10.0, 3.0)]
    fast = krr._val_losses(x[:40], y[:40], x[40:], y[40:], grid)
    slow = E.baselines._Regression._val_losses(krr, x[:40], y[:40], x[40:], y[40:], grid)
    np.testing.assert_allclose(fast, slow, rtol=1e-6)


def test_svd_features_exact_and_gene_aligned():
    a = cohort(120)
    f = E.SVDFeatures(n_components=10).fit(a)
    x = a.X.toarray().astype(np.float64)
    s = np.linalg.svd(x, compute_uv=False)[:10]
    np.testing.assert_allclose(np.linalg.norm(f.transform(a), axis=0), s, rtol=1e-6)  # |X v_i| = s_i
    shuffled = a[:, a.var_names[::-1]].copy()  # same genes in another order: same features
    np.testing.assert_allclose(f.transform(shuffled), f.transform(a), atol=1e-8)
    fewer = a[:, a.var_names[5:]].copy()  # absent genes read as 0
    x0 = x.copy()
    x0[:, :5] = 0
    np.testing.assert_allclose(f.transform(fewer), x0 @ f.components, atol=1e-8)


def test_failed_method_is_reported_not_fatal():
    a = cohort(150)

    class Flaky(E.MeanPredictor):
        name = "flaky"
        calls = 0

        def predict(self, adata, proteins):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise E.MethodFailed("tool crashed | badly")
            return super().predict(adata, proteins)

    class Broken(E.MeanPredictor):
        name = "broken"

        def fit(self, train, val):
            raise E.MethodFailed("cannot fit")

    out = E.run_splits([a], E.random_splits(a, n_seeds=2), [Flaky(), Broken(), E.CodingGene(LINKS)])
    summary = E.summarise(out["per_split"]).set_index("method")
    assert summary.loc["flaky", "n_repeats"] == 1 and summary.loc["flaky", "n_failed"] == 1
    assert summary.loc["broken", "n_repeats"] == 0 and summary.loc["broken", "error"] == "cannot fit"
    assert summary.loc["coding_gene", "n_failed"] == 0 and summary.loc["coding_gene", "n_repeats"] == 2
    md = E.summary_markdown(summary.reset_index())
    assert "| broken | 0 | failed: cannot fit |" in md
    assert "flaky failed on 1 of 2 repeats: tool crashed / badly" in md


def test_evaluate_files_runs_extra_methods(tmp_path):
    a = cohort(120)
    path = tmp_path / "toy.h5ad"
    a.write_h5ad(path)

    class Extra(E.MeanPredictor):
        name = "extra"

    out = E.evaluate_files([path], tmp_path / "eval", split="random", seeds=1, methods=["mean"], threads=1,
                           extra_methods=[Extra()])
    assert set(pd.read_csv(out / "summary.csv")["method"]) == {"mean", "extra"}
    with pytest.raises(InputError):
        E.evaluate_files([path], tmp_path / "bad", split="random", seeds=1, methods=["mean"],
                         extra_methods=[E.MeanPredictor()])


# ---------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_malt_random_split_baselines_real_data():
    path = DATA / "malt_10k_train_1000cells.h5ad"
    if not path.is_file():
        pytest.skip(f"real data not found at {path} (../shared/data is absent on this machine)")
    a = E.load_cohort(path)
    out = E.run_splits([a], E.random_splits(a, n_seeds=1), [E.MeanPredictor(), E.KNN(), E.CodingGene()])
    res = out["per_split"].set_index("method")["pearson"]
    assert res["knn_pca50"] > 0.6 and res["coding_gene"] > 0.2


def test_model_wrapper_predicts_a_hidden_protein_through_its_gene():
    if not E.model_available():
        pytest.skip("scprospatial.model is not importable")
    a = cohort(120)
    split = E.leave_protein_out_splits(a, proteins=["CD16"])[0]
    method = E.ScProSpatialMethod(ablation="no-pretrain", epochs=1, device="cpu")
    out = E.run_splits([a], [split], [method])
    assert "CD16" not in method.model.vocab.measured and "CD16" in method.model.vocab.proteins
    row = out["per_split"].iloc[0]
    assert row["method"] == "scprospatial_no_pretrain" and row["n_proteins"] == 1
    assert np.isfinite(row["pearson"]) and 0.0 <= row["coverage90"] <= 1.0


def test_same_training_cells_fitted_once():
    a, b, c = cohort(100), cohort(60, seed=1, name="b"), cohort(60, seed=2, name="c")

    class Count(E.MeanPredictor):
        fits = 0

        def fit(self, train, val):
            Count.fits += 1
            super().fit(train, val)

    out = E.run_splits([a, b, c], E.cross_cohort_splits(a, [b, c], n_seeds=2), [Count()])
    assert Count.fits == 2 and len(out["per_split"]) == 4  # one fit per seed serves both test cohorts


def test_each_repeat_fits_with_its_own_seed():
    a = cohort(100)

    class Seeded(E.MeanPredictor):
        seed, seen = 0, []

        def fit(self, train, val):
            Seeded.seen.append(self.seed)
            super().fit(train, val)

    E.run_splits([a], E.random_splits(a, n_seeds=3, seed=5), [Seeded()])
    assert Seeded.seen == [5, 6, 7]  # not the first seed three times: repeats vary the model's seed too
