"""The single-machine runner end to end, as `make demo` and users run it."""
from __future__ import annotations

import os
import time

import anndata as ad
import pandas as pd
import pytest

from scprospatial import keys


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--outdir", str(out), "--n-cells", "500", "--epochs", "3", "--seed", "3", "--threads", "2")
    return out, proc


def test_demo_writes_documented_layout(demo_run):
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("simulated/samplesheet.csv", "model/pretrain/model.pt", "model/align/model.pt", "model/model.pt",
                "report/report.html", "pipeline_info/trace.tsv"):
        assert (out / rel).exists(), rel
    imputed = sorted((out / "imputed").glob("*.h5ad"))
    graphs = sorted((out / "spatial").glob("*.h5ad"))
    assert imputed and graphs
    a = ad.read_h5ad(imputed[0])
    pred, sd = a.obsm[keys.PROTEIN_PREDICTED], a.obsm[keys.PROTEIN_PREDICTED_SD]
    assert isinstance(pred, pd.DataFrame) and list(sd.columns) == list(pred.columns)
    assert pred.notna().all().all() and (sd.to_numpy() > 0).all()
    g = ad.read_h5ad(graphs[0])
    assert keys.SPATIAL_CONNECTIVITIES in g.obsp and keys.SPATIAL_DISTANCES in g.obsp
    mapped = [p for p in sorted((out / "mapped").glob("*.h5ad")) if not p.name.endswith(".rna.h5ad")]
    assert mapped
    m = ad.read_h5ad(mapped[0])
    assert m.obsm[keys.PROTEIN_PREDICTED].shape[0] == m.n_obs and keys.MAPPING_CONFIDENCE in m.obs
    assert keys.SPATIAL_CONNECTIVITIES in m.obsp  # mapped from the graph file, so statistics can reuse it
    html = (out / "report" / "report.html").read_text()
    assert "Imaged cells with imputed proteomes" in html and "Spatial statistics" in html
    stats = next((out / "stats").iterdir())
    assert {"moran.csv", "nhood_enrichment.csv", "nhood_enrichment.png"} <= {p.name for p in stats.iterdir()}
    assert "Imputed proteins" in html and "data:image/png;base64" in html


def test_rerun_skips_complete_steps(demo_run, cli):
    out, first = demo_run
    assert first.returncode == 0
    before = (out / "model" / "model.pt").stat().st_mtime
    proc = cli("demo", "--outdir", str(out), "--n-cells", "500", "--epochs", "3", "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "up to date, skipped" in proc.stderr
    assert (out / "model" / "model.pt").stat().st_mtime == before


# ------------------------------------------------------------------ three training processes


@pytest.fixture(scope="module")
def staged_training(tmp_path_factory, one_torch_thread):
    """One `train` call of all three stages next to three calls chained by --init-from (as PRETRAIN, ALIGN,
    TRANSLATE run), same seed and cohorts."""
    from scprospatial.model import train_files
    from scprospatial.simulate import simulate

    tmp = tmp_path_factory.mktemp("stages")
    sim = simulate(tmp / "sim", n_cells=300, seed=2)
    inputs = [str(sim["citeseq"]), str(sim["rna"])]
    one = train_files(inputs, tmp / "one", seed=5, epochs=2)
    chained = {}
    previous = None
    for stage in ("pretrain", "align", "translate"):
        previous = chained[stage] = train_files(inputs, tmp / stage, stages=(stage,), seed=5, epochs=2,
                                                init_from=previous)
    return inputs, one, chained, sim


def test_three_stage_processes_end_where_one_call_ends(staged_training):
    import torch

    from scprospatial.model import ScProSpatial
    from scprospatial.train import load_checkpoint

    inputs, one, chained, sim = staged_training
    a, b = load_checkpoint(one), load_checkpoint(chained["translate"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["meta"]["model_id"] == b["meta"]["model_id"] and a["meta"]["scale"] == b["meta"]["scale"]
    assert b["meta"]["stages_done"] == ["pretrain", "align", "translate"]
    assert load_checkpoint(chained["pretrain"])["meta"]["stages_done"] == ["pretrain"]
    # the pretrained weights really differ from the final ones (the chain is not a copy of one file)
    p = load_checkpoint(chained["pretrain"])["state_dict"]
    assert any(not torch.equal(p[k], b["state_dict"][k]) for k in p)
    query = ad.read_h5ad(sim["rna"])
    pa = ScProSpatial.load(one, device="cpu").predict(query).obsm[keys.PROTEIN_PREDICTED]
    pb = ScProSpatial.load(chained["translate"], device="cpu").predict(query).obsm[keys.PROTEIN_PREDICTED]
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)
    curves = pd.read_csv(chained["translate"].parent / "training_curves.csv")
    assert list(dict.fromkeys(curves["stage"])) == ["pretrain", "align", "translate"]


@pytest.mark.parametrize("stages, start, seed, n_inputs, message", [
    (("translate",), "pretrain", 5, 2, "stage translate needs align first"),
    (("align",), "align", 5, 2, "stages run once, in the order"),
    (("pretrain",), "pretrain", 5, 2, "stages run once, in the order"),
    (("align",), "pretrain", 6, 2, "trained with --seed 5, got --seed 6"),
    (("align",), "pretrain", 5, 1, "cannot go on with other cohorts"),
])
def test_stage_whose_prerequisite_is_missing_is_refused(staged_training, tmp_path, stages, start, seed, n_inputs,
                                                        message):
    from scprospatial.errors import InputError
    from scprospatial.model import train_files

    inputs, _one, chained, _sim = staged_training
    with pytest.raises(InputError) as exc:
        train_files(inputs[:n_inputs], tmp_path / "x", stages=stages, seed=seed, epochs=2, init_from=chained[start])
    assert message in str(exc.value) and str(chained[start]) in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "x" / "model.pt").exists()


def test_cli_init_from_refuses_an_unfinished_checkpoint(staged_training, tmp_path, cli):
    import torch

    inputs, _one, chained, _sim = staged_training
    legacy = tmp_path / "legacy.pt"   # a model.pt that records no finished stages
    payload = torch.load(chained["pretrain"], weights_only=True)
    payload["meta"].pop("stages_done")
    torch.save(payload, legacy)
    proc = cli("train", *inputs, "--outdir", str(tmp_path / "out"), "--stages", "align", "--init-from", str(legacy),
               "--seed", "5", "--epochs", "2")
    assert proc.returncode == 2 and "records no finished training stages" in proc.stderr and str(legacy) in proc.stderr


def test_runner_discards_partial_work_of_other_parameters(tmp_path):
    from scprospatial.pipeline.steps import Step, run_steps

    src, out, partial, info = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "checkpoint", tmp_path / "info"
    src.write_text("cells")
    discarded = []

    def plan(epochs, fail=False):
        def action():
            partial.write_text(str(epochs))
            if fail:
                raise RuntimeError("killed mid-step")
            out.write_text("done")
        return [Step("train", action, inputs=[src], outputs=[out], params={"epochs": epochs},
                     on_stale=lambda: discarded.append(partial.read_text() if partial.exists() else None))]

    with pytest.raises(RuntimeError):
        run_steps(plan(3, fail=True), info)
    assert not plan(3)[0].up_to_date(info)      # a 'running' stamp is never complete
    run_steps(plan(3), info)                     # same parameters: the partial work is kept
    assert discarded == [None] and out.exists()
    run_steps(plan(4), info)                     # other parameters: discarded first
    assert discarded == [None, "3"]
    with pytest.raises(RuntimeError):
        run_steps(plan(4, fail=True), info, force=True)
    future = time.time() + 5
    os.utime(src, (future, future))              # the input changed after the interrupted attempt began
    run_steps(plan(4), info)
    assert discarded == [None, "3", "4", "4"]


def test_runner_plan_follows_the_workflow_order(tmp_path):
    from scprospatial.pipeline import build_steps
    from scprospatial.pipeline.samplesheet import Sample

    for name in ("c.h5ad", "r.h5ad", "s.csv"):
        (tmp_path / name).write_text("x")
    samples = [Sample("cite", "citeseq", (tmp_path / "c.h5ad",), None),
               Sample("q", "rna", (tmp_path / "r.h5ad",), None),
               Sample("tis", "spatial", (tmp_path / "s.csv",), None)]
    steps = build_steps(samples, tmp_path / "out", evaluate=True, epochs=2)
    names = [s.name for s in steps]
    assert names == ["prepare:cite", "prepare:q", "prepare:tis", "train:pretrain", "train:align", "train:translate",
                     "impute:q", "spatial-graph:tis", "map:tis:q", "spatial-stats:tis__q", "evaluate", "report"]
    by_name = {s.name: s for s in steps}
    model = tmp_path / "out" / "model"
    assert by_name["train:pretrain"].outputs == [model / "pretrain" / "model.pt"]
    assert model / "pretrain" / "model.pt" in by_name["train:align"].inputs
    assert by_name["train:translate"].outputs == [model / "model.pt"]
    assert by_name["evaluate"].inputs == [tmp_path / "out" / "prepared" / "cite.h5ad"]
    assert "evaluate" not in [s.name for s in build_steps(samples, tmp_path / "out")]


# ------------------------------------------------------------------ real cohorts


@pytest.mark.slow
@pytest.mark.realdata
def test_run_on_real_cohorts_writes_report(shared_data, tmp_path, cli):
    """MALT train + query, a PBMC cohort, CODEX and CyCIF through `scprospatial run` (2 epochs per stage)."""
    cite, spatial = shared_data / "citeseq", shared_data / "spatial"
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("id,kind,path,batch\n"
                     f"malt,citeseq,{cite / 'malt_10k_train_1000cells.h5ad'},malt\n"
                     f"pbmc10k,citeseq,{cite / 'pbmc_10k_protein_v3_200cells.h5ad'},pbmc10k\n"
                     f"malt_query,rna,{cite / 'malt_10k_query_1100cells_rna_only.h5ad'},malt\n"
                     f"codex,spatial,{spatial / 'codex_crc_schurch2020_reg009.csv'},\n"
                     f"cycif,spatial,{spatial / 'cycif_scimap_example.csv'},\n")
    out = tmp_path / "results"
    proc = cli("run", "--samplesheet", str(sheet), "--outdir", str(out), "--epochs", "2", "--seed", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("model/pretrain/model.pt", "model/align/model.pt", "model/model.pt", "model/metrics.json",
                "imputed/malt_query.imputed.h5ad", "spatial/codex.graph.h5ad", "spatial/cycif.graph.h5ad",
                "mapped/codex__malt_query.mapped.h5ad", "mapped/cycif__malt_query.mapped.h5ad",
                "stats/codex__malt_query/moran.csv", "stats/cycif__malt_query/moran.csv", "pipeline_info/trace.tsv"):
        assert (out / rel).exists(), rel
    imputed = ad.read_h5ad(out / "imputed" / "malt_query.imputed.h5ad")
    assert imputed.n_obs == 1100 and imputed.obsm[keys.PROTEIN_PREDICTED].notna().all().all()
    mapped = ad.read_h5ad(out / "mapped" / "codex__malt_query.mapped.h5ad")
    assert mapped.n_obs == 2434 and keys.MAPPING_CONFIDENCE in mapped.obs
    html = (out / "report" / "report.html").read_text()
    assert "Imaged cells with imputed proteomes" in html and "data:image/png;base64" in html
    assert "codex" in html and "cycif" in html and "malt_query" in html
