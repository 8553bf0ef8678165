"""Seed ensembles, per-protein support classes, the --min-support filter and the gene link's per-cell SD."""
from __future__ import annotations

import dataclasses
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from scprospatial import _constants as K
from scprospatial.errors import InputError
from scprospatial.model import ScProSpatial, impute_file, train_files
from scprospatial.model._ensemble import mixture
from scprospatial.model._reliability import DETECTION_MIN_FRACTION, expected_accuracy
from scprospatial.train import fit_gene_link, z_value

from .test_model import TINY, make_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def members():
    train = make_cohort(seed=0)
    out = []
    for seed in (0, 1):
        m = ScProSpatial.setup([train], TINY, seed=seed)
        m.train([train], seed=seed, device="cpu")
        m.meta["seed"] = seed
        out.append(m)
    return out


@pytest.fixture(scope="module")
def query():
    return make_cohort(n=60, seed=5, batch="q", kind="rna")


def test_mixture_matches_a_hand_computation():
    means = [torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 0.0]])]
    sds = [torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0]])]
    mean, sd = mixture(means, sds)
    # protein 1: mean (1+3+2)/3 = 2; variance (1+1+4)/3 + ((1-2)^2+(3-2)^2+0)/3 = 2 + 2/3
    # protein 2: members agree: mean 0, variance 4 (the spread adds nothing)
    np.testing.assert_allclose(mean.numpy(), [[2.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(sd.numpy(), [[np.sqrt(2 + 2 / 3), 2.0]], rtol=1e-6)
    one_mean, one_sd = mixture(means[:1], sds[:1])
    assert torch.equal(one_mean, means[0]) and torch.allclose(one_sd, sds[0])


def test_ensemble_predicts_the_mixture_of_its_members(members, query):
    ens = ScProSpatial.ensemble(members)
    assert ens.ensemble_size == 2 and "ensemble of 2" in repr(ens)
    names = ["CD3", "CD4", "CD8", "CD20"]  # two measured, two through the gene link
    out = ens.predict(query, proteins=names)
    each = [m.predict(query, proteins=names) for m in members]
    means = np.stack([e.obsm[K.PROTEIN_PREDICTED][names].to_numpy() for e in each])
    sds = np.stack([e.obsm[K.PROTEIN_PREDICTED_SD][names].to_numpy() for e in each])
    mean = means.mean(0)
    var = (sds ** 2).mean(0) + ((means - mean) ** 2).mean(0)
    np.testing.assert_allclose(out.obsm[K.PROTEIN_PREDICTED][names], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.obsm[K.PROTEIN_PREDICTED_SD][names], np.sqrt(var), rtol=1e-5, atol=1e-6)
    # the members disagree somewhere, so the ensemble SD exceeds the root mean member variance there
    assert (out.obsm[K.PROTEIN_PREDICTED_SD][names].to_numpy() > np.sqrt((sds ** 2).mean(0)) + 1e-6).any()
    # the embedding (and mapping) is the first member's
    np.testing.assert_array_equal(out.obsm[K.EMBEDDING], each[0].obsm[K.EMBEDDING])
    assert out.uns[K.PROTEIN_PREDICTED]["ensemble_size"] == 2


def test_ensemble_checkpoint_round_trip_and_impute(members, query, tmp_path):
    ens = ScProSpatial.ensemble(members)
    path = ens.save(tmp_path / "ens.pt")
    back = ScProSpatial.load(path, device="cpu")
    assert back.ensemble_size == 2 and back.meta["model_id"] == ens.meta["model_id"]
    assert [m["seed"] for m in back.meta["ensemble"]["members"]] == [0, 1]
    a, b = ens.predict(query, all_proteins=True), back.predict(query, all_proteins=True)
    np.testing.assert_array_equal(a.obsm[K.PROTEIN_PREDICTED], b.obsm[K.PROTEIN_PREDICTED])
    np.testing.assert_array_equal(a.obsm[K.PROTEIN_PREDICTED_SD], b.obsm[K.PROTEIN_PREDICTED_SD])
    # the members come back as the models they were
    for orig, member in zip(members, back.members_as_models()):
        np.testing.assert_allclose(member.predict(query).obsm[K.PROTEIN_PREDICTED],
                                   orig.predict(query).obsm[K.PROTEIN_PREDICTED], rtol=0, atol=1e-6)
    # impute reads an ensemble checkpoint like any other (backed, prepared .h5ad)
    q = tmp_path / "q.h5ad"
    query.write_h5ad(q)
    out = ad.read_h5ad(impute_file(path, q, tmp_path / "imputed.h5ad", device="cpu"))
    np.testing.assert_allclose(out.obsm[K.PROTEIN_PREDICTED], back.predict(query).obsm[K.PROTEIN_PREDICTED],
                               rtol=1e-5, atol=1e-6)


def test_ensemble_refuses_members_of_other_cohorts(members):
    other = make_cohort(seed=3, proteins=("CD3", "CD4"))
    stranger = ScProSpatial.setup([other], TINY, seed=0)
    with pytest.raises(InputError, match="another vocabulary"):
        ScProSpatial.ensemble([members[0], stranger])


def test_train_files_ensemble_writes_one_checkpoint(tmp_path):
    a = make_cohort(seed=0)
    a.write_h5ad(tmp_path / "c.h5ad")
    cfg = dataclasses.replace(TINY, n_hvg=40)
    path = train_files([tmp_path / "c.h5ad"], tmp_path / "m", seed=4, device="cpu", threads=1, epochs=1,
                       config=cfg, ensemble=2)
    model = ScProSpatial.load(path, device="cpu")
    assert model.ensemble_size == 2 and [m["seed"] for m in model.meta["ensemble"]["members"]] == [4, 5]
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["ensemble_size"] == 2 and [m["seed"] for m in metrics["members"]] == [4, 5]
    assert set(pd.read_csv(tmp_path / "m" / "training_curves.csv")["member"]) == {0, 1}
    with pytest.raises(InputError, match="cannot --resume"):
        train_files([tmp_path / "c.h5ad"], tmp_path / "m2", ensemble=2, resume=True, config=cfg)


def _query_with_detection(n: int = 100) -> ad.AnnData:
    """RNA cells whose coding genes are detected in chosen shares of the cells: CD8A (-> CD8) in 30%, MS4A1
    (-> CD20) in 5%, CD14 (-> CD14) in none."""
    q = make_cohort(n=n, seed=11, batch="q", kind="rna")
    x = q.X.toarray()
    for gene, share in (("CD8A", 0.3), ("MS4A1", 0.05), ("CD14", 0.0)):
        j = list(q.var_names).index(gene)
        x[:, j] = 0.0
        x[: int(round(share * n)), j] = 1.5
    q.X = type(q.X)(x)
    return q


def test_support_classes_follow_measurement_and_detection(members, query):
    q = _query_with_detection()
    out = members[0].predict(q, proteins=["CD3", "CD8", "CD20", "CD14"])
    table = out.uns[K.PROTEIN_PREDICTED][K.PROTEIN_TABLE]
    assert list(table.index) == ["CD3", "CD8", "CD20", "CD14"]
    assert list(table[K.SUPPORT]) == [K.SUPPORT_MEASURED, K.SUPPORT_DETECTED, K.SUPPORT_UNDETECTED,
                                      K.SUPPORT_UNDETECTED]
    np.testing.assert_allclose(table.loc[["CD8", "CD20", "CD14"], K.DETECTED_FRACTION], [0.3, 0.05, 0.0])
    assert DETECTION_MIN_FRACTION == 0.1
    shipped = expected_accuracy().set_index([K.SUPPORT, "setting"])["median_pearson"]
    for p, c in table[K.SUPPORT].items():
        expected = shipped[(c, "same_cohort")]
        assert np.isnan(expected) if np.isnan(table.loc[p, K.EXPECTED_PEARSON]) else \
            table.loc[p, K.EXPECTED_PEARSON] == pytest.approx(expected)
    info = out.uns[K.PROTEIN_PREDICTED][K.RELIABILITY]
    assert info["classes"] == list(K.SUPPORT_CLASSES) and info["min_support"] == "any"
    assert info["calibration"]["calibrated_for_input"] is False  # a cohort the model never saw


def test_min_support_keeps_only_reliable_proteins(members, tmp_path):
    q = _query_with_detection()
    asked = ["CD3", "CD8", "CD20", "CD14"]
    det = members[0].predict(q, proteins=asked, min_support="detected")
    assert list(det.obsm[K.PROTEIN_PREDICTED].columns) == ["CD3", "CD8"]
    assert det.uns[K.PROTEIN_PREDICTED][K.RELIABILITY]["dropped_by_min_support"] == ["CD20", "CD14"]
    meas = members[0].predict(q, proteins=asked, min_support="measured")
    assert list(meas.obsm[K.PROTEIN_PREDICTED_SD].columns) == ["CD3"]
    with pytest.raises(InputError, match="min_support must be one of"):
        members[0].predict(q, proteins=asked, min_support="high")
    with pytest.raises(InputError, match="no requested protein has support"):
        members[0].predict(q, proteins=["CD20"], min_support="detected")
    # the file path (backed impute) and the command line give the same selection
    members[0].save(tmp_path / "m.pt")
    q.write_h5ad(tmp_path / "q.h5ad")
    from scprospatial.cli import main

    assert main(["impute", "--model", str(tmp_path / "m.pt"), str(tmp_path / "q.h5ad"), "--out",
                 str(tmp_path / "o.h5ad"), "--proteins", ",".join(asked), "--min-support", "detected",
                 "--device", "cpu"]) == 0
    out = ad.read_h5ad(tmp_path / "o.h5ad")
    assert list(out.obsm[K.PROTEIN_PREDICTED].columns) == ["CD3", "CD8"]
    assert list(out.uns[K.PROTEIN_PREDICTED][K.PROTEIN_TABLE][K.SUPPORT]) == [K.SUPPORT_MEASURED,
                                                                                  K.SUPPORT_DETECTED]
    np.testing.assert_allclose(out.obsm[K.PROTEIN_PREDICTED], det.obsm[K.PROTEIN_PREDICTED], rtol=1e-5, atol=1e-6)


def _heteroscedastic(rng, n_proteins: int, n_cells: int):
    """Proteins = offset_p + x + noise whose SD grows with x; x = 0 in a third of the cells."""
    x = rng.gamma(2.0, 0.7, (n_cells, n_proteins)) * (rng.random((n_cells, n_proteins)) > 0.33)
    offset = rng.normal(0, 0.3, n_proteins)
    y = offset + x + rng.standard_normal((n_cells, n_proteins)) * (0.2 + 0.4 * x)
    groups = np.broadcast_to(np.arange(n_proteins), x.shape)
    return x.ravel(), y.ravel(), groups.ravel()


def test_gene_link_sd_is_per_cell_and_covers_proteins_it_never_saw():
    rng = np.random.default_rng(0)
    x, y, g = _heteroscedastic(rng, 12, 400)
    fit = fit_gene_link(x, y, g, 0.9)
    assert fit["coverage_held_out_protein"] == pytest.approx(0.9, abs=0.01)
    c0, c1, c2, x_max = fit["link_var"]
    assert c1 > 0  # noise grows with the coding-gene RNA: so does the SD
    # new proteins from the same process: the intervals cover close to nominal, per cell
    x2, y2, _ = _heteroscedastic(np.random.default_rng(1), 30, 400)
    mean = fit["intercept"] + fit["slope"] * x2
    sd = np.exp(0.5 * (c0 + c1 * np.minimum(x2, x_max) + c2 * (x2 <= 0)))
    inside = np.abs(y2 - mean) <= z_value(0.9) * sd
    assert 0.85 <= inside.mean() <= 0.95
    assert sd.std() / sd.mean() > 0.2  # not one constant SD
    # the constant SD of the in-sample residuals (the former link) covers clearly less at high x
    const = np.sqrt(np.exp(fit["residual_logvar"]))
    high = x2 > np.quantile(x2, 0.9)
    assert (np.abs(y2 - mean) <= z_value(0.9) * const)[high].mean() < inside[high].mean() - 0.1


def test_trained_gene_link_proteins_have_per_cell_sd(members, query):
    m = members[0]
    assert m.module.link_calibrated and "coverage_held_out_protein" in m.meta["link_calibration"]
    sd = m.predict(query, proteins=["CD8", "CD20"]).obsm[K.PROTEIN_PREDICTED_SD]
    assert (sd.std() > 0).all()


def test_checkpoints_without_per_cell_link_sd_keep_the_constant_one(members, query, tmp_path):
    m = members[0]
    path = m.save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=True)
    del ck["state_dict"]["link_var"]
    torch.save(ck, path)
    old = ScProSpatial.load(path, device="cpu")
    assert not old.module.link_calibrated
    sd = old.predict(query, proteins=["CD8"]).obsm[K.PROTEIN_PREDICTED_SD]["CD8"]
    expected = np.exp(0.5 * float(m.module.link_fit[2])) * m.meta["scale"]
    np.testing.assert_allclose(sd, expected, rtol=1e-5)
