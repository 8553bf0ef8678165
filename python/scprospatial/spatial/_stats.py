"""Spatial statistics on one precomputed neighbour graph: neighbourhood enrichment, Moran's I, niche composition.

Every statistic reads obsp['spatial_connectivities'] (built by `spatial_neighbors` when absent), so all
of them describe the same neighbourhoods. With a `library_key` each sample is analysed on its own
(edges between samples are ignored) and the tables carry a `library` column ('all' = pooled).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse, stats

from .. import _constants as K
from .. import _ext
from .._logging import logger
from .._settings import scoped_threads
from ..errors import InputError
from ._kernels import _threads
from ._neighbourhood import cluster_codes, connectivities, neighbour_counts, spatial_cell_type_key

ALL = "all"                      # library label of pooled results
PERM_BATCH_EDGES = 20_000_000    # edges x permutations counted per vectorised batch (bounds memory)
SOURCES = {"measured": K.PROTEIN, "predicted": K.PROTEIN_PREDICTED}
NICHE = "niche_composition"      # obsm (per cell) and uns suffix (per cell type)
MORAN = "moranI"                 # uns: squidpy's key and layout for Moran's I
MORAN_LONG = "scprospatial_moranI"  # uns: every library, source and protein (moran.csv)


def enrichment_key(cluster_key: str) -> str:
    return f"{cluster_key}_nhood_enrichment"  # squidpy's key


def _libraries(adata, library_key: str | None) -> list[tuple[str, np.ndarray]]:
    """(name, cell indices) per library, pooled first."""
    parts = [(ALL, np.arange(adata.n_obs))]
    if library_key is not None:
        if library_key not in adata.obs:
            raise InputError(f"library_key {library_key!r} is not an obs column")
        lib = adata.obs[library_key].astype(str).to_numpy()
        parts += [(name, np.flatnonzero(lib == name)) for name in pd.unique(lib)]
    return parts


# ----------------------------------------------------------------------------- neighbourhood enrichment
def _pair_counts(codes: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_types: int) -> np.ndarray:
    """Edges from type a to type b, for one labelling (n,) or a batch of labellings (B, n)."""
    codes = np.atleast_2d(codes)
    b = codes.shape[0]
    flat = codes[:, rows] * n_types + codes[:, cols] + (np.arange(b) * n_types * n_types)[:, None]
    return np.bincount(flat.ravel(), minlength=b * n_types * n_types).reshape(b, n_types, n_types)


def enrichment_zscores(codes: np.ndarray, graph: sparse.csr_matrix, n_types: int, *, n_perms: int,
                       rng: np.random.Generator, groups: np.ndarray | None = None,
                       threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(count, zscore): edges between types and their z-score against `n_perms` label permutations
    (within `groups` when given). Cells with a missing label (code -1) and their edges are left out.

    The permutations run in the C++ core (`threads` threads; each permutation seeded from one draw of `rng`, so
    the result does not depend on the thread count); without the compiled extension, in vectorised numpy
    (`_null_numpy`: the same null distribution from another random stream, far slower)."""
    graph = sparse.csr_matrix(graph)
    coo = graph.tocoo()
    keep = (codes[coo.row] >= 0) & (codes[coo.col] >= 0)
    rows, cols = coo.row[keep], coo.col[keep]
    count = _pair_counts(codes, rows, cols, n_types)[0]
    labelled = np.flatnonzero(codes >= 0)
    group_ids = np.zeros(len(codes), np.int64) if groups is None else groups
    members = [labelled[group_ids[labelled] == g] for g in np.unique(group_ids[labelled])]
    core = _ext.core()
    if core is None:
        mean, sd = _null_numpy(codes, rows, cols, n_types, members, n_perms=n_perms, rng=rng)
    else:
        offsets = np.concatenate([[0], np.cumsum([len(m) for m in members], dtype=np.int64)])
        order = np.concatenate(members) if members else np.zeros(0, np.int64)
        mean, sd = core.enrichment_null(graph.indptr, graph.indices, codes.astype(np.int32), order, offsets,
                                        n_types=n_types, n_perms=int(n_perms), seed=int(rng.integers(0, 2**63)),
                                        threads=_threads(threads))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (count - mean) / np.where(sd > 0, sd, 1.0), np.nan)
    return count, z


def _null_numpy(codes: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_types: int, members: list[np.ndarray], *,
                n_perms: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of the pair counts over label permutations (within each of `members`), in numpy batches."""
    total, total_sq = np.zeros((n_types, n_types)), np.zeros((n_types, n_types))
    batch = max(1, min(n_perms, PERM_BATCH_EDGES // max(len(rows), 1)))
    for start in range(0, n_perms, batch):
        b = min(batch, n_perms - start)
        perm = np.repeat(codes[None, :], b, axis=0)
        for idx in members:
            perm[:, idx] = rng.permuted(np.repeat(codes[idx][None, :], b, axis=0), axis=1)
        c = _pair_counts(perm, rows, cols, n_types).astype(np.float64)
        total += c.sum(0)
        total_sq += (c ** 2).sum(0)
    mean = total / n_perms
    return mean, np.sqrt(np.maximum(total_sq / n_perms - mean ** 2, 0.0))


def nhood_enrichment(adata, *, cluster_key: str, n_perms: int = 1000, seed: int = 0, library_key: str | None = None,
                     connectivity_key: str = K.SPATIAL_CONNECTIVITIES, threads: int | None = None,
                     copy: bool = False):
    """Neighbourhood enrichment z-scores between cell types (as squidpy.gr.nhood_enrichment).

    count[a, b] = graph edges from a cell of type a to one of type b; z = (count - mean) / sd over
    `n_perms` seeded permutations of the labels (within each library when `library_key` is given).
    Writes uns['{cluster_key}_nhood_enrichment'] = {'zscore', 'count', 'categories', 'n_perms', 'seed'}.

    Parameters
    ----------
    adata
        Cells with a spatial graph (`spatial_neighbors` first) and labels in ``obs[cluster_key]``.
    cluster_key
        obs column of cell-type labels.
    n_perms, seed
        Number of label permutations and their seed.
    library_key
        obs column of samples (labels permuted within each), or None.
    connectivity_key
        obsp key of the graph.
    threads
        CPU threads of the C++ core (None: the run-wide setting); the result does not depend on it.
    copy
        Return a new AnnData instead of writing into `adata`.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    adata = adata.copy() if copy else adata
    if n_perms < 1:
        raise InputError(f"n_perms must be at least 1, got {n_perms}")
    codes, names = cluster_codes(adata, cluster_key)
    groups = None
    if library_key is not None:
        groups = pd.factorize(adata.obs[library_key].astype(str))[0]
    count, z = enrichment_zscores(codes, connectivities(adata, connectivity_key=connectivity_key), len(names),
                                  n_perms=n_perms, rng=np.random.default_rng(seed), groups=groups, threads=threads)
    adata.uns[enrichment_key(cluster_key)] = {"zscore": z, "count": count, "categories": np.array(names),
                                              "n_perms": int(n_perms), "seed": int(seed)}
    return adata if copy else None


# ----------------------------------------------------------------------------- Moran's I
def morans_i(values: np.ndarray, graph: sparse.csr_matrix, *, two_tailed: bool = False,
             threads: int | None = None) -> pd.DataFrame:
    """Moran's I of every column of `values` (n x p) on row-standardised `graph`, with the analytical
    variance under the normality assumption and its p-values: one-sided, P(Z > |z|), by default, as
    squidpy.gr.spatial_autocorr; two_tailed doubles them.

    I = n / S0 * z'Wz / z'z, E[I] = -1/(n-1), Var = (n^2 S1 - n S2 + 3 S0^2) / ((n^2 - 1) S0^2) - E[I]^2.
    Cells without neighbours keep an empty row. Constant columns give NaN. The sums run in the C++ core
    (`threads` threads, one pass over the graph; `graph` must be binary, as `connectivities` gives it), in scipy
    without the compiled extension (`_moran_sums_scipy`).
    """
    n = values.shape[0]
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0, dtype=np.float64)
    core = _ext.core()
    if core is None:
        num, den, (s0, s1, s2) = _moran_sums_scipy(values - mean, graph)
    else:
        graph = sparse.csr_matrix(graph)
        num, den, (s0, s1, s2) = core.moran_sums(graph.indptr, graph.indices, values, mean,
                                                 sorted_rows=bool(graph.has_sorted_indices),
                                                 threads=_threads(threads))
    with np.errstate(divide="ignore", invalid="ignore"):
        i = np.where(den > 0, n / s0 * num / np.where(den > 0, den, 1.0), np.nan)
    expected = -1.0 / (n - 1)
    var = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n * n - 1) * s0 * s0) - expected ** 2
    zscore = (i - expected) / np.sqrt(var)
    p = stats.norm.sf(np.abs(zscore)) * (2 if two_tailed else 1)
    return pd.DataFrame({"I": i, "expected_I": expected, "var_norm": var, "z": zscore, "pval_norm": p})


def _moran_sums_scipy(z: np.ndarray, graph: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(z'Wz per column, z'z per column, (S0, S1, S2)) of centred values on row-standardised `graph`."""
    deg = np.asarray(graph.sum(axis=1)).ravel()
    w = sparse.csr_matrix(sparse.diags(np.where(deg > 0, 1.0 / np.where(deg > 0, deg, 1.0), 0.0)) @ graph)
    s0 = w.sum()
    s1 = 0.5 * ((w + w.T.tocsr()).power(2)).sum()
    s2 = float(((np.asarray(w.sum(axis=1)).ravel() + np.asarray(w.sum(axis=0)).ravel()) ** 2).sum())
    return (z * (w @ z)).sum(axis=0), (z ** 2).sum(axis=0), (s0, s1, s2)


def _bh(p: np.ndarray) -> np.ndarray:
    out = np.full_like(p, np.nan, dtype=np.float64)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def protein_tables(adata, proteins=None) -> dict[str, pd.DataFrame]:
    """Per source ('measured' obsm['protein'], 'predicted' obsm['protein_predicted']) the frame of the
    requested proteins present there (all when `proteins` is None)."""
    out = {}
    for source, key in SOURCES.items():
        if key not in adata.obsm:
            continue
        frame = pd.DataFrame(adata.obsm[key])
        cols = list(frame.columns) if proteins is None else [p for p in proteins if p in frame.columns]
        if cols:
            out[source] = frame if proteins is None else frame[cols]   # all of them: no copy
    if proteins is not None:
        found = set().union(*(f.columns for f in out.values())) if out else set()
        missing = [p for p in proteins if p not in found]
        if missing:
            raise InputError(f"protein(s) {', '.join(missing)} neither measured nor imputed in this input")
    return out


def spatial_autocorr(adata, *, proteins=None, library_key: str | None = None, two_tailed: bool = False,
                     connectivity_key: str = K.SPATIAL_CONNECTIVITIES, threads: int | None = None,
                     copy: bool = False):
    """Moran's I per protein, measured and imputed, per library; BH-corrected p-values within each
    (library, source); p-values one-sided unless `two_tailed` (squidpy's convention).

    Writes uns['moranI'] in squidpy's layout (what squidpy.gr.spatial_autocorr(mode='moran') writes): a
    DataFrame indexed by protein with columns I, pval_norm, var_norm, pval_norm_fdr_bh, sorted by I, for all
    cells together, of the imputed proteins (obsm['protein_predicted']) when there are any, else of the
    measured ones; and uns['scprospatial_moranI'], the long table of every (library, source, protein) that
    spatial-stats writes as moran.csv.

    Parameters
    ----------
    adata
        Cells with a spatial graph (`spatial_neighbors` first) and proteins in obsm['protein'] and/or
        obsm['protein_predicted'].
    proteins
        Proteins to test (default: all).
    library_key
        obs column of samples, or None.
    two_tailed
        Two-sided p-values instead of one-sided.
    connectivity_key
        obsp key of the graph.
    threads
        CPU threads of the C++ core (None: the run-wide setting).
    copy
        Return a new AnnData instead of writing into `adata`.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    adata = adata.copy() if copy else adata
    graph = connectivities(adata, connectivity_key=connectivity_key)
    tables = protein_tables(adata, proteins)
    rows = []
    values = {source: frame.to_numpy(np.float64) for source, frame in tables.items()}
    for lib, cells in _libraries(adata, library_key):
        every = lib == ALL  # pooled: the whole graph and table, not copies
        sub = graph if every else graph[cells][:, cells]
        for source, frame in tables.items():
            res = morans_i(values[source] if every else values[source][cells], sub, two_tailed=two_tailed,
                           threads=threads)
            res.insert(0, "protein", list(frame.columns))
            res.insert(0, "source", source)
            res.insert(0, "library", lib)
            res["pval_norm_fdr_bh"] = _bh(res["pval_norm"].to_numpy())
            rows.append(res)
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    table.index = table.index.astype(str)
    adata.uns[MORAN_LONG] = table
    adata.uns[MORAN] = squidpy_moran_table(table)
    return adata if copy else None


def squidpy_moran_table(table: pd.DataFrame) -> pd.DataFrame:
    """The pooled rows of the long Moran table in squidpy's layout: indexed by protein, sorted by I (imputed
    proteins when there are any, else measured)."""
    columns = ["I", "pval_norm", "var_norm", "pval_norm_fdr_bh"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    pooled = table[table["library"] == ALL]
    source = "predicted" if (pooled["source"] == "predicted").any() else "measured"
    out = pooled[pooled["source"] == source].set_index("protein")[columns]
    out.index = out.index.astype(str).rename(None)
    return out.sort_values("I", ascending=False)


# ----------------------------------------------------------------------------- niche composition
def niche_composition(adata, *, cluster_key: str, library_key: str | None = None,
                      connectivity_key: str = K.SPATIAL_CONNECTIVITIES, copy: bool = False):
    """Fraction of each cell's graph neighbours of every type (obsm['niche_composition'], DataFrame) and
    its mean per centre cell type (uns['{cluster_key}_niche_composition'], long DataFrame per library).

    Parameters
    ----------
    adata
        Cells with a spatial graph (`spatial_neighbors` first) and labels in ``obs[cluster_key]``.
    cluster_key
        obs column of cell-type labels.
    library_key
        obs column of samples, or None.
    connectivity_key
        obsp key of the graph.
    copy
        Return a new AnnData instead of writing into `adata`.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    adata = adata.copy() if copy else adata
    codes, names = cluster_codes(adata, cluster_key)
    counts, total = neighbour_counts(connectivities(adata, connectivity_key=connectivity_key), codes, len(names))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, counts / np.where(total > 0, total, 1), np.nan)
    adata.obsm[NICHE] = pd.DataFrame(frac, index=adata.obs_names, columns=names)
    parts = []
    for lib, cells in _libraries(adata, library_key):
        sub = pd.DataFrame(frac[cells], columns=names)
        sub["cell_type"] = pd.Categorical.from_codes(codes[cells], categories=names)
        mean = sub.groupby("cell_type", observed=False).mean()
        mean.insert(0, "n_cells", np.bincount(codes[cells][codes[cells] >= 0], minlength=len(names)))
        mean.insert(0, "library", lib)
        parts.append(mean.reset_index())
    table = pd.concat(parts, ignore_index=True)
    table = table[["library", "cell_type", "n_cells", *names]]
    table.index = table.index.astype(str)
    table["cell_type"] = table["cell_type"].astype(str)
    adata.uns[f"{cluster_key}_{NICHE}"] = table
    logger.info("niche composition: %d cell types, %.1f neighbours per cell", len(names), float(total.mean()))
    return adata if copy else None


# ----------------------------------------------------------------------------- file level
def _enrichment_table(adata, cluster_key: str, library_key: str | None, n_perms: int, seed: int) -> pd.DataFrame:
    """Long table (library, cluster_a, cluster_b, count, zscore): pooled from uns, then each library alone."""
    res = adata.uns[enrichment_key(cluster_key)]
    codes, names = cluster_codes(adata, cluster_key)
    graph = connectivities(adata)
    frames = []
    for i, (lib, cells) in enumerate(_libraries(adata, library_key)):
        if lib == ALL:
            count, z = res["count"], res["zscore"]
        else:
            count, z = enrichment_zscores(codes[cells], graph[cells][:, cells], len(names), n_perms=n_perms,
                                          rng=np.random.default_rng([seed, i]))
        a, b = np.meshgrid(names, names, indexing="ij")
        frames.append(pd.DataFrame({"library": lib, "cluster_a": a.ravel(), "cluster_b": b.ravel(),
                                    "count": count.ravel(), "zscore": z.ravel()}))
    return pd.concat(frames, ignore_index=True)


def protein_map_panels(adata, proteins) -> dict[str, dict[str, pd.Series]]:
    """{protein: {'measured': values, 'imputed': values}} of `proteins`, for `protein_maps`."""
    tables = protein_tables(adata, proteins)
    label = {"measured": "measured", "predicted": "imputed"}
    return {p: {label[s]: f[p] for s, f in tables.items() if p in f} for p in proteins}


def _figure_proteins(adata, proteins, moran: pd.DataFrame, limit: int = 4) -> list[str]:
    """Requested proteins, else those both measured and imputed (highest imputed Moran's I first)."""
    if proteins is not None:
        return list(proteins)[:limit]
    if moran.empty:
        return []
    pooled = moran[moran["library"] == ALL].sort_values("I", ascending=False)
    by_source = {s: list(pooled.loc[pooled["source"] == s, "protein"]) for s in SOURCES}
    both = [p for p in by_source["predicted"] if p in set(by_source["measured"])]
    return (both or by_source["predicted"] or by_source["measured"])[:limit]


@scoped_threads
def spatial_stats_file(input, outdir, *, cluster_key: str | None = None, proteins=None, n_perms: int = 1000,
                       library_key: str | None = None, seed: int = 0, threads: int | None = None):
    """`scprospatial spatial-stats`: statistics of one spatial .h5ad on one graph (built when absent).

    Writes into `outdir`: nhood_enrichment.csv, niche_composition.csv (when cell types are known),
    moran.csv, nhood_enrichment.png, protein_maps.png and `<stem>.stats.h5ad` (the input with every
    result). cluster_key defaults to uns['scprospatial']['cell_type_key'], library_key to
    uns['scprospatial']['library_key'] (the image column of multi-image inputs). Returns the .h5ad path.
    """
    from pathlib import Path

    from ..io import load, write_h5ad, write_table
    from ._figures import enrichment_heatmap, protein_maps
    from ._neighbors import spatial_neighbors

    outdir = Path(outdir)
    adata = load(input, kind="spatial")
    library_key = library_key or adata.uns[K.UNS].get(K.LIBRARY_KEY)  # several images: statistics per image
    if library_key is not None and library_key not in adata.obs:
        raise InputError(f"--library-key {library_key!r} is not an obs column", input)
    if proteins is not None:
        try:
            protein_tables(adata, proteins)
        except InputError as exc:
            raise InputError(exc.problem, input) from None
    if K.SPATIAL_CONNECTIVITIES not in adata.obsp:
        logger.info("%s has no spatial graph: building a 10-nearest-neighbour graph", input)
        spatial_neighbors(adata, library_key=library_key, threads=threads)
    cluster_key = cluster_key or spatial_cell_type_key(adata)
    if cluster_key is not None and cluster_key not in adata.obs:
        raise InputError(f"cluster key {cluster_key!r} is not an obs column", input)
    outdir.mkdir(parents=True, exist_ok=True)
    if cluster_key is None:
        logger.warning("%s: no cell-type column known (give --cluster-key); skipping neighbourhood enrichment "
                       "and niche composition", input)
    else:
        nhood_enrichment(adata, cluster_key=cluster_key, n_perms=n_perms, seed=seed, library_key=library_key)
        write_table(_enrichment_table(adata, cluster_key, library_key, n_perms, seed),
                    outdir / "nhood_enrichment.csv", index=False)
        res = adata.uns[enrichment_key(cluster_key)]
        enrichment_heatmap(res["zscore"], res["categories"], outdir / "nhood_enrichment.png",
                           title=f"{cluster_key}: neighbourhood enrichment ({n_perms} permutations)")
        niche_composition(adata, cluster_key=cluster_key, library_key=library_key)
        write_table(adata.uns[f"{cluster_key}_{NICHE}"], outdir / "niche_composition.csv", index=False)
    try:
        spatial_autocorr(adata, proteins=proteins, library_key=library_key)
    except InputError as exc:
        raise InputError(exc.problem, input) from None
    moran = adata.uns[MORAN_LONG]
    write_table(moran, outdir / "moran.csv", index=False)
    shown = _figure_proteins(adata, proteins, moran)
    if shown:
        protein_maps(np.asarray(adata.obsm[K.SPATIAL]), protein_map_panels(adata, shown), outdir / "protein_maps.png")
    return write_h5ad(adata, stats_path(input, outdir))


def stats_path(input, outdir):
    """`<outdir>/<input stem>.stats.h5ad` (a Path): the .h5ad that spatial-stats writes."""
    from pathlib import Path

    return Path(outdir) / f"{Path(input).name.split('.')[0]}.stats.h5ad"
