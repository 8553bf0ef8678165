"""PPI-guided initialisation of gene-ID embeddings from a TSV edge list (gene_a, gene_b, weight).

Genes that interact start close: the initial embedding is a random one smoothed over the normalised
interaction graph, so neighbours share directions while the overall scale stays that of a random init.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError

COLUMNS = ("gene_a", "gene_b", "weight")


def read_ppi(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate an edge list; header optional, weight column optional (default 1)."""
    try:
        df = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read PPI edge list ({type(exc).__name__}: {exc})".splitlines()[0], path) from exc
    if df.shape[1] < 2:
        raise InputError("PPI edge list needs tab-separated columns gene_a, gene_b[, weight]", path)
    if str(df.iloc[0, 0]).lower() == COLUMNS[0]:
        df = df.iloc[1:]
    out = pd.DataFrame({"gene_a": df.iloc[:, 0].str.strip(), "gene_b": df.iloc[:, 1].str.strip()})
    weight = pd.to_numeric(df.iloc[:, 2], errors="coerce") if df.shape[1] > 2 else pd.Series(1.0, index=df.index)
    if weight.isna().any() or (weight < 0).any():
        raise InputError("PPI weights must be non-negative numbers", path)
    out["weight"] = weight.to_numpy(dtype=float)
    return out.reset_index(drop=True)


def ppi_adjacency(edges: pd.DataFrame, genes: Sequence[str]) -> sp.csr_matrix:
    """Symmetric weighted adjacency over `genes` (edges touching other genes are dropped)."""
    index = pd.Index(genes)
    a, b = index.get_indexer(edges["gene_a"]), index.get_indexer(edges["gene_b"])
    keep = (a >= 0) & (b >= 0) & (a != b)
    w = edges["weight"].to_numpy()[keep]
    n = len(index)
    adj = sp.coo_matrix((w, (a[keep], b[keep])), shape=(n, n)).tocsr()
    return (adj + adj.T).tocsr()


def ppi_init(edges: pd.DataFrame, genes: Sequence[str], dim: int, rng: np.random.Generator,
             alpha: float = 0.5, steps: int = 2) -> tuple[np.ndarray, int]:
    """Random embedding smoothed over the PPI graph: E <- (1-alpha) E + alpha D^-1 A E, `steps` times.

    Returns (embedding (n_genes, dim) float32 with per-row scale of a 1/sqrt(dim) random init,
    number of genes with at least one edge).
    """
    adj = ppi_adjacency(edges, genes)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    emb = rng.standard_normal((len(genes), dim)) / np.sqrt(dim)
    inv = sp.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1e-12), 0.0))
    walk = inv @ adj
    has = deg > 0
    for _ in range(steps):
        smoothed = walk @ emb
        emb[has] = (1 - alpha) * emb[has] + alpha * smoothed[has]
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.maximum(norms, 1e-12)
    return emb.astype(np.float32), int(has.sum())
