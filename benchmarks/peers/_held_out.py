"""What the mapping peers' runners share (run in benchmarks/.venv-peers): their command line, the held-out marker
loop with a per-marker cache, and turning a cell-to-cell plan into each imaged cell's top-k weights.

A runner reads IN.npz (written by bench_mapping.py: rna_shared, protein, markers, held_out, ...) and writes
OUTDIR/<i>.npz per held-out marker i ('rna', 'cell', 'weight', 'marker', 'seconds' and the runner's extras);
markers whose file exists are skipped, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FULL_PANEL = "__full_panel__"


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    return p


def top_k(plan: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """plan: scRNA-seq cells x imaged cells. Each imaged cell's k largest entries, renormalised."""
    k = min(k, plan.shape[0])
    idx = np.argpartition(-plan, k - 1, axis=0)[:k]                  # k x imaged cells
    w = np.take_along_axis(plan, idx, axis=0)
    w = w / np.maximum(w.sum(0, keepdims=True), 1e-300)
    cell = np.broadcast_to(np.arange(plan.shape[1]), idx.shape)
    return idx.T.ravel(), cell.T.ravel(), w.T.ravel()


def each_held_out(d, dst: str, k: int, name: str,
                  fit: Callable[[list[int]], tuple[np.ndarray, dict]]) -> None:
    """For every held-out marker not yet cached: fit(kept marker columns) -> (plan, extras), keep the top-k."""
    markers = [str(m) for m in d["markers"]]
    Path(dst).mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(str(x) for x in d["held_out"]):
        out = Path(dst) / f"{i}.npz"
        if out.is_file():
            continue
        t0 = time.perf_counter()
        plan, extras = fit([j for j, x in enumerate(markers) if x != m])
        rna_idx, cell_idx, w = top_k(plan, k)
        seconds = time.perf_counter() - t0
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, rna=rna_idx.astype(np.int64), cell=cell_idx.astype(np.int64), weight=w, marker=np.array(m),
                 seconds=np.array(seconds), **{key: np.array(v) for key, v in extras.items()})
        tmp.replace(out)
        shown = ", ".join(f"{key} {v}" for key, v in extras.items())
        print(f"  {name} {m}: {shown + ', ' if shown else ''}{seconds:.0f} s", file=sys.stderr, flush=True)
