"""The self-contained HTML report of a run (figures embedded, opens offline)."""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from .. import _constants as K
from .._logging import logger
from ..io import write_text
from . import figures

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#666;font-size:.85em}"""



def _outputs(folder: Path, pattern: str) -> list[Path]:
    """The results in `folder`: hidden files (temporaries of a write in progress, the run lock) are not."""
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))


def _read(path: Path):
    """A result .h5ad; a damaged one is the results folder's problem (InputError naming it), not a crash."""
    from ..io import read_h5ad

    return read_h5ad(path)

def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    return df.to_html(float_format=lambda v: floatfmt.format(v), border=0, escape=True)


def _read_obs_summary(path: Path) -> dict:
    import anndata as ad

    a = ad.read_h5ad(path, backed="r")
    meta = dict(a.uns.get(K.UNS, {}))
    row = {"file": path.name, "kind": meta.get(K.KIND, "?"), "cells": a.n_obs, "features": a.n_vars}
    prot = a.obsm[K.PROTEIN] if K.PROTEIN in a.obsm else None
    row["proteins measured"] = 0 if prot is None else prot.shape[1]
    a.file.close()
    return row


def _section_inputs(outdir: Path) -> str:
    files = _outputs(outdir / "prepared", "*.h5ad")
    if not files:
        return ""
    df = pd.DataFrame([_read_obs_summary(f) for f in files]).set_index("file")
    return ("<h2>Inputs</h2><p>Each samplesheet row after validation and normalisation (<code>prepared/</code>).</p>"
            + _table(df))


def _section_model(outdir: Path) -> str:
    mdir = outdir / "model"
    parts = []
    curves = next(iter(sorted(mdir.glob("*curves*.csv"))), None) if mdir.exists() else None
    if curves is not None:
        parts.append("<h3>Training curves</h3>" + _img(figures.training_curves(pd.read_csv(curves)), "training curves"))
    metrics = mdir / "metrics.json"
    if metrics.exists():
        flat = pd.json_normalize(json.loads(metrics.read_text()), sep=" / ").T
        flat = flat[flat[0].map(lambda v: isinstance(v, (int, float, str, bool)))]
        flat.columns = ["value"]
        parts.append("<h3>Validation metrics (held-out training cells, never test cells)</h3>" + flat.to_html(border=0))
    return ("<h2>Model</h2>" + "".join(parts)) if parts else ""


def _truth_table(truth_dir: Path, pred: pd.DataFrame) -> pd.DataFrame | None:
    from ..preprocess import clr_transform
    from ..vocab import normalise_protein_name

    path = truth_dir / "query_protein.csv"
    if not path.exists():
        return None
    counts = pd.read_csv(path, index_col=0)  # held-back ADT counts: put them on the model's CLR scale
    truth = pd.DataFrame(clr_transform(counts.to_numpy(float)), index=counts.index, columns=counts.columns)
    truth.columns = [normalise_protein_name(c).canonical for c in truth.columns]
    truth = truth.loc[:, ~truth.columns.duplicated()]
    return truth.reindex(pred.index)


def _reliability(meta: dict) -> str:
    """Support classes of the predicted proteins (uns[...]['proteins']), their expected accuracy from development
    data and what the intervals' calibration covers."""
    table = meta.get(K.PROTEIN_TABLE)
    if not isinstance(table, pd.DataFrame) or table.empty or K.SUPPORT not in table:
        return ""
    info = meta.get(K.RELIABILITY, {})
    order = {c: i for i, c in enumerate(K.SUPPORT_CLASSES)}
    by = table.groupby(K.SUPPORT, sort=False)
    df = pd.DataFrame({"proteins": by.size(), "median detected fraction": by[K.DETECTED_FRACTION].median(),
                       "expected Pearson (same cohort)": by[K.EXPECTED_PEARSON].first(),
                       "expected Pearson (new cohort)": by[K.EXPECTED_PEARSON_NEW_COHORT].first()})
    df = df.sort_index(key=lambda ix: ix.map(order))
    listed = ""
    if len(table) <= 40:
        listed = "<p>" + "; ".join(f"{html.escape(str(p))}: {html.escape(str(c))}"
                                   for p, c in table[K.SUPPORT].items()) + "</p>"
    calib = info.get("calibration", {})
    dropped = info.get("dropped_by_min_support", [])
    return ("<p>Support of each predicted protein: measured in training, or through its gene link with the coding "
            f"gene detected ({html.escape(str(info.get('detection_rule', '')))}) or not. Expected accuracy: the "
            "median Pearson of the class on development data.</p>" + _table(df) + listed
            + (f"<p>{len(dropped)} proteins dropped by min_support={html.escape(str(info.get('min_support')))}.</p>"
               if len(dropped) else "")
            + (f"<p class='note'>{html.escape(str(calib.get('note', '')))}</p>" if calib else ""))


def _section_imputed(outdir: Path, truth_dir: Path | None) -> str:

    from ..evaluate.metrics import interval_coverage, pearson  # the metrics `evaluate` reports

    parts = []
    for f in _outputs(outdir / "imputed", "*.h5ad"):
        a = _read(f)
        pred = a.obsm[K.PROTEIN_PREDICTED]
        sd = a.obsm.get(K.PROTEIN_PREDICTED_SD)
        meta = a.uns.get(K.PROTEIN_PREDICTED, {})
        parts.append(f"<h3>{html.escape(f.name)}</h3><p>{a.n_obs} cells, {pred.shape[1]} proteins predicted "
                     f"({len(meta.get('measured_in_training', []))} measured in training).</p>" + _reliability(meta))
        truth = _truth_table(truth_dir, pred) if truth_dir else None
        if truth is None:
            continue
        shared = [p for p in pred.columns if p in truth.columns]
        rows = []
        for p in shared:
            t, y = truth[p].to_numpy(float), pred[p].to_numpy(float)
            row = {"protein": p, "Pearson": pearson(t, y)}
            if sd is not None:
                row["90% interval coverage"] = interval_coverage(t, y, sd[p].to_numpy(float), nominal=0.9)
            rows.append(row)
        if rows:
            df = pd.DataFrame(rows).set_index("protein").sort_values("Pearson", ascending=False)
            parts.append("<p>Against the simulator's ground truth (CLR scale of the held-back counts):</p>"
                         + _table(df) + f"<p>Median Pearson {df['Pearson'].median():.3f}.</p>")
            parts.append(_img(figures.predicted_vs_measured(pred, truth, list(df.index[:4])), "imputed vs truth"))
    return ("<h2>Imputed proteins</h2>" + "".join(parts)) if parts else ""


def _section_spatial(outdir: Path) -> str:

    parts = []
    for f in _outputs(outdir / "spatial", "*.h5ad"):
        a = _read(f)
        coords = np.asarray(a.obsm[K.SPATIAL])
        conn = a.obsp.get(K.SPATIAL_CONNECTIVITIES)
        params = a.uns.get(K.SPATIAL_NEIGHBORS, {}).get("params", {})
        degree = f"{conn.sum() / a.n_obs:.1f}" if conn is not None else "n/a"
        parts.append(f"<h3>{html.escape(f.name)}</h3><p>{a.n_obs} cells, {a.n_vars} markers; graph "
                     f"{html.escape(json.dumps(params, default=str))}, mean degree {degree}.</p>")
        values = {}
        ct = a.uns.get(K.UNS, {}).get("cell_type_key")
        if ct and ct in a.obs:
            values[ct] = a.obs[ct].astype(str).to_numpy()
        for m in list(a.var_names[np.argsort(-np.asarray(a.X).var(axis=0))][:2]):
            values[m] = np.asarray(a[:, m].X).ravel()
        parts.append(_img(figures.spatial_scatter(coords, values, categorical=ct), "spatial scatter"))
    return ("<h2>Spatial samples</h2>" + "".join(parts)) if parts else ""


def _section_mapped(outdir: Path) -> str:
    """Imaged cells that received a proteome: measured marker beside its imputed value, and confidence."""

    from ..evaluate.metrics import pearson

    parts = []
    for f in _outputs(outdir / "mapped", "*.h5ad"):
        if f.name.endswith(".rna.h5ad"):
            continue
        a = _read(f)
        pred = a.obsm[K.PROTEIN_PREDICTED]
        conf = a.obs[K.MAPPING_CONFIDENCE].to_numpy(float)
        shared = [p for p in pred.columns if p in a.var_names]
        rows = [{"protein": p, "Pearson (imputed vs measured)": pearson(np.asarray(a[:, p].X).ravel(), pred[p])}
                for p in shared]
        parts.append(f"<h3>{html.escape(f.name)}</h3><p>{a.n_obs} imaged cells received {pred.shape[1]} proteins; "
                     f"mapping confidence median {np.median(conf):.2f} (IQR {np.quantile(conf, .25):.2f}-"
                     f"{np.quantile(conf, .75):.2f}).</p>" + _reliability(a.uns.get(K.PROTEIN_PREDICTED, {})))
        if rows:
            df = pd.DataFrame(rows).set_index("protein").sort_values("Pearson (imputed vs measured)", ascending=False)
            parts.append("<p>Markers both measured on the image and imputed from RNA (a consistency check, "
                         "not a held-out test: the measured panel was used for mapping):</p>" + _table(df))
            best = df.index[0]
            values = {f"{best} measured": np.asarray(a[:, best].X).ravel(),
                      f"{best} imputed": pred[best].to_numpy(float), "mapping confidence": conf}
            parts.append(_img(figures.spatial_scatter(np.asarray(a.obsm[K.SPATIAL]), values), "imputed vs measured"))
    return ("<h2>Imaged cells with imputed proteomes</h2>" + "".join(parts)) if parts else ""


def _section_stats(outdir: Path) -> str:
    """Spatial statistics: neighbourhood enrichment heatmap and the most autocorrelated proteins."""
    parts = []
    for d in (p for p in _outputs(outdir / "stats", "*") if p.is_dir()):
        parts.append(f"<h3>{html.escape(d.name)}</h3>")
        heatmap = d / "nhood_enrichment.png"
        if heatmap.exists():
            parts.append("<p>Neighbourhood enrichment between cell types (permutation z-scores).</p>"
                         + _img(heatmap.read_bytes(), "neighbourhood enrichment"))
        moran = d / "moran.csv"
        if moran.exists():
            df = pd.read_csv(moran)
            index = [c for c in ("library", "source", "protein") if c in df and df[c].nunique() > 1 or c == "protein"]
            cols = [c for c in ("I", "z", "pval_norm_fdr_bh") if c in df]
            if "I" in df and "protein" in df:
                df = df.sort_values("I", ascending=False).head(15).set_index(index)[cols]
                parts.append("<p>Moran's I, the 15 most spatially autocorrelated proteins:</p>" + _table(df))
        maps = d / "protein_maps.png"
        if maps.exists():
            parts.append(_img(maps.read_bytes(), "protein maps"))
    return ("<h2>Spatial statistics</h2>" + "".join(parts)) if parts else ""


def _section_evaluate(outdir: Path) -> str:
    """Benchmark tables of `scprospatial evaluate` (the pipeline's optional evaluate step), when present."""
    summary = outdir / "evaluate" / "summary.csv"
    if not summary.exists():
        return ""
    df = pd.read_csv(summary)
    index = [c for c in ("split", "setting", "method") if c in df]
    cols = [c for c in df.columns if c.endswith(("_mean", "_sd")) or c == "n_repeats"]
    return ("<h2>Evaluation on held-out cells</h2><p>The model against the baselines on held-out cells of the "
            "CITE-seq cohorts (mean and SD over repeats).</p>" + _table(df.set_index(index)[cols]))


def _section_trace(outdir: Path) -> str:
    trace = outdir / "pipeline_info" / "trace.tsv"
    if not trace.exists():
        return ""
    return "<h2>Steps</h2>" + _table(pd.read_csv(trace, sep="\t").set_index("step"), "{:.1f}")


def build_report(outdir: str | Path, out: str | Path, *, truth: str | Path | None = None) -> Path:
    """Write one self-contained HTML page summarising everything found under `outdir`."""
    outdir = Path(outdir)
    truth_dir = Path(truth) if truth else None
    body = "".join([_section_inputs(outdir), _section_model(outdir), _section_imputed(outdir, truth_dir),
                    _section_spatial(outdir), _section_mapped(outdir), _section_stats(outdir),
                    _section_evaluate(outdir), _section_trace(outdir)])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>scprospatial report</title>"
            f"<style>{CSS}</style></head><body><h1>scprospatial report</h1>"
            f"<p class='note'>scprospatial {__version__}, written {time.strftime('%Y-%m-%d %H:%M')} from "
            f"<code>{html.escape(str(outdir))}</code>.</p>{body}</body></html>")
    write_text(page, out)
    logger.info("report written to %s", out)
    return Path(out)
