"""`simulate()`: write a seeded cohort (CITE-seq, RNA-only query, spatial table, truth, samplesheet).

Determinism: cells are generated in fixed-size blocks, each from its own generator seeded by
(seed, file, batch, block index). `chunk_size` (rounded up to whole blocks) only sets how many cells
are held in memory before they are appended to disk, so the files' content is the same for any chunk
size; CSV files are then byte-identical, h5ad files equal once read (HDF5 places chunks differently).
Atomicity: everything is written into a hidden staging folder inside `outdir` and moved into place
(one rename per file) only when the whole cohort is complete.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _constants as K
from .._logging import logger, progress
from ..errors import InputError
from ._catalog import ISOTYPES, PROTEINS
from ._cells import ADT_INDEX, adt_counts, barcodes, block_cells, draw_state, rna_block
from ._h5ad import H5adStream
from ._params import BATCHES, SimParams, draw_params, stream
from ._tissue import CELLS_PER_MM2, UM_PER_PIXEL, SpatialImager, lay_out

LAYOUTS = ("codex", "cycif")
CELL_TYPE = "cell_type"
PROTEIN_COUNTS = "protein_counts"   # where raw CITE-seq files (e.g. the 10x MALT h5ad) keep ADT counts
CELL_TYPE_COLUMN = {"codex": "ClusterName", "cycif": "phenotype"}
FILES = {"citeseq": "citeseq.h5ad", "rna": "query_rna.h5ad", "spatial": "spatial.csv",
         "samplesheet": "samplesheet.csv", "query_protein": "truth/query_protein.csv",
         "query_isotype_controls": "truth/query_isotype_controls.csv",
         "query_cell_type": "truth/query_cell_type.csv", "citeseq_cell_type": "truth/citeseq_cell_type.csv",
         "spatial_cell_type": "truth/spatial_cell_type.csv", "params": "truth/params.json"}
_STREAM = {"citeseq": 1, "rna": 2, "spatial": 4}  # 0: parameters, 3: tissue layout, 5: gene orders
_FLOAT = "%.6g"
SPATIAL_BLOCK = 4096  # imaged cells per generation block (cheap: only the imaged genes are sampled)


def _chunks(n: int, block: int, chunk_size: int) -> list[list[tuple[int, int, int]]]:
    """Blocks (index, start, stop) of n cells, grouped into chunks of about chunk_size cells."""
    blocks = [(k, start, min(start + block, n)) for k, start in enumerate(range(0, n, block))]
    per_chunk = max(1, -(-chunk_size // block))
    return [blocks[i:i + per_chunk] for i in range(0, len(blocks), per_chunk)]


class _CsvAppender:
    """Append DataFrames to a CSV, header once."""

    def __init__(self, path: Path):
        self._fh, self._header = path.open("w", newline=""), True

    def add(self, frame: pd.DataFrame, **kwargs) -> None:
        frame.to_csv(self._fh, header=self._header, float_format=_FLOAT, **kwargs)
        self._header = False

    def close(self) -> None:
        self._fh.close()


def _rna_cells(params: SimParams, seed: int, file: str, segments: list[tuple[str, int]], chunk_size: int,
               perm: np.ndarray) -> Iterator[tuple[np.ndarray, sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, int]]:
    """Chunks of (barcodes, counts in file gene order, type index, ADT, isotype, batch index) of a file."""
    block, offset = block_cells(params.n_genes), 0
    todo = [(b, n, chunk) for b, n in segments for chunk in _chunks(n, block, chunk_size)]
    for batch_name, n, chunk in progress(todo, desc=FILES[file], total=len(todo), unit="chunk"):
        batch = BATCHES.index(batch_name)
        parts = []
        for k, start, stop in chunk:
            rng = stream(seed, _STREAM[file], batch, k)
            state = draw_state(params, rng, stop - start, batch)
            counts, signal = rna_block(params, rng, state)
            counts = counts[:, perm]     # file gene order, block by block (small copies)
            counts.sort_indices()
            parts.append((counts, state.types, *adt_counts(params, rng, state, signal)))
        start, stop = chunk[0][1], chunk[-1][2]
        names = barcodes(offset + start, offset + stop, f"-{batch + 1}")
        types, adt, iso = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
        counts = sp.vstack([p[0] for p in parts], format="csr")
        del parts  # keep only the stacked copy
        yield names, counts, types, adt, iso, batch
        if stop == n:
            offset += n


def _uns(seed: int) -> dict:
    """uns of the raw files: where they came from (not the `prepare` provenance, which they lack)."""
    return {"simulation": {"simulator": "scprospatial.simulate", "seed": seed}}


def _var(params: SimParams, perm: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"gene_ids": params.gene_ids[perm]}, index=pd.Index(params.genes[perm], dtype=object))


def _write_citeseq(params, seed, stage: Path, n_cells: int, chunk_size: int) -> None:
    perm = stream(seed, 5, 0).permutation(params.n_genes)
    adt_names = [PROTEINS[i].adt for i in ADT_INDEX] + list(ISOTYPES)
    segments = [("batch1", n_cells - n_cells // 2), ("batch2", n_cells // 2)]
    truth = _CsvAppender(stage / FILES["citeseq_cell_type"])
    with H5adStream(stage / FILES["citeseq"], var=_var(params, perm),
                    categories={CELL_TYPE: list(params.cell_types), K.BATCH: list(BATCHES[:2])},
                    obsm_columns={PROTEIN_COUNTS: adt_names},
                    uns=_uns(seed), max_obs=n_cells) as out:
        for names, counts, types, adt, iso, batch in _rna_cells(params, seed, "citeseq", segments, chunk_size, perm):
            out.append(obs_names=names, X=counts, codes={CELL_TYPE: types, K.BATCH: np.full(len(names), batch)},
                       obsm={PROTEIN_COUNTS: np.hstack([adt, iso])})
            truth.add(pd.DataFrame({"cell": names, CELL_TYPE: np.array(params.cell_types)[types],
                                    K.BATCH: BATCHES[batch]}), index=False)
    truth.close()


def _write_query(params, seed, stage: Path, n_query: int, chunk_size: int) -> None:
    perm = stream(seed, 5, 1).permutation(params.n_genes)
    truth = {key: _CsvAppender(stage / FILES[key]) for key in ("query_cell_type", "query_protein",
                                                                "query_isotype_controls")}
    protein_names = [PROTEINS[i].name for i in ADT_INDEX]
    iso_names = [name.removesuffix("_TotalSeqB") for name in ISOTYPES]
    with H5adStream(stage / FILES["rna"], var=_var(params, perm), categories={K.BATCH: [BATCHES[2]]},
                    obsm_columns={}, uns=_uns(seed),
                    max_obs=n_query) as out:
        chunks = _rna_cells(params, seed, "rna", [("query", n_query)], chunk_size, perm)
        for names, counts, types, adt, iso, _ in chunks:
            out.append(obs_names=names, X=counts, codes={K.BATCH: np.zeros(len(names))}, obsm={})
            index = pd.Index(names, name="cell")
            truth["query_cell_type"].add(pd.DataFrame({CELL_TYPE: np.array(params.cell_types)[types]}, index=index))
            truth["query_protein"].add(pd.DataFrame(adt, index=index, columns=protein_names))
            truth["query_isotype_controls"].add(pd.DataFrame(iso, index=index, columns=iso_names))
    for appender in truth.values():
        appender.close()


def _write_spatial(params, seed, stage: Path, n_spatial: int, chunk_size: int, layout: str) -> dict:
    tissue = lay_out(params, n_spatial, seed)
    imager = SpatialImager(params, tissue, layout)
    table, truth = _CsvAppender(stage / FILES["spatial"]), _CsvAppender(stage / FILES["spatial_cell_type"])
    todo = _chunks(n_spatial, SPATIAL_BLOCK, chunk_size)
    types_of, niches_of = np.array(params.cell_types), np.array(params.niche_names)
    for chunk in progress(todo, desc=FILES["spatial"], total=len(todo), unit="chunk"):
        parts = [imager.block(stream(seed, _STREAM["spatial"], k), stop - start) for k, start, stop in chunk]
        frame = pd.concat([p[0] for p in parts], ignore_index=True)
        types, niches = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
        cell_id = np.arange(chunk[0][1], chunk[-1][2]) + 1
        frame.insert(0, "CellID", cell_id)
        frame[CELL_TYPE_COLUMN[layout]] = types_of[types]
        table.add(frame, index=False)
        truth.add(pd.DataFrame({"CellID": cell_id, CELL_TYPE: types_of[types], "niche": niches_of[niches]}),
                  index=False)
    table.close()
    truth.close()
    return {"layout": layout, "side_um": tissue.side_um, "um_per_pixel": UM_PER_PIXEL[layout],
            "cells_per_mm2": CELLS_PER_MM2, "n_niche_centres": len(tissue.centres),
            "cell_type_column": CELL_TYPE_COLUMN[layout], "marker_columns": imager.columns}


def _write_samplesheet(path: Path, layout: str) -> None:
    rows = [("citeseq", "citeseq", FILES["citeseq"], "", CELL_TYPE),
            ("query", "rna", FILES["rna"], BATCHES[2], ""),
            ("spatial", "spatial", FILES["spatial"], "", CELL_TYPE_COLUMN[layout])]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "kind", "path", "batch", "cell_type_col"])
        writer.writerows(rows)


def _check(n_cells, n_query, n_spatial, chunk_size, spatial_layout) -> None:
    for name, value, low in (("n_cells", n_cells, 2), ("n_query", n_query, 1), ("n_spatial", n_spatial, 1),
                             ("chunk_size", chunk_size, 1)):
        if int(value) != value or value < low:
            raise InputError(f"--{name.replace('_', '-')} {value!r}: must be an integer >= {low}")
    if spatial_layout not in LAYOUTS:
        raise InputError(f"--spatial-layout {spatial_layout!r}: choose one of {', '.join(LAYOUTS)}")


def simulate(outdir: str | os.PathLike, *, n_cells: int = 2000, n_query: int | None = None,
             n_spatial: int | None = None, n_genes: int = 3000, n_cell_types: int = 8, seed: int = 0,
             chunk_size: int = 50_000, spatial_layout: str = "codex", filler_names: str = "generic") -> dict[str, Path]:
    """Write a seeded simulated cohort into `outdir` and return {name: path} of what was written.

    Files: ``citeseq.h5ad`` (paired RNA + ADT counts, two batches), ``query_rna.h5ad`` (RNA-only query,
    its own batch, genes in another order), ``spatial.csv`` (imaged cell table, CODEX or CyCIF columns),
    ``samplesheet.csv`` (for ``scprospatial run``) and ``truth/`` (cell types of every file, the query's
    held-back protein counts, ``params.json``). The same arguments give files with the same content;
    ``chunk_size`` (cells held in memory at once) does not change it. ``filler_names='vocabulary'`` names
    the filler genes after the protein vocabulary's coding genes (every vocabulary protein becomes
    predictable through its gene, as on real data; atlas-scale benchmarks use it); counts are unchanged.
    """
    n_query = max(1, n_cells // 2) if n_query is None else n_query
    n_spatial = 2 * n_cells if n_spatial is None else n_spatial
    _check(n_cells, n_query, n_spatial, chunk_size, spatial_layout)
    params = draw_params(seed, n_genes=n_genes, n_cell_types=n_cell_types, filler_names=filler_names)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".simulate-", dir=outdir))
    try:
        (stage / "truth").mkdir()
        logger.info("simulating %d CITE-seq, %d query and %d spatial cells (seed %d) into %s",
                    n_cells, n_query, n_spatial, seed, outdir)
        _write_citeseq(params, seed, stage, n_cells, chunk_size)
        _write_query(params, seed, stage, n_query, chunk_size)
        spatial = _write_spatial(params, seed, stage, n_spatial, chunk_size, spatial_layout)
        _write_samplesheet(stage / FILES["samplesheet"], spatial_layout)
        arguments = {"n_cells": n_cells, "n_query": n_query, "n_spatial": n_spatial, "n_genes": n_genes,
                     "n_cell_types": n_cell_types, "seed": seed, "spatial_layout": spatial_layout,
                     "filler_names": filler_names}
        summary = {"arguments": arguments, "block_cells": block_cells(n_genes), **params.summary(),
                   "spatial": spatial, "files": FILES}
        (stage / FILES["params"]).write_text(json.dumps(summary, indent=1) + "\n")
        (outdir / "truth").mkdir(exist_ok=True)
        for rel in FILES.values():
            os.replace(stage / rel, outdir / rel)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {name: outdir / rel for name, rel in FILES.items()}
