"""Fused mapping score: joint-space similarity plus agreement of the model's predicted panel with the measured one.

Two views of how well an imaged cell i fits a scRNA-seq cell j, both cosines of unit vectors:
  joint   cos(e_i, e_j): protein-encoder embedding of the imaged cell's panel (the encoder first adapted to the
          panel, see _adapt.py) against the RNA encoder's embedding, in the CLIP-aligned joint space;
  panel   cos(x_i, mu_j): the imaged cell's measured markers (z-scored over imaged cells) against the model's
          prediction of the same markers from cell j's RNA (z-scored over scRNA-seq cells), not centred per cell
          (centring, i.e. a Pearson correlation across markers, lost in issue 18's diagnosis). The model predicts any
          panel protein from RNA (measured in training or through its coding gene), so no feature has to be
          measured on both sides: the shared features are the model's own predictions.
The fused score is  s_ij = a cos(e_i, e_j) + (1 - a) cos(x_i, mu_j), computed as one inner product of the
concatenations [sqrt(a) e, sqrt(1 - a) x] so the blocked top-k kernel searches it unchanged. With fewer than
MIN_PANEL_MARKERS predictable markers in the panel the panel view is undefined and mapping uses the joint space
alone (warned). The default a (FUSE_WEIGHT) is 0: the mapping runs on the predicted panel alone and the encoder is
not adapted. Issue 18's diagnosis (benchmarks/diag_mapping.py, validation markers of CODEX and CyCIF, models of
three training seeds) found the joint space adds nothing: a = 0.4 minus a = 0 was -0.018 +- 0.023 (mean +- SE over
6 panel x seed pairs), and adding it to the no-model baseline lowered it (-0.019 +- 0.016); the predicted panel
with the cosine of z-scored profiles is what beats the baseline (benchmarks/README.md, mapping section).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from ._adapt import ADAPT_EPOCHS, adapt_protein_encoder

MAPPING_METHODS = ("fused", "joint")
FUSE_WEIGHT = 0.0          # a: weight of the joint-space cosine (module docstring: how it was chosen)
MIN_PANEL_MARKERS = 2      # a correlation across markers needs at least two


@dataclass
class MappingSpace:
    """Query (imaged cells) and reference (scRNA-seq cells) rows whose inner product is the mapping score."""

    query: np.ndarray
    ref: np.ndarray
    joint: np.ndarray                      # imaged cells' joint-space embedding (obsm X_scprospatial)
    info: dict = field(default_factory=dict)


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def zscore_columns(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def panel_markers(model, spatial) -> list[str]:
    """Markers of the imaged panel the model can predict from RNA (measured in training or gene-linked)."""
    predictable = set(model.vocab.measured) | set(model.vocab.gene_links)
    vocab = set(model.vocab.proteins)
    return [p for p in spatial.obsm[K.PROTEIN].columns if p in predictable and p in vocab]


def coding_gene_rna(model, rna, markers: list[str]) -> np.ndarray:
    """Each marker's coding-gene RNA in `rna` (X: log-normalised), the mean over its coding genes
    (n_rna x len(markers), float64); a NaN column where none of its coding genes is in the RNA."""
    from scipy import sparse

    genes = {str(g): i for i, g in enumerate(rna.var_names)}
    x = sparse.csc_matrix(rna.X) if sparse.issparse(rna.X) else np.asarray(rna.X)
    out = np.full((rna.n_obs, len(markers)), np.nan)
    for j, m in enumerate(markers):
        cols = [genes[g] for g in model.vocab.gene_links.get(m, []) if g in genes]
        if cols:
            out[:, j] = np.asarray(x[:, cols].mean(1), dtype=np.float64).ravel()
    return out


def baseline_neighbours(measured: np.ndarray, coding: np.ndarray, k: int) -> np.ndarray:
    """The no-model baseline's neighbours (issue 18): each imaged cell's k scRNA-seq cells of highest Pearson
    correlation between its markers (z-scored over the imaged cells) and their coding-gene RNA (z-scored over the
    scRNA-seq cells), across the markers given (columns of both, same order). Returns (n_imaged, k) indices, ties
    broken by index. Imputing a marker as the mean of its coding-gene RNA over them is the baseline."""
    def rows(v):
        v = zscore_columns(v)
        v = v - v.mean(1, keepdims=True)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    sim = rows(measured) @ rows(coding).T
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def predict_panel(model, rna, markers: list[str], batch_size: int = 4096, head_only: bool = False) -> np.ndarray:
    """The model's predicted mean of `markers` for every scRNA-seq cell (n_rna x len(markers), CLR scale).
    head_only: the translator head's prediction of every marker (also those predicted through the gene link)."""
    out = np.zeros((rna.n_obs, len(markers)), np.float32)
    if not markers:
        return out
    for rows, _e, mean, _s in model.predict_chunks(rna, markers, batch_size=batch_size, head_only=head_only):
        out[rows] = mean
    return out


def aligned_panel(spatial, markers: list[str], predicted: np.ndarray):
    """A view of `spatial` whose predictable markers are moved to the model's scale: each marker's imaging values
    are standardised and given the mean and SD of the model's prediction of it over the scRNA-seq cells."""
    measured = spatial.obsm[K.PROTEIN]
    values = measured.copy()
    if markers:
        x = measured[markers].to_numpy(np.float64)
        values[markers] = zscore_columns(x) * predicted.std(0) + predicted.mean(0)
    out = spatial[:, :0].copy() if spatial.n_vars else spatial.copy()
    out.obsm[K.PROTEIN] = values.astype(np.float32)
    return out


def mapping_space(model, spatial, rna_joint: np.ndarray, rna_panel: np.ndarray | None, markers: list[str], *,
                  method: str = "fused", weight: float = FUSE_WEIGHT, adapt_epochs: int = ADAPT_EPOCHS,
                  seed: int = 0) -> MappingSpace:
    """Build the query/reference rows for `method`: 'fused' (default) or 'joint' (joint space only, no adaptation).

    rna_joint: the scRNA-seq cells' joint embedding; rna_panel: the model's prediction of `markers` for them."""
    if method not in MAPPING_METHODS:
        raise InputError(f"unknown mapping method {method!r}; choose one of {', '.join(MAPPING_METHODS)}")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"fuse weight must lie in [0, 1], got {weight!r}")
    if method == "joint":
        q = model.embed_protein(spatial)
        return MappingSpace(q, np.ascontiguousarray(rna_joint, dtype=np.float32), q, {"method": "joint"})
    if rna_panel is None:
        raise ValueError("method 'fused' needs rna_panel, the model's prediction of the markers (predict_panel)")
    use_panel = len(markers) >= MIN_PANEL_MARKERS
    if not use_panel:
        logger.warning("only %d imaged marker(s) the model can predict: the fused score needs %d, mapping on the "
                       "joint space alone", len(markers), MIN_PANEL_MARKERS)
    source = aligned_panel(spatial, markers, rna_panel) if use_panel else spatial
    adapt = adapt_epochs > 0 and (weight > 0 or not use_panel)   # at weight 0 the joint view is not in the score
    alone = "joint (adapted encoder)" if adapt else "joint"
    info: dict = {"method": "fused" if use_panel else alone, "fuse_weight": weight if use_panel else 1.0,
                  "n_panel_markers": len(markers)}
    embedder = model
    if adapt:
        embedder, info["adaptation"] = adapt_protein_encoder(model, source, epochs=adapt_epochs, seed=seed)
    joint = embedder.embed_protein(source)
    if not use_panel:
        return MappingSpace(joint, np.ascontiguousarray(rna_joint, dtype=np.float32), joint, info)
    query, ref = fuse(joint, rna_joint, *panel_vectors(spatial, markers, rna_panel), weight)
    return MappingSpace(query, ref, joint, info)


def panel_vectors(spatial, markers: list[str], rna_panel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of the z-scored measured markers (imaged cells) and of the z-scored predictions (scRNA-seq cells):
    their inner product is the correlation-type panel agreement."""
    x = unit_rows(zscore_columns(spatial.obsm[K.PROTEIN][markers].to_numpy(np.float64)))
    return x, unit_rows(zscore_columns(rna_panel))


def fuse(joint_q: np.ndarray, joint_r: np.ndarray, panel_q: np.ndarray, panel_r: np.ndarray,
         weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Query and reference rows whose inner product is weight * joint cosine + (1 - weight) * panel agreement."""
    a, b = np.sqrt(weight), np.sqrt(1.0 - weight)
    query = np.hstack([a * np.asarray(joint_q, np.float32), b * panel_q])
    ref = np.hstack([a * np.asarray(joint_r, np.float32), b * panel_r])
    return np.ascontiguousarray(query, dtype=np.float32), np.ascontiguousarray(ref, dtype=np.float32)

