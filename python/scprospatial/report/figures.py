"""Figures for the report: matplotlib (Agg) to PNG bytes."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._plotting import pyplot as _plt
from .._plotting import to_png


def training_curves(curves: pd.DataFrame) -> bytes:
    """One panel per stage: every loss/metric column against epoch."""
    plt = _plt()
    stages = list(dict.fromkeys(curves["stage"])) if "stage" in curves else ["training"]
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        part = curves[curves["stage"] == stage] if "stage" in curves else curves
        x = part["epoch"] if "epoch" in part else np.arange(len(part))
        for col in part.columns:
            if col in ("stage", "epoch") or not np.issubdtype(part[col].dtype, np.number) or part[col].isna().all():
                continue
            ax.plot(x, part[col], marker=".", label=col)
        ax.set_title(stage)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return to_png(fig)


def predicted_vs_measured(pred: pd.DataFrame, truth: pd.DataFrame, proteins: list[str]) -> bytes:
    plt = _plt()
    n = len(proteins)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.0), squeeze=False)
    for ax, p in zip(axes[0], proteins):
        ax.scatter(truth[p], pred[p], s=3, alpha=0.4, linewidths=0)
        r = np.corrcoef(truth[p], pred[p])[0, 1]
        ax.set_title(f"{p} (r = {r:.2f})", fontsize=9)
        ax.set_xlabel("simulated truth")
        ax.set_ylabel("imputed")
    return to_png(fig)


def spatial_scatter(coords: np.ndarray, values: dict[str, np.ndarray], *, categorical: str | None = None) -> bytes:
    """Cells at their coordinates, one panel per value (categorical: coloured by label)."""
    plt = _plt()
    n = len(values)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    for ax, (name, v) in zip(axes[0], values.items()):
        if name == categorical:
            cats = pd.Categorical(v)
            cmap = plt.get_cmap("tab20", max(len(cats.categories), 1))
            for i, c in enumerate(cats.categories):
                m = cats.codes == i
                ax.scatter(coords[m, 0], coords[m, 1], s=2, color=cmap(i), label=str(c), linewidths=0)
            ax.legend(fontsize=5, markerscale=3, loc="upper right", ncol=1, frameon=False)
        else:
            sc = ax.scatter(coords[:, 0], coords[:, 1], c=v, s=2, cmap="viridis", linewidths=0)
            fig.colorbar(sc, ax=ax, shrink=0.7)
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
    return to_png(fig)
