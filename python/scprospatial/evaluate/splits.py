"""Seeded train / validation / test splits of paired cohorts.

Every split holds integer positions: `train` and `val` into the training cohort (val is carved out of
the training cells only and is what methods use for model selection), `test` into the test cohort
(the same cohort for every split except cross-cohort). `hidden_proteins` are removed from every
training panel before a method sees the cells.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from .. import _constants as K
from .._logging import logger
from ..errors import InputError

SPLITS = ("random", "few-shot", "leave-type-out", "cross-cohort", "leave-protein-out")
FEW_SHOT_FRACTIONS = (0.01, 0.05, 0.10, 0.20)


@dataclass(frozen=True)
class Split:
    name: str
    label: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_cohort: int = 0
    test_cohort: int = 0
    hidden_proteins: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"split": self.name, "setting": self.label, "seed": self.seed, "n_train": len(self.train),
                "n_val": len(self.val), "n_test": len(self.test)}


def _carve_val(train: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split training positions into (fit, val); val gets at least one cell and fit keeps at least two."""
    train = rng.permutation(train)
    n_val = min(max(1, int(round(val_fraction * len(train)))), max(len(train) - 2, 0))
    return np.sort(train[n_val:]), np.sort(train[:n_val])


def _holdout(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def random_splits(adata: ad.AnnData, *, n_seeds: int = 5, test_fraction: float = 0.2, val_fraction: float = 0.2,
                  seed: int = 0) -> list[Split]:
    """`n_seeds` random hold-outs of `test_fraction` of the cells; val is `val_fraction` of the rest."""
    out = []
    for s in range(seed, seed + n_seeds):
        rng = np.random.default_rng(s)
        train, test = _holdout(adata.n_obs, test_fraction, rng)
        fit, val = _carve_val(train, val_fraction, rng)
        out.append(Split("random", f"seed={s}", s, fit, val, test))
    return out


def few_shot_splits(adata: ad.AnnData, *, fractions: Sequence[float] = FEW_SHOT_FRACTIONS, n_seeds: int = 5,
                    test_fraction: float = 0.2, val_fraction: float = 0.2, seed: int = 0) -> list[Split]:
    """Random hold-outs, then training on `fraction` of the training part (val carved from that subset)."""
    out = []
    for s in range(seed, seed + n_seeds):
        rng = np.random.default_rng(s)
        train, test = _holdout(adata.n_obs, test_fraction, rng)
        for f in fractions:
            sub_rng = np.random.default_rng([s, int(round(f * 1e4))])
            n_sub = max(3, int(math.ceil(f * len(train))))
            subset = sub_rng.choice(train, size=min(n_sub, len(train)), replace=False)
            fit, val = _carve_val(subset, val_fraction, sub_rng)
            out.append(Split("few-shot", f"fraction={f:g}", s, fit, val, test))
    return out


def cell_types(adata: ad.AnnData, *, key: str | None = None, resolution: float = 0.5, seed: int = 0) -> pd.Series:
    """Cell-type labels: obs[key], else the column prepare recorded, else Leiden clusters of the RNA."""
    key = key or adata.uns.get(K.UNS, {}).get(K.CELL_TYPE_KEY)
    if key is not None:
        if key not in adata.obs:
            raise InputError(f"no obs column {key!r} with cell-type labels", adata.uns.get(K.UNS, {}).get("source"))
        return adata.obs[key].astype(str)
    import scanpy as sc

    logger.info("no cell-type labels given: clustering the RNA with Leiden (resolution %.2f)", resolution)
    tmp = ad.AnnData(X=adata.X.copy(), obs=pd.DataFrame(index=adata.obs_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, n_top_genes=min(2000, tmp.n_vars), flavor="seurat", subset=True)
        sc.pp.scale(tmp, max_value=10)
        sc.pp.pca(tmp, n_comps=min(30, tmp.n_obs - 1, tmp.n_vars - 1), random_state=seed)
        sc.pp.neighbors(tmp, n_neighbors=15, random_state=seed)
        sc.tl.leiden(tmp, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return tmp.obs["leiden"].astype(str).rename("leiden")


def leave_type_out_splits(adata: ad.AnnData, labels: pd.Series, *, min_cells: int = 20, val_fraction: float = 0.2,
                          seed: int = 0) -> list[Split]:
    """Each label with at least `min_cells` cells is the test set once; the others train."""
    labels = pd.Series(np.asarray(labels, dtype=str), index=adata.obs_names)
    counts = labels.value_counts()
    small = counts.index[counts < min_cells].tolist()
    if small:
        logger.info("leave-type-out: skipping %d types with fewer than %d cells as test sets: %s",
                    len(small), min_cells, ", ".join(small))
    out: list[Split] = []
    for t in sorted(counts.index[counts >= min_cells], key=lambda x: (len(x), x)):
        is_t = (labels == t).to_numpy()
        rng = np.random.default_rng([seed, len(out)])
        fit, val = _carve_val(np.flatnonzero(~is_t), val_fraction, rng)
        out.append(Split("leave-type-out", f"type={t}", seed, fit, val, np.flatnonzero(is_t)))
    return out


def cross_cohort_splits(train_adata: ad.AnnData, test_adatas: Sequence[ad.AnnData], *, n_seeds: int = 5,
                        val_fraction: float = 0.2, seed: int = 0) -> list[Split]:
    """Train on every cell of cohort 0 (val carved per seed); test on all cells of each other cohort."""
    out = []
    for s in range(seed, seed + n_seeds):
        fit, val = _carve_val(np.arange(train_adata.n_obs), val_fraction, np.random.default_rng(s))
        for j, test in enumerate(test_adatas, start=1):  # one training part per seed serves every test cohort
            name = test.uns.get(K.UNS, {}).get(K.DATASET, f"cohort{j}")
            out.append(Split("cross-cohort", f"test={name}", s, fit, val, np.arange(test.n_obs), 0, j))
    return out


def leave_protein_out_splits(adata: ad.AnnData, *, proteins: Sequence[str] | None = None, n_seeds: int = 1,
                             test_fraction: float = 0.2, val_fraction: float = 0.2, seed: int = 0) -> list[Split]:
    """Each protein hidden from training in turn (one split per protein and seed) over a random cell hold-out."""
    panel = [str(c) for c in adata.obsm[K.PROTEIN].columns]
    proteins = panel if proteins is None else list(proteins)
    missing = [p for p in proteins if p not in panel]
    if missing:
        raise InputError(f"proteins not in the panel: {', '.join(missing)}", adata.uns.get(K.UNS, {}).get("source"))
    out: list[Split] = []
    for s in range(seed, seed + n_seeds):
        rng = np.random.default_rng(s)
        train, test = _holdout(adata.n_obs, test_fraction, rng)
        fit, val = _carve_val(train, val_fraction, rng)
        out.extend(Split("leave-protein-out", f"hidden={p}", s, fit, val, test, hidden_proteins=(p,)) for p in proteins)
    return out
