#!/usr/bin/env python
"""Seed ensembles and per-protein reliability of the translator, on development data only (benchmarks/PROTOCOL.md).

Two phases, so the expensive one (training) runs once and the cheap one (scoring) can be rerun:

    python benchmarks/bench_reliability.py train --runs .scratch/reliability --part ensemble   # 9 seeds
    python benchmarks/bench_reliability.py train --runs .scratch/reliability --part lpo        # 3 protein folds
    python benchmarks/bench_reliability.py score --runs .scratch/reliability                   # results/reliability.json

Every model is trained on the training cells of MALT's random split with seed 0 (the same cells as
leave-protein-out with seed 0), on the genes MALT shares with PBMC 10k, so one model is scored within the
cohort (MALT's held-out 20%) and across cohorts (PBMC 10k, development). PBMC 5k (test) is never read.

- ensemble: models with seeds 0..8. Singles are seeds 0, 3, 6; ensembles of K are seeds {0..K-1}, {3..3+K-1},
  {6..6+K-1}; each ensemble is compared with its own first member (paired differences, mean and SE over the 3).
- lpo: MALT's 14 proteins in 3 folds (a seeded permutation, seed 0); one model per fold with that fold's proteins
  hidden from training; hidden proteins are predicted through their gene link for MALT's held-out cells and for
  PBMC 10k. (Folds instead of one model per protein: 3 trainings instead of 14 on a shared 2-core machine.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "citeseq"
MALT, PBMC10K = DATA / "malt_10k_train_1000cells.h5ad", DATA / "pbmc_10k_protein_v3_200cells.h5ad"
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
ENSEMBLE_SEEDS = tuple(range(9))
GROUP_STARTS = (0, 3, 6)
N_FOLDS = 3


def cohorts():
    from scprospatial.evaluate._files import load_cohort
    from scprospatial.evaluate.splits import random_splits

    for p in (MALT, PBMC10K):
        if not p.is_file():
            sys.exit(f"bench_reliability: data not found: {p} (needs ../shared/data)")
    malt, pbmc = load_cohort(MALT), load_cohort(PBMC10K)
    genes = malt.var_names.intersection(pbmc.var_names, sort=False)
    split = random_splits(malt, n_seeds=1, seed=0)[0]
    return malt, pbmc, genes, split


def folds(panel: list[str]) -> list[list[str]]:
    order = np.random.default_rng(0).permutation(len(panel))
    return [[panel[i] for i in part] for part in np.array_split(order, N_FOLDS)]


def train(args) -> None:
    from scprospatial.evaluate._model import ScProSpatialMethod
    from scprospatial.evaluate._run import _training_view

    malt, pbmc, genes, split = cohorts()
    panel = [str(c) for c in malt.obsm["protein"].columns]
    test_malt, test_pbmc = malt[split.test, genes].copy(), pbmc[:, genes].copy()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    jobs = ([(f"seed{s}", s, ()) for s in ENSEMBLE_SEEDS] if args.part == "ensemble"
            else [(f"fold{i}", 0, tuple(f)) for i, f in enumerate(folds(panel))])
    if args.only:
        jobs = [j for name in args.only for j in jobs if j[0] == name]
    for name, seed, hidden in jobs:
        out = runs / f"{name}.npz"
        if out.is_file():
            continue
        t0 = time.perf_counter()
        method = ScProSpatialMethod(seed=seed)
        method.fit(_training_view(malt, split.train, hidden, genes), _training_view(malt, split.val, hidden, genes),
                   extra_proteins=hidden)
        fit_s = time.perf_counter() - t0
        method.model.save(runs / f"{name}.pt")
        wanted = list(hidden) or panel
        arrays = {"fit_s": fit_s, "proteins": np.array(wanted), "hidden": np.array(hidden)}
        for tag, test in (("malt", test_malt), ("pbmc10k", test_pbmc)):
            mean, sd = method.predict_with_sd(test, wanted)
            arrays[f"{tag}_mean"], arrays[f"{tag}_sd"] = mean[wanted].to_numpy(), sd[wanted].to_numpy()
        np.savez(out, **arrays)
        print(f"{name}: trained in {fit_s:.0f} s", file=sys.stderr, flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=("train", "score"))
    p.add_argument("--runs", default=str(ROOT / ".scratch" / "reliability"), help="folder of the trained models")
    p.add_argument("--part", choices=("ensemble", "lpo"), default="ensemble")
    p.add_argument("--only", type=lambda t: t.split(","), default=None,
                   help="train only these runs, in this order (e.g. seed8,seed7: a second process)")
    args = p.parse_args(argv)
    from scprospatial._logging import configure

    configure(-1)
    import torch

    torch.set_num_threads(1)
    if args.phase == "train":
        train(args)
    else:
        score(args)


def score(args) -> None:  # filled in below (kept apart so training can start first)
    raise NotImplementedError


if __name__ == "__main__":
    main()
