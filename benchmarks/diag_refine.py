"""Issue 15 item 6: MaxFuse-style iterative refinement seeded by the predicted panel, on development markers.

MaxFuse (tutorial settings, benchmarks/peers/run_maxfuse.py) matches the cells on shared features, then refines
the matching iteratively on all features (CCA of the RNA's most variable genes and the whole imaged panel).
Seeded by the model's predicted panel (its shared features are the model's prediction of each linked marker from
the cell's RNA: bench_mapping's `maxfuse (pred)`), it is `map`'s score followed by refinement. Here, on the
VALIDATION markers of each panel (development, benchmarks/PROTOCOL.md) and the models of 3 training seeds, each
marker is hidden, both methods map, and the hidden marker is imputed the same way for both (mapping weights x the
model's prediction of it on the scRNA-seq cells); paired per (panel, seed) against `map`'s default with the same
model. Beside them `map --impute regression` and `blend` (spatial/_regress.py: a ridge from the predicted panel to
the hidden marker's prediction, fitted on the scRNA-seq cells, applied to the measured panel; blend = the mean of
it and the default's kNN imputation). Then each method's imputation averaged over the 3 models (an ensemble over
training seeds).

    .venv/bin/python benchmarks/diag_refine.py --models M0.pt M1.pt M2.pt --peer-cache DIR

Writes benchmarks/results/mapping_refine.json and rebuilds its README section.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _mapping_peers import run_peer  # noqa: E402
from _readme import put_section  # noqa: E402
from bench_mapping import DATA, RESULTS, SPATIAL, SUPPORTED, coding_rna, default_weights, hide, imputation  # noqa: E402
from diag_mapping import pearson  # noqa: E402

OUT = RESULTS / "mapping_refine.json"
METHODS = ("map default", "panel regression", "blend", "MaxFuse refinement (pred)")
DEFAULT, REFINE = METHODS[0], METHODS[-1]


def regression(model, spatial, hidden: str, pred) -> np.ndarray:
    """`map --impute regression` for the hidden marker: a ridge from the predicted panel (the other markers) to its
    prediction on the scRNA-seq cells, applied to the z-scored measured panel (spatial/_regress.py)."""
    from scprospatial.spatial._fuse import panel_markers, zscore_columns
    from scprospatial.spatial._regress import fit_panel_regression

    rest = panel_markers(model, hide(spatial, hidden))
    reg = fit_panel_regression(pred[rest].to_numpy(np.float32), pred[[hidden]].to_numpy(np.float32))
    return reg.predict(zscore_columns(spatial.obsm["protein"][rest].to_numpy(np.float64)))[:, 0].astype(np.float64)


def run_panel(name: str, models: list, rna, args) -> dict:
    from scprospatial.io import load
    from scprospatial.spatial._mapping import _temperature

    spatial = load(DATA / SPATIAL[name], kind="spatial")
    stored = json.loads((RESULTS / f"mapping_{name}.json").read_text())
    val = list(stored["validation"])
    truth = spatial.obsm["protein"]
    rows, imputed = [], {}
    for seed, model in enumerate(models):
        predictable = set(model.vocab.measured) | set(model.vocab.gene_links)
        markers = [p for p in truth.columns if p in predictable and p in model.vocab.proteins]
        pred = model.predict(rna, proteins=markers).obsm["protein_predicted"]
        detected = coding_rna(model, rna, markers)["detected"]
        remb = np.ascontiguousarray(model.embed_rna(rna))
        args.tau = _temperature(model, None)
        t0 = time.time()
        peer = run_peer("maxfuse", model, rna, spatial, markers, val, Path(args.peer_cache) / name / f"seed{seed}",
                        pred=pred)
        if "error" in peer:
            sys.exit(f"{name} seed {seed}: MaxFuse failed: {peer['error']}")
        print(f"{name} seed {seed}: MaxFuse {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        for m in val:
            t, values = truth[m].to_numpy(np.float64), pred[m].to_numpy(np.float64)
            knn = imputation(default_weights(model, spatial, m, remb, pred, args), values)
            reg = regression(model, spatial, m, pred)
            got = {DEFAULT: knn, "panel regression": reg, "blend": 0.5 * (knn + reg),
                   REFINE: imputation(peer[m], values)}
            rows.append({"marker": m, "seed": seed, "model_id": model.meta.get("model_id"),
                         "supported": detected.get(m, 0.0) >= SUPPORTED,
                         **{k: pearson(v, t) for k, v in got.items()}})
            for k, v in got.items():
                imputed.setdefault(k, {}).setdefault(m, []).append(v)
    ensemble = [{"marker": m, **{k: pearson(np.mean(imputed[k][m], 0), truth[m].to_numpy(np.float64))
                                 for k in METHODS}} for m in val]   # each method averaged over the seeds' models
    return {"validation": val, "rows": rows, "ensemble": ensemble}


def summary(record: dict) -> list[str]:
    """Median Pearson per (panel, seed), the paired difference, and the seed ensembles."""
    methods = [k for k in METHODS if all(k in r for d in record["panels"].values() for r in d["rows"])]
    lines = ["| panel | seed | markers | " + " | ".join(methods) + " |", "|---" * (3 + len(methods)) + "|"]
    deltas: dict = {k: [] for k in methods[1:]}
    for name, d in record["panels"].items():
        for seed in sorted({r["seed"] for r in d["rows"]}):
            rows = [r for r in d["rows"] if r["seed"] == seed]
            med = {k: float(np.median([r[k] for r in rows])) for k in methods}
            for k in deltas:
                deltas[k].append(med[k] - med[DEFAULT])
            lines.append(f"| {name} | {seed} | {len(rows)} | " + " | ".join(f"{med[k]:.3f}" for k in methods) + " |")
        ens = {k: float(np.median([r[k] for r in d["ensemble"]])) for k in methods}
        lines.append(f"| {name} | ensemble of the 3 | {len(d['ensemble'])} | "
                     + " | ".join(f"{ens[k]:.3f}" for k in methods) + " |")
    record["delta"] = {}
    lines.append("")
    for k, v in deltas.items():
        arr = np.asarray(v)
        se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else float("nan")
        record["delta"][k] = {"mean": float(arr.mean()), "se": se, "above": int((arr > 0).sum()), "pairs": len(arr)}
        lines.append(f"- {k} minus map's default, per (panel, seed) pair: {arr.mean():+.3f} ± {se:.3f} (SE), above on "
                     f"{int((arr > 0).sum())}/{len(arr)}.")
    return lines


def write_readme(record: dict) -> None:
    text = ["## Refinement seeded by the predicted panel (`diag_refine.py`, issue 15 item 6)", "",
            f"Command: `{record['command']}` ({record['date']}); models {', '.join(record['model_ids'])} "
            "(MALT, seeds 0-2); MaxFuse seeded by each model's predicted panel; validation markers only; median "
            "Pearson of the held-out marker over the imaged cells.", "", *summary(record)]
    put_section("\n".join(text), "<!-- diag_refine:start -->", "<!-- diag_refine:end -->")


def main(argv=None) -> None:
    from scprospatial._settings import set_threads
    from scprospatial.io import load
    from scprospatial.model import ScProSpatial

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="checkpoints of models trained from different seeds")
    p.add_argument("--peer-cache", help="folder keeping MaxFuse's fits (a rerun fits only what is missing)")
    p.add_argument("--panels", nargs="+", choices=list(SPATIAL), default=list(SPATIAL))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--readme-only", action="store_true", help="rebuild the README section from the JSON")
    args = p.parse_args(argv)
    if args.readme_only:
        write_readme(json.loads(OUT.read_text()))
        return
    if not args.models or not args.peer_cache:
        p.error("--models and --peer-cache are needed (or --readme-only)")
    set_threads(args.threads)
    args.k, args.seed = 10, 0
    models = [ScProSpatial.load(m, device="cpu") for m in args.models]
    rna = load(DATA / "citeseq" / "malt_10k_query_1100cells_rna_only.h5ad", kind="rna")
    record = {"command": " ".join(["benchmarks/diag_refine.py", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "model_ids": [m.meta.get("model_id") for m in models],
              "panels": {name: run_panel(name, models, rna, args) for name in args.panels}}
    print("\n".join(summary(record)))
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    write_readme(record)


if __name__ == "__main__":
    main()
