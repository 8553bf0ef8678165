"""Training: per-cohort protein masks, resume equals an uninterrupted run, calibration, file outputs."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from scprospatial import _constants as K
from scprospatial.model import ScProSpatial, train_files
from scprospatial.model._data import build_pool
from scprospatial.train import calibrate_scale, foscttm, interval_coverage, matching_accuracy, z_value
from scprospatial.train._loops import Batch, translate_loss
from scprospatial.train._trainer import WeightAverage

from .test_model import TINY, make_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cohorts():
    a = make_cohort(n=150, seed=1, proteins=("CD3", "CD4", "CD19"), batch="a")
    b = make_cohort(n=120, seed=2, proteins=("CD3", "CD45RA"), batch="b")
    return [a, b]


def test_unmeasured_protein_adds_no_loss():
    cohorts = _cohorts()
    model = ScProSpatial.setup(cohorts, TINY, seed=0)
    pool = build_pool(cohorts, model.vocab, model.datasets)
    measured = torch.as_tensor(model.vocab.protein_index.get_indexer(model.vocab.measured))
    j = model.vocab.protein_index.get_loc("CD45RA")
    in_a = pool.cohort == 0
    assert not pool.pmask[in_a, j].any() and pool.pmask[~in_a, j].all()   # per-cohort panel masks
    cfg = dataclasses.replace(TINY, token_dropout=0.0, dataset_dropout=0.0)
    model.module.eval()
    idx = np.flatnonzero(in_a)[:40]

    def loss(protein):
        pool.protein = protein
        return translate_loss(model.module, Batch.of(pool, idx, "cpu"), cfg, torch.Generator(), measured)

    base = pool.protein.copy()
    garbage = base.copy()
    garbage[in_a, j] = 1e4
    assert torch.equal(loss(base), loss(garbage))
    changed = base.copy()
    changed[idx[0], model.vocab.protein_index.get_loc("CD19")] += 5.0
    assert not torch.equal(loss(base), loss(changed))


def test_translate_keeps_the_contrastive_loss_when_asked_and_reports_alignment():
    """translate_align_weight w adds w x stage 2's InfoNCE to the translation loss, training the RNA projection
    only (encoder output detached, protein side fixed): the translation's gradients are unchanged; the translate
    validation reports val_foscttm."""
    from scprospatial.nn import info_nce
    from scprospatial.train._loops import embed_pair, paired, validate

    cohorts = _cohorts()
    model = ScProSpatial.setup(cohorts, TINY, seed=0)
    pool = build_pool(cohorts, model.vocab, model.datasets)
    measured = torch.as_tensor(model.vocab.protein_index.get_indexer(model.vocab.measured))
    model.module.eval()
    b = Batch.of(pool, np.arange(60), "cpu")
    plain = dataclasses.replace(TINY, token_dropout=0.0, dataset_dropout=0.0, translate_align_weight=0.0)
    kept = dataclasses.replace(plain, translate_align_weight=0.5)
    base = translate_loss(model.module, b, plain, torch.Generator(), measured)
    with_align = translate_loss(model.module, b, kept, torch.Generator(), measured)
    e_r, e_p = embed_pair(model.module, paired(b), paired(b).dataset)
    torch.testing.assert_close(with_align - base, 0.5 * info_nce(e_r, e_p, model.module.log_temperature))
    base.backward()
    enc = {n: p.grad.clone() for n, p in model.module.rna_encoder.named_parameters() if p.grad is not None}
    model.module.zero_grad(set_to_none=True)
    with_align.backward()
    assert all(p.grad is None for p in model.module.protein_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.module.rna_proj.parameters())
    for n, p in model.module.rna_encoder.named_parameters():
        if n in enc:
            torch.testing.assert_close(p.grad, enc[n], rtol=0, atol=0)
    row = validate("translate", model.module, b, plain, measured)
    assert 0.0 <= row["val_foscttm"] <= 1.0


def test_keeping_the_alignment_leaves_the_translation_as_it_was():
    """Same seed with and without translate_align_weight: identical predictions (the projection's training never
    touches the translation), a different joint embedding, and val_foscttm recorded after stage 3."""
    cohorts = _cohorts()
    runs = {}
    for w in (0.0, 1.0):
        model = ScProSpatial.setup(cohorts, dataclasses.replace(TINY, translate_align_weight=w), seed=0)
        metrics = model.train(cohorts, seed=0, device="cpu")
        runs[w] = (model, metrics)
    (plain, m0), (kept, m1) = runs[0.0], runs[1.0]
    a = plain.predict(cohorts[0], copy=True).obsm[K.PROTEIN_PREDICTED]
    b = kept.predict(cohorts[0], copy=True).obsm[K.PROTEIN_PREDICTED]
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not np.array_equal(plain.embed_rna(cohorts[0]), kept.embed_rna(cohorts[0]))
    assert 0.0 <= m1["translate"]["val_foscttm"] <= 1.0 and m0["align"] == m1["align"]


def _weights(model):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


@pytest.mark.parametrize("stage_i", [1, 2])  # killed mid-align; mid-translate (with its weight average)
def test_resume_after_interruption_ends_where_an_uninterrupted_run_ends(tmp_path, stage_i):
    cohorts = _cohorts()
    cfg = dataclasses.replace(TINY, epochs_pretrain=2, epochs_align=3, epochs_translate=3)
    assert 0.0 < cfg.ema_decay < 1.0
    full = ScProSpatial.setup(cohorts, cfg, seed=3)
    full.train(cohorts, seed=3, device="cpu", outdir=tmp_path / "full")

    part = ScProSpatial.setup(cohorts, cfg, seed=3)
    stop = lambda s: s.stage_i == stage_i and s.epoch == 1  # noqa: E731  (killed mid-stage)
    part.train(cohorts, seed=3, device="cpu", outdir=tmp_path / "part", stop=stop)
    assert not part.train_state.done
    assert (part.train_state.ema is not None) == (stage_i == 2)
    del part
    resumed = ScProSpatial.load(tmp_path / "part" / "checkpoint.pt", device="cpu")
    assert resumed.train_state.stage_i == stage_i and resumed.train_state.epoch == 1
    resumed.train(cohorts, seed=3, device="cpu", outdir=tmp_path / "part", resume=True)
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.meta["scale"] == resumed.meta["scale"]
    assert [r["train_loss"] for r in full.train_state.history] == [r["train_loss"] for r in resumed.train_state.history]


def test_weight_average_moves_towards_the_current_weights_and_swaps_back():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    start = _weights_of(net)
    avg = WeightAverage(net, decay=0.75)
    with torch.no_grad():
        net.weight.add_(4.0)
    raw = _weights_of(net)
    avg.update(net)
    torch.testing.assert_close(avg.weights["weight"], start["weight"] + 1.0)   # 0.75 old + 0.25 new
    torch.testing.assert_close(avg.weights["bias"], start["bias"])
    returned = avg.swap(net)
    torch.testing.assert_close(net.weight.detach(), start["weight"] + 1.0)
    net.load_state_dict(returned)
    torch.testing.assert_close(net.weight.detach(), raw["weight"])


def test_translate_keeps_averaged_weights_only_when_asked():
    cohorts = _cohorts()
    kept = {}
    for decay in (0.0, 0.9):
        cfg = dataclasses.replace(TINY, epochs_pretrain=1, epochs_align=1, epochs_translate=3, ema_decay=decay)
        model = ScProSpatial.setup(cohorts, cfg, seed=5)
        seen = []
        model.train(cohorts, seed=5, device="cpu", stop=lambda s: seen.append(s.ema is not None) and False)
        assert any(seen) == (decay > 0)
        kept[decay] = _weights(model)
    # same seed and data: only the averaging differs, so the kept translator weights differ
    assert not torch.equal(kept[0.0]["head.cell.weight"], kept[0.9]["head.cell.weight"])


def _weights_of(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_calibration_scale_restores_nominal_coverage():
    rng = np.random.default_rng(0)
    truth = rng.normal(0.0, 2.0, (4000, 3))
    mean, sd = np.zeros_like(truth), np.ones_like(truth)         # model says SD 1, truth has SD 2
    mask = np.ones_like(truth, dtype=bool)
    mask[:, 2] = False
    truth[:, 2] = 1e6                                            # unmeasured: must not be calibrated on
    scale = calibrate_scale(mean[:2000], sd[:2000], truth[:2000], mask[:2000], coverage=0.9)
    assert scale == pytest.approx(2.0, rel=0.08)
    held = interval_coverage(mean[2000:], sd[2000:] * scale, truth[2000:], z_value(0.9), mask[2000:])
    assert held == pytest.approx(0.9, abs=0.03)
    assert interval_coverage(mean[2000:], sd[2000:], truth[2000:], z_value(0.9), mask[2000:]) < 0.75
    assert z_value(0.9) == pytest.approx(1.6449, abs=1e-3)


def test_alignment_metrics():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(200, 16), dim=1)
    assert foscttm(a, a) == 0.0 and matching_accuracy(a, a) == 1.0
    b = a[torch.randperm(200)]
    assert 0.4 < foscttm(a, b) < 0.6 and matching_accuracy(a, b) < 0.05


def test_train_files_writes_model_metrics_and_curves(tmp_path):
    cohorts = _cohorts()
    paths = []
    for i, a in enumerate(cohorts):
        paths.append(tmp_path / f"c{i}.h5ad")
        a.write_h5ad(paths[-1])
    out = tmp_path / "model"
    path = train_files(paths, out, seed=0, device="cpu", threads=1, epochs=2,
                       config=dataclasses.replace(TINY, n_hvg=40))
    assert path == out / "model.pt" and path.is_file() and not (out / "checkpoint.pt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["measured_in_training"]) == {"CD3", "CD4", "CD19", "CD45RA"}
    assert "val_matching_accuracy" in metrics["align"] and metrics["calibration"]["scale"] > 0
    curves = pd.read_csv(out / "training_curves.csv")
    assert list(curves.groupby("stage", sort=False).size().items()) == [("pretrain", 2), ("align", 2),
                                                                         ("translate", 2)]
    mtime = path.stat().st_mtime_ns
    assert train_files(paths, out, resume=True, device="cpu") == path and path.stat().st_mtime_ns == mtime
    model = ScProSpatial.load(path, device="cpu")
    assert model.meta["cohorts"][1]["panel"] == ["CD3", "CD45RA"]
    q = make_cohort(n=20, seed=7, kind="rna", batch="new")
    assert model.predict(q).uns[K.PROTEIN_PREDICTED]["n_cells_unknown_dataset"] == 20


@pytest.mark.realdata
def test_real_cohorts_train_and_cross_predict(shared_data):
    """MALT (raw 10x layout, prepared by io.load) trains a tiny model that imputes the PBMC10k cohort."""
    from scprospatial.io import load

    malt = load(shared_data / "citeseq" / "malt_10k_train_1000cells.h5ad")[:300].copy()
    pbmc = load(shared_data / "citeseq" / "pbmc_10k_protein_v3_200cells.h5ad")
    cfg = dataclasses.replace(TINY, n_hvg=300, epochs_pretrain=1, epochs_align=1, epochs_translate=2)
    model = ScProSpatial.setup([malt], cfg, seed=0)
    model.train([malt], seed=0, device="cpu")
    out = model.predict(pbmc, all_proteins=True)
    info = out.uns[K.PROTEIN_PREDICTED]
    shared = set(malt.obsm[K.PROTEIN].columns) & set(pbmc.obsm[K.PROTEIN].columns)
    assert len(shared) >= 10 and shared <= set(info["measured_in_training"])
    assert "CD20" in info["predicted_via_gene_link"]            # MS4A1 is an HVG of a lymphoid tumour
    assert info["n_vocabulary_genes_missing"] > 0 and info["n_cells_unknown_dataset"] == pbmc.n_obs
    assert np.isfinite(out.obsm[K.PROTEIN_PREDICTED].to_numpy()).all()


def test_token_dropout_never_drops_the_measured_proteins_coding_genes(monkeypatch):
    cohorts = _cohorts()
    model = ScProSpatial.setup(cohorts, TINY, seed=0)
    pool = build_pool(cohorts, model.vocab, model.datasets)
    measured = torch.as_tensor(model.vocab.protein_index.get_indexer(model.vocab.measured))
    coding = model.module.coding_genes(measured)
    assert set(np.asarray(model.vocab.genes)[coding.numpy()]) == {"CD3E", "CD4", "CD19", "PTPRC"}
    seen = []
    real = type(model.module).translate
    monkeypatch.setattr(type(model.module), "translate",
                        lambda self, rna, *a, **k: (seen.append(rna.coalesce()), real(self, rna, *a, **k))[1])
    batch = Batch.of(pool, np.arange(60), "cpu")
    full = batch.rna.coalesce()
    for keep in (True, False):
        cfg = dataclasses.replace(TINY, token_dropout=1.0, keep_coding_tokens=keep)
        translate_loss(model.module, batch, cfg, torch.Generator().manual_seed(0), measured)
        cols = seen[-1].indices()[1]
        if keep:  # every other token dropped, every coding-gene token kept
            assert bool(coding[cols].all()) and len(cols) == int(coding[full.indices()[1]].sum()) > 0
        else:
            assert len(cols) == 0


def test_support_bound_is_the_training_maximum_and_extends_through_the_gene_link():
    train = make_cohort(n=150, seed=1, proteins=("CD3", "CD4", "CD19"), batch="a")
    model = ScProSpatial.setup([train], TINY, seed=0)
    metrics = model.train([train], seed=0, device="cpu")
    m, vocab = model.module, model.vocab
    j = vocab.protein_index.get_loc("CD3")
    gene = vocab.gene_index.get_loc("CD3E")
    # the bound is the largest CD3E value among the training cells (validation cells excluded)
    bound = float(m.own_support[j])
    assert metrics["coding_gene_support"]["bound"]["CD3"] == pytest.approx(bound, abs=1e-4)
    assert bound <= float(train[:, "CD3E"].X.max()) + 1e-6 and bound > 0
    assert not torch.isfinite(m.own_support[vocab.protein_index.get_loc("CD20")])  # never measured: no bound
    m.eval()
    cell = torch.randn(3, TINY.d_model)
    rna = torch.zeros(3, len(vocab.genes))
    rna[:, gene] = torch.tensor([bound - 0.5, bound, bound + 2.0])
    proteins = torch.tensor([j])
    with torch.no_grad():
        mean, logvar = m.translate(rna.to_sparse(), torch.zeros(3, dtype=torch.long), proteins, cell=cell)
        m.own_support.fill_(float("inf"))
        head, head_lv = m.translate(rna.to_sparse(), torch.zeros(3, dtype=torch.long), proteins, cell=cell)
    slope = float(m.link_fit[1])
    torch.testing.assert_close(mean[:2], head[:2])            # within the support: the head alone
    torch.testing.assert_close(logvar[:2], head_lv[:2])
    assert float(mean[2, 0] - head[2, 0]) == pytest.approx(2.0 * slope, rel=1e-5)
    assert float(logvar[2, 0]) > float(head_lv[2, 0])          # the gene link's residual variance added


def test_checkpoint_keeps_the_support_and_older_checkpoints_load_without_one(tmp_path):
    train = make_cohort(n=150, seed=1, proteins=("CD3", "CD4"), batch="a")
    model = ScProSpatial.setup([train], TINY, seed=0)
    model.train([train], seed=0, device="cpu")
    path = model.save(tmp_path / "m.pt")
    again = ScProSpatial.load(path, device="cpu")
    torch.testing.assert_close(again.module.own_support, model.module.own_support)
    ck = torch.load(path, weights_only=True)
    del ck["state_dict"]["own_support"]
    torch.save(ck, tmp_path / "old.pt")
    old = ScProSpatial.load(tmp_path / "old.pt", device="cpu")
    assert not torch.isfinite(old.module.own_support).any()


def test_small_training_sets_get_smaller_batches_so_every_epoch_takes_several_steps():
    from scprospatial.train._trainer import MIN_BATCH, batch_size

    cfg = dataclasses.replace(TINY, batch_size=256, min_steps_per_epoch=4)
    assert batch_size(cfg, 10_000) == 256                 # large sets: the configured batch
    assert batch_size(cfg, 850) == 213 and -(-850 // 213) == 4
    assert batch_size(cfg, 128) == 32
    assert batch_size(cfg, 20) == MIN_BATCH               # never below 16 cells
    assert batch_size(dataclasses.replace(cfg, min_steps_per_epoch=1), 128) == 128


def test_a_checkpoint_from_before_translate_align_weight_reads_as_trained_without_it():
    from scprospatial.model import ModelConfig

    old = dataclasses.asdict(TINY)
    del old["translate_align_weight"]
    assert ModelConfig.from_dict(old).translate_align_weight == 0.0
    assert ModelConfig.from_dict(dataclasses.asdict(TINY)).translate_align_weight == TINY.translate_align_weight
