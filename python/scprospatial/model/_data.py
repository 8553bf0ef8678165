"""AnnData -> model inputs: RNA on the gene vocabulary (CSR), protein on the protein vocabulary + masks."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K
from ._vocab import Vocabulary, has_rna, panel


@dataclass
class GeneMapping:
    """How a cohort's genes map onto the vocabulary."""

    columns: np.ndarray   # for each of the cohort's genes, its vocabulary index or -1
    n_shared: int
    n_vocab_missing: int  # vocabulary genes absent from the cohort
    n_unknown: int        # cohort genes not in the vocabulary

    @classmethod
    def of(cls, var_names: Sequence[str], vocab: Vocabulary) -> GeneMapping:
        cols = vocab.gene_index.get_indexer(pd.Index(var_names).astype(str))
        n_shared = int(np.unique(cols[cols >= 0]).size)
        return cls(cols, n_shared, len(vocab.genes) - n_shared, int((cols < 0).sum()))

    def as_dict(self) -> dict:
        return {"n_shared_genes": self.n_shared, "n_vocabulary_genes_missing": self.n_vocab_missing,
                "n_genes_not_in_vocabulary": self.n_unknown}


def map_rna(x, mapping: GeneMapping, n_genes: int) -> sp.csr_matrix:
    """Re-index a cells x genes block onto the vocabulary columns (CSR float32, sorted indices)."""
    x = sp.csr_matrix(x, dtype=np.float32)
    keep = np.flatnonzero(mapping.columns >= 0)
    sub = x[:, keep].tocoo()
    out = sp.csr_matrix((sub.data, (sub.row, mapping.columns[keep][sub.col])), shape=(x.shape[0], n_genes),
                        dtype=np.float32)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def map_protein(adata: ad.AnnData, vocab: Vocabulary, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """(values, measured mask), both n x n_proteins; unmeasured entries are 0 and masked out.

    rows: a slice or sorted positions to map only those cells (the result is cells x the whole protein
    vocabulary, ~12 kB a cell for the shipped one: callers with many cells map them in chunks)."""
    n = adata.n_obs if rows is None else len(np.arange(adata.n_obs)[rows])
    values = np.zeros((n, len(vocab.proteins)), dtype=np.float32)
    mask = np.zeros_like(values, dtype=bool)
    cols = panel(adata)
    if cols:
        table = adata.obsm[K.PROTEIN]
        idx = vocab.protein_index.get_indexer(cols)
        ok = idx >= 0
        block = np.asarray(table.to_numpy(dtype=np.float32) if rows is None
                           else table.iloc[rows].to_numpy(dtype=np.float32))[:, ok]
        finite = np.isfinite(block)
        values[:, idx[ok]] = np.where(finite, block, 0.0)
        mask[:, idx[ok]] = finite
    return values, mask


def dataset_names(adata: ad.AnnData, position: int = 0) -> np.ndarray:
    """Per-cell cohort label: obs['batch'], else uns['scprospatial']['dataset'], else 'dataset<i>'."""
    if K.BATCH in adata.obs:
        return adata.obs[K.BATCH].astype(str).to_numpy()
    name = adata.uns.get(K.UNS, {}).get(K.DATASET, f"dataset{position}")
    return np.full(adata.n_obs, str(name))


def dataset_index(names: np.ndarray, datasets: Sequence[str]) -> np.ndarray:
    """Index into the model's datasets, 1-based; 0 = a dataset the model never saw."""
    idx = pd.Index(datasets).get_indexer(names)
    return (idx + 1).astype(np.int64)


@dataclass
class Pool:
    """Every training cell of every cohort on the model's vocabularies."""

    rna: sp.csr_matrix        # N x n_genes (zero rows where has_rna is false)
    protein: np.ndarray       # N x n_proteins
    pmask: np.ndarray         # N x n_proteins, measured
    dataset: np.ndarray       # N, 1-based dataset index
    has_rna: np.ndarray       # N bool
    cohort: np.ndarray        # N, position of the cohort in the input list

    def __len__(self) -> int:
        return self.rna.shape[0]

    @property
    def has_protein(self) -> np.ndarray:
        return np.asarray(self.pmask.any(axis=1))


def build_pool(adatas: Sequence[ad.AnnData], vocab: Vocabulary, datasets: Sequence[str]) -> Pool:
    rna, prot, mask, ds, hr, coh = [], [], [], [], [], []
    for i, a in enumerate(adatas):
        if has_rna(a):
            rna.append(map_rna(a.X, GeneMapping.of(a.var_names, vocab), len(vocab.genes)))
        else:
            rna.append(sp.csr_matrix((a.n_obs, len(vocab.genes)), dtype=np.float32))
        v, m = map_protein(a, vocab)
        prot.append(v)
        mask.append(m)
        ds.append(dataset_index(dataset_names(a, i), datasets))
        hr.append(np.full(a.n_obs, has_rna(a)))
        coh.append(np.full(a.n_obs, i))
    return Pool(sp.vstack(rna, format="csr"), np.concatenate(prot), np.concatenate(mask), np.concatenate(ds),
                np.concatenate(hr), np.concatenate(coh))


def split_cells(pool: Pool, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random validation part of the training cells, per cohort (used for early stopping + calibration)."""
    train, val = [], []
    for c in np.unique(pool.cohort):
        cells = rng.permutation(np.flatnonzero(pool.cohort == c))
        n_val = int(round(val_fraction * len(cells))) if len(cells) >= 10 else 0
        val.append(cells[:n_val])
        train.append(cells[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
