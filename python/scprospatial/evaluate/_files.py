"""`scprospatial evaluate`: read cohorts, build the splits, run every method, write the tables."""
from __future__ import annotations

import json
import os
import platform
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import anndata as ad
from threadpoolctl import threadpool_limits

from .. import _constants as K
from .._logging import logger
from .._settings import scoped_threads, seed_everything, thread_count
from ..errors import InputError
from ..io import write_table, write_text
from . import splits as S
from ._model import MODEL_NAMES, ScProSpatialMethod, model_available
from ._run import run_splits, summarise, summary_markdown
from .baselines import BASELINE_NAMES, KNN, N_PCS, CodingGene, KernelRidgeSVD, MeanPredictor, Method, Ridge

METHODS = (*MODEL_NAMES, *BASELINE_NAMES)
_HIDDEN_CAPABLE = ("coding_gene", *MODEL_NAMES)


MIN_CELLS = 10


def load_cohort(path: str | os.PathLike) -> ad.AnnData:
    """A paired cohort in the prepared layout (any supported input, prepared on the fly by scprospatial.io.load)."""
    from ..io import load

    adata = load(path, kind="citeseq")
    if K.PROTEIN not in adata.obsm:
        raise InputError("no measured protein: evaluation needs paired CITE-seq cohorts", path)
    if adata.n_obs < MIN_CELLS:
        raise InputError(f"too few cells to hold any out: {adata.n_obs} (at least {MIN_CELLS})", path)
    return adata


def make_methods(names: Sequence[str] | None, *, split: str, epochs: int | None = None, device: str = "auto",
                 seed: int = 0) -> list:
    """Method objects by name; default: the model (when importable) and every baseline that fits the split."""
    if names is None:
        names = [n for n in METHODS if split != "leave-protein-out" or n in _HIDDEN_CAPABLE]
        names = [n for n in names if n == "scprospatial" or n not in MODEL_NAMES]  # ablations on request only
        if not model_available():
            warnings.warn("scprospatial.model is not importable yet: evaluating the baselines only", stacklevel=2)
            names = [n for n in names if n not in MODEL_NAMES]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if split == "leave-protein-out" and any(n not in _HIDDEN_CAPABLE for n in names):
        logger.warning("leave-protein-out: %s cannot predict a protein absent from training: not run",
                       ", ".join(n for n in names if n not in _HIDDEN_CAPABLE))
        names = [n for n in names if n in _HIDDEN_CAPABLE]
    factory: dict[str, Callable[[], Method]] = {
        "mean": MeanPredictor, "ridge_hvg": Ridge, f"ridge_pca{N_PCS}": lambda: Ridge(n_pcs=N_PCS),
        f"knn_pca{N_PCS}": lambda: KNN(n_pcs=N_PCS),
        "krr_svd": lambda: KernelRidgeSVD(seed=seed), "coding_gene": CodingGene}
    return [ScProSpatialMethod(ablation=MODEL_NAMES[n], epochs=epochs, device=device, seed=seed)
            if n in MODEL_NAMES else factory[n]() for n in names]


def make_splits(adatas: Sequence[ad.AnnData], split: str, *, seeds: int, seed: int,
                cell_type_key: str | None = None) -> list[S.Split]:
    if split not in S.SPLITS:
        raise InputError(f"unknown split {split!r}; choose from {', '.join(S.SPLITS)}")
    first = adatas[0]
    if split == "random":
        return S.random_splits(first, n_seeds=seeds, seed=seed)
    if split == "few-shot":
        return S.few_shot_splits(first, n_seeds=seeds, seed=seed)
    if split == "leave-type-out":
        return S.leave_type_out_splits(first, S.cell_types(first, key=cell_type_key, seed=seed), seed=seed)
    if split == "leave-protein-out":
        return S.leave_protein_out_splits(first, n_seeds=1, seed=seed)
    if len(adatas) < 2:
        raise InputError("cross-cohort needs two or more cohorts: the first trains, the others are tested")
    return S.cross_cohort_splits(first, adatas[1:], n_seeds=seeds, seed=seed)


def _run_info(inputs, adatas, split, splits, methods, seed, threads) -> dict:
    from importlib.metadata import version

    return {"split": split, "n_splits": len(splits), "seed": seed, "threads": threads,
            "methods": [m.name for m in methods], "inputs": [os.fspath(p) for p in inputs],
            "cohorts": [{"n_cells": a.n_obs, "n_genes": a.n_vars, "panel": [str(c) for c in a.obsm[K.PROTEIN].columns]}
                        for a in adatas],
            "versions": {**{p: version(p) for p in ("scprospatial", "anndata", "scikit-learn", "scanpy", "torch")},
                         "python": platform.python_version()}}


@scoped_threads
def evaluate_files(inputs: Sequence[str | os.PathLike], outdir: str | os.PathLike, *, split: str = "random",
                   seeds: int = 5, methods: Sequence[str] | None = None, seed: int = 0, device: str = "auto",
                   threads: int | None = None, epochs: int | None = None, predictions: bool = False,
                   cell_type_key: str | None = None, extra_methods: Sequence = ()) -> Path:
    """Benchmark methods on `split` of the paired cohorts `inputs`; returns `outdir`.

    `extra_methods` are method objects (the Method protocol: name, fit, predict) run after the named ones on
    the same splits, e.g. the benchmark's adapters for outside tools.

    Writes metrics_per_protein.csv (split x method x protein), metrics_per_split.csv (averaged over
    proteins, with the paper's pooled cosine and timings), summary.csv (mean and sd over seeds or folds),
    summary.md, run.json, and predictions.csv.gz when `predictions`.
    """
    if seeds < 1:
        raise InputError(f"--n-seeds must be >= 1, got {seeds}")
    threads = thread_count(threads)
    seed_everything(seed)
    chosen = [*make_methods(methods, split=split, epochs=epochs, device=device, seed=seed), *extra_methods]
    names = [m.name for m in chosen]
    if len(set(names)) < len(names):
        raise InputError(f"method names must be unique, got {', '.join(names)}")
    adatas = [load_cohort(p) for p in inputs]
    with threadpool_limits(limits=threads):  # BLAS threads as asked (oversubscribed OpenBLAS crawls)
        splits = make_splits(adatas, split, seeds=seeds, seed=seed, cell_type_key=cell_type_key)
        logger.info("evaluate: %s split, %d splits x %d methods (%s)", split, len(splits), len(chosen),
                    ", ".join(m.name for m in chosen))
        tables = run_splits(adatas, splits, chosen, keep_predictions=predictions)
    outdir = Path(outdir)
    summary = summarise(tables["per_split"])
    write_table(tables["per_protein"], outdir / "metrics_per_protein.csv", index=False)
    write_table(tables["per_split"], outdir / "metrics_per_split.csv", index=False)
    write_table(summary, outdir / "summary.csv", index=False)
    write_text(f"### {split}\n\n" + summary_markdown(summary), outdir / "summary.md")
    write_text(json.dumps(_run_info(inputs, adatas, split, splits, chosen, seed, threads), indent=2),
               outdir / "run.json")
    if predictions:
        write_table(tables["predictions"], outdir / "predictions.csv.gz", index=False)
    return outdir
