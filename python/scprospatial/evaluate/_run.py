"""The evaluation loop: every method on the same splits, scored per protein, summarised over seeds."""
from __future__ import annotations

import time
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .. import _constants as K
from .._logging import logger, progress
from . import metrics as M
from .baselines import protein_frame
from .splits import Split

SUMMARY_METRICS = (*M.PER_PROTEIN_METRICS, M.COVERAGE, M.POOLED_COSINE)
ERROR = "error"  # per-split column: why a method failed on that split (empty when it ran)


class MethodFailed(RuntimeError):
    """Raised by a method's fit or predict when it cannot run on a split (e.g. an outside tool crashed).

    run_splits records the one-line reason for that split and goes on with the other splits and methods.
    """
# splits whose settings are a real axis (kept apart in the summary); the others pool their folds
_SETTING_AXIS = {"few-shot", "cross-cohort"}


def _training_view(adata: ad.AnnData, idx: np.ndarray, hidden: Sequence[str], genes: pd.Index | None) -> ad.AnnData:
    """Cells `idx` of a cohort as a new AnnData, `hidden` proteins removed from the panel."""
    sub = adata[idx] if genes is None else adata[idx, genes]
    sub = sub.copy()
    if hidden:
        sub.obsm[K.PROTEIN] = protein_frame(sub).drop(columns=list(hidden))
        for key in (K.PROTEIN_RAW,):
            if key in sub.obsm and isinstance(sub.obsm[key], pd.DataFrame):
                sub.obsm[key] = sub.obsm[key].drop(columns=[h for h in hidden if h in sub.obsm[key].columns])
        panel = sub.uns.get(K.UNS, {}).get("panel")
        if panel is not None:
            sub.uns[K.UNS] = {**sub.uns[K.UNS], "panel": [p for p in panel if p not in hidden]}
    return sub


def _predict(method, adata: ad.AnnData, proteins: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if hasattr(method, "predict_with_sd"):
        return method.predict_with_sd(adata, proteins)
    return method.predict(adata, proteins), None


def _fit(method, train: ad.AnnData, val: ad.AnnData, hidden: Sequence[str]) -> None:
    if hidden and hasattr(method, "predict_with_sd"):  # the model must know the hidden proteins exist
        method.fit(train, val, extra_proteins=hidden)
    else:
        method.fit(train, val)


def _fit_once(method, key: tuple, fitted_on: dict, train, val, hidden: Sequence[str]) -> None:
    """Fit unless already fitted on these training cells; a fit that failed fails every test of that key."""
    if fitted_on.get(id(method), (None,))[0] != key:
        if hasattr(method, "seed"):  # each repeat fits with its own seed (the split's), not one seed for all
            method.seed = key[-1]
        try:
            _fit(method, train, val, hidden)
            fitted_on[id(method)] = (key, None)
        except MethodFailed as err:
            fitted_on[id(method)] = (key, err)
    if fitted_on[id(method)][1] is not None:
        raise fitted_on[id(method)][1]


def run_splits(adatas: Sequence[ad.AnnData], splits: Sequence[Split], methods: Sequence,
               *, keep_predictions: bool = False) -> dict[str, pd.DataFrame]:
    """Fit and score every method on every split.

    Returns {'per_protein': one row per split x method x protein, 'per_split': one row per split x method with
    metrics averaged over proteins, the pooled cosine and timings, 'predictions': long table (when kept)}.
    """
    per_protein, per_split, preds = [], [], []
    fitted_on: dict[int, tuple] = {}  # id(method) -> (training key, fit error): same cells are not refitted
    for split in progress(splits, desc="splits", unit="split"):
        train_ad, test_ad = adatas[split.train_cohort], adatas[split.test_cohort]
        genes = None
        if split.train_cohort != split.test_cohort:
            genes = train_ad.var_names.intersection(test_ad.var_names, sort=False)
        train = _training_view(train_ad, split.train, split.hidden_proteins, genes)
        val = _training_view(train_ad, split.val, split.hidden_proteins, genes)
        test = test_ad[split.test].copy() if genes is None else test_ad[split.test, genes].copy()
        truth = protein_frame(test)
        panel = [p for p in truth.columns if p in protein_frame(train_ad).columns]
        wanted = list(split.hidden_proteins) or panel
        key = (split.train_cohort, split.train.tobytes(), split.val.tobytes(), split.hidden_proteins, split.seed)
        for method in methods:
            info = {"method": method.name, **split.describe(), "train_cohort": split.train_cohort,
                    "test_cohort": split.test_cohort}
            t0 = time.perf_counter()
            try:
                _fit_once(method, key, fitted_on, train, val, split.hidden_proteins)
                t1 = time.perf_counter()
                pred, sd = _predict(method, test, wanted)
            except MethodFailed as err:
                logger.warning("%s failed on %s %s: %s", method.name, split.name, split.label, err)
                per_split.append({**info, ERROR: str(err).splitlines()[0] if str(err) else type(err).__name__})
                continue
            t2 = time.perf_counter()
            if pred.shape[1] == 0:
                continue
            scores = M.score_proteins(truth, pred, sd)
            per_protein.append(scores.assign(**info))
            summary = scores.drop(columns="protein").mean(numeric_only=True).to_dict()
            per_split.append({**info, **summary, "n_proteins": len(scores),
                              M.POOLED_COSINE: M.pooled_cosine_frame(truth, pred), "fit_s": t1 - t0,
                              "predict_s": t2 - t1})
            if keep_predictions:
                long = pred.rename_axis("cell").reset_index().melt(id_vars="cell", var_name="protein",
                                                                   value_name="predicted")
                preds.append(long.assign(method=method.name, split=split.name, setting=split.label, seed=split.seed))
        logger.debug("split %s %s done", split.name, split.label)
    out = {"per_protein": _ordered(pd.concat(per_protein, ignore_index=True) if per_protein else pd.DataFrame()),
           "per_split": pd.DataFrame(per_split)}
    if keep_predictions:
        out["predictions"] = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    return out


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    first = ["method", "split", "setting", "seed", "protein"]
    return df[[c for c in first if c in df] + [c for c in df if c not in first]] if len(df) else df


def summarise(per_split: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD over seeds (or folds) of each method's protein-averaged metrics."""
    if per_split.empty:
        return pd.DataFrame()
    df = per_split.copy()
    if ERROR not in df:
        df[ERROR] = None
    df["setting"] = np.where(df["split"].isin(_SETTING_AXIS), df["setting"], "all")
    metrics = [m for m in SUMMARY_METRICS if m in df]
    grouped = df.groupby(["split", "setting", "method"], sort=False)
    mean = grouped[metrics].mean().add_suffix("_mean")
    sd = grouped[metrics].std(ddof=1).add_suffix("_sd")
    n = (grouped.size() - grouped[ERROR].count()).rename("n_repeats")
    failed = pd.concat([grouped[ERROR].count().rename("n_failed"), grouped[ERROR].first()], axis=1)
    out = pd.concat([mean, sd, n, failed], axis=1).reset_index()
    cols = ["split", "setting", "method", "n_repeats"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd")]
    return out[cols + ["n_failed", ERROR]]


_LABELS = {"pearson": "Pearson", "spearman": "Spearman", "ccc": "CCC", "rmse": "RMSE",
           M.COVERAGE: "90% coverage", M.POOLED_COSINE: "pooled cosine (paper, b=16)"}


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table per split/setting: method x metric as mean ± sd over repeats."""
    if summary.empty:
        return "_no results_\n"
    metrics = [m for m in SUMMARY_METRICS if f"{m}_mean" in summary and summary[f"{m}_mean"].notna().any()]
    lines = []
    for (split, setting), block in summary.groupby(["split", "setting"], sort=False):
        title = split if setting == "all" else f"{split}, {setting}"
        lines += [f"#### {title}", "", "| method | n | " + " | ".join(_LABELS[m] for m in metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        notes = []
        for _, row in block.iterrows():
            cells = [_fmt(row[f"{m}_mean"], row[f"{m}_sd"]) for m in metrics]
            if row.get("n_failed", 0) and not row["n_repeats"]:
                cells = [f"failed: {_cell(row[ERROR])}"] + ["–"] * (len(metrics) - 1)
            elif row.get("n_failed", 0):
                notes.append(f"{row['method']} failed on {row['n_failed']} of {row['n_failed'] + row['n_repeats']} "
                             f"repeats: {_cell(row[ERROR])}")
            lines.append(f"| {row['method']} | {row['n_repeats']} | " + " | ".join(cells) + " |")
        lines += [""] + [f"_{n}_" for n in notes] + ([""] if notes else [])
    return "\n".join(lines)


def _cell(text) -> str:
    """A one-line reason that cannot break a Markdown table."""
    return str(text).replace("|", "/").replace("\n", " ")[:200]


def _fmt(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f}" if not np.isfinite(sd) else f"{mean:.3f} ± {sd:.3f}"
