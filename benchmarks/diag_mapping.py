"""Issue 18 diagnosis: why the model's mapping lost to a no-model baseline, one component at a time.

On the VALIDATION markers of each panel (development, benchmarks/PROTOCOL.md) and models of several training
seeds, each held-out marker is hidden and imputed by variants that change one component at a time, starting from
the no-model baseline (bench_mapping's `baseline` column) and from the mapping `map` used before this work:

  link       the scRNA-seq cells' side of the panel correlation: 'rna' (coding-gene RNA, log-normalised), 'pred'
             (the model's prediction of the panel: head for proteins measured in training, gene link a + b*RNA for
             the rest), 'head' (the translator head for every marker);
  sim        'pearson' (each cell's profile centred and scaled over markers: a correlation) or 'cosz' (cosine of
             the z-scored profiles, the former _fuse.panel_vectors);
  joint      weight a of the joint-space cosine in the score (protein encoder given the panel moved to the
             model's scale; not adapted unless --adapt-epochs: bench_mapping.py's grid compares adapted and not);
  weights    'uniform' over the top k or 'softmax' at the model's temperature;
  readout    what is averaged over the chosen cells: 'rna' (the hidden marker's coding-gene RNA), 'pred' (the
             model's prediction of it), 'head' (the translator head's);
  zscore     which sides are z-scored per marker before the correlation ('both', 'img', 'rna', 'none');
  input      'twice': the imaging panel z-scored by "its authors" then given to `load` (arcsinh applied again), as
             the held-back breast table was (tested without the joint space).
plus panel regression (issue 15 item 6): per hidden marker a ridge from the predicted panel to the predicted
marker, fitted on the scRNA-seq cells and applied to the measured panel (moved to the model's scale), alone and
averaged with the kNN imputation.

    .venv/bin/python benchmarks/diag_mapping.py --models M0.pt M1.pt M2.pt

Writes benchmarks/results/mapping_diagnosis.json; bench_mapping.py --readme-only puts its tables in the README.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from bench_mapping import DATA, RESULTS, SPATIAL, SUPPORTED, coding_rna, split_markers  # noqa: E402

K_NEIGHBOURS = 10
BASE = {"link": "rna", "sim": "pearson", "joint": 0.0, "weights": "uniform", "readout": "rna", "zscore": "both",
        "input": "once"}
OLD = {"link": "pred", "sim": "cosz", "joint": 0.4, "weights": "softmax", "readout": "pred", "zscore": "both",
       "input": "once"}
# variants: (name, settings); each changes one component of the baseline or of the old default
STEPS = [("link", "pred"), ("link", "head"), ("sim", "cosz"), ("joint", 0.4), ("weights", "softmax"),
         ("readout", "pred"), ("readout", "head"), ("zscore", "none"), ("zscore", "img"), ("zscore", "rna"),
         ("input", "twice")]
OLD_STEPS = [("link", "rna"), ("sim", "pearson"), ("joint", 0.0), ("weights", "uniform"), ("readout", "rna")]


NEW = "old default, joint=0.0"   # map's default after this work: the predicted panel alone (joint weight 0)
BLENDS = ("baseline", "old default", "old default, joint=0.0", "old default, joint=0.0, weights=uniform")


def variants() -> dict[str, dict]:
    out = {"baseline": dict(BASE), "old default": dict(OLD)}
    for key, val in STEPS:
        out[f"baseline, {key}={val}"] = {**BASE, key: val}
    for key, val in OLD_STEPS:
        out[f"old default, {key}={val}"] = {**OLD, key: val}
    out["baseline, readout=pred, link=pred"] = {**BASE, "readout": "pred", "link": "pred"}
    out["old default, joint=0.0, input=twice"] = {**OLD, "joint": 0.0, "input": "twice"}
    out["old default, joint=0.0, link=rna"] = {**OLD, "joint": 0.0, "link": "rna"}
    out["old default, joint=0.0, link=both"] = {**OLD, "joint": 0.0, "link": "both"}
    out["old default, joint=0.0, link=rna, zscore=img"] = {**OLD, "joint": 0.0, "link": "rna", "zscore": "img"}
    out["baseline, joint=0.2"] = {**BASE, "joint": 0.2}
    out["old default, joint=0.0, weights=uniform"] = {**OLD, "joint": 0.0, "weights": "uniform"}
    out["old default, joint=0.0, weights=uniform, link=both"] = {**OLD, "joint": 0.0, "weights": "uniform",
                                                                 "link": "both"}
    out["old default, joint=0.0, weights=uniform, sim=pearson"] = {**OLD, "joint": 0.0, "weights": "uniform",
                                                                   "sim": "pearson"}
    return out


def zcols(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def rows_unit(x: np.ndarray, centre: bool) -> np.ndarray:
    x = x - x.mean(1, keepdims=True) if centre else x
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def twice(spatial):
    """The panel as a table already arcsinh-transformed and z-scored by its authors, then prepared by `load`
    (arcsinh with the automatic cofactor applied on top, as for the held-back breast table before this work)."""
    from scprospatial.preprocess import arcsinh

    out = spatial.copy()
    z = zcols(out.obsm["protein"].to_numpy(np.float64)).astype(np.float32)
    out.X = z
    out.layers["raw"] = z
    arcsinh(out, cofactor="auto")
    return out


def topk(score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    sim, idx = torch.topk(torch.from_numpy(score), k, dim=1)
    return idx.numpy(), sim.numpy()


def impute(v: dict, sides: dict, joint: dict, truth_src, hidden: str, tau: float, cache: dict) -> np.ndarray:
    what = tuple(v[c] for c in ("link", "sim", "joint", "zscore", "input", "readout"))
    if what not in cache:
        cache[what] = neighbours(v, sides, joint, hidden)
    idx, sim = cache[what]
    if v["weights"] == "uniform":
        w = np.full(sim.shape, 1.0 / K_NEIGHBOURS)
    else:
        z = (sim - sim.max(1, keepdims=True)) / tau
        w = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    j = sides["markers"].index(hidden)
    values = sides[v["readout"]][:, j]
    return (w * values[idx]).sum(1)


def neighbours(v: dict, sides: dict, joint: dict, hidden: str) -> tuple[np.ndarray, np.ndarray]:
    if v["link"] == "both":   # the mean of the two panel correlations (predicted panel, coding-gene RNA)
        s = 0.5 * (similarity({**v, "link": "pred", "readout": "rna"}, sides, hidden)
                   + similarity({**v, "link": "rna"}, sides, hidden))
    else:
        s = similarity(v, sides, hidden)
    if v["joint"] > 0:
        a = v["joint"]
        s = a * (joint[hidden][v["input"]] @ joint["rna"].T) + (1 - a) * s
    return topk(s, K_NEIGHBOURS)


def similarity(v: dict, sides: dict, hidden: str) -> np.ndarray:
    img, feats = sides["img"][v["input"]], sides[v["link"]]
    use = [i for i, m in enumerate(sides["markers"]) if m != hidden and np.isfinite(feats[:, i]).all()]
    if v["link"] == "rna" or v["readout"] == "rna":   # the same markers for every link when comparing to the baseline
        use = [i for i in use if np.isfinite(sides["rna"][:, i]).all()]
    x, y = img[:, use], feats[:, use]
    if v["zscore"] in ("both", "img"):
        x = zcols(x)
    if v["zscore"] in ("both", "rna"):
        y = zcols(y)
    centre = v["sim"] == "pearson"
    q, r = rows_unit(x, centre), rows_unit(y, centre)
    return q @ r.T


def panel_regression(sides: dict, hidden: str, alpha: float = 1.0) -> np.ndarray:
    """Ridge from the predicted panel to the predicted hidden marker on the scRNA-seq cells, applied to the
    measured panel moved to the model's scale (z-scores given the predictions' mean and SD)."""
    j = sides["markers"].index(hidden)
    use = [i for i in range(len(sides["markers"])) if i != j]
    xr, y = sides["pred"][:, use], sides["pred"][:, j]
    mu, sd = xr.mean(0), np.maximum(xr.std(0), 1e-6)
    xs = (xr - mu) / sd
    coef = np.linalg.solve(xs.T @ xs + alpha * len(xs) * np.eye(len(use)), xs.T @ (y - y.mean()))
    xi = zcols(sides["img"]["once"][:, use])
    return xi @ coef + y.mean()


def pearson(a, b) -> float:
    """Pearson r; 0 for a constant imputation (it carries no information about the marker)."""
    return float(stats.pearsonr(a, b)[0]) if np.std(a) > 0 else 0.0


def run_panel(model, rna, spatial, name: str, seed_model: int, args, which: list[str] | None = None) -> dict:
    """Every variant on the held-out markers `which` (default: the panel's validation half)."""
    from scprospatial.spatial._fuse import mapping_space, panel_markers, predict_panel
    from scprospatial.spatial._mapping import _temperature

    markers = panel_markers(model, spatial)
    val = split_markers(markers, 0)[0] if which is None else which
    pred = model.predict(rna, proteins=markers).obsm["protein_predicted"][markers].to_numpy(np.float64)
    link = coding_rna(model, rna, markers)
    sides = {"markers": markers, "pred": pred, "head": predict_panel(model, rna, markers, head_only=True)
             .astype(np.float64), "rna": link["values"],
             "img": {"once": spatial.obsm["protein"][markers].to_numpy(np.float64)}}
    sides["img"]["twice"] = twice(spatial).obsm["protein"][markers].to_numpy(np.float64)
    remb = np.ascontiguousarray(model.embed_rna(rna))
    tau = _temperature(model, None)
    truth = spatial.obsm["protein"]
    vs = variants()
    rows, values = [], {}
    for m in val:
        if not np.isfinite(sides["rna"][:, markers.index(m)]).all():
            continue   # the baseline cannot impute a marker without a coding gene in the RNA
        joint = {"rna": remb}
        rest = [p for p in markers if p != m]
        masked = spatial.copy()
        masked.obsm["protein"] = spatial.obsm["protein"].drop(columns=[m])
        joint[m] = {"once": mapping_space(model, masked, remb, pred[:, [markers.index(p) for p in rest]], rest,
                                          adapt_epochs=args.adapt_epochs, seed=seed_model).joint.astype(np.float64)}
        t = truth[m].to_numpy(np.float64)
        cache: dict = {}
        row = {"marker": m, "measured_in_training": m in model.vocab.measured,
               "supported": link["detected"][m] >= SUPPORTED,
               **{key: pearson(impute(v, sides, joint, truth, m, tau, cache), t) for key, v in vs.items()}}
        reg = panel_regression(sides, m)
        row["panel regression"] = pearson(reg, t)
        for key in BLENDS:   # the kNN imputation and the panel regression, each standardised, averaged
            knn = impute(vs[key], sides, joint, truth, m, tau, cache)
            row[f"{key} + panel regression"] = pearson(zcols(knn[:, None])[:, 0] + zcols(reg[:, None])[:, 0], t)
        rows.append(row)
        values[m] = impute(vs[NEW], sides, joint, truth, m, tau, cache)
        print(f"{name} seed {seed_model} {m}: baseline {row['baseline']:.3f} old {row['old default']:.3f}",
              file=sys.stderr, flush=True)
    return {"rows": rows, "values": values}


def ensemble_rows(out: dict, ensemble: dict, panels) -> dict:
    """Issue 15 item 6: the new default's imputation averaged over the models of every training seed, against each
    model alone (per panel: validation markers, Pearson of the ensemble and of each model)."""
    from scprospatial.io import load

    res = {}
    for name in panels:
        truth = load(DATA / SPATIAL[name], kind="spatial").obsm["protein"]
        res[name] = [{"marker": m, "ensemble": pearson(np.mean(v, 0), truth[m].to_numpy(np.float64)),
                      "single": [r[NEW] for run in out["runs"] if run["panel"] == name
                                 for r in run["rows"] if r["marker"] == m]}
                     for m, v in ensemble.get(name, {}).items()]
    return res


def main(argv=None) -> None:
    from scprospatial._settings import set_threads
    from scprospatial.io import load
    from scprospatial.model import ScProSpatial

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="checkpoints of models trained from different seeds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--adapt-epochs", type=int, default=0, help="encoder adaptation of the joint variants (default "
                   "0: unadapted; bench_mapping.py's grid has the adapted encoder at each weight)")
    p.add_argument("--panels", nargs="+", choices=list(SPATIAL), default=list(SPATIAL))
    p.add_argument("--out", default=str(Path(RESULTS) / "mapping_diagnosis.json"))
    args = p.parse_args(argv)
    set_threads(args.threads)
    rna = load(DATA / "citeseq" / "malt_10k_query_1100cells_rna_only.h5ad", kind="rna")
    out = {"command": " ".join(["benchmarks/diag_mapping.py", *sys.argv[1:]]), "k": K_NEIGHBOURS,
           "date": time.strftime("%Y-%m-%d"),
           "variants": variants(), "runs": []}
    ensemble: dict = {}   # panel -> marker -> each model's imputation by the new default
    for i, path in enumerate(args.models):
        model = ScProSpatial.load(path, device="cpu")
        for name in args.panels:
            spatial = load(DATA / SPATIAL[name], kind="spatial")
            res = run_panel(model, rna, spatial, name, i, args)
            for m, v in res.pop("values").items():
                ensemble.setdefault(name, {}).setdefault(m, []).append(v)
            out["runs"].append({"panel": name, "seed": i, "model_id": model.meta.get("model_id"), **res})
    out["ensemble"] = ensemble_rows(out, ensemble, args.panels)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    from _diag_tables import diagnosis_figure

    diagnosis_figure(out, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
