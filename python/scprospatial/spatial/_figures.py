"""Figures of the spatial statistics: enrichment heatmap and measured-beside-imputed protein maps (PNG)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._plotting import pyplot as _plt
from .._plotting import to_png
from ..io import write_bytes


def enrichment_heatmap(zscore: np.ndarray, categories, path: str | os.PathLike, *, title: str = "") -> Path:
    """Neighbourhood-enrichment z-scores as a diverging heatmap (symmetric colour range)."""
    plt = _plt()
    n = len(categories)
    fig, ax = plt.subplots(figsize=(1.2 + 0.32 * n, 1.0 + 0.3 * n))
    finite = np.abs(zscore[np.isfinite(zscore)])
    lim = float(finite.max()) if finite.size else 1.0
    im = ax.imshow(np.ma.masked_invalid(zscore), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(n), [str(c) for c in categories], rotation=90, fontsize=6)
    ax.set_yticks(range(n), [str(c) for c in categories], fontsize=6)
    ax.set_title(title or "neighbourhood enrichment (z)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.6, label="z-score")
    return write_bytes(to_png(fig), path)


def protein_maps(coords: np.ndarray, panels: dict[str, dict[str, pd.Series]], path: str | os.PathLike) -> Path:
    """One row per protein, one column per source ('measured', 'imputed'): cells coloured by value."""
    plt = _plt()
    sources = list(dict.fromkeys(s for row in panels.values() for s in row))
    fig, axes = plt.subplots(len(panels), len(sources), figsize=(3.4 * len(sources), 3.0 * len(panels)),
                             squeeze=False)
    for r, (protein, row) in enumerate(panels.items()):
        for c, source in enumerate(sources):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if source not in row:
                ax.axis("off")
                continue
            sc = ax.scatter(coords[:, 0], coords[:, 1], c=np.asarray(row[source], dtype=float), s=2,
                            cmap="viridis", linewidths=0)
            ax.invert_yaxis()
            ax.set_title(f"{protein} ({source})", fontsize=9)
            fig.colorbar(sc, ax=ax, shrink=0.7)
    return write_bytes(to_png(fig), path)
