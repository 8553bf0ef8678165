"""The atlas-scale benchmark's harness (benchmarks/bench_scale.py, benchmarks/scale/): measuring a step in
a fresh process, growth fits and projections, the step plan, the runner trace and the README section.
No scprospatial step is run here; the benchmark itself is `python benchmarks/bench_scale.py`."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from scale.measure import fit_growth, project, run_measured  # noqa: E402
from scale.report import END, START, write_readme  # noqa: E402
from scale.steps import STEPS, Ctx  # noqa: E402


def test_run_measured_sees_the_child_peak_memory_and_time(tmp_path):
    ballast = np.ones(60_000_000)       # 480 MB in this process: none of it may count as the child's
    small = run_measured([sys.executable, "-c", "pass"], tmp_path / "small.log")
    assert small["peak_rss_mb"] < 200, small
    del ballast
    code = "import numpy as np, time; a = np.ones(40_000_000); time.sleep(0.2); print(a.sum())"  # 320 MB
    big = run_measured([sys.executable, "-c", code], tmp_path / "big.log")
    assert big["peak_rss_mb"] - small["peak_rss_mb"] > 250          # the child's allocation, not the parent's
    assert big["seconds"] >= 0.2 and big["cpu_seconds"] > 0
    assert (tmp_path / "big.log").read_text().splitlines()[-1] == "40000000.0"


def test_run_measured_failure_names_the_log(tmp_path):
    with pytest.raises(RuntimeError, match="fail.log"):
        run_measured([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "fail.log")


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_fit_growth_recovers_power_laws(exponent):
    sizes = [1e4, 1e5, 1e6]
    fit = fit_growth(sizes, [3.0 * n ** exponent for n in sizes])
    assert fit["exponent"] == pytest.approx(exponent, abs=1e-6)
    assert fit["exponent_last"] == pytest.approx(exponent, abs=1e-6)
    assert fit_growth([1e4], [1.0]) is None


def test_projection_power_law_or_fixed_plus_linear():
    quadratic = {1e4: 1.0, 1e5: 100.0}
    assert project(quadratic, 1e6) == pytest.approx(1e4)
    fixed_plus_linear = {n: 20.0 + 1e-3 * n for n in (1e4, 1e5, 1e6)}   # sub-linear as a power law
    assert project(fixed_plus_linear, 1e7) == pytest.approx(20.0 + 1e4)
    assert project({1e4: 1.0}, 1e7) is None


def _ctx(tmp_path, n, **kw) -> Ctx:
    args = {"n": n, "data": tmp_path / "data", "work": tmp_path / "work", "model": tmp_path / "model.pt",
            "reference": tmp_path / "ref.h5ad", "proteins": ["CD3", "CD4"], "max_map_pairs": 1e10,
            "max_all_proteins_cells": 1e5}
    return Ctx(**{**args, **kw})


def test_step_plan_skips_quadratic_and_costly_steps(tmp_path):
    by_name = {s.name: s for s in STEPS}
    assert {"prepare_rna", "impute_300", "impute_all", "spatial_graph", "map_ref", "map_full", "spatial_stats",
            "run"} <= set(by_name)
    small, large = _ctx(tmp_path, 10**4), _ctx(tmp_path, 10**6)
    assert all(s.skip(small) is None for s in STEPS)
    skipped = {s.name for s in STEPS if s.skip(large)}
    assert skipped == {"map_full", "run", "impute_all"}        # N x N pairs, and the 10x costlier imputation
    cmd = [str(c) for c in by_name["impute_300"].command(small)]
    assert cmd[cmd.index("--proteins") + 1] == "CD3,CD4" and str(small.query) in cmd
    run = [str(c) for c in by_name["run"].command(small)]
    sheet = Path(run[run.index("--samplesheet") + 1]).read_text().splitlines()
    assert sheet[0].startswith("id,kind,path") and [r.split(",")[1] for r in sheet[1:]] == ["rna", "spatial"]


def test_runner_trace_sums_steps_by_kind(tmp_path):
    import bench_scale

    info = tmp_path / "pipeline_info"
    info.mkdir()
    (info / "trace.tsv").write_text("step\tstatus\tseconds\nprepare:query\tcompleted\t2.5\nprepare:spatial\tcompleted\t"
                                    "1.0\nimpute:query\tcompleted\t4.0\nmap:spatial:query\tcompleted\t3.0\n")
    assert bench_scale.runner_trace(tmp_path) == {"prepare:query": 2.5, "prepare:spatial": 1.0, "impute": 4.0,
                                                  "map": 3.0}


def test_readme_section_tables_and_bar(tmp_path):
    records = []
    for step in ("prepare_rna", "impute_300", "map_ref"):
        for n in (10**4, 10**5, 10**6):
            records.append({"step": step, "n": n, "seconds": 1e-4 * n, "cpu_seconds": 5e-5 * n,
                            "peak_rss_mb": 300 + 1e-3 * n})
    records.append({"step": "impute_300", "n": 10**7, "seconds": 50.0, "cpu_seconds": 9.0, "peak_rss_mb": 4096.0,
                    "partial": "3/2442 chunks"})     # stopped early: shown, never fitted or projected from
    records.append({"step": "run", "n": 10**4, "seconds": 5.0, "peak_rss_mb": 400.0,
                    "runner_steps_s": {"impute": 3.0, "map": 1.0, "report": 1.0}})
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{START}\nold\n{END}\n\nafter\n")
    parts = {"open_input": 1.0, "read": 2.0, "to_tensor": 1.0, "forward": 10.0, "write": 5.0, "other": 1.0}
    profile = {"device": "cpu", "gpu": None, "threads": 2, "torch": "2.x", "n": 1000, "n_proteins": 300,
               "impute_s": 20.0, "forward_mflop_per_cell": 10.0, "parts_s": parts}
    write_readme({"records": records, "machine": {"cores": 2}, "model": {"n_predictable": 2943},
                  "impute_profile": {"cpu_300": profile}}, readme)
    text = readme.read_text()
    assert "old" not in text and text.rstrip().endswith("after") and text.count(START) == 1
    row = next(line for line in text.splitlines() if line.startswith("| read + prepare"))
    assert "1.0 s (0.5 s CPU) · 0.30 GB" in row and "100 s (50.0 s CPU) · 1.27 GB" in row
    assert row.count("1.00 (1.00)") == 2                                   # wall and CPU time: linear
    impute = next(line for line in text.splitlines() if line.startswith("| impute 300"))
    assert "stopped after 50.0 s (9.0 s CPU), 3/2442 chunks · 4.00 GB so far" in impute
    assert impute.count("1.00 (1.00)") == 2                                # the partial run is not fitted
    assert text.splitlines()[[i for i, line in enumerate(text.splitlines()) if line.startswith("| step")][0]].count(
        "cells |") == 4                                                     # 10^4..10^7 columns
    bar = next(line for line in text.splitlines() if line.startswith("**Bar**"))
    assert "under 8 GB" in bar and "n^1.00" in bar and "no worse than linear" in bar
    assert "| impute | 3.0 s (60%) |" in text
    assert row.split("|")[-2].strip() == "500 s · 10.06 GB"                 # 10^7 cells: CPU time, memory
    assert "| cpu_300 (CPU, 2 threads, torch 2.x) | 1,000 | 300 | 20.0 s | 1.0 (5%) | 2.0 (10%) |" in text
    gpu = next(line for line in text.splitlines() if line.startswith("| 300 | 10.0 |"))
    # 10 ms forward + 10 ms host per cell on the CPU; 1 us forward at 10 TFLOP/s on the GPU
    assert gpu.rstrip(" |").split(" | ")[2:7] == ["10.00 ms", "0.0010 ms", "10.00 ms", "55.6 h", "27.8 h"]


def test_results_of_concurrent_runs_merge(tmp_path, monkeypatch):
    import bench_scale

    monkeypatch.setattr(bench_scale, "RESULTS", tmp_path / "scale.json")
    first, second = bench_scale.load_results(), bench_scale.load_results()   # two runs started together
    bench_scale.add_record(first, {"step": "prepare_rna", "n": 10, "seconds": 1.0})
    bench_scale.add_record(second, {"step": "prepare_rna", "n": 100, "seconds": 2.0})
    bench_scale.add_record(first, {"step": "prepare_rna", "n": 10, "seconds": 3.0})     # a re-measurement
    on_disk = bench_scale.load_results()["records"]
    assert sorted((r["n"], r["seconds"]) for r in on_disk) == [(10, 3.0), (100, 2.0)]
