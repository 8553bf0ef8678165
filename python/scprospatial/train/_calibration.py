"""Calibrate the predictive-variance scale so nominal central intervals cover what they claim."""
from __future__ import annotations

import numpy as np
from scipy.stats import norm


def z_value(coverage: float) -> float:
    """Half-width in SDs of a central Gaussian interval with the given coverage (0.9 -> 1.645)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    return float(norm.ppf(0.5 + coverage / 2.0))


def calibrate_scale(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None,
                    coverage: float = 0.9) -> float:
    """Factor s such that mean +- z * s * sd covers `coverage` of the (masked) entries.

    Fit on a validation part of the training cells; check on held-out cells with interval_coverage.
    """
    z = np.abs(truth - mean) / np.maximum(sd, 1e-8)
    if mask is not None:
        z = z[mask]
    z = z[np.isfinite(z)]
    if z.size == 0:
        raise ValueError("no measured entries to calibrate on")
    return float(np.quantile(z, coverage) / z_value(coverage))


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y on x (slope 0 where x is constant)."""
    vx = np.var(x)
    slope = float(np.mean((x - x.mean()) * (y - y.mean())) / vx) if vx > 1e-12 else 0.0
    return float(y.mean() - slope * x.mean()), slope


def fit_gene_link(x: np.ndarray, y: np.ndarray, groups: np.ndarray, coverage: float = 0.9) -> dict:
    """The gene link protein ~ a + b * x with a per-cell variance, calibrated for proteins it never saw.

    x, y: coding-gene RNA and protein value of each (cell, protein) entry of the measured proteins' validation
    cells; groups: the protein of each entry. The line is fitted to every entry. The variance is fitted to
    held-out-protein residuals (each protein's residuals from a line fitted without it, so they include the
    protein-level misfit an unmeasured protein has): least squares of log(r^2 + eps) on [1, min(x, x_max),
    x <= 0], then the intercept shifted so that `coverage` of those residuals lie within +- z * SD.

    Returns {'intercept', 'slope', 'residual_logvar' (constant, in-sample), 'link_var': [c0, c1, c2, x_max],
    'coverage_held_out_protein' (after calibration, on the fitted entries), 'n_proteins'}.
    """
    x, y, groups = (np.asarray(v).ravel() for v in (x, y, groups))
    x, y = x.astype(np.float64), y.astype(np.float64)
    intercept, slope = _line(x, y)
    resid = y - intercept - slope * x
    held = resid.copy()
    proteins = np.unique(groups)
    if len(proteins) >= 2:
        for g in proteins:
            out = groups == g
            a, b = _line(x[~out], y[~out])
            held[out] = y[out] - a - b * x[out]
    x_max = float(x.max())
    design = np.column_stack([np.ones_like(x), np.minimum(x, x_max), (x <= 0).astype(np.float64)])
    eps = 0.01 * max(float(np.var(held)), 1e-8)
    coef = np.linalg.lstsq(design, np.log(held ** 2 + eps), rcond=None)[0]
    sd = np.exp(0.5 * (design @ coef))
    k = float(np.quantile(np.abs(held) / sd, coverage) / z_value(coverage))
    coef[0] += 2.0 * np.log(max(k, 1e-6))
    sd = np.exp(0.5 * (design @ coef))
    return {"intercept": intercept, "slope": slope, "residual_logvar": float(np.log(max(resid.var(), 1e-6))),
            "link_var": [float(c) for c in coef] + [x_max],
            "coverage_held_out_protein": float(np.mean(np.abs(held) <= z_value(coverage) * sd)),
            "n_proteins": int(len(proteins))}
