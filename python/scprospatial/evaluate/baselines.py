"""Baselines that run through the same loop as the model (scikit-learn).

A method has `name`, `fit(train, val)` and `predict(adata, proteins) -> DataFrame` (cells x the proteins it
can predict; it may return fewer columns than asked, e.g. a regression cannot predict a protein hidden
from training). `train`/`val` are prepared AnnData (log-normalised RNA in X, obsm['protein']).
Hyper-parameters (ridge alpha, k) are chosen by validation MSE, then the regressor is refit on train + val.
"""
from __future__ import annotations

import functools
import warnings
from typing import Mapping, Protocol, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K
from .._logging import logger
from ..errors import InputError

RIDGE_ALPHAS = tuple(10.0 ** np.arange(-2.0, 6.01, 0.5))
KNN_KS = (3, 5, 10, 15, 20, 30, 50)
N_HVG = 2000
N_PCS = 50


class Method(Protocol):
    name: str

    def fit(self, train: ad.AnnData, val: ad.AnnData) -> None: ...

    def predict(self, adata: ad.AnnData, proteins: Sequence[str]) -> pd.DataFrame: ...


def protein_frame(adata: ad.AnnData) -> pd.DataFrame:
    """Measured protein of a prepared cohort; a clear error when the cohort has none."""
    if K.PROTEIN not in adata.obsm:
        raise InputError(f"no obsm['{K.PROTEIN}']: evaluation needs paired CITE-seq cohorts",
                         adata.uns.get(K.UNS, {}).get("source"))
    df = adata.obsm[K.PROTEIN]
    return df if isinstance(df, pd.DataFrame) else pd.DataFrame(df, index=adata.obs_names)


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def gene_matrix(adata: ad.AnnData, genes: Sequence[str]) -> np.ndarray:
    """Log-normalised expression of `genes` (a gene absent from `adata` reads as 0)."""
    idx = adata.var_names.get_indexer(list(genes))
    out = np.zeros((adata.n_obs, len(idx)))
    have = idx >= 0
    if have.any():
        out[:, have] = _dense(adata.X[:, idx[have]])
    return out


def highly_variable_genes(adata: ad.AnnData, n_top: int) -> list[str]:
    """Top `n_top` genes by normalised dispersion of the log-normalised X (Seurat flavour, as scanpy)."""
    import scanpy as sc

    if adata.n_vars <= n_top:
        return list(map(str, adata.var_names))
    tmp = ad.AnnData(X=adata.X, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hv = sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat", inplace=False)
    return list(map(str, tmp.var_names[np.asarray(hv["highly_variable"], dtype=bool)]))


def _cells_key(adata: ad.AnnData) -> tuple:
    """Identity of a set of cells and genes, so features fitted once serve every method of a split."""
    return (hash(tuple(adata.obs_names)), hash(tuple(adata.var_names)), adata.n_obs, adata.n_vars)


@functools.lru_cache(maxsize=4)
def _fit_features(key: tuple, n_hvg: int, n_pcs: int | None, train: "_Hold") -> tuple:
    genes = highly_variable_genes(train.adata, n_hvg)
    if not n_pcs:
        return genes, None, None
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = gene_matrix(train.adata, genes)
    scaler = StandardScaler().fit(x)
    n = min(n_pcs, x.shape[0] - 1, x.shape[1])
    pca = PCA(n_components=n, svd_solver="full").fit(np.clip(scaler.transform(x), -10, 10))
    return genes, scaler, pca


class _Hold:
    """Carries an AnnData through lru_cache without hashing it (the cache key is `_cells_key`)."""

    def __init__(self, adata):
        self.adata = adata

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, _Hold)


class Features:
    """HVGs chosen on the training cells; optionally scaled (fit on train, clipped at 10) and PCA-reduced.

    Fits are cached per set of training cells, so methods sharing a feature map on a split fit it once.
    """

    def __init__(self, n_hvg: int = N_HVG, n_pcs: int | None = None):
        self.n_hvg, self.n_pcs = n_hvg, n_pcs

    def fit(self, train: ad.AnnData) -> "Features":
        self.genes, self.scaler, self.pca = _fit_features(_cells_key(train), self.n_hvg, self.n_pcs, _Hold(train))
        return self

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        x = gene_matrix(adata, self.genes)
        if self.n_pcs:
            x = self.pca.transform(np.clip(self.scaler.transform(x), -10, 10))
        return x


def _targets(train: ad.AnnData, val: ad.AnnData) -> tuple[pd.DataFrame, pd.DataFrame]:
    y_tr, y_va = protein_frame(train), protein_frame(val)
    if y_tr.isna().any().any():
        raise InputError("training cells have missing protein values; evaluate one cohort's panel at a time",
                         train.uns.get(K.UNS, {}).get("source"))
    return y_tr, y_va[y_tr.columns]


class MeanPredictor:
    """Every cell gets the training mean of each protein."""

    name = "mean"

    def fit(self, train: ad.AnnData, val: ad.AnnData) -> None:
        y_tr, y_va = _targets(train, val)
        self.means = pd.concat([y_tr, y_va]).mean()

    def predict(self, adata: ad.AnnData, proteins: Sequence[str]) -> pd.DataFrame:
        cols = [p for p in proteins if p in self.means.index]
        return pd.DataFrame(np.tile(self.means[cols].to_numpy(), (adata.n_obs, 1)), index=adata.obs_names, columns=cols)


class _Regression:
    """Feature map + sklearn regressor with one hyper-parameter picked on the validation cells."""

    name = "regression"
    param_name = "param"
    grid: Sequence = ()

    def __init__(self, features: Features):
        self.features = features

    def _make(self, value): raise NotImplementedError

    def fit(self, train: ad.AnnData, val: ad.AnnData) -> None:
        y_tr, y_va = _targets(train, val)
        self.proteins = list(y_tr.columns)
        self.features.fit(train)
        x_tr, x_va = self.features.transform(train), self.features.transform(val)
        grid = self._grid(len(x_tr))
        losses = self._val_losses(x_tr, y_tr.to_numpy(), x_va, y_va.to_numpy(), grid)
        self.chosen = grid[int(np.argmin(losses))]
        logger.debug("%s: %s=%s (validation MSE %.4f)", self.name, self.param_name, self.chosen, min(losses))
        self.model = self._make(self.chosen).fit(np.vstack([x_tr, x_va]), pd.concat([y_tr, y_va]).to_numpy())

    def _grid(self, n_fit: int) -> list:
        return list(self.grid)

    def _val_losses(self, x_tr, y_tr, x_va, y_va, grid) -> list[float]:
        return [float(np.mean((self._make(v).fit(x_tr, y_tr).predict(x_va) - y_va) ** 2)) for v in grid]

    def predict(self, adata: ad.AnnData, proteins: Sequence[str]) -> pd.DataFrame:
        pred = pd.DataFrame(self.model.predict(self.features.transform(adata)), index=adata.obs_names,
                            columns=self.proteins)
        return pred[[p for p in proteins if p in self.proteins]]


class Ridge(_Regression):
    param_name, grid = "alpha", RIDGE_ALPHAS

    def __init__(self, *, n_pcs: int | None = None, n_hvg: int = N_HVG):
        super().__init__(Features(n_hvg, n_pcs))
        self.name = f"ridge_pca{n_pcs}" if n_pcs else "ridge_hvg"

    def _val_losses(self, x_tr, y_tr, x_va, y_va, grid) -> list[float]:
        """The whole alpha path from one SVD of the centred training features (same fit as sklearn's Ridge)."""
        xm, ym = x_tr.mean(0), y_tr.mean(0)
        u, s, vt = np.linalg.svd(x_tr - xm, full_matrices=False)
        uty, xv = u.T @ (y_tr - ym), (x_va - xm) @ vt.T
        return [float(np.mean((xv @ ((s / (s**2 + a))[:, None] * uty) + ym - y_va) ** 2)) for a in grid]

    def _make(self, value):
        from sklearn.linear_model import Ridge as SkRidge

        return SkRidge(alpha=value)


class KNN(_Regression):
    param_name, grid = "k", KNN_KS

    def __init__(self, *, n_pcs: int = N_PCS, n_hvg: int = N_HVG):
        super().__init__(Features(n_hvg, n_pcs))
        self.name = f"knn_pca{n_pcs}"

    def _grid(self, n_fit: int) -> list:
        return [k for k in self.grid if k <= n_fit] or [n_fit]

    def _val_losses(self, x_tr, y_tr, x_va, y_va, grid) -> list[float]:
        """One neighbour query at the largest k; each k averages its nearest `k` of them."""
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=max(grid)).fit(x_tr).kneighbors(x_va, return_distance=False)
        return [float(np.mean((y_tr[idx[:, :k]].mean(1) - y_va) ** 2)) for k in grid]

    def _make(self, value):
        from sklearn.neighbors import KNeighborsRegressor

        return KNeighborsRegressor(n_neighbors=value)


def coding_gene_links(proteins: Sequence[str], gene_links: Mapping[str, Sequence[str]] | None = None) -> dict:
    """protein -> coding gene symbols, from `gene_links` or the shipped protein vocabulary (scprospatial.vocab)."""
    if gene_links is not None:
        return {p: list(gene_links.get(p, ())) for p in proteins}
    from ..vocab import get_vocabulary

    vocab = get_vocabulary()
    return {p: list(vocab.genes(p)) for p in proteins}


class CodingGene:
    """A protein's prediction is its coding gene's log-normalised RNA (mean over the genes of a complex).

    Needs no training and so predicts proteins hidden from training too. Its values are on the RNA scale:
    correlations compare with the other methods, CCC and RMSE do not.
    """

    name = "coding_gene"

    def __init__(self, gene_links: Mapping[str, Sequence[str]] | None = None):
        self.gene_links = gene_links
        self._reported: set[str] = set()

    def fit(self, train: ad.AnnData, val: ad.AnnData) -> None:
        return None

    def predict(self, adata: ad.AnnData, proteins: Sequence[str]) -> pd.DataFrame:
        links = coding_gene_links(proteins, self.gene_links)
        cols = {}
        for p in proteins:
            genes = [g for g in links.get(p, ()) if g in adata.var_names]
            if genes:
                cols[p] = gene_matrix(adata, genes).mean(axis=1)
            elif p not in self._reported:
                self._reported.add(p)
                logger.warning("coding_gene: no coding gene of %s in the RNA (links: %s)", p, links.get(p) or "none")
        return pd.DataFrame(cols, index=adata.obs_names)


def default_baselines(gene_links: Mapping[str, Sequence[str]] | None = None) -> list:
    return [MeanPredictor(), Ridge(), Ridge(n_pcs=N_PCS), KNN(n_pcs=N_PCS), CodingGene(gene_links)]


BASELINE_NAMES = ("mean", "ridge_hvg", f"ridge_pca{N_PCS}", f"knn_pca{N_PCS}", "coding_gene")
