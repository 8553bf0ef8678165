"""The model's gene vocabulary (HVGs + coding genes) and protein vocabulary (with gene links)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .. import _constants as K
from .._logging import logger

GeneLinks = Mapping[str, Sequence[str]] | Callable[[Sequence[str]], Mapping[str, Sequence[str]]]


@dataclass
class Vocabulary:
    genes: list[str]
    proteins: list[str]
    gene_links: dict[str, list[str]]          # protein -> its coding genes that are in `genes`
    measured: list[str] = field(default_factory=list)  # proteins measured in some training cohort
    inputs: list[str] | None = None  # genes the RNA encoder reads (None: all); the others are output-only:
                                     # coding genes of proteins requestable through their gene link only

    def __post_init__(self):
        if self.inputs is None:
            self.inputs = list(self.genes)

    def input_mask(self) -> torch.Tensor:
        """(n_genes,) bool: True where the gene is an encoder input."""
        return torch.as_tensor(self.gene_index.isin(self.inputs), dtype=torch.bool)

    @cached_property
    def gene_index(self) -> pd.Index:
        return pd.Index(self.genes)

    @cached_property
    def protein_index(self) -> pd.Index:
        return pd.Index(self.proteins)

    def link_matrix(self) -> torch.Tensor:
        """(n_proteins, n_genes), each linked protein's row averages its coding genes."""
        link = torch.zeros(len(self.proteins), len(self.genes))
        for i, p in enumerate(self.proteins):
            cols = self.gene_index.get_indexer(self.gene_links.get(p, []))
            cols = cols[cols >= 0]
            if len(cols):
                link[i, torch.as_tensor(cols)] = 1.0 / len(cols)
        return link

    def to_dict(self) -> dict:
        return {"genes": list(self.genes), "proteins": list(self.proteins),
                "gene_links": {p: list(g) for p, g in self.gene_links.items()}, "measured": list(self.measured),
                "inputs": list(self.genes if self.inputs is None else self.inputs)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(list(d["genes"]), list(d["proteins"]), {p: list(g) for p, g in d["gene_links"].items()},
                   list(d.get("measured", [])), d.get("inputs"))


def default_gene_links(proteins: Iterable[str]) -> dict[str, list[str]]:
    """Coding genes of each protein from the shipped protein vocabulary (scprospatial.vocab)."""
    from ..vocab import get_vocabulary

    vocab = get_vocabulary()
    return {p: list(vocab.genes(p)) for p in proteins}


def vocabulary_proteins() -> list[str]:
    """Every canonical protein of the shipped vocabulary (isotype controls excluded)."""
    from ..vocab import get_vocabulary

    return get_vocabulary().proteins


def resolve_gene_links(links: GeneLinks | None, proteins: Iterable[str]) -> dict[str, list[str]]:
    proteins = list(proteins)
    if links is None:
        return default_gene_links(proteins)
    if callable(links):
        return {p: list(g) for p, g in links(proteins).items()}
    return {p: list(g) for p, g in links.items()}


def highly_variable_genes(adata: ad.AnnData, n_top: int, n_bins: int = 20) -> list[str]:
    """Top `n_top` genes by normalised dispersion of the log-normalised X (Seurat flavour, numpy only)."""
    if adata.n_vars <= n_top:
        return list(adata.var_names)
    x = sp.csr_matrix(adata.X, dtype=np.float64, copy=True)
    x.data = np.expm1(x.data)
    n = max(x.shape[0], 2)
    mean = np.asarray(x.mean(axis=0)).ravel()
    var = (np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2) * n / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.log(np.where(mean > 0, var / np.where(mean > 0, mean, 1.0), np.nan))
    disp[~np.isfinite(disp)] = np.nan
    frame = pd.DataFrame({"disp": disp, "bin": pd.cut(np.log1p(mean), n_bins)})
    grouped = frame.groupby("bin", observed=True)["disp"]
    centre, spread = grouped.transform("mean"), grouped.transform("std")
    norm = ((frame["disp"] - centre) / spread.where(spread > 0)).fillna(frame["disp"] - centre)
    order = np.argsort(-norm.fillna(-np.inf).to_numpy(), kind="stable")[:n_top]
    return list(adata.var_names[np.sort(order)].astype(str))


def panel(adata: ad.AnnData) -> list[str]:
    """Proteins measured in a prepared cohort (columns of obsm['protein']), or []."""
    if K.PROTEIN not in adata.obsm:
        return []
    return [str(c) for c in adata.obsm[K.PROTEIN].columns]


def has_rna(adata: ad.AnnData) -> bool:
    return adata.uns.get(K.UNS, {}).get(K.KIND) != "spatial"


def build_vocabulary(adatas: Sequence[ad.AnnData], n_hvg: int, gene_links: GeneLinks | None = None,
                     extra_proteins: Iterable[str] | None = None) -> Vocabulary:
    """HVGs of every RNA cohort + coding genes of vocabulary proteins; proteins = panels + linked ones.

    The RNA encoder reads the HVGs and the coding genes of measured proteins; the coding genes of the other
    (extra) proteins are output-only: pretraining predicts them from the cell embedding through their
    ID embeddings, which is what their protein queries are built from. Reading them as inputs too (~2,600
    surface genes) cost cross-cohort accuracy (MALT->PBMC10k Pearson 0.35 vs 0.45, 2 seeds).
    extra_proteins: proteins to make requestable through their gene link (None: the whole shipped vocabulary).
    """
    if extra_proteins is None:
        extra_proteins = vocabulary_proteins()
    rna = [a for a in adatas if has_rna(a)]
    measured = list(dict.fromkeys(p for a in adatas for p in panel(a)))
    candidates = list(dict.fromkeys([*measured, *extra_proteins]))
    links = resolve_gene_links(gene_links, candidates)
    present = set().union(*(set(map(str, a.var_names)) for a in rna)) if rna else set()
    hvg = list(dict.fromkeys(g for a in rna for g in highly_variable_genes(a, n_hvg)))
    coding = [g for p in links for g in links[p] if g in present]
    inputs = list(dict.fromkeys([*hvg, *(g for p in measured for g in links.get(p, []) if g in present)]))
    genes = list(dict.fromkeys([*inputs, *coding]))
    gene_set = set(genes)
    kept_links = {p: [g for g in gs if g in gene_set] for p, gs in links.items()}
    kept_links = {p: gs for p, gs in kept_links.items() if gs}
    proteins = list(dict.fromkeys([*measured, *(p for p in links if p in kept_links)]))
    logger.info("vocabulary: %d genes (%d encoder inputs, %d coding), %d proteins (%d measured, %d linked to a "
                "gene)", len(genes), len(inputs), len(set(coding)), len(proteins), len(measured), len(kept_links))
    return Vocabulary(genes, proteins, {p: kept_links[p] for p in proteins if p in kept_links}, measured, inputs)
