"""Panel regression: impute the imaged cells' proteome as a linear function of their measured panel.

On the scRNA-seq cells the model predicts both the imaged panel's markers (x: predictable markers, z-scored over
the scRNA-seq cells) and every protein to impute (y). A ridge fitted there,

    y_p ~ b_0p + x' b_p,   b_p = argmin |y_p - b_0p - X b_p|^2 + alpha n |b_p|^2,

learns how the model's proteome co-varies with the panel; applied to the imaged cells' measured markers, z-scored
over the imaged cells (the panel moved to the predictions' scale, as the mapping score does), it imputes every
protein without a cell-to-cell match. Its variance is the ridge's residual variance (what the panel leaves
unexplained in the model's own proteome) plus the model's predictive variance of the protein, averaged over the
scRNA-seq cells the mapping gives the imaged cell (per cell, through the same top-k weights).

Impute methods of `map` (IMPUTE_METHODS): 'knn' (default: the mixture of the k mapped scRNA-seq cells'
predictions, see _mapping.py), 'regression' (the above) and 'blend': the two as an equal mixture,

    mean = (m_knn + m_reg) / 2,   var = (v_knn + v_reg) / 2 + ((m_knn - m_reg) / 2)^2

(their disagreement widens the interval). The default is chosen on development markers only
(benchmarks/bench_impute.py, PROTOCOL.md's rule: a default changes when the gain per (panel, seed) pair exceeds
twice its standard error); see benchmarks/README.md, bench_impute section. With fewer than MIN_PANEL_MARKERS predictable
markers there is nothing to regress on and map says so and imputes by 'knn'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._step_options import DEFAULTS, MAP_IMPUTE_METHODS

IMPUTE_METHODS = MAP_IMPUTE_METHODS
DEFAULT_IMPUTE = DEFAULTS.map_impute     # one default for map, `scprospatial run` and the pipeline
RIDGE_ALPHA = 1.0      # penalty per cell on standardised predictors (the diagnosis' value; not tuned on test data)
ROW_BLOCK = 16384      # scRNA-seq cells per block of the fit (bounds the float64 temporaries)


@dataclass
class PanelRegression:
    """A fitted panel regression: coef (markers x proteins) on standardised markers, intercept and residual
    variance per protein."""

    coef: np.ndarray
    intercept: np.ndarray
    resid_var: np.ndarray
    alpha: float

    def predict(self, panel_z: np.ndarray) -> np.ndarray:
        """Imputation (cells x proteins, float32) from z-scored measured markers (cells x markers)."""
        return (np.asarray(panel_z, np.float64) @ self.coef + self.intercept).astype(np.float32)


def fit_panel_regression(panel: np.ndarray, targets: np.ndarray, alpha: float = RIDGE_ALPHA) -> PanelRegression:
    """Ridge from the predicted panel (n x m) to the predicted proteins (n x p) on the scRNA-seq cells, in blocks
    of rows (float64 sums; the panel, m columns, is copied to float64, the proteins only a block at a time)."""
    n, m = panel.shape
    if targets.shape[0] != n:
        raise ValueError(f"panel has {n} rows, targets {targets.shape[0]}")
    if n < 2:
        raise ValueError("panel regression needs at least two scRNA-seq cells")
    x = np.asarray(panel, np.float64)
    mu, sd = x.mean(0), np.maximum(x.std(0), 1e-6)
    p = targets.shape[1]
    ybar = np.zeros(p)
    for r0 in range(0, n, ROW_BLOCK):
        ybar += np.asarray(targets[r0:r0 + ROW_BLOCK], np.float64).sum(0)
    ybar /= n
    gram, cross, yy = np.zeros((m, m)), np.zeros((m, p)), np.zeros(p)
    for r0 in range(0, n, ROW_BLOCK):
        xs = (x[r0:r0 + ROW_BLOCK] - mu) / sd
        yc = np.asarray(targets[r0:r0 + ROW_BLOCK], np.float64) - ybar
        gram += xs.T @ xs
        cross += xs.T @ yc
        yy += (yc ** 2).sum(0)
    coef = np.linalg.solve(gram + alpha * n * np.eye(m), cross)
    resid = yy - 2.0 * (coef * cross).sum(0) + (coef * (gram @ coef)).sum(0)
    return PanelRegression(coef, ybar, np.maximum(resid / n, 0.0), float(alpha))


def blend(knn_mean: np.ndarray, knn_sd: np.ndarray, reg_mean: np.ndarray, reg_sd: np.ndarray,
          out: tuple[np.ndarray, np.ndarray]) -> None:
    """Equal mixture of the two imputations (module docstring), written into out = (mean, sd)."""
    m1, m2 = knn_mean.astype(np.float64), reg_mean.astype(np.float64)
    half_gap = 0.5 * (m1 - m2)
    var = 0.5 * (knn_sd.astype(np.float64) ** 2 + reg_sd.astype(np.float64) ** 2) + half_gap ** 2
    out[0][...] = 0.5 * (m1 + m2)
    out[1][...] = np.sqrt(var)
