"""The files the benchmark hands a peer script and the files it gets back.

Both sides use this module: the adapter (benchmarks/peers/adapter.py, in the project's venv) and the peer
scripts (run_<peer>.py, in benchmarks/.venv-peers, which has no scprospatial), so it needs only the
standard library, pandas and anndata.

A work folder holds, written by the adapter:
  train.h5ad, val.h5ad  X: raw RNA counts (CSR), layers['lognorm']: scprospatial's log1p library-size
                        normalised RNA, obsm['protein_counts']: raw ADT counts, obsm['protein_clr']: the CLR
                        values the benchmark scores on (DataFrames, canonical protein names)
  test.h5ad             X and layers['lognorm'] only: the test cells' protein is never written
and, written by the peer script:
  predictions.csv       test cells x proteins (index = test obs_names)
  meta.json             {'scale': 'counts' | 'normalised', 'peer': ..., 'version': ..., 'seconds': ...}
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

TRAIN, VAL, TEST = "train.h5ad", "val.h5ad", "test.h5ad"
PREDICTIONS, META = "predictions.csv", "meta.json"
LOGNORM = "lognorm"                 # layers: log1p(counts / library size * 1e4), as scprospatial prepares RNA
PROTEIN_COUNTS = "protein_counts"   # obsm: raw ADT counts of the training panel
PROTEIN_CLR = "protein_clr"         # obsm: the benchmark's scale (CLR across the panel of each cell)
SCALE_COUNTS, SCALE_NORMALISED = "counts", "normalised"
SCALES = (SCALE_COUNTS, SCALE_NORMALISED)


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments every peer script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("workdir", type=Path, help="folder with train/val/test.h5ad; predictions are written there")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p


def read_inputs(workdir: Path):
    """(train, val, test) AnnData of a work folder."""
    import anndata as ad

    return tuple(ad.read_h5ad(Path(workdir) / name) for name in (TRAIN, VAL, TEST))


def write_outputs(workdir: Path, predictions, *, scale: str, **meta) -> None:
    """Write predictions.csv, then meta.json last (its presence marks a finished run)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    workdir = Path(workdir)
    predictions.to_csv(workdir / PREDICTIONS)
    tmp = workdir / f".{META}.tmp"
    tmp.write_text(json.dumps({"scale": scale, **meta}, default=str))
    os.replace(tmp, workdir / META)


def seed_all(seed: int, threads: int) -> None:
    """Seed Python, NumPy and torch (when present); cap torch's threads."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
