"""The whole network: RNA and protein encoders, their pretraining decoders, the joint space, the translator."""
from __future__ import annotations

import math

import torch
from torch import nn

from ._encoders import FeatureDecoder, FeatureQueryDecoder, TokenSetEncoder
from ._heads import ProteinQueries, TranslatorHead


class ScProSpatialModule(nn.Module):
    # buffers (registered in __init__)
    output_genes: torch.Tensor
    measured: torch.Tensor
    link_fit: torch.Tensor
    link_var: torch.Tensor
    own_support: torch.Tensor

    def __init__(self, n_genes: int, n_proteins: int, n_datasets: int, link: torch.Tensor, *,
                 d_model: int = 128, d_joint: int = 64, d_hidden: int = 64, n_blocks: int = 2,
                 dropout: float = 0.1, n_bins: int = 4, gene_inputs: torch.Tensor | None = None,
                 measured: torch.Tensor | None = None):
        """gene_inputs: (n_genes,) bool, genes the RNA encoder reads (None: all); the others are output-only.
        measured: (n_proteins,) bool, proteins measured in training (None: all); the translator head predicts
        those; every other protein is predicted from its coding genes' RNA (gene link; see link_rna)."""
        super().__init__()
        self.rna_encoder = TokenSetEncoder(n_genes, n_datasets, d_model, n_blocks, dropout, n_bins, (0.0, 4.0),
                                           input_mask=gene_inputs)
        outputs = (torch.zeros(0, dtype=torch.long) if gene_inputs is None
                   else (~torch.as_tensor(gene_inputs, dtype=torch.bool)).nonzero().ravel())
        self.register_buffer("output_genes", outputs, persistent=False)
        self.protein_encoder = TokenSetEncoder(n_proteins, n_datasets, d_model, n_blocks, dropout, n_bins,
                                               (-2.0, 4.0))
        self.rna_decoder = FeatureDecoder(n_genes, d_model, dropout)
        self.protein_decoder = FeatureDecoder(n_proteins, d_model, dropout)
        self.rna_proj = nn.Linear(d_model, d_joint)
        self.protein_proj = nn.Linear(d_model, d_joint)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.1)))
        self.queries = ProteinQueries(link, d_model)
        self.head = TranslatorHead(d_model, d_hidden, dropout)
        self.gene_query_decoder = FeatureQueryDecoder(n_genes, d_model, dropout)  # last: same init as before
        self.register_buffer("measured", torch.ones(n_proteins, dtype=torch.bool) if measured is None
                             else torch.as_tensor(measured, dtype=torch.bool), persistent=False)
        # protein ~ a + b * coding-gene RNA (link_rna), residual log-variance: fitted on validation cells
        self.register_buffer("link_fit", torch.tensor([0.0, 1.0, 0.0]))
        # per-cell log-variance of the gene link, c0 + c1 * min(x, x_max) + c2 * [x <= 0] with x the coding-gene
        # RNA: (c0, c1, c2, x_max), calibrated on validation cells after training (nan: not fitted; the constant
        # link_fit[2] is used, as in checkpoints written before it)
        self.register_buffer("link_var", torch.full((4,), float("nan")))
        # upper end of each measured protein's coding-gene RNA in the training cells (set after training;
        # inf: no bound). Beyond it the head extrapolates, so the excess is added through the gene link.
        self.register_buffer("own_support", torch.full((n_proteins,), float("inf")))
        self.tie_protein_ids()

    @torch.no_grad()
    def tie_protein_ids(self) -> None:
        """Initialise protein-ID embeddings from their coding genes' token embeddings (where linked)."""
        link = self.queries.link
        linked = link.sum(1) > 0
        self.protein_encoder.id_emb[linked] = (link @ self.rna_encoder.id_emb)[linked]

    @property
    def has_gene(self) -> torch.Tensor:
        return self.queries.link.sum(1) > 0

    def coding_genes(self, proteins: torch.Tensor) -> torch.Tensor:
        """(n_genes,) bool: the coding genes of `proteins`."""
        return self.queries.link[proteins].sum(0) > 0

    def translate(self, rna: torch.Tensor, dataset: torch.Tensor, proteins: torch.Tensor,
                  cell: torch.Tensor | None = None, max_pairs: int = 1 << 16,
                  head_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """rna: sparse (B, n_genes) normalised RNA; proteins: (P,) vocabulary indices -> mean, logvar (B, P).

        head_only: the translator head predicts every protein, also those never measured in training (which are
        otherwise predicted through the gene link); opt-in, used by mapping's panel view only.

        The (cell, protein) pairs are scored in blocks of at most `max_pairs` so the hidden tensor stays
        cache-sized; blocks are independent, so the block size does not change any value.
        """
        if cell is None:
            cell = self.rna_encoder(rna, dataset)
        via_gene = (torch.zeros_like(proteins, dtype=torch.bool) if head_only else ~self.measured[proteins])
        if via_gene.all():
            return self.gene_link_prediction(rna, cell, proteins)
        direct = proteins[~via_gene] if via_gene.any() else proteins
        query = self.queries(self.rna_encoder.id_emb, direct)
        own = self.queries.own_values(rna, direct)
        has_gene = self.has_gene[direct]
        step = max(1, max_pairs // max(len(direct), 1))
        if cell.shape[0] <= step:
            mean, logvar = self.head(cell, query, own, has_gene)
        else:
            parts = [self.head(cell[i:i + step], query, own[i:i + step], has_gene)
                     for i in range(0, cell.shape[0], step)]
            mean, logvar = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        mean, logvar = self.beyond_support(mean, logvar, own, direct)
        if not via_gene.any():
            return mean, logvar
        out_mean = cell.new_empty(cell.shape[0], len(proteins))
        out_logvar = torch.empty_like(out_mean)
        out_mean[:, ~via_gene], out_logvar[:, ~via_gene] = mean, logvar
        out_mean[:, via_gene], out_logvar[:, via_gene] = self.gene_link_prediction(rna, cell, proteins[via_gene])
        return out_mean, out_logvar

    def beyond_support(self, mean: torch.Tensor, logvar: torch.Tensor, own: torch.Tensor,
                       proteins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a cell's coding-gene RNA lies above the protein's training support (own_support), the head
        has never seen such values (e.g. CD14 RNA in a cohort without monocytes): the excess is added with the
        gene link's slope, and the gene link's residual variance is added to the head's."""
        excess = (own - self.own_support[proteins]).clamp_min(0.0)
        beyond = excess > 0
        if not bool(beyond.any()):
            return mean, logvar
        _, slope, link_logvar = self.link_fit
        mean = mean + slope * excess
        logvar = torch.where(beyond, torch.logaddexp(logvar, link_logvar.expand_as(logvar)), logvar)
        return mean, logvar

    def link_rna(self, rna: torch.Tensor, cell: torch.Tensor, proteins: torch.Tensor) -> torch.Tensor:
        """Mean coding-gene RNA of each protein, (B, P): the observed value of genes the encoder reads, the
        tied decoder's prediction (a denoised value) for output-only genes, which are never read.

        The link is applied as a sparse matrix: each protein's value comes from its own genes only (so it does
        not depend on which other proteins are requested) at a cost of B x (number of links), not B x P x genes.
        """
        link = self.queries.link[proteins]
        genes = self.coding_genes(proteins).nonzero().ravel()
        values = (rna.to_dense() if rna.is_sparse or rna.layout != torch.strided else rna)[:, genes]
        read = self.rna_encoder.input_mask
        if read is not None and not bool(read[genes].all()):
            unread = ~read[genes]
            values = values.clone()
            values[:, unread] = self.gene_query_decoder(cell, self.rna_encoder.id_emb, genes[unread])
        return torch.sparse.mm(link[:, genes].to_sparse(), values.T).T

    @property
    def link_calibrated(self) -> bool:
        """True when the gene link has its per-cell variance (link_var), calibrated after training."""
        return bool(torch.isfinite(self.link_var).all())

    def link_logvar(self, x: torch.Tensor) -> torch.Tensor:
        """Log-variance of the gene link's prediction for coding-gene RNA `x` (per cell and protein)."""
        if not self.link_calibrated:
            return self.link_fit[2].expand_as(x).clone()
        c0, c1, c2, x_max = self.link_var
        return c0 + c1 * x.clamp_max(x_max) + c2 * (x <= 0).to(x.dtype)

    def gene_link_prediction(self, rna: torch.Tensor, cell: torch.Tensor,
                             proteins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Proteins never measured: a + b * coding-gene RNA x (link_rna); log-variance link_logvar(x)."""
        a, b, _ = self.link_fit
        x = self.link_rna(rna, cell, proteins)
        return a + b * x, self.link_logvar(x)

    def joint_rna(self, cell: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.rna_proj(cell), dim=-1)

    def joint_protein(self, cell: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.protein_proj(cell), dim=-1)
