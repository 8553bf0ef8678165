"""Adapt the protein encoder to an imaging panel by masked-value training on the imaged cells themselves.

The model's protein encoder learned the proteins measured in its CITE-seq training cohorts; an imaging panel
adds markers it never saw (their token embeddings are still the initialisation from the coding genes) and
arrives as arcsinh intensities. As in the method's stage 1 (masked-value pretraining across cohorts,
imaging panels included, with a per-dataset embedding), the encoder is taught the panel self-supervised:
a fraction of each imaged cell's measured markers is hidden and predicted from the rest. No label and no
held-out value is used: only the markers given in `spatial.obsm['protein']`.

Only what is new to the model moves: the token embeddings and decoder rows of panel markers the model
never measured, and the "unknown dataset" embedding the imaged cells are encoded with. Every other weight
(value embedding, residual blocks, joint projections, the rows of proteins measured in training) is
frozen, so the encoder's output space, and with it the CLIP-aligned joint space, is the one RNA cells are
embedded in. The adapted model is a copy; the original is not changed.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from .._logging import logger
from ..errors import InputError
from ..train import Batch, pretrain_loss

ADAPT_EPOCHS = 10
ADAPT_LR = 3e-3
ADAPT_VAL_FRACTION = 0.1
ADAPT_MAX_CELLS = 20_000     # imaged cells the adaptation trains on (a random subset of larger images)


def _row_mask_hook(rows: torch.Tensor):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * rows.view(-1, *([1] * (grad.dim() - 1))).to(grad.dtype)
    return hook


def _batch(values: np.ndarray, mask: np.ndarray, ds: np.ndarray, idx: np.ndarray, n_genes: int) -> Batch:
    n = len(idx)
    empty = torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), (n, n_genes),
                                    is_coalesced=True, check_invariants=False)
    return Batch(empty, torch.from_numpy(values[idx]), torch.from_numpy(mask[idx]), torch.from_numpy(ds[idx]),
                 torch.zeros(n, dtype=torch.bool))


def adapt_protein_encoder(model, spatial, *, epochs: int = ADAPT_EPOCHS, lr: float = ADAPT_LR, seed: int = 0,
                          batch_size: int | None = None, max_cells: int = ADAPT_MAX_CELLS):
    """A copy of `model` whose protein encoder has learned `spatial`'s panel (see the module docstring).

    Returns (adapted model, info dict: epochs run, best validation loss, markers new to the model)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(spatial.n_obs)[:max_cells]
    cells = np.sort(order)   # only the cells the adaptation trains on are mapped (vocabulary-wide rows)
    values, mask = model.protein_values(spatial, cells)
    order = np.searchsorted(cells, order)   # positions into `cells`, in the same drawn order
    if not mask.any():
        raise InputError("none of the imaged markers is in the model's protein vocabulary")
    measured = set(model.vocab.measured)
    new = np.array([p not in measured for p in model.vocab.proteins]) & mask.any(0)
    adapted = copy.deepcopy(model)
    m = adapted.module.cpu()
    enc, dec = m.protein_encoder, m.protein_decoder
    for p in m.parameters():
        p.requires_grad_(False)
    ds = adapted.dataset_ids(spatial)[cells]
    ds_rows = torch.zeros(enc.dataset_emb.num_embeddings, dtype=torch.bool)
    ds_rows[np.unique(ds)] = True
    new_rows = torch.from_numpy(new)
    trainable = [(enc.id_emb, new_rows), (enc.dataset_emb.weight, ds_rows), (dec.out.weight, new_rows),
                 (dec.out.bias, new_rows)]
    hooks = []
    for p, rows in trainable:
        p.requires_grad_(True)
        hooks.append(p.register_hook(_row_mask_hook(rows)))
    params = [p for p, _ in trainable]
    opt = torch.optim.Adam(params, lr=lr)  # no weight decay: rows without gradient never move
    cfg = dataclasses.replace(adapted.config, dataset_dropout=0.0)
    gen = torch.Generator().manual_seed(seed)
    n_val = max(1, int(round(ADAPT_VAL_FRACTION * len(order)))) if len(order) >= 20 else 0
    val, train = np.sort(order[:n_val]), order[n_val:]
    bs = batch_size or adapted.config.batch_size
    n_genes = m.rna_encoder.n_features
    best = (np.inf, 0, [p.detach().clone() for p in params])
    for epoch in range(1, epochs + 1):
        m.train()
        for start in range(0, len(train), bs):
            idx = np.sort(train[start:start + bs])
            if len(idx) < 2:
                continue
            loss = pretrain_loss(m, _batch(values, mask, ds, idx, n_genes), cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rng.shuffle(train)
        if n_val:
            m.eval()
            with torch.no_grad():
                vloss = float(pretrain_loss(m, _batch(values, mask, ds, val, n_genes), cfg,
                                            torch.Generator().manual_seed(0)))
            if vloss < best[0]:
                best = (vloss, epoch, [p.detach().clone() for p in params])
    for h in hooks:
        h.remove()
    with torch.no_grad():
        if n_val:
            for p, w in zip(params, best[2]):
                p.copy_(w)
    for p in m.parameters():
        p.requires_grad_(True)
    m.eval()
    adapted.to(model.device)
    info = {"epochs": int(epochs), "best_epoch": int(best[1]), "val_loss": float(best[0]),
            "n_new_markers": int(new.sum()), "n_cells": int(len(order))}
    logger.info("protein encoder adapted to the panel (%d markers new to the model): validation masked-value "
                "loss %.4f at epoch %d", info["n_new_markers"], info["val_loss"], info["best_epoch"])
    return adapted, info
