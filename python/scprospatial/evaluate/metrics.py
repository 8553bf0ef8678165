"""Agreement between measured and predicted protein, per protein and averaged.

Every metric works on the normalised scale the cohort was prepared with (CLR for CITE-seq ADT).
Per-protein metrics are computed across the test cells of one protein, then averaged over proteins.

Convention: a prediction that is constant over the test cells (the mean predictor, or a protein
whose truth is constant) has no association, so its Pearson and Spearman are reported as 0, which
matches Lin's CCC of a constant (also 0) instead of leaving a NaN that would drop it from averages.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

PER_PROTEIN_METRICS = ("pearson", "spearman", "ccc", "rmse")
POOLED_COSINE = "pooled_cosine_b16"
COVERAGE = "coverage90"
POOLED_BATCH = 16
NOMINAL = 0.90
_EPS = 1e-12


def _pair(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"truth has {y.size} values, prediction {p.size}")
    ok = np.isfinite(y) & np.isfinite(p)
    return y[ok], p[ok]


def _degenerate(y: np.ndarray, p: np.ndarray) -> bool:
    return y.size < 2 or np.ptp(y) <= _EPS or np.ptp(p) <= _EPS


def pearson(y, p) -> float:
    """Pearson correlation; 0 when either side is constant (see module note)."""
    y, p = _pair(y, p)
    return 0.0 if _degenerate(y, p) else float(np.corrcoef(y, p)[0, 1])


def spearman(y, p) -> float:
    """Spearman rank correlation (Pearson of average ranks); 0 when either side is constant."""
    y, p = _pair(y, p)
    return 0.0 if _degenerate(y, p) else pearson(stats.rankdata(y), stats.rankdata(p))


def ccc(y, p) -> float:
    """Lin's concordance correlation: 2 cov / (var_y + var_p + (mean_y - mean_p)^2), population moments."""
    y, p = _pair(y, p)
    if y.size == 0:
        return float("nan")
    my, mp = y.mean(), p.mean()
    cov = np.mean((y - my) * (p - mp))
    denom = y.var() + p.var() + (my - mp) ** 2
    return float(2.0 * cov / denom) if denom > _EPS else 1.0


def rmse(y, p) -> float:
    y, p = _pair(y, p)
    return float(np.sqrt(np.mean((y - p) ** 2))) if y.size else float("nan")


def interval_coverage(y, p, sd, nominal: float = NOMINAL) -> float:
    """Share of cells whose truth lies in the central `nominal` Gaussian interval p ± z * sd."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    sd = np.asarray(sd, dtype=np.float64).ravel()
    ok = np.isfinite(y) & np.isfinite(p) & np.isfinite(sd)
    if not ok.any():
        return float("nan")
    z = stats.norm.ppf(0.5 + nominal / 2.0)
    return float(np.mean(np.abs(y[ok] - p[ok]) <= z * sd[ok]))


def pooled_cosine(truth: np.ndarray, pred: np.ndarray, batch_size: int = POOLED_BATCH) -> float:
    """The paper's cosine similarity (scProSpatial / scTranslator style), NOT a per-protein metric.

    Cells are taken in order in blocks of `batch_size`; in each block the cells x proteins values of
    truth and prediction are flattened and their cosine taken; the blocks' cosines are averaged. On an
    uncentred scale this rewards getting each protein's level right as much as its variation, so it runs
    much higher than the per-protein correlations.
    """
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if truth.shape != pred.shape:
        raise ValueError(f"truth is {truth.shape}, prediction {pred.shape}")
    sims = []
    for start in range(0, truth.shape[0], batch_size):
        t = np.nan_to_num(truth[start:start + batch_size]).ravel()
        q = np.nan_to_num(pred[start:start + batch_size]).ravel()
        norm = np.linalg.norm(t) * np.linalg.norm(q)
        if norm > _EPS:
            sims.append(float(t @ q / norm))
    return float(np.mean(sims)) if sims else float("nan")


_FUNCS = {"pearson": pearson, "spearman": spearman, "ccc": ccc, "rmse": rmse}


def score_proteins(truth: pd.DataFrame, pred: pd.DataFrame, sd: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per protein (the columns shared by truth and prediction) with every per-protein metric."""
    proteins = [c for c in pred.columns if c in truth.columns]
    truth = truth.loc[pred.index]
    rows = []
    for prot in proteins:
        y, p = truth[prot].to_numpy(), pred[prot].to_numpy()
        row = {"protein": prot, **{name: f(y, p) for name, f in _FUNCS.items()}}
        if sd is not None and prot in sd.columns:
            row[COVERAGE] = interval_coverage(y, p, sd.loc[pred.index, prot].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_cosine_frame(truth: pd.DataFrame, pred: pd.DataFrame, batch_size: int = POOLED_BATCH) -> float:
    proteins = [c for c in pred.columns if c in truth.columns]
    return pooled_cosine(truth.loc[pred.index, proteins].to_numpy(), pred[proteins].to_numpy(), batch_size)
