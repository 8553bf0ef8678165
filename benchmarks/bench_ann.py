"""Approximate search in `map`: does faiss IVF change the imputation? (issue 16, item 1)

On the real imaging panels (CODEX, CyCIF) and the MALT RNA-only query, each development (validation) marker of
benchmarks/PROTOCOL.md is hidden in turn and the scRNA-seq cells are mapped with `map_cells` twice, identical in
everything but the top-k search: the exact C++ kernel ('cpp') and faiss IVF-Flat ('faiss-ivf', forced; `auto`
only chooses it for large maps) with `map`'s IVF parameters. Reported per panel and model: recall@k of the
neighbour sets against the exact search, and the median over hidden markers of the Pearson between the hidden
marker's measured values and its imputation (the mapping weights applied to the model's prediction of the marker
for the scRNA-seq cells: `map`'s own imputation of it), exact and approximate, with their difference. Test
markers are never read. Models: checkpoints given with --models (one per training seed), else trained here on
MALT's 1,000 training cells (seeds --seeds).

    .venv/bin/python benchmarks/bench_ann.py --seeds 0,1,2 --readme
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _panel_models import add_model_args, query_and_models  # noqa: E402
from _readme import run_record, save_run  # noqa: E402
from bench_mapping import DATA, SPATIAL, split_markers  # noqa: E402

RESULTS = HERE / "results" / "ann.json"
START, END = "<!-- bench_ann:start -->", "<!-- bench_ann:end -->"
BACKENDS = ("cpp", "faiss-ivf")
LIMIT = 0.005  # the issue's bar: |median Pearson change| at most this


def mapped(model, rna, spatial, marker: str, backend: str, k: int, seed: int):
    """One `map_cells` run imputing `marker`: the imaged cells' neighbour sets (imaged x scRNA-seq, the pattern of
    the scRNA-seq side's location distributions), the imputation of `marker` (the mapping weights applied to the
    model's prediction of it on the scRNA-seq cells) and what uns recorded."""
    from scprospatial.spatial import map_cells

    sp, r = map_cells(model, rna, spatial, k=k, proteins=[marker], backend=backend, seed=seed, threads=2,
                      copy=True, impute="knn")   # the search's effect alone (the regression does not search)
    imputed = sp.obsm["protein_predicted"][marker].to_numpy(np.float64)
    return r.obsm["mapped_cells"].T.tocsr(), imputed, dict(sp.uns["protein_predicted"])


def pearson(got: np.ndarray, truth: np.ndarray) -> float:
    """Pearson r; a constant imputation carries no information and scores 0 (as bench_mapping.score)."""
    return 0.0 if np.ptp(got) == 0 else float(np.corrcoef(got, truth)[0, 1])


def recall(exact, approx, k: int) -> float:
    """Mean share of each imaged cell's exact neighbours that the approximate search also found."""
    hits = [len(np.intersect1d(exact.indices[exact.indptr[i]:exact.indptr[i + 1]],
                               approx.indices[approx.indptr[i]:approx.indptr[i + 1]])) for i in range(exact.shape[0])]
    return float(np.mean(hits) / k)


def run_panel(model, rna, name: str, k: int, seed: int) -> dict:
    from scprospatial.io import load

    spatial = load(DATA / SPATIAL[name], kind="spatial")
    predictable = set(model.vocab.measured) | set(model.vocab.gene_links)
    markers = [p for p in spatial.obsm["protein"].columns if p in predictable and p in model.vocab.proteins]
    validation, _test = split_markers(markers, 0)  # PROTOCOL.md: the seed-0 validation half develops
    rows, info = [], {}
    for m in validation:
        masked = spatial.copy()
        masked.obsm["protein"] = spatial.obsm["protein"].drop(columns=[m])
        truth = spatial.obsm["protein"][m].to_numpy(np.float64)
        nbrs, got = {}, {}
        for b in BACKENDS:
            t = time.perf_counter()
            nbrs[b], got[b], info[b] = mapped(model, rna.copy(), masked, m, b, k, seed)
            info[b]["seconds"] = time.perf_counter() - t
        rows.append({"marker": m, "recall": recall(nbrs["cpp"], nbrs["faiss-ivf"], k),
                     **{b: pearson(got[b], truth) for b in BACKENDS}})
        print(f"  {name} {m}: recall {rows[-1]['recall']:.4f}, exact {rows[-1]['cpp']:.4f}, "
              f"ivf {rows[-1]['faiss-ivf']:.4f}", file=sys.stderr, flush=True)
    med = {b: statistics.median(r[b] for r in rows) for b in BACKENDS}
    ivf = {key: info["faiss-ivf"].get(key) for key in ("backend", "nlist", "nprobe", "n_train", "seed", "faiss")}
    return {"panel": name, "n_cells": int(spatial.n_obs), "n_validation_markers": len(validation),
            "recall_mean": float(np.mean([r["recall"] for r in rows])), "median_exact": med["cpp"],
            "median_ivf": med["faiss-ivf"], "median_change": med["faiss-ivf"] - med["cpp"],
            "max_abs_marker_change": float(max(abs(r["faiss-ivf"] - r["cpp"]) for r in rows)), "ivf": ivf,
            "rows": rows}


def readme_body(res: dict) -> str:
    lines = ["## Approximate search and accuracy (`bench_ann.py`)", "",
             "Each development (validation) marker hidden in turn, the MALT query mapped onto the panel with the "
             "exact C++ top-k and with faiss IVF-Flat (forced; `map`'s IVF parameters), everything else identical. "
             f"Bar: the median held-out Pearson moves by at most {LIMIT}. Written {res['date']}.", "",
             "```", res["command"], "```", "",
             "| panel | model seed | markers | recall@k | median r exact | median r IVF | change | max marker change "
             "| nlist / nprobe |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        lines.append(f"| {r['panel']} | {r['seed']} | {r['n_validation_markers']} | {r['recall_mean']:.4f} | "
                     f"{r['median_exact']:.4f} | {r['median_ivf']:.4f} | {r['median_change']:+.4f} | "
                     f"{r['max_abs_marker_change']:.4f} | {r['ivf']['nlist']} / {r['ivf']['nprobe']} |")
    worst = max(abs(r["median_change"]) for r in res["results"])
    lines += ["", f"Largest change of a median: {worst:.4f} ({'within' if worst <= LIMIT else 'beyond'} the "
              f"{LIMIT} bar). These references are small (1,100 scRNA-seq cells), where IVF with nprobe 32 scans a "
              "large share of the lists; recall at atlas scale is in the bench_topk section."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap, seeds="0", tool="bench_ann")
    args = ap.parse_args(argv)
    got = query_and_models(args, "bench_ann")
    if got is None:
        return 0
    rna, models = got
    results = []
    for seed, model in models:
        for name in args.panels:
            results.append({"seed": seed, **run_panel(model, rna, name, args.k, seed)})
    res = run_record("bench_ann", argv, results=results)
    save_run(RESULTS, res, readme_body(res), START, END, args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
