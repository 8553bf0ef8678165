"""Baselines that run through the same loop as the model (scikit-learn).

A method has `name`, `fit(train, val)` and `predict(adata, proteins) -> DataFrame` (cells x the proteins it
can predict; it may return fewer columns than asked, e.g. a regression cannot predict a protein hidden
from training). `train`/`val` are prepared AnnData (log-normalised RNA in X, obsm['protein']).
Hyper-parameters (ridge alpha, k) are chosen by validation MSE, then the regressor is refit on train + val.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Protocol

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K
from .._logging import logger
from ..errors import InputError

_EPS = 1e-12

RIDGE_ALPHAS = tuple(10.0 ** np.arange(-2.0, 6.01, 0.5))
KNN_KS = (3, 5, 10, 15, 20, 30, 50)
N_HVG = 2000
N_PCS = 50
N_SVD = 300
GRAM_MAX_CELLS = 10_000  # SVD through the cells' Gram matrix up to this many training cells
KRR_ALPHAS = (0.01, 0.1, 1.0, 10.0)
KRR_GAMMA_SCALES = (0.1, 0.3, 1.0, 3.0)  # gamma = scale / mean squared distance between training cells


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
def _fit_features(key: tuple, n_hvg: int, n_pcs: int | None, train: _Hold) -> tuple:
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

    def fit(self, train: ad.AnnData) -> Features:
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

    def __init__(self, features: Features | SVDFeatures):
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


class SVDFeatures:
    """Truncated SVD of the log-normalised RNA over every gene (sparse, uncentred), fit on the training cells:
    exact through the cells' Gram matrix up to GRAM_MAX_CELLS cells, randomized beyond.

    As the NeurIPS 2021 GEX->ADT winner's inputs, except that the SVD sees training cells only (theirs also
    saw the test inputs).
    """

    def __init__(self, n_components: int = N_SVD, seed: int = 0):
        self.n_components, self.seed = n_components, seed

    def _matrix(self, adata: ad.AnnData) -> sp.csr_matrix:
        x = sp.csr_matrix(adata.X, dtype=np.float32)
        if adata.var_names.equals(self.genes):
            return x
        idx = adata.var_names.get_indexer(self.genes)  # genes absent from `adata` read as 0
        have = np.flatnonzero(idx >= 0)
        pick = sp.csr_matrix((np.ones(len(have)), (idx[have], have)), shape=(adata.n_vars, len(self.genes)))
        return sp.csr_matrix(x @ pick, dtype=np.float32)

    def fit(self, train: ad.AnnData) -> SVDFeatures:
        self.genes = train.var_names.copy()
        x = self._matrix(train)
        n = max(1, min(self.n_components, x.shape[0] - 1, x.shape[1] - 1))
        if x.shape[0] <= GRAM_MAX_CELLS:
            # exact: eigenvectors of the cells' Gram matrix X X^T are the left singular vectors
            x = x.astype(np.float64)
            lam, u = np.linalg.eigh((x @ x.T).toarray())
            keep = np.argsort(lam)[::-1][:n]
            keep = keep[lam[keep] > _EPS * max(lam.max(), 1.0)]
            self.components = np.asarray(x.T @ (u[:, keep] / np.sqrt(lam[keep])), dtype=np.float64)
        else:
            from sklearn.decomposition import TruncatedSVD

            svd = TruncatedSVD(n_components=n, algorithm="randomized", random_state=self.seed).fit(x)
            self.components = svd.components_.T.astype(np.float64)
        return self

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        return np.asarray(self._matrix(adata) @ self.components)


class _CentredKRR:
    """RBF kernel ridge on centred targets (sklearn's KernelRidge has no intercept)."""

    def __init__(self, alpha: float, gamma: float):
        self.alpha, self.gamma = alpha, gamma

    def fit(self, x: np.ndarray, y: np.ndarray) -> _CentredKRR:
        from sklearn.kernel_ridge import KernelRidge

        self.mean = y.mean(0)
        self.krr = KernelRidge(alpha=self.alpha, kernel="rbf", gamma=self.gamma).fit(x, y - self.mean)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.krr.predict(x) + self.mean


class KernelRidgeSVD(_Regression):
    """RBF kernel ridge regression on truncated-SVD features of the RNA (the NeurIPS 2021 GEX->ADT winner's
    approach); alpha and the kernel width are chosen together on the validation cells."""

    param_name = "(alpha, gamma)"

    def __init__(self, *, n_components: int = N_SVD, alphas: Sequence[float] = KRR_ALPHAS,
                 gamma_scales: Sequence[float] = KRR_GAMMA_SCALES, seed: int = 0):
        super().__init__(SVDFeatures(n_components, seed))
        self.alphas, self.gamma_scales = tuple(alphas), tuple(gamma_scales)
        self.name = "krr_svd"

    def _grid(self, n_fit: int) -> list:
        return [(a, g) for g in self.gamma_scales for a in self.alphas]  # g: a multiple of 1 / mean sq. distance

    def _val_losses(self, x_tr, y_tr, x_va, y_va, grid) -> list[float]:
        """One eigendecomposition of the training kernel per gamma serves every alpha."""
        from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel

        d2 = euclidean_distances(x_tr, squared=True)
        self._gamma_unit = 1.0 / max(float(d2.sum() / max(d2.size - len(d2), 1)), _EPS)
        ym = y_tr.mean(0)
        losses = {}
        for g in dict.fromkeys(s for _, s in grid):
            gamma = g * self._gamma_unit
            lam, q = np.linalg.eigh(rbf_kernel(x_tr, gamma=gamma))
            qty, kq = q.T @ (y_tr - ym), rbf_kernel(x_va, x_tr, gamma=gamma) @ q
            for a in dict.fromkeys(a for a, s in grid if s == g):
                pred = kq @ (qty / (np.clip(lam, 0, None) + a)[:, None]) + ym
                losses[(a, g)] = float(np.mean((pred - y_va) ** 2))
        return [losses[v] for v in grid]

    def _make(self, value):
        alpha, scale = value
        return _CentredKRR(alpha, scale * self._gamma_unit)


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
    return [MeanPredictor(), Ridge(), Ridge(n_pcs=N_PCS), KNN(n_pcs=N_PCS), KernelRidgeSVD(), CodingGene(gene_links)]


BASELINE_NAMES = ("mean", "ridge_hvg", f"ridge_pca{N_PCS}", f"knn_pca{N_PCS}", "krr_svd", "coding_gene")
