"""The benchmarks/README.md section of bench_scale.py, built from benchmarks/results/scale.json alone."""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _readme import replace_section  # noqa: E402

from .measure import fit_growth, project  # noqa: E402
from .steps import STEPS  # noqa: E402

START, END = "<!-- bench_scale:start -->", "<!-- bench_scale:end -->"
TARGET = 10**7
BAR_GB, BAR_STEPS = 8.0, ("prepare_rna", "impute_300")
GPU_TFLOPS = 10.0   # assumed sustained rate of the impute forward pass on one H100 (see gpu_lines)
PARTS = ("open_input", "read", "to_tensor", "forward", "write", "other")


def _by_step(records: list[dict], *, partial: bool = False) -> dict[str, dict[int, dict]]:
    """step -> {n: record}; runs stopped before the end ("partial") only when `partial`."""
    out: dict[str, dict[int, dict]] = {}
    for r in records:
        if partial or not r.get("partial"):
            out.setdefault(r["step"], {})[int(r["n"])] = r
    return out


def _seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s:.1f} s" if s < 100 else f"{s:,.0f} s"


def _gb(mb: float | None) -> str:
    return "–" if mb is None else f"{mb / 1024:.2f} GB"


def _exp(fit: dict | None) -> str:
    return "–" if fit is None else f"{fit['exponent']:.2f} ({fit['exponent_last']:.2f})"


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    cpu = f" ({_seconds(r['cpu_seconds'])} CPU)" if r.get("cpu_seconds") is not None else ""
    if r.get("partial"):
        return f"stopped after {_seconds(r['seconds'])}{cpu}, {r['partial']} · {_gb(r['peak_rss_mb'])} so far"
    return f"{_seconds(r['seconds'])}{cpu} · {_gb(r['peak_rss_mb'])}"


def step_table(by: dict, sizes: list[int], shown: dict) -> list[str]:
    """`by`: complete runs (fits, projections); `shown`: every run, partial ones too (table cells)."""
    head = " | ".join(f"{n:.0e} cells" for n in sizes)
    lines = [f"| step | {head} | wall-time exponent | CPU-time exponent | memory exponent | "
             "10^7 cells, projected (CPU time · memory) |",
             "|---|" + "---|" * (len(sizes) + 4)]
    labels = {s.name: s.label for s in STEPS}
    labels["simulate"] = "simulate the cohort (data generation, for scale)"
    for name in [s.name for s in STEPS] + ["simulate"]:
        rows = by.get(name, {})
        if not shown.get(name):
            continue
        t = {n: r["seconds"] for n, r in rows.items()}
        c = {n: r.get("cpu_seconds") for n, r in rows.items()}
        m = {n: r["peak_rss_mb"] for n, r in rows.items()}
        proj = f"{_seconds(project(c, TARGET))} · {_gb(project(m, TARGET))}" if len(rows) > 1 else "–"
        cells = " | ".join(_cell(shown[name].get(n)) for n in sizes)
        fits = " | ".join(_exp(fit_growth(list(v), list(v.values()))) for v in (t, c, m))
        lines.append(f"| {labels[name]} | {cells} | {fits} | {proj} |")
    return lines


def bar_lines(by: dict) -> list[str]:
    common = sorted(set.intersection(*(set(by.get(s, {})) for s in BAR_STEPS)))
    if not common:
        return []
    n = common[-1]
    secs = {k: sum(by[s][k]["seconds"] for s in BAR_STEPS) for k in common}
    cpu = {k: sum(by[s][k].get("cpu_seconds") or 0.0 for s in BAR_STEPS) for k in common}
    peak = max(by[s][n]["peak_rss_mb"] for s in BAR_STEPS)
    growth = fit_growth(common, [cpu[k] or secs[k] for k in common])
    mem_growth = fit_growth(common, [max(by[s][k]["peak_rss_mb"] for s in BAR_STEPS) for k in common])
    ok_mem = peak / 1024 < BAR_GB
    ok_growth = growth is not None and growth["exponent_last"] <= 1.05
    return [f"**Bar** (an RNA-only query of {n:,} cells, prepare + impute 300 proteins): {_seconds(secs[n])} wall "
            f"({_seconds(cpu[n])} CPU) in all, peak memory {_gb(peak)} ({'under' if ok_mem else 'OVER'} "
            f"{BAR_GB:.0f} GB); CPU-time growth between the two "
            f"largest sizes n^{growth['exponent_last'] if growth else float('nan'):.2f}, peak-memory growth "
            f"n^{mem_growth['exponent_last'] if mem_growth else float('nan'):.2f} "
            f"({'no worse than linear' if ok_growth else 'WORSE than linear'}; 1.05 allows for timing noise)."]


def runner_lines(by: dict) -> list[str]:
    runs = by.get("run", {})
    if not runs:
        return []
    kinds = sorted({k for r in runs.values() for k in r.get("runner_steps_s", {})})
    sizes = sorted(runs)
    lines = ["", "Where the runner's time goes (seconds per step from its `pipeline_info/trace.tsv`, share of "
             "the run):", "", "| runner step | " + " | ".join(f"{n:.0e} cells" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for k in kinds:
        cells = []
        for n in sizes:
            steps = runs[n].get("runner_steps_s", {})
            total = sum(steps.values()) or 1.0
            cells.append(f"{_seconds(steps.get(k, 0.0))} ({100 * steps.get(k, 0.0) / total:.0f}%)")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


SAMPLE_STEPS = ("prepare_spatial", "spatial_graph", "map_full", "spatial_stats")  # one task per imaged sample
QUERY_STEPS = ("prepare_rna", "impute_300")                                      # once per query


def cluster_lines(by: dict, n: int = 10**6, samples: int = 10) -> list[str]:
    """10^7 imaged cells as `samples` slides of n cells through the pipeline's per-sample fan-out
    (subworkflows/local/spatial_mapping: graph, map and statistics are one task per imaged sample)."""
    if not all(n in by.get(s, {}) for s in SAMPLE_STEPS + QUERY_STEPS):
        return []
    query = sum(by[s][n]["seconds"] for s in QUERY_STEPS)
    per = sum(by[s][n]["seconds"] for s in SAMPLE_STEPS)
    peak = max(by[s][n]["peak_rss_mb"] for s in SAMPLE_STEPS + QUERY_STEPS)
    return ["", f"**10^{round(math.log10(samples * n))} imaged cells through the pipeline**, projected from the "
            f"10^{round(math.log10(n))} runs above: "
            f"{samples} imaged samples of {n:,} cells, each mapped onto one {n:,}-cell query (the pipeline runs "
            "graph, map and statistics as one task per imaged sample; the query is prepared and imputed once). "
            f"On one machine like this, one task at a time: {_seconds(query + samples * per)}; on a cluster with "
            f"{samples} such nodes: {_seconds(query + per)} wall (the query's steps, then one sample's), "
            f"{_gb(peak)} peak per task. Neither counts scheduling, file staging or training."]


def profile_lines(profiles: dict) -> list[str]:
    if not profiles:
        return []
    lines = ["", "Inside impute (one `impute_file` call under cProfile; seconds and share of the call; the "
             "checkpoint is loaded beforehand):", "",
             "| run | cells | proteins | total | " + " | ".join(PARTS) + " |",
             "|---|---|---|---|" + "---|" * len(PARTS)]
    for key, p in sorted(profiles.items()):
        where = p["gpu"] or f"CPU, {p['threads']} threads"
        total = p["impute_s"]
        parts = " | ".join(f"{p['parts_s'][k]:.1f} ({100 * p['parts_s'][k] / total:.0f}%)" for k in PARTS)
        lines.append(f"| {key} ({where}, torch {p['torch']}) | {p['n']:,} | {p['n_proteins']} | {total:.1f} s | "
                     f"{parts} |")
    return lines


def gpu_lines(profiles: dict, tflops: float = GPU_TFLOPS) -> list[str]:
    """One GPU, projected (no GPU was measured): the CPU-side parts per cell as measured here, plus the
    forward pass at `tflops` sustained."""
    lines = []
    for _key, p in sorted(profiles.items()):
        if p.get("device") != "cpu" or not p.get("forward_mflop_per_cell"):
            continue
        n, parts = p["n"], p["parts_s"]
        host = sum(v for k, v in parts.items() if k != "forward") / n
        gpu = p["forward_mflop_per_cell"] * 1e6 / (tflops * 1e12)
        cpu = parts["forward"] / n
        lines.append(f"| {p['n_proteins']} | {p['forward_mflop_per_cell']:.1f} | {1e3 * cpu:.2f} ms | "
                     f"{1e3 * gpu:.4f} ms | {1e3 * host:.2f} ms | {_seconds(TARGET * (host + cpu))} | "
                     f"{_seconds(TARGET * (host + gpu))} |")
    if not lines:
        return []
    return ["", f"Impute on one GPU, projected (no GPU was lent to this task, so none was measured): the forward "
            f"pass at {tflops:g} TFLOP/s sustained (a fraction of an H100's dense FP32 rate; the head is small "
            "matrix products), the rest (reading, gene mapping, writing) per cell as measured on this CPU:", "",
            "| proteins | forward MFLOP / cell | forward / cell, CPU | forward / cell, GPU | read + write / cell | "
            "10^7 cells, CPU | 10^7 cells, one GPU |", "|---|---|---|---|---|---|---|"] + lines


def write_readme(results: dict, readme: Path | None = None) -> None:
    """Replace this benchmark's section of benchmarks/README.md (or of `readme`)."""
    by = _by_step(results.get("records", []))
    shown = _by_step(results.get("records", []), partial=True)
    sizes = sorted({n for rows in shown.values() for n in rows})
    mach, model = results.get("machine", {}), results.get("model", {})
    lines = [START, "## Atlas scale", "",
             "Command: `python benchmarks/bench_scale.py --sizes 1e4,1e5,1e6` (runs of some sizes or steps merge "
             "into `benchmarks/results/scale.json`; `--readme-only` rebuilds this section; the runs behind these "
             f"figures: {'; '.join(f'`{c}`' for c in results.get('commands', [])) or 'none'}). Machine: "
             f"{mach.get('cores', '?')} cores, {mach.get('memory_gib', '?')} GiB, Python {mach.get('python', '?')}, "
             f"torch {mach.get('torch', '?')}.",
             "",
             "Each cell: wall time (CPU time: user + system seconds of all the step's threads, which contention "
             "inflates far less than wall time) · peak RSS of the step's own fresh process (`wait4` rusage). "
             "Inputs: simulated "
             "cohorts (`scprospatial.simulate`, seed 0) of N RNA-only query cells (3,000 genes, about 250 detected "
             "per cell) and N imaged cells (CODEX layout); the model is trained once (2,000 simulated CITE-seq cells, "
             f"5 epochs per stage): {model.get('n_genes', '?')} genes, {model.get('n_measured', '?')} proteins "
             f"measured in training, {model.get('n_predictable', '?')} predictable (`--all-proteins`; every protein "
             "of the shipped vocabulary with a coding gene among the query's genes). Exponents: least-squares slope "
             "of log(value) on log(N), in brackets between the two largest sizes (1 = linear); 10^7 is projected from "
             "the two largest sizes, from CPU time (power law when growing at least linearly, else fixed + linear "
             "part). Times were taken while other jobs shared the 2 cores (load average in `scale.json`): "
             "provisional.", ""]
    lines += step_table(by, sizes, shown) + [""] + bar_lines(by) + runner_lines(by) + cluster_lines(by)
    lines += profile_lines(results.get("impute_profile", {})) + gpu_lines(results.get("impute_profile", {}))
    notes = results.get("notes", [])
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    lines.append(END)
    replace_section("\n".join(lines), START, END, **({"readme": readme} if readme else {}))
