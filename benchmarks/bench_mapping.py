"""Mapping benchmark: held-out markers and label transfer on real imaging data, controls and MaxFuse in the same run.

A model is trained on the MALT CITE-seq cohort (or loaded with --model); the MALT query RNA (1100 cells, no protein)
is mapped onto the CODEX and CyCIF tables. For every imaged marker the model can predict (measured in training, or
through its coding gene) the marker is hidden from the imaged panel, every method maps the scRNA-seq cells onto the
imaged cells with the remaining markers, and the hidden marker is imputed the same way for every method: the mapping
weights times the model's prediction of that marker on the scRNA-seq cells (top-k methods: k neighbours, softmax at
the model's temperature; matching methods: the mean over an imaged cell's matches). Methods:
  model    what `scprospatial map` does by default (fused score, protein encoder adapted to the panel, _fuse.py);
  joint    the joint space of the unadapted protein encoder alone (the method before this benchmark's work);
  shared   control, no joint space: correlation of the measured markers with the predicted ones (fuse weight 0);
  random   control: random imaged-cell embeddings (expect r ~ 0);
  maxfuse  MaxFuse 0.0.2 (benchmarks/.venv-peers, run_maxfuse.py) on coding-gene RNA vs the measured markers;
  tangram  Tangram 1.0.4 (run_tangram.py) on the same inputs, mode "cells": each imaged cell's top-k scRNA-seq cells
           of its cell x spot probabilities, renormalised;
  moscot   moscot 0.5.2 MappingProblem (run_moscot.py): fused Gromov-Wasserstein, scRNA-seq PCA vs imaged coordinates
           plus the shared features; each imaged cell's top-k scRNA-seq cells of the plan, renormalised.
  maxfuse (pred), tangram (pred), moscot (pred)  (--peer-features predicted) the same peers with the model's
           predicted panel (what `model` links on) as shared features instead of coding-gene RNA; main model only.
Peers are fitted for the test markers and the full panel only. `--add-peers` fits peers for the stored rows of an
earlier run with the same model (results/mapping_<panel>.json) and adds their columns, every other column kept.
The fuse weight is selected on VALIDATION markers (a seeded half of each panel) and reported on the other half.

    .venv/bin/python benchmarks/bench_mapping.py --threads 2

The model is trained with the package's default epochs (the gene decoder that predicts never-measured proteins from
their coding gene needs them: at 10 epochs per stage its predictions of imaging markers are near noise).

Writes benchmarks/results/mapping.json and the bench_mapping section of benchmarks/README.md. GPU timings of the
torch 'cuda' top-k backend (`kernel_gpu` in mapping.json) come from a machine with a GPU and are kept across reruns.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse, stats

from _mapping_peers import FULL_PANEL, PEER_RUNNERS, PEERS, keep_stored_peers, run_peer  # noqa: E402
from _mapping_tables import (  # noqa: E402
    FEATURES,
    grid_key,
    kernel_timings,
    label_agreement,
    peer_column,
    rna_coarse_labels,
    runs,
    write_readme,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SPATIAL = {"codex": "spatial/codex_crc_schurch2020_reg009.csv", "cycif": "spatial/cycif_scimap_example.csv"}
GRID = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)   # fuse weights tried (0: the shared control; 1: the joint space alone),
#                                        each with the encoder adapted to the panel and without (aligned input only)
SUPPORTED = 0.1                          # a marker is supported when its coding gene is detected in >= 10% of cells


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def topk_weights(query, ref, k: int, tau: float, threads: int) -> sparse.csr_matrix:
    from scprospatial.spatial._mapping import softmax_weights, topk_similarity, weights_matrix

    idx, sim, _ = topk_similarity(query, ref, k, threads=threads)
    return weights_matrix(idx, softmax_weights(sim, tau), len(ref))


def imputation(w: sparse.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Mapping weights x the scRNA-seq cells' values; an unmatched imaged cell gets the scRNA-seq mean."""
    got = np.asarray(w @ values).ravel()
    got[np.asarray(w.sum(1)).ravel() == 0] = values.mean()
    return got


def score(w: sparse.csr_matrix, values: np.ndarray, truth: np.ndarray) -> dict:
    got = imputation(w, values)
    empty = np.asarray(w.sum(1)).ravel() == 0
    if np.ptp(got) == 0:   # a constant imputation (e.g. a coding gene never detected) carries no information
        return {"pearson": 0.0, "spearman": 0.0, "unmatched": int(empty.sum()), "constant": True}
    return {"pearson": float(stats.pearsonr(got, truth)[0]), "spearman": float(stats.spearmanr(got, truth)[0]),
            "unmatched": int(empty.sum())}


def hide(spatial, marker: str | None):
    masked = spatial.copy()
    if marker is not None:
        masked.obsm["protein"] = spatial.obsm["protein"].drop(columns=[marker])
    return masked


def mapping_weights(model, spatial, hidden, remb, pred, args, rng) -> tuple[dict, dict]:
    """Weights of every top-k method (and every fuse weight of GRID) with `hidden` removed from the panel."""
    from scprospatial.spatial._adapt import ADAPT_EPOCHS
    from scprospatial.spatial._fuse import FUSE_WEIGHT, fuse, mapping_space, panel_markers, panel_vectors

    masked = hide(spatial, hidden)
    markers = panel_markers(model, masked)
    rna_panel = pred[markers].to_numpy(np.float64)
    tau, k, th = args.tau, args.k, args.threads
    x, mu = panel_vectors(masked, markers, rna_panel)
    grid = {}
    for epochs in dict.fromkeys((args.adapt_epochs, 0)):  # adapted to the panel (unless 0), aligned input only
        # weight 1: the joint view is in the score, so the encoder is adapted when epochs > 0 (at map's default
        # weight 0 mapping_space skips the adaptation); the grid then weighs the joint view itself
        joint = mapping_space(model, masked, remb, rna_panel, markers, weight=1.0, adapt_epochs=epochs,
                              seed=args.seed).joint
        grid.update({grid_key(epochs > 0, a): topk_weights(*fuse(joint, remb, x, mu, a), k, tau, th) for a in GRID})
    # `map`'s defaults are one point of the grid (same seed, same code path: identical weights), not recomputed
    default = grid_key(ADAPT_EPOCHS > 0 and FUSE_WEIGHT > 0, FUSE_WEIGHT)
    w = {"model": grid[default], "shared": grid[grid_key(False, 0.0)],
         "joint": topk_weights(model.embed_protein(masked), remb, k, tau, th),
         "random": topk_weights(unit(rng.standard_normal((spatial.n_obs, remb.shape[1]))), remb, k, tau, th)}
    return w, grid


def coding_rna(model, rna, markers: list[str]) -> dict:
    """Each marker's coding-gene RNA (log-normalised, NaN column without a coding gene in the RNA) and the share
    of scRNA-seq cells in which a coding gene is detected (count > 0)."""
    from scprospatial.spatial._fuse import coding_gene_rna

    genes = {str(g): i for i, g in enumerate(rna.var_names)}
    counts = sparse.csc_matrix(rna.layers["counts"])
    detected = {}
    for m in markers:
        cols = [genes[g] for g in model.vocab.gene_links.get(m, []) if g in genes]
        detected[m] = float((np.asarray(counts[:, cols].sum(1)).ravel() > 0).mean()) if cols else 0.0
    return {"markers": list(markers), "values": coding_gene_rna(model, rna, markers), "detected": detected}


def baseline_weights(spatial, hidden: str, link: dict, k: int) -> sparse.csr_matrix:
    """The no-model baseline of issue 18 (_fuse.baseline_neighbours, equal weights) on the panel markers with a
    coding gene in the RNA, `hidden` left out."""
    from scprospatial.spatial._fuse import baseline_neighbours

    use = [j for j, m in enumerate(link["markers"]) if m != hidden and np.isfinite(link["values"][:, j]).all()]
    x = spatial.obsm["protein"][[link["markers"][j] for j in use]].to_numpy(np.float64)
    idx = baseline_neighbours(x, link["values"][:, use], k)
    return sparse.csr_matrix((np.full(idx.size, 1.0 / k), idx.ravel(), np.arange(0, idx.size + 1, k)),
                             shape=(spatial.n_obs, len(link["values"])))


def held_out(model, spatial, remb, pred, args, link: dict) -> list[dict]:
    measured = spatial.obsm["protein"]
    rng = np.random.default_rng(args.seed)
    rows = []
    for m in [c for c in measured.columns if c in pred.columns]:
        truth, values = measured[m].to_numpy(np.float64), pred[m].to_numpy(np.float64)
        w, grid = mapping_weights(model, spatial, m, remb, pred, args, rng)
        scores = {key: score(g, values, truth) for key, g in grid.items()}
        j = link["markers"].index(m)
        base = ({"baseline": score(baseline_weights(spatial, m, link, args.k), link["values"][:, j], truth)}
                if np.isfinite(link["values"][:, j]).all() else {})
        row = {"marker": m, "measured_in_training": m in model.vocab.measured,
               "detected": link["detected"][m], "supported": link["detected"][m] >= SUPPORTED,
               **{key: score(wm, values, truth) for key, wm in w.items()}, **base,
               "grid": {key: s["pearson"] for key, s in scores.items()},
               "grid_spearman": {key: s["spearman"] for key, s in scores.items()}}
        rows.append(row)
        print(f"  {m}: " + ", ".join(f"{key} r={row[key]['pearson']:.3f}" for key in [*w, *base]), file=sys.stderr,
              flush=True)
    return rows


def add_peer(rows: list[dict], spatial, pred, peer: dict, name: str) -> None:
    """Score a peer's weights per held-out marker with the same imputation as every other method."""
    for row in rows:
        if row["marker"] in peer:
            m = row["marker"]
            row[name] = score(peer[m], pred[m].to_numpy(np.float64), spatial.obsm["protein"][m].to_numpy(np.float64))


def add_peer_columns(rows: list[dict], spatial, pred, peers: dict) -> None:
    """add_peer for every peer that ran (peers: {name: its weights per marker, or an 'error'})."""
    for name, res in peers.items():
        if "error" not in res:
            add_peer(rows, spatial, pred, res, name)


def split_markers(markers: list[str], seed: int) -> tuple[list[str], list[str]]:
    """A seeded half of a panel's markers for validation (selection), the other half for test (report)."""
    order = np.random.default_rng(seed).permutation(len(markers))
    half = len(markers) // 2
    return sorted(markers[i] for i in order[:half]), sorted(markers[i] for i in order[half:])


def select_weight(datasets: dict) -> dict:
    """The setting (adaptation, fuse weight) with the best mean over panels and models (training seeds) of the
    median validation Pearson; the table holds each panel's mean over models."""
    def med(rows, names, key):
        return float(np.median([r["grid"][key] for r in rows if r["marker"] in names]))
    keys = list(next(iter(datasets.values()))["rows"][0]["grid"])
    table = {key: {name: {part: float(np.mean([med(rows, d[part], key) for rows in runs(d)]))
                          for part in ("validation", "test")} for name, d in datasets.items()} for key in keys}
    best = max(keys, key=lambda key: np.mean([v["validation"] for v in table[key].values()]))
    return {"grid": table, "selected": best, "n_models": len(runs(next(iter(datasets.values()))))}


def label_transfer(model, rna, spatial, remb, pred, peers: dict, args) -> dict | None:
    """How often the mapped (weighted-vote) coarse RNA label equals the imaged cell's own coarse label."""
    key = spatial.uns.get("scprospatial", {}).get("cell_type_key")
    if key is None or key not in spatial.obs:
        return None
    w, _ = mapping_weights(model, spatial, None, remb, pred, args, np.random.default_rng(args.seed))
    w.update({name: res[FULL_PANEL] for name, res in peers.items() if FULL_PANEL in res})
    return label_agreement(w, rna_coarse_labels(rna), spatial.obs[key])


def default_weights(model, spatial, hidden, remb, pred, args):
    """The weights `map` computes with the package's current defaults."""
    from scprospatial.spatial._fuse import mapping_space, panel_markers

    masked = hide(spatial, hidden)
    markers = panel_markers(model, masked)
    space = mapping_space(model, masked, remb, pred[markers].to_numpy(np.float64), markers, seed=args.seed)
    return topk_weights(space.query, space.ref, args.k, args.tau, args.threads)


def stored_model(args, flag: str):
    """results/mapping.json, the model it was computed with (--model; any other is refused) and the MALT query."""
    from scprospatial._settings import set_threads
    from scprospatial.io import load
    from scprospatial.model import ScProSpatial

    set_threads(args.threads)
    record = json.loads((RESULTS / "mapping.json").read_text())
    model = ScProSpatial.load(args.model, device="cpu")
    if model.meta.get("model_id") != record["model_id"]:
        sys.exit(f"{flag} needs the model the results were computed with ({record['model_id']})")
    return record, model, load(DATA / "citeseq" / "malt_10k_query_1100cells_rna_only.h5ad", kind="rna")


def rescore(args) -> dict:
    """After the defaults of `map` were set from the selection: recompute the `model` column (and its label
    transfer) of the stored results with the current defaults and the same model; every other column is kept."""
    from scprospatial.io import load
    from scprospatial.spatial._adapt import ADAPT_EPOCHS
    from scprospatial.spatial._fuse import FUSE_WEIGHT
    from scprospatial.spatial._mapping import _temperature

    record, model, rna = stored_model(args, "--rescore")
    default = grid_key(ADAPT_EPOCHS > 0 and FUSE_WEIGHT > 0, FUSE_WEIGHT)
    for d in record["datasets"].values():
        for rep in d.get("replicates", []):  # the other seeds' models are not kept: the new default is a grid point
            for row in rep["rows"]:
                if default not in row["grid"] or "grid_spearman" not in row:
                    sys.exit(f"--rescore: the defaults ({default}) are not a stored grid point of the other seeds' "
                             "models; rerun the benchmark")
                row["model"] = {"pearson": row["grid"][default], "spearman": row["grid_spearman"][default],
                                "unmatched": 0}
    remb, args.tau = np.ascontiguousarray(model.embed_rna(rna)), _temperature(model, None)
    for name, d in record["datasets"].items():
        spatial = load(DATA / SPATIAL[name], kind="spatial")
        pred = model.predict(rna, proteins=[r["marker"] for r in d["rows"]]).obsm["protein_predicted"]
        for row in d["rows"]:
            m = row["marker"]
            w = default_weights(model, spatial, m, remb, pred, args)
            row["model"] = score(w, pred[m].to_numpy(np.float64), spatial.obsm["protein"][m].to_numpy(np.float64))
        if d.get("labels"):
            key = spatial.uns["scprospatial"]["cell_type_key"]
            w = {"model": default_weights(model, spatial, None, remb, pred, args)}
            d["labels"]["agreement"]["model"] = label_agreement(w, rna_coarse_labels(rna), spatial.obs[key])[
                "agreement"]["model"]
        (RESULTS / f"mapping_{name}.json").write_text(json.dumps(d, indent=2) + "\n")
    record["defaults"] = {"fuse_weight": FUSE_WEIGHT, "adapt_epochs": ADAPT_EPOCHS}
    record["rescored"] = " ".join(["benchmarks/bench_mapping.py", *sys.argv[1:]])
    (RESULTS / "mapping.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def fit_peers(d: dict, model, rna, spatial, markers, pred, name: str, args) -> dict:
    """Fit every peer of args.peers on each of args.peer_features (peer_column: `maxfuse` on coding-gene RNA,
    `maxfuse (pred)` on the predicted panel `pred`) for the test markers and the full panel, add its column to
    d['rows'] and its status to d[column]; returns {column: weights} (the full panel's for label transfer)."""
    order = [FULL_PANEL, *d["test"]]  # peers are not tuned here: the test markers (and the full panel) suffice
    cache = Path(args.peer_cache) / name if args.peer_cache else None
    out = {}
    for peer in args.peers:
        for features in args.peer_features:
            col = peer_column(peer, features)
            res = ({"error": "skipped"} if args.no_peers else
                   run_peer(peer, model, rna, spatial, markers, order, cache, pred=pred if col != peer else None))
            secs = res.pop("seconds", None)
            add_peer(d["rows"], spatial, pred, res, col)
            d[col] = res["error"] if "error" in res else f"{secs:.1f} s of fitting"
            print(f"{name}: {col} {d[col]}", file=sys.stderr, flush=True)
            out[col] = res
    return out


def rna_peers(peers: dict) -> dict:
    """The peers fitted on coding-gene RNA: they do not depend on the model, so the replicates' rows reuse them
    (those fitted on the predicted panel belong to the main model only)."""
    return {col: res for col, res in peers.items() if col in PEER_RUNNERS}


def join_panels(record: dict) -> None:
    """Panels run by another invocation (--datasets) join from their own file, the same model only."""
    for name in SPATIAL:
        path = RESULTS / f"mapping_{name}.json"
        other = json.loads(path.read_text()) if name not in record["datasets"] and path.is_file() else {}
        if other.get("model_id") == record["model_id"]:
            record["datasets"][name] = other
    record["datasets"] = {name: record["datasets"][name] for name in SPATIAL if name in record["datasets"]}


def add_peers(args) -> dict:
    """Fit args.peers for the stored rows of results/mapping_<panel>.json (same model) and add their columns and
    label-transfer agreement; the held-out loop is not rerun, so every other column stays as it was."""
    from scprospatial.io import load

    record, model, rna = stored_model(args, "--add-peers")
    retrained = dict(replicate_models(args))   # the other seeds' models: --replicate-models, else trained once
    for name in args.datasets:
        d = json.loads((RESULTS / f"mapping_{name}.json").read_text())
        if d.get("model_id") != record["model_id"]:
            sys.exit(f"results/mapping_{name}.json is from another model")
        spatial = load(DATA / SPATIAL[name], kind="spatial")
        predictable = set(model.vocab.measured) | set(model.vocab.gene_links)
        markers = [p for p in spatial.obsm["protein"].columns if p in predictable and p in model.vocab.proteins]
        if markers != [r["marker"] for r in d["rows"]]:
            sys.exit(f"{name}: the panel's predictable markers differ from the stored rows")
        pred = model.predict(rna, proteins=markers).obsm["protein_predicted"]
        peers = fit_peers(d, model, rna, spatial, markers, pred, name, args)
        for rep in d.get("replicates", []) if rna_peers(peers) else []:   # each seed's model's predictions
            if rep["seed"] not in retrained:
                retrained[rep["seed"]] = train_model(args.epochs, rep["seed"])
            again = retrained[rep["seed"]]
            if again.meta.get("model_id") != rep["model_id"]:
                sys.exit(f"{name}: seed {rep['seed']}'s model is another ({again.meta.get('model_id')}, stored "
                         f"{rep['model_id']}; retraining is reproducible with the run's --threads only)")
            add_peer_columns(rep["rows"], spatial, again.predict(rna, proteins=markers).obsm["protein_predicted"],
                             rna_peers(peers))
        if d.get("labels"):
            key = spatial.uns["scprospatial"]["cell_type_key"]
            w = {p: res[FULL_PANEL] for p, res in peers.items() if FULL_PANEL in res}
            got = label_agreement(w, rna_coarse_labels(rna), spatial.obs[key]) if w else {}
            for part in ("agreement", "scores") if w else ():
                d["labels"].setdefault(part, {}).update({p: v for p, v in got[part].items() if p in w})
        record["datasets"][name] = d
        (RESULTS / f"mapping_{name}.json").write_text(json.dumps(d, indent=2) + "\n")
    done = {k: v for k, v in record["datasets"].items() if k in args.datasets}
    record = json.loads((RESULTS / "mapping.json").read_text())  # re-read: a parallel panel may have written it
    record["datasets"] = done
    join_panels(record)
    command = " ".join(["benchmarks/bench_mapping.py", *sys.argv[1:]])
    record["peers_added"] = [c for c in record.get("peers_added", []) if c != command] + [command]
    (RESULTS / "mapping.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def train_model(epochs: int | None, seed: int):
    """A model trained on the MALT CITE-seq cohort with the package's configuration (epochs: every stage's)."""
    from scprospatial.io import load
    from scprospatial.model import ModelConfig, ScProSpatial

    malt = load(DATA / "citeseq" / "malt_10k_train_1000cells.h5ad")
    model = ScProSpatial.setup([malt], ModelConfig().with_epochs(epochs), seed=seed)
    model.train([malt], seed=seed, device="cpu")
    return model


def replicate_seeds(args) -> list[int]:
    return [args.seed + i for i in range(1, args.replicates + 1)]


def replicate_models(args) -> list[tuple]:
    """[(seed, model)] of --replicate-models ([] without it)."""
    from scprospatial.model import ScProSpatial

    if not args.replicate_models:
        return []
    if len(args.replicate_models) != args.replicates:
        sys.exit(f"--replicate-models needs {args.replicates} checkpoints (--replicates), got "
                 f"{len(args.replicate_models)}")
    return [(seed, ScProSpatial.load(path, device="cpu"))
            for seed, path in zip(replicate_seeds(args), args.replicate_models)]


def replicate(seed_model: tuple, rna, spatial, markers, peers: dict, args, link: dict) -> dict:
    """The held-out loop again with a model trained from another seed (same data, same configuration): how much
    of a difference between methods survives retraining. The peers' weights do not depend on the model and are
    reused; only the imputed values (each model's predictions) change."""
    from scprospatial.spatial._mapping import _temperature

    seed, model = seed_model
    rargs = argparse.Namespace(**{**vars(args), "seed": seed, "tau": _temperature(model, None)})
    remb = np.ascontiguousarray(model.embed_rna(rna))
    pred = model.predict(rna, proteins=markers).obsm["protein_predicted"]
    rows = held_out(model, spatial, remb, pred, rargs, link)
    add_peer_columns(rows, spatial, pred, peers)
    return {"seed": seed, "model_id": model.meta.get("model_id"), "tau": rargs.tau, "rows": rows}


def run(args) -> dict:
    import torch

    from scprospatial._settings import set_threads
    from scprospatial.io import load
    from scprospatial.model import ScProSpatial
    from scprospatial.spatial._adapt import ADAPT_EPOCHS
    from scprospatial.spatial._fuse import FUSE_WEIGHT
    from scprospatial.spatial._mapping import _temperature

    set_threads(args.threads)
    t0 = time.perf_counter()
    if args.model:
        model = ScProSpatial.load(args.model, device="cpu")
    else:
        model = train_model(args.epochs, args.seed)
        if args.save_model:
            model.save(args.save_model)
    train_s = time.perf_counter() - t0
    rna = load(DATA / "citeseq" / "malt_10k_query_1100cells_rna_only.h5ad", kind="rna")
    args.tau = _temperature(model, None)
    versions = json.loads((PEERS.parents[1] / "peer_versions.json").read_text()) if PEERS.is_file() else {}
    record = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                          "python": platform.python_version(), "torch": torch.__version__},
              "command": " ".join(["benchmarks/bench_mapping.py", *sys.argv[1:]]), "k": args.k,
              "temperature": args.tau,
              "epochs": {st: model.config.epochs(st) for st in ("pretrain", "align", "translate")},
              "trained_here": not args.model,
              "adapt_epochs": args.adapt_epochs, "defaults": {"fuse_weight": FUSE_WEIGHT, "adapt_epochs": ADAPT_EPOCHS},
              "peer_versions": {k: versions.get(k) for k in ("maxfuse", "tangram-sc", "moscot")},
              "model_id": model.meta.get("model_id"), "train_s": round(train_s, 1), "seed": args.seed,
              "datasets": {}}
    remb = np.ascontiguousarray(model.embed_rna(rna))
    replicas = replicate_models(args) or [(seed, train_model(args.epochs, seed)) for seed in replicate_seeds(args)]
    record["replicate_seeds"] = replicate_seeds(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        spatial = load(DATA / SPATIAL[name], kind="spatial")
        predictable = set(model.vocab.measured) | set(model.vocab.gene_links)
        markers = [p for p in spatial.obsm["protein"].columns if p in predictable and p in model.vocab.proteins]
        pred = model.predict(rna, proteins=markers).obsm["protein_predicted"]
        val, test = split_markers(markers, args.seed)
        t = time.perf_counter()
        link = coding_rna(model, rna, markers)
        rows = held_out(model, spatial, remb, pred, args, link)
        seconds = round(time.perf_counter() - t, 1)
        d = {"n_cells": int(spatial.n_obs), "n_markers": int(spatial.n_vars), "rows": rows, "validation": val,
             "test": test, "seconds": seconds, "model_id": record["model_id"]}
        peers = fit_peers(d, model, rna, spatial, markers, pred, name, args)
        d["labels"] = label_transfer(model, rna, spatial, remb, pred, peers, args)
        d["replicates"] = [replicate(rep, rna, spatial, markers, rna_peers(peers), args, link) for rep in replicas]
        if args.keep_peers:
            keep_stored_peers(d, name, fitted=[col for col, res in peers.items() if "error" not in res])
        record["datasets"][name] = d
        (RESULTS / f"mapping_{name}.json").write_text(json.dumps(record["datasets"][name], indent=2) + "\n")
    join_panels(record)
    record["selection"] = select_weight(record["datasets"])
    old = json.loads((RESULTS / "mapping.json").read_text()) if (RESULTS / "mapping.json").is_file() else {}
    for key in ("kernel", "kernel_gpu"):  # GPU timings come from another machine; CPU ones unless re-measured
        if key in old:
            record[key] = old[key]
    if args.kernel_scale:
        record["kernel"] = kernel_timings(args.kernel_scale, remb.shape[1], args.k, args.threads)
    (RESULTS / "mapping.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per training stage (default: the package's, as `scprospatial train`)")
    p.add_argument("--model", default=None, help="use this checkpoint instead of training")
    p.add_argument("--save-model", default=None, help="save the trained model here (to rerun with --model)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--adapt-epochs", type=int, default=None, help="encoder adaptation epochs (default: map's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicates", type=int, default=2, help="models trained from further seeds (seed+1, ...), "
                   "each run through the held-out loop (peers reused): the spread of every method over training")
    p.add_argument("--replicate-models", nargs="+", default=None, help="checkpoints of the replicates' models "
                   "(seed+1, ...; saved with --save-model) instead of training them")
    p.add_argument("--keep-peers", action="store_true", help="copy the peers' columns not fitted by this run from "
                   "the stored results/mapping_<panel>.json (their models may differ; said in the README)")
    p.add_argument("--datasets", nargs="+", choices=list(SPATIAL), default=list(SPATIAL),
                   help="panels to run (others are read from results/mapping_<panel>.json of an earlier run)")
    p.add_argument("--no-peers", action="store_true", help="do not run the peers")
    p.add_argument("--peers", nargs="+", choices=list(PEER_RUNNERS), default=list(PEER_RUNNERS),
                   help="peers to run (default: all)")
    p.add_argument("--peer-features", nargs="+", choices=FEATURES, default=["rna"],
                   help="the peers' shared features: rna (each linked marker's coding-gene RNA; columns `maxfuse`, "
                   "...) and/or predicted (the model's predicted panel, what `map` links on; columns `maxfuse (pred)`"
                   ", ..., main model only)")
    p.add_argument("--peer-cache", default=None, help="keep the peers' outputs here (reruns fit only what is missing)")
    p.add_argument("--add-peers", action="store_true", help="fit --peers for the stored rows of an earlier run "
                   "(needs --model: the model of results/mapping.json) and add their columns; nothing else rerun")
    p.add_argument("--kernel-scale", type=int, default=0, help="re-time the top-k kernel on N x N cells (0: keep)")
    p.add_argument("--readme-only", action="store_true", help="only rewrite README.md from results/mapping.json")
    p.add_argument("--rescore", action="store_true", help="recompute only the model column with map's current "
                   "defaults (needs --model: the model of results/mapping.json)")
    args = p.parse_args(argv)
    if not (DATA / "README.md").is_file():
        sys.exit(f"real data folder {DATA} is absent")
    if args.adapt_epochs is None:
        from scprospatial.spatial._adapt import ADAPT_EPOCHS

        args.adapt_epochs = ADAPT_EPOCHS
    if args.readme_only:
        record = json.loads((RESULTS / "mapping.json").read_text())
    else:
        record = rescore(args) if args.rescore else add_peers(args) if args.add_peers else run(args)
    write_readme(record)


if __name__ == "__main__":
    main()
