"""Every Nextflow module's `script:` command, executed exactly as written in its main.nf.

Nextflow cannot run on the development machines, so this is the stand-in for a stub run: the test
reads each module's script block from the .nf file, substitutes the Groovy expressions with the values
Nextflow would give them, runs it with bash in a per-task work folder (inputs staged by name, as
Nextflow does), chains the modules in the workflow's order, and checks the declared outputs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

from scprospatial import keys

REPO = Path(__file__).resolve().parents[1]
MODULES = REPO / "modules" / "local"


def script_block(module: str) -> str:
    """The triple-quoted command of the module's script: section, as written."""
    text = (MODULES / module / "main.nf").read_text()
    script = text.split("script:")[1].split("stub:")[0]
    return script.split('"""')[1]


def render(module: str, values: dict[str, object]) -> str:
    """Substitute ${expr} (each expression must be known: a new one makes the test fail) and unescape."""
    template = script_block(module)

    def sub(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr not in values:
            raise AssertionError(f"{module}: no test value for the Groovy expression ${{{expr}}}")
        return str(values[expr])

    command = re.sub(r"(?<!\\)\$\{([^}]*)\}", sub, template)
    return command.replace("\\$", "$").replace('\\\\"', '\\"')


def run_task(module: str, workdir: Path, staged: list[Path | tuple[Path, str]], values: dict[str, object],
             process: str | None = None) -> Path:
    """Stage inputs by name (or as (path, 'folder/')) into a fresh work folder and run the script with bash.

    process: the name the module runs under when the workflow includes it under an alias (PRETRAIN, ...)."""
    workdir.mkdir(parents=True)
    for item in staged:
        src, folder = item if isinstance(item, tuple) else (item, "")
        (workdir / folder).mkdir(parents=True, exist_ok=True)
        os.symlink(src, workdir / folder / src.name)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(REPO / "bin"), str(Path(sys.executable).parent), env["PATH"]])
    process = process or module.upper()
    command = render(module, {"task.cpus": 1, "task.process": process, **values})
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{module} failed:\n{command}\n{proc.stderr[-3000:]}"
    versions = (workdir / "versions.yml").read_text()
    assert versions.startswith(f'"{process}": {{scprospatial: ') and "stub" not in versions
    return workdir


def test_every_module_is_exercised():
    assert {p.name for p in MODULES.iterdir() if p.is_dir()} == {"prepare", "train", "impute", "spatial_graph", "map",
                                                                 "spatial_stats", "evaluate", "report"}


def _train_stages(tmp_path: Path, cohorts: list[Path], train_args: str) -> Path:
    """TRAIN as PRETRAIN -> ALIGN -> TRANSLATE (subworkflows/local/train_model), each from the previous model.pt."""
    previous = None
    for stage in ("pretrain", "align", "translate"):
        staged = [(p, "cohorts") for p in cohorts] + ([previous] if previous else [])
        wd = run_task("train", tmp_path / stage, staged,
                      {"cohorts": " ".join(f"cohorts/{p.name}" for p in cohorts), "stage": stage,
                       "init": f"--init-from {previous.name}" if previous else "", "args": train_args,
                       "task.accelerator ? 'cuda' : 'cpu'": "cpu"}, process=stage.upper())
        previous = wd / stage / "model.pt"
        assert previous.exists() and (wd / stage / "metrics.json").exists()
        assert (wd / stage / "training_curves.csv").exists()
    return previous


def _evaluate(tmp_path: Path, citeseq: list[Path]) -> list[Path]:
    wd = run_task("evaluate", tmp_path / "evaluate", [(p, "cohorts") for p in citeseq],
                  {"cohorts": " ".join(f"cohorts/{p.name}" for p in citeseq),
                   "args": "--n-seeds 1 --methods mean,scprospatial --epochs 2 --seed 0",
                   "task.accelerator ? 'cuda' : 'cpu'": "cpu"})
    summary = pd.read_csv(wd / "evaluate" / "summary.csv")
    assert set(summary["method"]) == {"mean", "scprospatial"}
    return sorted((wd / "evaluate").iterdir())


def _chain(tmp_path: Path, rows: list[tuple[str, str, list[Path], str]], train_args: str) -> dict:
    """PREPARE each row -> PRETRAIN/ALIGN/TRANSLATE on citeseq+rna -> IMPUTE each rna row -> SPATIAL_GRAPH,
    MAP, SPATIAL_STATS -> EVALUATE on the citeseq rows -> REPORT, as workflows/scprospatial.nf orders them."""
    prepared = {}
    for sample_id, kind, files, overrides in rows:
        files_arg = ",".join(f.name for f in files)
        wd = run_task("prepare", tmp_path / f"prepare_{sample_id}", files,
                      {"files": files_arg, "meta.kind": kind, "prefix": sample_id, "overrides": overrides,
                       "args": ""})
        out = wd / f"{sample_id}.h5ad"
        assert out.exists()
        prepared[sample_id] = (kind, out)

    # citeseq rows before rna rows, in samplesheet order (filesInSheetOrder in the workflow)
    cohorts = [p for k, p in prepared.values() if k == "citeseq"] + [p for k, p in prepared.values() if k == "rna"]
    model = _train_stages(tmp_path, cohorts, train_args)

    results = {}
    for sample_id, (kind, path) in prepared.items():
        if kind == "rna":
            wd = run_task("impute", tmp_path / f"impute_{sample_id}", [path, model],
                          {"rna": path.name, "model": model.name, "prefix": sample_id, "args": "",
                           "task.accelerator ? 'cuda' : 'cpu'": "cpu"})
            results[sample_id] = wd / f"{sample_id}.imputed.h5ad"
        elif kind == "spatial":
            wd = run_task("spatial_graph", tmp_path / f"graph_{sample_id}", [path],
                          {"spatial": path.name, "prefix": sample_id, "args": "--method knn --k 10"})
            results[sample_id] = wd / f"{sample_id}.graph.h5ad"

    mapped = {}
    for sid, graph in [(k, v) for k, v in results.items() if v.name.endswith(".graph.h5ad")]:
        for rid, imputed in [(k, v) for k, v in results.items() if v.name.endswith(".imputed.h5ad")]:
            rna = prepared[rid][1]
            wd = run_task("map", tmp_path / f"map_{sid}_{rid}", [graph, rna, model],
                          {"meta.id": sid, "rna_meta.id": rid, "prefix": f"{sid}__{rid}", "model": model.name,
                           "rna": rna.name, "spatial": graph.name, "args": "--k 10 --seed 0",
                           "task.accelerator ? 'cuda' : 'cpu'": "cpu"})
            mapped[f"{sid}__{rid}"] = wd / f"{sid}__{rid}.mapped.h5ad"
            assert (wd / f"{sid}__{rid}.mapped.rna.h5ad").exists()
    results.update(mapped)

    stats_dirs = []
    for name, path in mapped.items():
        wd = run_task("spatial_stats", tmp_path / f"stats_{name}", [path],
                      {"h5ad": path.name, "prefix": name, "task.ext.seed ?: 0": 0, "args": "--n-perms 100"})
        assert (wd / name / "moran.csv").exists() and list((wd / name).glob("*.stats.h5ad"))
        stats_dirs.append(wd / name)

    evaluation = _evaluate(tmp_path, [p for k, p in prepared.values() if k == "citeseq"])

    model_files = [model, *sorted((model.parent).glob("*.json")), *sorted(model.parent.glob("*.csv"))]
    staged = ([(p, "prepared") for _, p in prepared.values()] + [(p, "model") for p in model_files]
              + [(p, {"imputed": "imputed", "graph": "spatial", "mapped": "mapped"}[p.name.split(".")[-2]])
                 for p in results.values()] + [(d, "stats") for d in stats_dirs]
              + [(p, "evaluate") for p in evaluation])
    wd = run_task("report", tmp_path / "report", staged, {"args": ""})
    html = (wd / "report" / "report.html").read_text()
    assert "Imputed proteins" in html and "Spatial samples" in html and "Training curves" in html
    assert "Imaged cells with imputed proteomes" in html and "Spatial statistics" in html
    return results


def _check_results(results: dict) -> None:
    for path in results.values():
        a = ad.read_h5ad(path)
        if keys.MAPPING_CONFIDENCE in a.obs:
            assert a.obsm[keys.PROTEIN_PREDICTED].notna().all().all()
        elif keys.SPATIAL_CONNECTIVITIES in a.obsp:
            assert a.obsp[keys.SPATIAL_CONNECTIVITIES].sum(axis=1).min() == 10
        else:
            pred = a.obsm[keys.PROTEIN_PREDICTED]
            assert pred.shape[0] == a.n_obs and pred.shape[1] > 0 and pred.notna().all().all()


@pytest.mark.slow
def test_modules_in_workflow_order_on_simulated_cohort(tmp_path):
    from scprospatial.simulate import simulate

    sim = simulate(tmp_path / "sim", n_cells=300, seed=1)
    rows = [("citeseq", "citeseq", [sim["citeseq"]], "--batch 'sim'"), ("query", "rna", [sim["rna"]], ""),
            ("tissue", "spatial", [sim["spatial"]], "")]
    results = _chain(tmp_path / "work", rows, "--seed 0 --epochs 2")
    assert set(results) == {"query", "tissue", "tissue__query"}
    _check_results(results)


@pytest.mark.slow
@pytest.mark.realdata
def test_modules_in_workflow_order_on_real_data(tmp_path, shared_data):
    cite = shared_data / "citeseq"
    rows = [("malt", "citeseq", [cite / "malt_10k_train_1000cells.h5ad"], "--batch 'malt'"),
            ("malt_query", "rna", [cite / "malt_10k_query_1100cells_rna_only.h5ad"], "--batch 'malt'"),
            ("codex", "spatial", [shared_data / "spatial" / "codex_crc_schurch2020_reg009.csv"],
             "--x-col 'X' --y-col 'Y'")]
    # one imaged sample keeps this test short (each task starts a Python); the runner test on real cohorts
    # (test_pipeline.py) maps onto CODEX and CyCIF
    results = _chain(tmp_path / "work", rows, "--seed 0 --epochs 2")
    assert set(results) == {"malt_query", "codex", "codex__malt_query"}
    _check_results(results)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to run module scripts")
def test_render_rejects_unknown_expressions():
    with pytest.raises(AssertionError, match="no test value"):
        render("prepare", {})
