"""One optimisation step and one validation pass per stage (pretrain, align, translate)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..nn import ScProSpatialModule, dense_tokens, drop_tokens, gaussian_nll, info_nce, masked_mse, sparse_tensor
from ._metrics import foscttm, matching_accuracy, pearson_per_column


class CellPool(Protocol):
    """The training cells as the loops read them, on the model's gene and protein vocabularies (the model's
    `Pool` is one): rows are cells."""

    rna: sp.csr_matrix        # N x n_genes, log-normalised (zero rows where has_rna is false)
    protein: np.ndarray       # N x n_proteins
    pmask: np.ndarray         # N x n_proteins, measured
    dataset: np.ndarray       # N, 1-based dataset index (0: unknown)
    has_rna: np.ndarray       # N bool

    @property
    def has_protein(self) -> np.ndarray: ...


@dataclass
class Batch:
    rna: torch.Tensor          # sparse (B, n_genes)
    protein: torch.Tensor      # (B, n_proteins)
    pmask: torch.Tensor        # (B, n_proteins) bool
    dataset: torch.Tensor      # (B,)
    has_rna: torch.Tensor      # (B,) bool

    @classmethod
    def of(cls, pool: CellPool, idx: np.ndarray, device) -> Batch:
        return cls(sparse_tensor(pool.rna[idx], device), torch.from_numpy(pool.protein[idx]).to(device),
                   torch.from_numpy(pool.pmask[idx]).to(device), torch.from_numpy(pool.dataset[idx]).to(device),
                   torch.from_numpy(pool.has_rna[idx]).to(device))


def drop_dataset(dataset: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Replace dataset ids by 0 ('unknown') with probability p, so new cohorts have a trained embedding."""
    if p <= 0:
        return dataset
    drop = torch.rand(dataset.shape, generator=gen).to(dataset.device) < p
    return torch.where(drop, torch.zeros_like(dataset), dataset)


def _rows(b: Batch, rows: torch.Tensor) -> Batch:
    idx = rows.nonzero().ravel()
    rna = torch.index_select(b.rna, 0, idx).coalesce()
    return Batch(rna, b.protein[idx], b.pmask[idx], b.dataset[idx], b.has_rna[idx])


def pretrain_loss(m: ScProSpatialModule, b: Batch, cfg, gen: torch.Generator) -> torch.Tensor:
    """Masked-value modelling: hide a fraction of each modality's values, predict them from the rest."""
    ds = drop_dataset(b.dataset, cfg.dataset_dropout, gen)
    loss = b.protein.new_zeros(())
    if b.has_rna.any():
        r = _rows(Batch(b.rna, b.protein, b.pmask, ds, b.has_rna), b.has_rna)
        mask = (torch.rand(r.rna.shape, generator=gen) < cfg.mask_prob).to(r.protein.device)
        tok = r.rna.coalesce()
        hidden = mask[tok.indices()[0], tok.indices()[1]]
        cell = m.rna_encoder(drop_tokens(tok, hidden), r.dataset)
        dense = tok.to_dense()
        loss = loss + masked_mse(m.rna_decoder(cell), dense, mask)
        # every gene's ID embedding is also an output query (tied decoder) reconstructing every value of
        # every gene (zeros too) from the cell embedding: a denoised expression of each gene, output-only
        # genes included, which is what proteins never measured are predicted from
        genes = torch.arange(dense.shape[1], device=dense.device)
        loss = loss + nn.functional.mse_loss(m.gene_query_decoder(cell, m.rna_encoder.id_emb, genes), dense)
    has_p = b.pmask.any(1)
    if has_p.any():
        p = _rows(Batch(b.rna, b.protein, b.pmask, ds, b.has_rna), has_p)
        hide = p.pmask & (torch.rand(p.pmask.shape, generator=gen).to(p.pmask.device) < cfg.mask_prob)
        pred = m.protein_decoder(m.protein_encoder(dense_tokens(p.protein, p.pmask & ~hide), p.dataset))
        loss = loss + masked_mse(pred, p.protein, hide)
    return loss


def paired(b: Batch) -> Batch:
    return _rows(b, b.has_rna & b.pmask.any(1))


def embed_pair(m: ScProSpatialModule, b: Batch, ds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    e_r = m.joint_rna(m.rna_encoder(b.rna, ds))
    e_p = m.joint_protein(m.protein_encoder(dense_tokens(b.protein, b.pmask), ds))
    return e_r, e_p


def align_loss(m: ScProSpatialModule, b: Batch, cfg, gen: torch.Generator) -> torch.Tensor:
    """CLIP-style symmetric InfoNCE between the RNA and protein embeddings of the same cells."""
    b = paired(b)
    e_r, e_p = embed_pair(m, b, drop_dataset(b.dataset, cfg.dataset_dropout, gen))
    with torch.no_grad():
        m.log_temperature.clamp_(np.log(0.01), np.log(1.0))
    return info_nce(e_r, e_p, m.log_temperature)


def translate_loss(m: ScProSpatialModule, b: Batch, cfg, gen: torch.Generator,
                   proteins: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL (+ MSE on the mean) over measured proteins only; unmeasured ones add nothing."""
    b = paired(b)
    rna = b.rna.coalesce()
    if cfg.token_dropout > 0:
        drop = (torch.rand(rna.values().shape, generator=gen) < cfg.token_dropout).to(rna.device)
        if cfg.keep_coding_tokens:  # the proteins' own coding genes stay: the head learns to read them
            drop &= ~m.coding_genes(proteins)[rna.indices()[1]]
        rna = drop_tokens(rna, drop)
    ds = drop_dataset(b.dataset, cfg.dataset_dropout, gen)
    cell = m.rna_encoder(rna, ds)
    mean, logvar = m.translate(rna, ds, proteins, cell=cell)
    target, mask = b.protein[:, proteins], b.pmask[:, proteins]
    loss = gaussian_nll(mean, logvar, target, mask) + cfg.mse_weight * masked_mse(mean, target, mask)
    if cfg.translate_align_weight > 0:
        # The encoder moves while translating and its joint embedding would drift from stage 2's alignment: stage
        # 2's contrastive loss keeps training the RNA projection on the moving encoder output (detached: the
        # translation's gradients, and so its weights, are the same as without it; the protein side stays fixed).
        # Its dropout draws from a forked random stream, so the translation's own draws do not move either.
        on = [cell.device.index or 0] if cell.is_cuda else []
        with torch.random.fork_rng(devices=on):
            with torch.no_grad():
                e_p = m.joint_protein(m.protein_encoder(dense_tokens(b.protein, b.pmask), ds))
            e_r = m.joint_rna(cell.detach())
        loss = loss + cfg.translate_align_weight * info_nce(e_r, e_p, m.log_temperature.detach())
    return loss


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"pretrain": pretrain_loss, "align": align_loss,
                                                   "translate": translate_loss}


@torch.no_grad()
def validate(stage: str, m: ScProSpatialModule, b: Batch, cfg, proteins: torch.Tensor) -> dict:
    """Validation score (lower is better) and readable metrics for one stage, all val cells at once."""
    gen = torch.Generator().manual_seed(0)  # fixed masks: comparable across epochs, no effect on training RNG
    if stage == "pretrain":
        loss = float(pretrain_loss(m, b, _no_aug(cfg), gen))
        return {"val_loss": loss}
    b = paired(b)
    if b.dataset.numel() == 0:
        return {"val_loss": float("nan")}
    if stage == "align":
        e_r, e_p = embed_pair(m, b, b.dataset)
        return {"val_loss": float(info_nce(e_r, e_p, m.log_temperature)),
                "val_matching_accuracy": matching_accuracy(e_r, e_p), "val_foscttm": foscttm(e_r, e_p)}
    mean, logvar = m.translate(b.rna, b.dataset, proteins)
    target, mask = b.protein[:, proteins], b.pmask[:, proteins]
    r = pearson_per_column(mean.cpu().numpy(), target.cpu().numpy(), mask.cpu().numpy())
    e_r, e_p = embed_pair(m, b, b.dataset)   # is the joint space still aligned? (not part of the score)
    return {"val_loss": float(gaussian_nll(mean, logvar, target, mask) + cfg.mse_weight *
                              masked_mse(mean, target, mask)),
            "val_mse": float(masked_mse(mean, target, mask)), "val_pearson": float(np.nanmean(r)),
            "val_foscttm": foscttm(e_r, e_p)}


def _no_aug(cfg):
    import dataclasses

    return dataclasses.replace(cfg, dataset_dropout=0.0, token_dropout=0.0)
