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
