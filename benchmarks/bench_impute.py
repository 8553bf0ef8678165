"""How `map` imputes the imaged cells' proteome: knn, panel regression or their blend (issue 15, item 6).

On the real imaging panels (CODEX, CyCIF) and the MALT RNA-only query, each development (validation) marker of
benchmarks/PROTOCOL.md is hidden in turn and `map_cells` imputes it with each `--impute` method, everything else
identical (same search, same weights): 'knn' (the mapped scRNA-seq cells' predictions), 'regression' (ridge from
the predicted panel to the predicted marker, fitted on the scRNA-seq cells, applied to the measured panel) and
'blend' (their equal mixture). Reported per panel and model seed: the median over hidden markers of the Pearson
between the measured marker and its imputation (supported / unsupported markers apart), and each method's gain
over 'knn' per (panel, seed) pair, mean ± standard error: PROTOCOL.md's rule (a default changes when the gain
exceeds twice its SE). `--split test` reports the test half instead: run once, after the default is chosen, and
logged in PROTOCOL.md.

    .venv/bin/python benchmarks/bench_impute.py --models M0.pt M1.pt M2.pt --readme
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _panel_models import add_model_args, query_and_models  # noqa: E402
from _readme import run_record, save_run  # noqa: E402
from bench_ann import pearson  # noqa: E402
from bench_mapping import DATA, SPATIAL, SUPPORTED, coding_rna, split_markers  # noqa: E402

RESULTS = HERE / "results"
START, END = "<!-- bench_impute:start -->", "<!-- bench_impute:end -->"
METHODS = ("knn", "regression", "blend")
MODELS = ("Models: `bench_mapping.train_model(None, s)` for s = 0, 1, 2 (MALT's 1,000 training cells, the package's "
          "defaults, 2 threads), saved and given with `--models` in that order.")


def run_panel(model, rna, name: str, split: str, k: int, seed: int) -> list[dict]:
    from scprospatial.io import load
    from scprospatial.spatial import map_cells
    from scprospatial.spatial._fuse import panel_markers

    spatial = load(DATA / SPATIAL[name], kind="spatial")
    markers = panel_markers(model, spatial)
    validation, test = split_markers(markers, 0)  # PROTOCOL.md: the seed-0 halves
    detected = coding_rna(model, rna, markers)["detected"]
    rows = []
    for m in validation if split == "validation" else test:
        masked = spatial.copy()
        masked.obsm["protein"] = spatial.obsm["protein"].drop(columns=[m])
        truth = spatial.obsm["protein"][m].to_numpy(np.float64)
        row = {"seed": seed, "panel": name, "marker": m, "supported": detected[m] >= SUPPORTED}
        for how in METHODS:
            sp, _ = map_cells(model, rna.copy(), masked, k=k, proteins=[m], seed=seed, threads=2, copy=True,
                              impute=how, backend="cpp")
            row[how] = pearson(sp.obsm["protein_predicted"][m].to_numpy(np.float64), truth)
        rows.append(row)
        print(f"  seed {seed} {name} {m}: " + ", ".join(f"{h} {row[h]:.3f}" for h in METHODS), file=sys.stderr,
              flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Medians per (panel, seed) and the gains over knn per pair (mean, SE, pairs above)."""
    pairs = sorted({(r["panel"], r["seed"]) for r in rows})
    med = {p: {h: statistics.median(r[h] for r in rows if (r["panel"], r["seed"]) == p) for h in METHODS}
           for p in pairs}
    out: dict = {"pairs": [{"panel": p[0], "seed": p[1], **med[p]} for p in pairs], "gain": {}}
    for h in METHODS[1:]:
        d = np.array([med[p][h] - med[p]["knn"] for p in pairs])
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        out["gain"][h] = {"mean": float(d.mean()), "se": se, "above": int((d > 0).sum()), "n": len(d)}
    for group, flag in (("supported", True), ("unsupported", False)):
        sel = [r for r in rows if r["supported"] == flag]
        out[group] = {h: (statistics.median(r[h] for r in sel) if sel else float("nan")) for h in METHODS}
        out[group]["n_rows"] = len(sel)
    return out


def readme_body(res: dict) -> str:
    s = res["summary"]
    lines = ["## How `map` imputes: knn, panel regression, blend (`bench_impute.py`)", "",
             f"{res['split'].capitalize()} markers of CODEX and CyCIF (benchmarks/PROTOCOL.md), each hidden in "
             "turn; the MALT query mapped with `map_cells` and the hidden marker imputed by each `--impute` method "
             "(same search and weights). Figures: median Pearson over the hidden markers per (panel, model seed); "
             "gain: the difference to `knn` per (panel, seed) pair, mean ± SE, pairs above. Written "
             f"{res['date']}.", "", MODELS, "", "```", res["command"], "```", "",
             "| panel | seed | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for p in s["pairs"]:
        lines.append(f"| {p['panel']} | {p['seed']} | " + " | ".join(f"{p[h]:.3f}" for h in METHODS) + " |")
    for group in ("supported", "unsupported"):
        g = s[group]
        lines.append(f"| {group} ({g['n_rows']} marker × seed rows) | all | "
                     + " | ".join(f"{g[h]:.3f}" for h in METHODS) + " |")
    lines.append("")
    for h, g in s["gain"].items():
        lines.append(f"- {h} minus knn: {g['mean']:+.3f} ± {g['se']:.3f} (SE), above on {g['above']} of {g['n']} "
                     "pairs.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap, seeds="0,1,2", tool="bench_impute")
    ap.add_argument("--split", choices=("validation", "test"), default="validation",
                    help="markers to report (test: once, after the default is chosen; log it in PROTOCOL.md)")
    args = ap.parse_args(argv)
    got = query_and_models(args, "bench_impute")
    if got is None:
        return 0
    rna, models = got
    rows = [r for seed, model in models for name in args.panels
            for r in run_panel(model, rna, name, args.split, args.k, seed)]
    res = run_record("bench_impute", argv, split=args.split, rows=rows, summary=summary(rows))
    tag = f"impute_{args.split}"
    save_run(RESULTS / f"{tag}.json", res, readme_body(res), START.replace("impute", tag), END.replace("impute", tag),
             args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
