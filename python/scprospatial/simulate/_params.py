"""Random parameters of the generative model, drawn once from the seed.

RNA: gene means from a gamma-like (log-normal) spread, marker genes switched on by cell type, a few
latent programs shared by genes (within-type covariation), per-gene negative-binomial overdispersion,
per-batch gene-wise shifts and sequencing depth. Protein: driven by the latent (not observed) expression
of its coding gene with a per-protein power law, a cell-type effect (post-transcriptional), per-batch
antibody efficiency, and ambient background that also fills the isotype controls. Imaging: per-marker
gain and background on the same protein signal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ._catalog import CELL_TYPES, CYCLING_GENES, HOUSEKEEPING, ISOTYPES, NICHES, PAN_IMMUNE_GENE, PROTEINS, real_genes

BATCHES = ("batch1", "batch2", "query")   # two CITE-seq batches, and the RNA-only query cohort
FILLER_NAMES = ("generic", "vocabulary")  # how filler genes are named (see _gene_names)
N_FACTORS = 6                             # latent programs shared by genes
LIBRARY_MEAN, LIBRARY_SD = 1500.0, 0.45  # UMIs per cell, log-normal
PSEUDO_CP10K = 0.1


def stream(seed: int, *key: int) -> np.random.Generator:
    """Independent generator for one purpose (and block index): the unit of determinism."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class SimParams:
    seed: int
    genes: np.ndarray            # (G,) symbols in canonical order (real genes first, then filler)
    gene_ids: np.ndarray         # (G,) fake Ensembl ids
    cell_types: tuple[str, ...]
    type_props: np.ndarray       # (len(BATCHES), T) cell-type proportions per batch
    log_base: np.ndarray         # (G,) baseline log share
    lfc: np.ndarray              # (T, G) cell-type log-fold changes
    cycling_lfc: np.ndarray      # (G,) added in cycling cells
    loadings: np.ndarray         # (N_FACTORS, G)
    dispersion: np.ndarray       # (G,) NB size r (variance mu + mu^2 / r)
    batch_lfc: np.ndarray        # (len(BATCHES), G)
    batch_depth: np.ndarray      # (len(BATCHES),)
    naive: np.ndarray            # (T,) mean CD45RA share of PTPRC
    cycling: np.ndarray          # (T,) probability of cycling
    # type-indexed arrays cover every catalogue type (so parameters do not depend on n_cell_types);
    # only the first len(cell_types) are sampled.
    prot_gene: np.ndarray        # (P,) gene index of each protein in PROTEINS
    prot_alpha: np.ndarray       # (P,) power of the RNA -> protein law
    prot_type: np.ndarray        # (T, P) cell-type (post-transcriptional) log effect
    prot_ref: np.ndarray         # (P,) signal of the highest-expressing type (for scaling)
    adt_target: np.ndarray       # (P,) ADT counts of the highest-expressing type
    adt_batch: np.ndarray        # (len(BATCHES), P) antibody efficiency per batch (log)
    ambient: np.ndarray          # (P,) ambient ADT counts
    iso_ambient: np.ndarray      # (len(ISOTYPES),) ambient counts of the isotype controls
    ambient_batch: np.ndarray    # (len(BATCHES),) ambient level per batch
    img_gain: np.ndarray         # (P,) imaging intensity of the highest-expressing type
    img_background: np.ndarray   # (P,) imaging background intensity
    niche_types: np.ndarray      # (n_niches, T) cell-type mix of each niche, rows sum to 1
    niche_names: tuple[str, ...]

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def summary(self) -> dict:
        """JSON-ready description for truth/params.json."""
        return {
            "cell_types": list(self.cell_types),
            "markers": {ct.name: list(ct.markers) for ct in CELL_TYPES[:len(self.cell_types)]},
            "batches": list(BATCHES),
            "type_proportions": {b: _named(self.cell_types, p) for b, p in zip(BATCHES, self.type_props)},
            "library_size": {"mean": LIBRARY_MEAN, "log_sd": LIBRARY_SD,
                             "batch_depth": _named(BATCHES, self.batch_depth)},
            "batch_effect_sd": float(self.batch_lfc.std()),
            "n_latent_programs": N_FACTORS,
            "proteins": {p.name: {"gene": str(self.genes[g]), "isoform": p.isoform or None, "alpha": float(a),
                                  "adt": p.adt or None, "codex": p.codex or None, "cycif": p.cycif or None}
                         for p, g, a in zip(PROTEINS, self.prot_gene, self.prot_alpha)},
            "isotype_controls": list(ISOTYPES),
            "niches": {n: _named(self.cell_types, row) for n, row in zip(self.niche_names, self.niche_types)},
        }


def _named(names, values) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values)}


def _vocabulary_genes(exclude: set[str]) -> list[str]:
    """Coding genes of the shipped protein vocabulary, in table order, without `exclude`."""
    from ..vocab import get_vocabulary

    vocab = get_vocabulary()
    names = (g for p in vocab.proteins for g in vocab.genes(p))
    return [g for g in dict.fromkeys(names) if g not in exclude]


def _gene_names(n_genes: int, filler_names: str = "generic") -> tuple[np.ndarray, np.ndarray]:
    """Real genes first, then filler genes: 'generic' names them GENE00001...; 'vocabulary' names them after
    the coding genes of the shipped protein vocabulary first (so every such protein is predictable, as on
    real data), then GENE00001... Names are labels only: the counts are the same either way."""
    real = real_genes()
    if n_genes < len(real):
        raise InputError(f"--n-genes {n_genes} is too small: the simulator needs at least {len(real)} "
                         "(the panel's coding genes and cell-type markers)")
    if filler_names not in FILLER_NAMES:
        raise InputError(f"filler_names={filler_names!r}: choose one of {', '.join(FILLER_NAMES)}")
    n_filler = n_genes - len(real)
    named = _vocabulary_genes(set(real))[:n_filler] if filler_names == "vocabulary" else []
    filler = named + [f"GENE{i:05d}" for i in range(1, n_filler - len(named) + 1)]
    genes = np.array(list(real) + filler, dtype=object)
    ids = np.array([f"ENSG{900000 + 17 * i:011d}" for i in range(n_genes)], dtype=object)
    return genes, ids


def _rna(rng: np.random.Generator, genes: np.ndarray, types) -> dict:
    G, T = len(genes), len(types)
    index = {g: i for i, g in enumerate(genes)}
    log_base = rng.normal(-np.log(G) - 3.0, 2.2, G)
    log_base[[index[g] for g in HOUSEKEEPING]] = -np.log(G) + rng.uniform(4.0, 6.0, len(HOUSEKEEPING))
    lfc = rng.normal(0.0, 0.15, (T, G))
    n_real = len(real_genes())
    programme = rng.random((T, G)) < 0.04            # random type programmes on filler genes
    programme[:, :n_real] = False
    lfc[programme] += rng.normal(0.0, 1.5, programme.sum())
    switched_genes = {index[g] for ct in CELL_TYPES for g in ct.markers} | {index[g] for g in CYCLING_GENES}
    switched_genes.add(index[PAN_IMMUNE_GENE])
    switched = np.array(sorted(switched_genes))
    log_base[switched] = -np.log(G) + rng.normal(-2.0, 0.5, len(switched))
    for t, ct in enumerate(types):
        on = [index[g] for g in ct.markers]
        lfc[t, on] += rng.uniform(3.5, 5.5, len(on))
        if ct.immune:
            lfc[t, index[PAN_IMMUNE_GENE]] += rng.uniform(4.0, 5.0)
    cycling_lfc = np.zeros(G)
    cycling_lfc[[index[g] for g in CYCLING_GENES]] = rng.uniform(3.5, 5.0, len(CYCLING_GENES))
    loadings = np.where(rng.random((N_FACTORS, G)) < 0.08, rng.normal(0.0, 0.5, (N_FACTORS, G)), 0.0)
    return {"log_base": log_base, "lfc": lfc, "cycling_lfc": cycling_lfc, "loadings": loadings,
            # quantised to a few levels, so gamma noise is drawn per level with a scalar shape (3x faster)
            "dispersion": 2.0 ** (np.round(4.0 * rng.normal(np.log2(3.0), 0.7, G)) / 4.0),
            "batch_lfc": rng.normal(0.0, 0.25, (len(BATCHES), G)),
            "batch_depth": np.array([1.0, 0.7, 0.85])}


def expected_cp10k(log_base: np.ndarray, lfc: np.ndarray) -> np.ndarray:
    """(T, G) expected expression per 10,000 transcripts of each cell type (no batch, no noise)."""
    logits = log_base + lfc
    logits = logits - logits.max(axis=1, keepdims=True)
    share = np.exp(logits)
    return share / share.sum(axis=1, keepdims=True) * 1e4


def protein_signal(cp10k: np.ndarray, alpha: np.ndarray, type_effect: np.ndarray) -> np.ndarray:
    """Protein abundance (arbitrary units) from coding-gene expression: (cp10k + c)^alpha * exp(effect)."""
    return (cp10k + PSEUDO_CP10K) ** alpha * np.exp(type_effect)


def _protein(rng: np.random.Generator, genes: np.ndarray, types, rna: dict) -> dict:
    index = {g: i for i, g in enumerate(genes)}
    P, T = len(PROTEINS), len(types)
    prot_gene = np.array([index[p.gene] for p in PROTEINS])
    alpha = rng.uniform(0.8, 1.2, P)
    prot_type = rng.normal(0.0, 0.3, (T, P))
    naive = np.clip([ct.naive for ct in types], 0.02, 0.98)
    cp10k = expected_cp10k(rna["log_base"], rna["lfc"])[:, prot_gene]
    iso = np.array([p.isoform for p in PROTEINS])
    cp10k[:, iso == "RA"] *= naive[:, None]
    cp10k[:, iso == "RO"] *= 1.0 - naive[:, None]
    ref = protein_signal(cp10k, alpha, prot_type).max(axis=0)
    return {"prot_gene": prot_gene, "prot_alpha": alpha, "prot_type": prot_type, "prot_ref": ref,
            "naive": naive, "cycling": np.array([ct.cycling for ct in types]),
            "adt_target": np.exp(rng.normal(np.log(500.0), 0.6, P)),
            "adt_batch": rng.normal(0.0, 0.2, (len(BATCHES), P)),
            "ambient": np.exp(rng.normal(np.log(15.0), 0.5, P)),
            "iso_ambient": np.exp(rng.normal(np.log(8.0), 0.4, len(ISOTYPES))),
            "ambient_batch": np.array([1.0, 1.4, 1.2]),
            "img_gain": np.exp(rng.normal(np.log(2500.0), 0.6, P)),
            "img_background": np.exp(rng.normal(np.log(150.0), 0.5, P))}


def _niches(types) -> tuple[np.ndarray, tuple[str, ...]]:
    names = [ct.name for ct in types]
    rows, kept = [], []
    for niche in NICHES:
        row = np.array([niche.composition.get(n, 0.0) for n in names])
        if row.sum() > 0:
            rows.append(row / row.sum())
            kept.append(niche.name)
    return np.array(rows), tuple(kept)


def draw_params(seed: int, *, n_genes: int, n_cell_types: int, filler_names: str = "generic") -> SimParams:
    """All random parameters of the model for `seed` (independent of the number of cells)."""
    if not 2 <= n_cell_types <= len(CELL_TYPES):
        raise InputError(f"--n-cell-types {n_cell_types}: choose between 2 and {len(CELL_TYPES)}")
    types = CELL_TYPES[:n_cell_types]
    genes, ids = _gene_names(n_genes, filler_names)
    rng = stream(seed, 0)
    rna = _rna(rng, genes, CELL_TYPES)
    prot = _protein(rng, genes, CELL_TYPES, rna)
    base = rng.dirichlet(np.full(n_cell_types, 15.0))
    props = np.array([rng.dirichlet(60.0 * base) for _ in BATCHES])
    niche_types, niche_names = _niches(types)
    return SimParams(seed=seed, genes=genes, gene_ids=ids, cell_types=tuple(ct.name for ct in types),
                     type_props=props, niche_types=niche_types, niche_names=niche_names, **rna, **prot)
