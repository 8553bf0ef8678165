"""Protein queries and the per-(cell, protein) translator head.

Each protein's query is built from the token embeddings of its coding gene(s) (the gene link) plus a
learned per-protein offset that only proteins measured in training ever move away from zero; so a protein
never measured can still be requested through its gene. The head scores each (cell, protein) pair on its
own: there is no attention or normalisation across proteins, so a protein's prediction cannot depend on
which other proteins are requested or their order.
"""
from __future__ import annotations

import torch
from torch import nn


class ProteinQueries(nn.Module):
    """Query embedding per vocabulary protein: proj(mean linked-gene embedding) + offset."""

    link: torch.Tensor  # buffer

    def __init__(self, link: torch.Tensor, d_model: int):
        """link: (n_proteins, n_genes) dense, rows sum to 1 over the protein's coding genes (or all zero)."""
        super().__init__()
        self.register_buffer("link", link.float())
        self.proj = nn.Linear(d_model, d_model)
        self.offset = nn.Parameter(torch.zeros(link.shape[0], d_model))

    def forward(self, gene_emb: torch.Tensor, proteins: torch.Tensor) -> torch.Tensor:
        """gene_emb (n_genes, d), proteins (P,) long -> (P, d)."""
        return self.proj(self.link[proteins] @ gene_emb) + self.offset[proteins]

    def own_values(self, rna_dense_or_sparse: torch.Tensor, proteins: torch.Tensor) -> torch.Tensor:
        """Mean normalised RNA of each protein's coding genes: (cells, P)."""
        lt = self.link[proteins].T
        if rna_dense_or_sparse.is_sparse:
            return rna_dense_or_sparse.to_sparse_csr() @ lt
        return rna_dense_or_sparse @ lt


class TranslatorHead(nn.Module):
    """MLP([cell embedding, protein query, own coding-gene RNA, has-gene flag]) -> (mean, log-variance).

    The first layer is split by input so the (cells x proteins x hidden) tensor is built by broadcasting.
    """

    def __init__(self, d_model: int, d_hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.cell = nn.Linear(d_model, d_hidden)
        self.query = nn.Linear(d_model, d_hidden, bias=False)
        self.own = nn.Parameter(0.1 * torch.randn(d_hidden))
        self.has_gene = nn.Parameter(torch.zeros(d_hidden))
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_hidden, d_hidden), nn.ReLU(),
                                 nn.Linear(d_hidden, 2))

    def forward(self, cell: torch.Tensor, query: torch.Tensor, own: torch.Tensor,
                has_gene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cell (B, d), query (P, d), own (B, P), has_gene (P,) -> mean (B, P), logvar (B, P)."""
        per_protein = self.query(query) + has_gene.float()[:, None] * self.has_gene
        z = self.cell(cell)[:, None, :] + per_protein[None, :, :]
        z = torch.relu(torch.addcmul(z, own[..., None], self.own))
        out = self.mlp(z)
        return out[..., 0], out[..., 1].clamp(-10.0, 6.0)
