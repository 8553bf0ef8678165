"""Validation metrics used while training: cross-modal matching and per-protein correlation."""
from __future__ import annotations

import numpy as np
import torch


def foscttm(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction Of Samples Closer Than the True Match (lower is better, 0.5 = random), both directions.

    a, b: (n, d) L2-normalised embeddings of the same n cells, row i paired with row i.
    """
    sim = a @ b.T
    true = sim.diagonal()
    n = sim.shape[0]
    if n < 2:
        return float("nan")
    closer_a = (sim > true[:, None]).sum(1).float() / (n - 1)
    closer_b = (sim > true[None, :]).sum(0).float() / (n - 1)
    return float(0.5 * (closer_a.mean() + closer_b.mean()))


def matching_accuracy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of cells whose nearest cross-modal neighbour is their own pair (both directions)."""
    sim = a @ b.T
    target = torch.arange(sim.shape[0], device=sim.device)
    return float(0.5 * ((sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean()))


def pearson_per_column(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson r per column over rows where mask is true (nan where undefined)."""
    out = np.full(pred.shape[1], np.nan)
    for j in range(pred.shape[1]):
        rows = slice(None) if mask is None else mask[:, j]
        p, t = pred[rows, j], truth[rows, j]
        if p.size > 2 and p.std() > 0 and t.std() > 0:
            out[j] = float(np.corrcoef(p, t)[0, 1])
    return out


def interval_coverage(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray, z: float,
                      mask: np.ndarray | None = None) -> float:
    """Fraction of (cell, protein) entries whose truth lies within mean +- z * sd."""
    inside = np.abs(truth - mean) <= z * sd
    return float(inside[mask].mean() if mask is not None else inside.mean())
