"""bench_mapping.py's label harmonisation, label-transfer score, top-k kernel timings and README section."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _readme import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

START, END = "<!-- bench_mapping:start -->", "<!-- bench_mapping:end -->"
PEER_NAMES = ("maxfuse", "tangram", "moscot")
FEATURES = ("rna", "predicted")  # the peers' shared features: coding-gene RNA, or the model's predicted panel


def peer_column(peer: str, features: str) -> str:
    """A peer's column: `maxfuse` fitted on coding-gene RNA, `maxfuse (pred)` on the model's predicted panel."""
    return peer if features == "rna" else f"{peer} (pred)"


PEER_COLUMNS = tuple(peer_column(p, f) for p in PEER_NAMES for f in FEATURES)
METHODS = ("model", "baseline", "joint", "shared", "random", *PEER_COLUMNS)
RHO = ("model", *PEER_COLUMNS)  # Spearman columns
# The MALT scRNA-seq cells carry no labels: each gets the coarse class whose marker genes it expresses most
# (mean log-normalised expression; "unassigned" when no set reaches MIN_SCORE).
COARSE_GENES = {"T cell": ["CD3D", "CD3E", "CD2"], "B/plasma cell": ["MS4A1", "CD79A", "CD79B", "MZB1", "JCHAIN"],
                "myeloid": ["LYZ", "CD14", "CD68", "CSF1R", "FCER1G"], "NK cell": ["GNLY", "KLRD1", "NCAM1"]}
MIN_SCORE = 0.5
# CODEX ClusterName -> the same coarse classes (non-immune types have no counterpart in the MALT RNA).
CODEX_COARSE = {"CD4+ T cells CD45RO+": "T cell", "CD8+ T cells": "T cell", "Tregs": "T cell",
                "CD4+ T cells": "T cell", "CD4+ T cells GATA3+": "T cell", "CD3+ T cells": "T cell",
                "B cells": "B/plasma cell", "plasma cells": "B/plasma cell",
                "CD68+CD163+ macrophages": "myeloid", "CD68+ macrophages": "myeloid",
                "CD11b+CD68+ macrophages": "myeloid", "CD11b+ monocytes": "myeloid", "CD11c+ DCs": "myeloid",
                "granulocytes": "myeloid", "NK cells": "NK cell"}


def rna_coarse_labels(rna) -> pd.Series:
    genes = {g: i for i, g in enumerate(rna.var_names)}
    scores = pd.DataFrame({c: np.asarray(rna.X[:, [genes[g] for g in gs if g in genes]].mean(1)).ravel()
                           for c, gs in COARSE_GENES.items()}, index=rna.obs_names)
    best = scores.idxmax(axis=1).where(scores.max(axis=1) >= MIN_SCORE, "unassigned")
    return best.astype("string")


def label_scores(predicted: np.ndarray, own: np.ndarray) -> dict:
    """Accuracy, balanced accuracy (mean recall over the true classes) and macro-F1 (over the true classes; a
    predicted label outside them, e.g. 'unassigned', counts as wrong)."""
    classes = sorted(set(own))
    recall, f1 = [], []
    for c in classes:
        tp = float(((predicted == c) & (own == c)).sum())
        n_true, n_pred = float((own == c).sum()), float((predicted == c).sum())
        recall.append(tp / n_true)
        f1.append(2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0)
    return {"accuracy": float((predicted == own).mean()), "balanced_accuracy": float(np.mean(recall)),
            "macro_f1": float(np.mean(f1))}


def label_agreement(weights: dict, rna_labels: pd.Series, labels: pd.Series, seed: int = 0) -> dict:
    """Per method: accuracy (share of imaged immune cells whose mapped coarse label, a weighted vote, is their own),
    balanced accuracy and macro-F1; beside them two controls without mapping: every cell given the majority
    class of the imaged cells, and every cell given the label of a random scRNA-seq cell (seeded)."""
    from scprospatial.spatial._mapping import vote

    own = labels.astype(str).map(CODEX_COARSE)
    keep = own.notna().to_numpy()
    truth = own[keep].to_numpy()
    out = {"n_cells": int(keep.sum()), "own": own[keep].value_counts().to_dict(),
           "rna": rna_labels.value_counts().to_dict(), "agreement": {}, "scores": {}}
    for method, w in weights.items():
        mapped, _ = vote(w, rna_labels)
        out["scores"][method] = label_scores(np.asarray(mapped.astype(str))[keep], truth)
        out["agreement"][method] = out["scores"][method]["accuracy"]
    majority = own[keep].value_counts().idxmax()
    out["scores"]["majority class"] = label_scores(np.full(len(truth), majority, dtype=object), truth)
    drawn = np.random.default_rng(seed).integers(0, len(rna_labels), len(truth))
    out["scores"]["random assignment"] = label_scores(rna_labels.to_numpy(dtype=object)[drawn], truth)
    return out


def kernel_timings(n: int, dim: int, k: int, threads: int) -> list[dict]:
    """Top-k search of n x n random unit embeddings: C++ kernel vs torch blocks."""
    import torch

    from scprospatial.spatial import topk_similarity

    rng = np.random.default_rng(0)
    q, r = (rng.standard_normal((n, dim)) for _ in range(2))
    q, r = (np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32) for x in (q, r))
    torch.set_num_threads(threads)
    out, ref = [], None
    for backend in ("cpp", "torch"):
        t = time.perf_counter()
        idx, sim, _ = topk_similarity(q, r, k, backend=backend, threads=threads)
        wall = time.perf_counter() - t
        same = None if ref is None else float((np.abs(sim - ref[1]) < 1e-5).mean())
        ref = ref or (idx, sim)
        out.append({"backend": backend, "n_query": n, "n_ref": n, "dim": dim, "k": k, "threads": threads,
                    "seconds": round(wall, 3), "pairs_per_s": n * n / wall, "similarities_equal_to_cpp": same})
        print(f"  topk {backend}: {wall:.2f} s", file=sys.stderr)
    return out


def _fmt(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _median(rows, method, names=None) -> float | None:
    vals = [r[method]["pearson"] for r in rows if method in r and (names is None or r["marker"] in names)]
    return float(np.median(vals)) if vals else None


def _held_out_table(name: str, d: dict) -> list[str]:
    rows = d["rows"]
    methods, rho = _shown(METHODS, rows), _shown(RHO, rows)
    head = ["marker", "split", "in training", "detected", *(f"{m} r" for m in methods), *(f"{m} ρ" for m in rho)]
    status = "; ".join(f"{label}: {d.get(col, 'not run')}" for col, label in
                       (("maxfuse", "MaxFuse"), ("tangram", "Tangram"), ("moscot", "moscot")))
    status += "".join(f"; {col}: {d[col]}" for col in PEER_COLUMNS if col not in PEER_NAMES and col in d)
    lines = [f"### {name}: held-out markers ({d['n_cells']} cells, {d['n_markers']} markers, {len(rows)} predictable; "
             f"{d['seconds']} s; {status})",
             "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        split = "validation" if r["marker"] in d["validation"] else "test"
        vals = [r.get(m, {}).get("pearson") for m in methods] + [r.get(m, {}).get("spearman") for m in rho]
        detected = f"{r['detected']:.0%}" if "detected" in r else "–"
        lines.append(f"| {r['marker']} | {split} | {'yes' if r['measured_in_training'] else 'gene link'} | "
                     f"{detected} | " + " | ".join(_fmt(v) for v in vals) + " |")
    supported = {r["marker"] for r in rows if r.get("supported")}
    for label, names in (("test markers", d["test"]), ("validation markers", d["validation"]), ("all", None),
                         ("supported", supported), ("unsupported", {r["marker"] for r in rows} - supported)):
        lines.append(f"| **median, {label}** | | | | " + " | ".join(_fmt(_median(rows, m, names)) for m in methods)
                     + " |" * (len(rho) + 1))
    return lines + [""]


def _shown(methods, rows) -> list[str]:
    """The columns of a per-marker table: every method, the predicted-panel peers only where they were fitted."""
    return [m for m in methods if m in PEER_NAMES or m not in PEER_COLUMNS or any(m in r for r in rows)]


def _epochs(record: dict) -> str:
    e = record["epochs"]
    if isinstance(e, dict):  # per stage, read from the model's config
        how = f"trained in this run in {record['train_s']} s" if record.get("trained_here") else "loaded with --model"
        return f"epochs {e['pretrain']}/{e['align']}/{e['translate']} (pretrain/align/translate), {how}"
    return f"{e} epochs per stage, {record['train_s']} s"


def write_readme(record: dict) -> None:
    m, sel = record["machine"], record["selection"]
    lines = [START, "## Mapping scRNA-seq onto spatial proteomics (`bench_mapping.py`)", "",
             "Regenerate: `.venv/bin/python benchmarks/bench_mapping.py --threads 2 --peer-features rna predicted` "
             "(needs `bash benchmarks/peers/setup.sh` for the peers; writes `benchmarks/results/mapping.json` and this "
             "section; `--readme-only` rewrites the section from the JSON).", "",
             f"Command: `{record['command']}`; machine: {m['cpu']}, {m['threads']} threads, Python {m['python']}, "
             f"torch {m['torch']}; peers: {record['peer_versions']}. Model {record['model_id']} trained on MALT "
             f"(1000 cells, {_epochs(record)}); k = {record['k']}, "
             f"temperature {record['temperature']:.3f} (the model's CLIP temperature) for every top-k method; "
             f"encoder adaptation {record['adapt_epochs']} epochs.", "",
             "**Held-out marker test.** Each imaged marker the model can predict is hidden from the panel; every "
             "method maps the MALT query RNA (1100 cells) onto the imaged cells with the remaining markers, and the "
             "hidden marker is imputed the same way for all: mapping weights × the model's prediction of that marker "
             "on the scRNA-seq cells; Pearson r (and Spearman ρ) with the measured value over the imaged cells. "
             "`model`: the default of `scprospatial map`: the fused score a·(joint-space cosine of the imaged "
             "cell's protein-encoder embedding and the scRNA-seq cell's RNA embedding) + (1−a)·(cosine of the "
             "z-scored measured markers with the z-scored model's prediction of them from the cell's RNA), the "
             "panel moved to the model's scale first and, when a > 0 and adaptation is on, the protein encoder "
             "adapted to the panel by masked-value training on the imaged cells (always without the hidden marker); "
             f"the default a is {record['defaults']['fuse_weight']}"
             + (" (issue 18's diagnosis below: the joint space adds nothing), so `model` is the `shared` control: "
                "the mapping runs on the predicted panel alone" if record["defaults"]["fuse_weight"] == 0 else "")
             + ". `joint`: the unadapted joint space on the raw panel alone. Controls: `shared` "
             "(no joint space: the panel agreement alone, the fused score at weight 0), `random` (random "
             "imaged-cell embeddings) and `baseline`, the no-model baseline of issue 18 exactly as defined there: "
             "each panel marker z-scored over the imaged cells and each marker's coding-gene RNA (log-normalised, "
             "mean over its coding genes) z-scored over the scRNA-seq cells; each imaged cell's panel profile "
             "(hidden marker left out; markers without a coding gene in the RNA dropped) correlated (Pearson) with "
             "each scRNA-seq cell's coding-gene profile; the 10 best-correlated scRNA-seq cells, equal weights; the "
             "hidden marker imputed as the mean of its coding-gene RNA over them (not the model's prediction; a "
             "constant imputation, a gene never detected, scores 0). `maxfuse`: "
             "MaxFuse (tutorial settings) on coding-gene RNA vs measured markers; its matching is used as weights "
             "(unmatched imaged cells get the scRNA-seq mean). `tangram`: Tangram (`map_cells_to_space`, mode "
             "\"cells\", tutorial settings: learning rate 0.1, every shared feature a training gene; 1000 epochs, "
             "its default; CPU, seeded; density prior \"uniform\", one imaged cell per spot) on the same inputs as "
             "MaxFuse; each imaged cell keeps its 10 most probable scRNA-seq cells of Tangram's cell × spot matrix "
             "(k = 10 as the top-k methods), probabilities renormalised. Peers are fitted on the test markers and "
             "the full panel only (not tuned here); their fitting seconds (table headings) were taken on 1 thread "
             "beside other jobs on a shared 2-core machine: provisional."
             + (" The peers' columns were added to the stored rows of the same model (held-out loop not rerun): "
                + "; ".join(f"`{c}`" for c in record["peers_added"]) + "." if record.get("peers_added") else "")
             + (" `moscot`: moscot's MappingProblem as in its spatial-mapping tutorial (fused Gromov-Wasserstein: "
                "quadratic term between the scRNA-seq cells' PCA, 30 components of the z-scored 2000 most variable "
                "genes, and the imaged cells' coordinates; linear term on the same shared features as MaxFuse, "
                "z-scored per side, through its \"local-pca\" callback; `solve()` defaults: alpha 0.5, epsilon 0.01, "
                "balanced; CPU); each imaged cell keeps its 10 largest entries of the transport plan, renormalised."
                if any("moscot" in d for d in record["datasets"].values()) else " moscot was not run.")
             + (" Columns `maxfuse (pred)`, `tangram (pred)`, `moscot (pred)` (`--peer-features predicted`): the same "
                "peers with their shared features replaced by the model's predicted panel (the model's prediction "
                "of the same linked markers from each scRNA-seq cell's RNA, the values `model` links on), all else "
                "unchanged (so features and algorithm are no longer confounded); they depend on the model and are "
                "fitted for the main model (seed 0) only, never reused for the other seeds' rows."
                if any(c in d for d in record["datasets"].values() for c in PEER_COLUMNS if c not in PEER_NAMES)
                else ""),
             "",
             "**Selection protocol (no test marker seen).** Each panel's markers are split in half by a seeded "
             "permutation (column `split`); the fuse weight a (score = a·joint + (1−a)·panel) is chosen on the "
             "validation markers only (mean over the two panels and over the models of every training seed of the "
             "median Pearson; the table's figures are means over those models), and the test-marker "
             "medians are the result. The adaptation's epochs (10) were not tuned on these markers.", "",
             "| encoder, fuse weight a | " + " | ".join(f"{n} validation | {n} test" for n in record["datasets"])
             + " |", "|---|" + "---|---|" * len(record["datasets"])]
    for key, per in sel["grid"].items():
        mark = " (selected)" if key == sel["selected"] else ""
        lines.append(f"| {key}{mark} | " + " | ".join(f"{v['validation']:.3f} | {v['test']:.3f}" for v in per.values())
                     + " |")
    d = record["defaults"]
    lines += ["", f"`adapted`: protein encoder adapted to the panel ({record['adapt_epochs']} epochs); `aligned`: "
              "unadapted encoder (both embed the panel moved to the model's scale). a = 0 is the shared control. "
              f"Package defaults (`_fuse.FUSE_WEIGHT`, `_adapt.ADAPT_EPOCHS`): a = {d['fuse_weight']}, "
              f"{d['adapt_epochs']} adaptation epochs (the `model` column)."
              + (f" The selection changed the defaults after the run; the `model` column (and its label transfer) "
                 f"was then recomputed with them on the same model: `{record['rescored']}`." if "rescored" in record
                 else "") + _selection_note(record), "",
              "Caveat: the scRNA-seq is not from these tissues (none is available), so this measures what the "
              "mapping carries across a tissue mismatch, not the method's ceiling.", ""]
    lines += _seeds_section(record)
    lines += _features_section(record)
    for name, d in record["datasets"].items():
        lines += _held_out_table(name, d)
    lines += _labels_section(record)
    diag = Path(__file__).resolve().parent / "results" / "mapping_diagnosis.json"
    if diag.is_file():
        from _diag_tables import diagnosis_section

        lines += diagnosis_section(json.loads(diag.read_text()))
    lines += _kernel_section(record)
    replace_section("\n".join(lines + [END]), START, END)


def grid_key(adapted: bool, weight: float) -> str:
    """A point of the selection grid: encoder adapted or not, fuse weight."""
    return f"{'adapted' if adapted else 'aligned'} {weight}"


def runs(d: dict) -> list[list[dict]]:
    """A panel's held-out rows of every model: the main model's, then each replicate's (another training seed)."""
    return [d["rows"], *(rep["rows"] for rep in d.get("replicates", []))]


def _paired(record: dict, key_a: str, key_b: str, part: str) -> tuple[float, float, int]:
    """Mean and standard error over (panel, training seed) of the difference of the median Pearson on `part`
    markers between grid points key_a and key_b."""
    diffs = []
    for d in record["datasets"].values():
        for rows in runs(d):
            names = set(d[part])
            diffs.append(np.median([r["grid"][key_a] for r in rows if r["marker"] in names])
                         - np.median([r["grid"][key_b] for r in rows if r["marker"] in names]))
    n = len(diffs)
    return float(np.mean(diffs)), float(np.std(diffs, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"), n


def _selection_note(record: dict) -> str:
    """When the validation selection is not the package default: how large the difference is against its noise."""
    d = record["defaults"]
    default = grid_key(d["adapt_epochs"] > 0 and d["fuse_weight"] > 0, d["fuse_weight"])
    chosen = record["selection"]["selected"]
    if chosen == default or default not in record["selection"]["grid"]:
        return ""
    if chosen.split()[-1] == default.split()[-1] == "0.0":   # at weight 0 the encoder is not in the score
        return f" The selection `{chosen}` is the default: at a = 0 the encoder (adapted or not) is not in the score."
    val, val_se, n = _paired(record, default, chosen, "validation")
    test, test_se, _ = _paired(record, default, chosen, "test")
    return (f" The validation medians select `{chosen}`, not the default `{default}`; the default minus the "
            f"selection, per (panel, training seed), n = {n}: validation {val:+.3f} ± {val_se:.3f} (mean ± standard "
            f"error), test {test:+.3f} ± {test_se:.3f}. Neither is distinguishable from zero, so the default was "
            "not changed on this run (a default follows the selection when the difference exceeds its noise).")


def _seeds_section(record: dict) -> list[str]:
    """Medians of every method for each training seed's model (validation and test markers), their mean, SD and
    95% t-interval over seeds; supported and unsupported markers apart; the model against the no-model baseline
    per (panel, seed)."""
    if not any(d.get("replicates") for d in record["datasets"].values()):
        return []
    seeds = [record.get("seed", 0), *record.get("replicate_seeds", [])]
    lines = ["### Training seeds: medians per model", "",
             f"The held-out loop was run with {len(seeds)} models trained on the same cells from seeds "
             f"{', '.join(map(str, seeds))} (the first is the model of the per-marker tables below). The no-model "
             "`baseline` does not depend on the model: it is the same on every seed's row. A difference between "
             "methods smaller than the spread over seeds is not a difference. Supported: the coding gene detected "
             "(count > 0) in ≥ 10% of the scRNA-seq cells. Peers fitted on the predicted panel (`(pred)` columns) "
             "depend on the model: they were fitted for seed 0's model only, so the other seeds' rows show '–' and "
             "their mean rows are seed 0's figure, not a mean.", ""]
    for name, d in record["datasets"].items():
        all_rows = runs(d)
        methods = [m for m in METHODS if any(m in r for r in d["rows"])]
        lines += [f"{name}:", "", "| seed | markers | " + " | ".join(methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        for part in ("validation", "test"):
            med = {m: [_median(rows, m, d[part]) for rows in all_rows] for m in methods}
            for i, seed in enumerate(seeds[:len(all_rows)]):
                lines.append(f"| {seed} | {part} | " + " | ".join(_fmt(med[m][i]) for m in methods) + " |")
            lines.append(f"| **mean ± SD [95% CI]** | {part} | " + " | ".join(_mean_sd(med[m], ci=True)
                                                                           for m in methods) + " |")
            for label, keep in (("supported", True), ("unsupported", False)):
                names = [r["marker"] for r in d["rows"] if r["marker"] in d[part] and r.get("supported") == keep]
                vals = {m: [_median(rows, m, names) for rows in all_rows] for m in methods}
                lines.append(f"| mean, {label} ({len(names)}) | {part} | "
                             + " | ".join(_mean_sd(vals[m]) for m in methods) + " |")
        lines.append("")
        for part in ("validation", "test"):
            diffs = [_median(rows, "model", d[part]) - _median(rows, "baseline", d[part]) for rows in all_rows
                     if any("baseline" in r for r in rows)]
            if diffs:
                se = np.std(diffs, ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
                lines.append(f"{part} markers: model minus baseline per seed {', '.join(f'{x:+.3f}' for x in diffs)}"
                             f" (mean {np.mean(diffs):+.3f} ± {se:.3f} standard error).")
        for other in ("baseline", "shared", "maxfuse", "maxfuse (pred)"):
            pairs = [(r["model"]["pearson"], r[other]["pearson"]) for rows in all_rows for r in rows
                     if r["marker"] in d["test"] and other in r and "model" in r]
            if pairs:
                above = sum(a > b for a, b in pairs)
                lines += ["", f"model above {other} on {above} of {len(pairs)} (test marker, seed) pairs."]
        lines.append("")
    return lines


def _features_section(record: dict) -> list[str]:
    """Each peer fitted on coding-gene RNA and on the predicted panel, beside `model`: test-marker medians (main
    model, seed 0: the only one the predicted-panel fits exist for), supported and unsupported markers apart."""
    if not any(c in r for d in record["datasets"].values() for r in d["rows"] for c in PEER_COLUMNS
               if c not in PEER_NAMES):
        return []
    lines = ["### Peers on raw RNA vs on the predicted panel", "",
             "The same peer, the same inputs except its shared features: `rna`, each linked marker's coding-gene RNA; "
             "`predicted`, the model's prediction of the same markers from each scRNA-seq cell's RNA (the panel "
             "`model` links on). Test markers, the main model (seed 0; the predicted-panel fits depend on the model "
             "and exist for it only); median Pearson r; balanced accuracy of the label transfer (full panel) where "
             "the fit was made in this run. `fit`: refitted with this run's model, or stored from an earlier run "
             "(another model: its imputed values used that model's predictions).", ""]
    for name, d in record["datasets"].items():
        test = set(d["test"])
        sup = {r["marker"] for r in d["rows"] if r.get("supported")} & test
        scores = (d.get("labels") or {}).get("scores", {})
        lines += [f"{name} ({len(sup)} supported, {len(test - sup)} unsupported test markers):", "",
                  "| method | features | fit | test | supported | unsupported | balanced accuracy |",
                  "|---|---|---|---|---|---|---|"]
        for col, peer, feat in [("model", "model", "predicted"),
                                *((peer_column(p, f), p, f) for p in PEER_NAMES for f in FEATURES)]:
            if not any(col in r for r in d["rows"]):
                continue
            status = d.get(col, "this run")
            fit = "stored" if "stored from" in status else "refitted" if col != "model" else "this run"
            bal = scores.get(col, {}).get("balanced_accuracy")
            lines.append(f"| {peer} | {feat} | {fit} | " + " | ".join(_fmt(_median(d["rows"], col, names))
                                                                    for names in (test, sup, test - sup))
                         + f" | {_fmt(bal)} |")
        lines.append("")
        for p in PEER_NAMES:
            if all(any(c in r for r in d["rows"]) for c in (p, peer_column(p, "predicted"))):
                gain = [_diff(d["rows"], peer_column(p, "predicted"), p, names) for names in (test, sup, test - sup)]
                gap = [_diff(d["rows"], "model", peer_column(p, "predicted"), names)
                       for names in (test, sup, test - sup)]
                lines.append(f"{p}: predicted panel minus raw RNA {_triple(gain)}; model minus {p} on the predicted "
                             f"panel {_triple(gap)} (test / supported / unsupported).")
            elif not any(peer_column(p, "predicted") in r for r in d["rows"]):
                lines.append(f"{p}: not fitted on the predicted panel (only its raw-RNA column, `fit` above).")
        lines.append("")
    return lines


def _diff(rows, a: str, b: str, names) -> float | None:
    x, y = _median(rows, a, names), _median(rows, b, names)
    return None if x is None or y is None else x - y


def _triple(values) -> str:
    return " / ".join("–" if v is None else f"{v:+.3f}" for v in values)


def _mean_sd(values, ci: bool = False) -> str:
    """Mean ± SD over seeds and, with ci, the 95% t-interval of the mean."""
    from scipy import stats

    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    mean, sd = np.mean(v), np.std(v, ddof=1)
    half = stats.t.ppf(0.975, len(v) - 1) * sd / np.sqrt(len(v))
    return f"{mean:.3f} ± {sd:.3f}" + (f" [{mean - half:.3f}, {mean + half:.3f}]" if ci else "")


def _labels_section(record: dict) -> list[str]:
    lines = ["### Label transfer (full panel)", "",
             "MALT scRNA-seq cells have no labels: each gets the coarse class of the marker-gene set it expresses "
             f"most (mean log-normalised expression ≥ {MIN_SCORE}, else unassigned): "
             + "; ".join(f"{c}: {', '.join(g)}" for c, g in COARSE_GENES.items()) + ". CODEX `ClusterName` → "
             "coarse class: " + "; ".join(f"{k} → {v}" for k, v in CODEX_COARSE.items()) + " (all other clusters — "
             "stroma, smooth muscle, vasculature, tumour, nerves, lymphatics, undefined, dirt — have no counterpart "
             "in the MALT RNA and are left out). CyCIF: the table carries no phenotypes (they are in the scimap "
             "wheel's .h5ad twin, not here), so no label transfer.", ""]
    for name, d in record["datasets"].items():
        lab = d.get("labels")
        if not lab:
            continue
        lines += [f"{name}: {lab['n_cells']} imaged immune cells ({lab['own']}); RNA classes {lab['rna']}.", "",
                  "| method | accuracy | balanced accuracy | macro-F1 |", "|---|---|---|---|"]
        scores = lab.get("scores", {})
        for k in [*lab["agreement"], *(c for c in scores if c not in lab["agreement"])]:
            sc = scores.get(k, {"accuracy": lab["agreement"].get(k)})
            lines.append(f"| {k} | " + " | ".join(_fmt(sc.get(c)) for c in ("accuracy", "balanced_accuracy",
                                                                               "macro_f1")) + " |")
        lines += ["", "Controls without mapping: `majority class` (every cell given the commonest class among the "
                  "imaged immune cells) and `random assignment` (every cell given the class of a random scRNA-seq "
                  "cell, seeded). Peers whose full-panel matching was fitted in an earlier run carry their stored "
                  "accuracy only (their balanced accuracy and macro-F1 need a refit, hours).", ""]
    return lines


def _kernel_section(record: dict) -> list[str]:
    lines = ["### Top-k kernel", "", "| backend | query × reference | dim | k | threads | seconds | pairs/s | "
             "similarities equal to C++ |", "|---|---|---|---|---|---|---|---|"]
    for t in record.get("kernel", []):
        eq = "–" if t["similarities_equal_to_cpp"] is None else f"{t['similarities_equal_to_cpp']:.4f}"
        lines.append(f"| {t['backend']} | {t['n_query']:,} × {t['n_ref']:,} | {t['dim']} | {t['k']} | {t['threads']} "
                     f"| {t['seconds']} | {t['pairs_per_s']:.3g} | {eq} |")
    for t in record.get("kernel_gpu", []):
        lines.append(f"| {t['backend']} ({t['device']}) | {t['n_query']:,} × {t['n_ref']:,} | {t['dim']} | {t['k']} "
                     f"| – | {t['seconds']} | {t['n_query'] * t['n_ref'] / t['seconds']:.3g} | – |")
    return lines + ["", "Kernel timings: `--kernel-scale N` (N cells per side) re-measures them; otherwise the "
                    "previous run's are kept. Memory: one packed copy of the reference plus one tile per thread; "
                    "the n × n similarity matrix is never formed."]
