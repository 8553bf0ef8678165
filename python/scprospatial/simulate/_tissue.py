"""A tissue section: niches laid out over a field, cells placed in them, imaged marker intensities.

Niches are the cells of a power (weighted Voronoi) diagram over random centres: each centre has a niche
kind (follicle, T-cell zone, tumour nest, stroma, vessel) and a radius, and a cell belongs to the centre
minimising |x - c|^2 - r^2 (so follicles are large and vessels small). Cell positions are uniform at
~4,000 cells/mm^2, jittered before the niche lookup so borders are ragged. A cell's type is drawn from
its niche's mix; its marker intensities follow the same protein model as the CITE-seq cohort, imaged
as background + gain x signal with log-normal noise and 4% spillover from the previous channel of the
same cycle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.special import logsumexp

from ._catalog import NICHES, NUCLEAR_STAIN, PROTEINS
from ._cells import draw_state, latent_logits, multiply_gamma_noise, proteins_from_cp10k
from ._params import BATCHES, SimParams, stream

CELLS_PER_MM2 = 4000.0
UM_PER_PIXEL = {"codex": 0.377, "cycif": 0.65}
MEAN_NICHE_AREA_MM2 = 0.06
IMAGED = [i for i, p in enumerate(PROTEINS) if p.codex]
_CANDIDATES = 12  # nearest centres checked for the power-diagram minimum


def codex_columns() -> list[str]:
    """CODEX column names 'NAME - description:Cyc_N_ch_M', three channels per cycle after the nuclear stain."""
    return [f"{PROTEINS[i].codex}:Cyc_{2 + k // 3}_ch_{2 + k % 3}" for k, i in enumerate(IMAGED)]


def marker_columns(layout: str) -> list[str]:
    return codex_columns() if layout == "codex" else [PROTEINS[i].cycif for i in IMAGED]


@dataclass(frozen=True)
class Tissue:
    side_um: float
    centres: np.ndarray     # (K, 2) µm
    radius: np.ndarray      # (K,) µm
    niche: np.ndarray       # (K,) index into params.niche_names
    tree: cKDTree

    def niche_of(self, xy: np.ndarray) -> np.ndarray:
        """Niche index of each point (power-diagram cell among the nearest centres)."""
        k = min(_CANDIDATES, len(self.centres))
        dist, idx = self.tree.query(xy, k=k)
        dist, idx = dist.reshape(len(xy), k), idx.reshape(len(xy), k)
        power = dist**2 - self.radius[idx] ** 2
        return self.niche[idx[np.arange(len(xy)), power.argmin(axis=1)]]


def lay_out(params: SimParams, n_cells: int, seed: int) -> Tissue:
    """Niche centres over a square field sized for `n_cells` at CELLS_PER_MM2."""
    rng = stream(seed, 3)
    side_mm = np.sqrt(max(n_cells, 1) / CELLS_PER_MM2)
    n_centres = max(2 * len(params.niche_names), int(round(side_mm**2 / MEAN_NICHE_AREA_MM2)))
    catalogue = {n.name: n for n in NICHES}
    kinds = [catalogue[name] for name in params.niche_names]
    freq = np.array([k.frequency for k in kinds])
    niche = rng.choice(len(kinds), size=n_centres, p=freq / freq.sum())
    niche[: len(kinds)] = np.arange(len(kinds))  # every niche kind appears at least once
    radius = np.array([kinds[i].radius_um for i in niche]) * np.exp(rng.normal(0.0, 0.25, n_centres))
    centres = rng.random((n_centres, 2)) * side_mm * 1000.0
    return Tissue(side_mm * 1000.0, centres, radius, niche, cKDTree(centres))


class SpatialImager:
    """Draws imaged cells block by block for one tissue and one column layout."""

    def __init__(self, params: SimParams, tissue: Tissue, layout: str):
        self.params, self.tissue, self.layout = params, tissue, layout
        self.genes = params.prot_gene[IMAGED]
        self.columns = marker_columns(layout)
        self.batch = BATCHES.index("batch1")
        # expected softmax normaliser of each type, so only the imaged genes need sampling
        self.log_norm = logsumexp(params.log_base + params.lfc + params.batch_lfc[self.batch], axis=1)
        previous = [k - 1 if k % 3 else -1 for k in range(len(IMAGED))]
        self.spill_from = np.array(previous)

    def block(self, rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """(marker table with coordinates in pixels, cell-type index, niche index) for n cells."""
        p, t = self.params, self.tissue
        xy = rng.random((n, 2)) * t.side_um
        niche = t.niche_of(xy + rng.normal(0.0, 15.0, (n, 2)))
        cum = np.cumsum(p.niche_types[niche], axis=1)
        types = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(p.cell_types) - 1)
        state = draw_state(p, rng, n, self.batch, types=types)
        logits = latent_logits(p, rng, state, self.genes) - self.log_norm[types][:, None]
        expr = np.exp(logits)
        multiply_gamma_noise(rng, expr, p.dispersion[self.genes])
        signal = proteins_from_cp10k(p, rng, state, expr * 1e4, IMAGED)
        rel = signal / p.prot_ref[IMAGED]
        bg = p.img_background[IMAGED] * np.exp(rng.normal(0.0, 0.2, (n, 1)))
        intensity = bg + p.img_gain[IMAGED] * rel * np.exp(rng.normal(0.0, 0.3, rel.shape))
        spill = self.spill_from >= 0
        intensity[:, spill] += 0.04 * intensity[:, self.spill_from[spill]]
        nuclear = np.exp(rng.normal(np.log(8000.0), 0.35, n))
        area = np.exp(rng.normal(np.log(180.0), 0.3, n))
        px = xy / UM_PER_PIXEL[self.layout]
        table = pd.DataFrame(intensity, columns=self.columns)
        table.insert(0, NUCLEAR_STAIN[self.layout], nuclear)
        if self.layout == "codex":
            table.insert(0, "Y", px[:, 1])
            table.insert(0, "X", px[:, 0])
            table["size"] = np.round(area)
        else:
            table["X_position"], table["Y_position"], table["Area"] = px[:, 0], px[:, 1], np.round(area)
        return table, types, niche
