"""The shared set-up of the real-panel benchmarks (bench_ann, bench_impute): models of several training seeds and
the MALT RNA-only query that is mapped onto the CODEX and CyCIF tables."""
from __future__ import annotations

import argparse
import sys

from bench_mapping import DATA, SPATIAL, train_model

QUERY = DATA / "citeseq" / "malt_10k_query_1100cells_rna_only.h5ad"


def add_model_args(ap: argparse.ArgumentParser, seeds: str, tool: str) -> None:
    """--models (checkpoints, one per training seed, in seed order), --seeds (trained here otherwise), --panels,
    --k and --readme (rewrite `tool`'s section of benchmarks/README.md)."""
    ap.add_argument("--models", nargs="*", default=None, help="checkpoints, one per training seed")
    ap.add_argument("--seeds", default=seeds, help="training seeds when no --models are given (comma-separated)")
    ap.add_argument("--panels", nargs="+", choices=list(SPATIAL), default=list(SPATIAL))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--readme", action="store_true", help=f"rewrite the {tool} section of benchmarks/README.md")


def query_and_models(args, tool: str) -> tuple | None:
    """(the prepared MALT query, [(seed, model)]): --models loaded (seed: the checkpoint's, else its position),
    else one model trained here per --seeds seed; 2 threads. None (and a line saying why) without the data."""
    if not (DATA / SPATIAL["codex"]).is_file():
        print(f"{tool}: {DATA} is absent (real panels needed); nothing measured", file=sys.stderr)
        return None
    from scprospatial._settings import set_threads
    from scprospatial.io import load
    from scprospatial.model import ScProSpatial

    set_threads(2)
    rna = load(QUERY, kind="rna")
    if args.models:
        loaded = [ScProSpatial.load(p, device="cpu") for p in args.models]
        return rna, [(int(m.meta.get("seed", i)), m) for i, m in enumerate(loaded)]
    return rna, [(int(s), train_model(None, int(s))) for s in args.seeds.split(",")]
