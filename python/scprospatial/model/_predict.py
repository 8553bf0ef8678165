"""Chunked inference: RNA cells -> joint embedding, protein mean and SD (streams over cells)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._logging import logger, progress
from ..errors import InputError
from ..nn import ScProSpatialModule, dense_tokens, sparse_tensor
from ._data import GeneMapping, map_rna
from ._ensemble import mixture
from ._vocab import Vocabulary


def resolve_proteins(vocab: Vocabulary, proteins: Sequence[str] | None, all_proteins: bool,
                     path=None) -> list[str]:
    """Requested proteins (None: the training panel; all_proteins: every predictable vocabulary protein)."""
    if proteins is not None and all_proteins:
        raise InputError("give either proteins or all_proteins, not both", path)
    predictable = [p for p in vocab.proteins if p in vocab.measured or p in vocab.gene_links]
    if all_proteins:
        return predictable
    if proteins is None:
        return list(vocab.measured)
    requested = [_canonical(p) for p in proteins]
    unknown = [p for p, c in zip(proteins, requested) if c not in set(predictable)]
    if unknown:
        raise InputError(f"protein(s) {', '.join(map(str, unknown))} not predictable by this model (not measured "
                         "in training and no coding gene in its vocabulary); see --all-proteins", path)
    return list(dict.fromkeys(requested))


def _canonical(name: str) -> str:
    from ..vocab import normalise_protein_name

    return normalise_protein_name(str(name)).canonical


def check_genes(mapping: GeneMapping, vocab: Vocabulary, path=None) -> None:
    if mapping.n_shared == 0:
        raise InputError(f"no gene shared with the model's {len(vocab.genes)}-gene vocabulary (gene symbols "
                         "expected in var_names)", path)
    if mapping.n_vocab_missing:
        logger.warning("%d of the model's %d vocabulary genes are missing from %s (treated as not expressed)",
                       mapping.n_vocab_missing, len(vocab.genes), path or "the input")


@dataclass
class Predictor:
    module: ScProSpatialModule
    vocab: Vocabulary
    scale: float = 1.0
    device: str = "cpu"
    extra: tuple[tuple[ScProSpatialModule, float], ...] = ()  # further ensemble members (module, SD scale)

    @torch.no_grad()
    def chunks(self, x_rows, n_obs: int, mapping: GeneMapping, dataset: np.ndarray, proteins: Sequence[str],
               batch_size: int, head_only: bool = False) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (rows, embedding, mean, sd) per chunk; x_rows(start, stop) returns a cells x genes block.
        head_only: the translator head predicts every protein (see ScProSpatialModule.translate)."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        m = self.module.eval()
        for other, _ in self.extra:
            other.eval()
        pidx = torch.as_tensor(self.vocab.protein_index.get_indexer(list(proteins)), dtype=torch.long,
                               device=self.device)
        starts = range(0, n_obs, batch_size)
        for start in progress(starts, desc="impute", total=len(starts), unit="chunk"):
            rows = slice(start, min(start + batch_size, n_obs))
            x = sparse_tensor(map_rna(x_rows(rows.start, rows.stop), mapping, len(self.vocab.genes)), self.device)
            ds = torch.as_tensor(dataset[rows], device=self.device)
            cell = m.rna_encoder(x, ds)
            emb = m.joint_rna(cell)
            if len(pidx):
                mean, sd = _member_prediction(m, self.scale, x, ds, pidx, cell, head_only)
                if self.extra:
                    parts = [(mean, sd)] + [_member_prediction(o, s, x, ds, pidx, None, head_only)
                                            for o, s in self.extra]
                    mean, sd = mixture([p[0] for p in parts], [p[1] for p in parts])
            else:
                mean = sd = torch.zeros((cell.shape[0], 0), device=self.device)
            yield rows, emb.cpu().numpy(), mean.cpu().numpy(), sd.cpu().numpy()

    @torch.no_grad()
    def embed_protein(self, rows, n_obs: int, dataset: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Joint embedding of protein-measured cells, chunk by chunk; rows(start, stop) returns that block's
        (values, measured mask) on the protein vocabulary (vocabulary-wide rows: never built for all cells)."""
        m = self.module.eval()
        out = []
        for start in range(0, n_obs, batch_size):
            sl = slice(start, min(start + batch_size, n_obs))
            values, mask = rows(sl.start, sl.stop)
            v, k = torch.as_tensor(values, device=self.device), torch.as_tensor(mask, device=self.device)
            cell = m.protein_encoder(dense_tokens(v, k), torch.as_tensor(dataset[sl], device=self.device))
            out.append(m.joint_protein(cell).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, m.protein_proj.out_features), dtype=np.float32)


def _member_prediction(m: ScProSpatialModule, scale: float, x, ds, pidx, cell, head_only: bool):
    """One member's mean and calibrated SD: the head's SDs times the member's scale (calibrated on its validation
    cells); proteins predicted through the gene link carry their own calibrated SD when the member has one
    (module.link_calibrated), else (older checkpoints) the head's scale too."""
    mean, logvar = m.translate(x, ds, pidx, cell=cell, head_only=head_only)
    sd = torch.exp(0.5 * logvar)
    if head_only or not m.link_calibrated:
        return mean, sd * scale
    via_gene = ~m.measured[pidx]
    return mean, torch.where(via_gene, sd, sd * scale)
