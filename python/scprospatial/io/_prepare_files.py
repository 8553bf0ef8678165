"""`load` (what every command calls) and `prepare_files` (the `scprospatial prepare` command)."""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from ._read import IN_MEMORY, is_in_memory, is_prepared, read_input, split_input
from ._write import write_h5ad

PathLike = str | os.PathLike
_COMPOUND = re.compile(r"(\.(csv|tsv|txt|parquet|pq|h5ad|h5mu|h5))?(\.(gz|bz2|xz|zip))?$", re.IGNORECASE)


def dataset_name(path: PathLike | Sequence[PathLike]) -> str:
    """Default dataset id (also of an in-memory object, see `load`): the file stem ('cells.csv.gz' -> 'cells');
    for a 10x `filtered_feature_bc_matrix` (or `outs`) folder, the sample folder above it; for a SpatialData store
    'cells.zarr', 'cells'; for an RNA,PROTEIN pair, the RNA file's stem."""
    if is_in_memory(path):
        obj: Any = path  # an AnnData, MuData or DataFrame, read by what it has
        info = obj.uns.get(K.UNS) if hasattr(obj, "uns") else None
        if isinstance(info, dict) and K.DATASET in info:
            return str(info[K.DATASET])
        if type(obj).__name__ == "SpatialData":  # its store's name, else a hash of its tables' cells
            if obj.path:
                return re.sub(r"\.zarr$", "", Path(obj.path).name, flags=re.I) or "dataset"
            cells = [c for table in obj.tables.values() for c in table.obs_names]
        else:  # no file name to go by: name it by its cells, so a query is never taken for the training cohort
            cells = obj.obs_names if hasattr(obj, "obs_names") else obj.index
        return "adata-" + hashlib.sha1("\n".join(map(str, cells)).encode()).hexdigest()[:8]
    first = split_input(path)[0]
    parts = list(Path(os.path.abspath(first)).parts)  # the name as given: staged symlinks keep their own name
    while len(parts) > 1 and parts[-1] in ("filtered_feature_bc_matrix", "raw_feature_bc_matrix", "outs"):
        parts.pop()
    name = _COMPOUND.sub("", parts[-1]) if not first.is_dir() else re.sub(r"\.zarr$", "", parts[-1], flags=re.I)
    return name or "dataset"


def load(path, kind: str | None = None, *, dataset: str | None = None, batch: str | None = None,
         imaging_method: str = "arcsinh", cofactor: float | str = "auto", copy: bool = True,
         **overrides) -> ad.AnnData:
    """A prepared AnnData from any supported input.

    Parameters
    ----------
    path
        A file or folder path, an 'RNA,PROTEIN' pair, or an in-memory object: an AnnData (CITE-seq with ADT
        counts in obsm, e.g. ``obsm['protein_counts']`` or scvi-tools' ``obsm['protein_expression']`` +
        ``uns['protein_names']``; RNA-only; or imaged cells with coordinates), a MuData with ``rna``/``prot``
        modalities, a SpatialData object, or a pandas cell table. Imaging layouts: cell tables (MCMICRO
        quantification tables among them), steinbock output folders and SpatialData zarr stores.
    kind
        'citeseq', 'rna' or 'spatial'; None detects it.
    dataset
        Dataset id (default: the file stem; for an in-memory object its ``uns['scprospatial']['dataset']``,
        else 'adata-' and a hash of its cell names). Cells of a dataset the model was trained on share
        its batch embedding: give query cohorts their own name.
    batch
        Batch label of every cell (default: the input's ``obs['batch']``, else the dataset id).
    imaging_method, cofactor
        Imaging normalisation, see `scprospatial.preprocess.arcsinh`.
    copy
        An already prepared AnnData object is returned as a copy (default) or, with copy=False, as the same
        object. Anything else is read into a new object: the input is never modified.
    **overrides
        Format overrides: x_col, y_col, z_col, marker_cols, cell_type_col, id_col, protein_key.

    Returns
    -------
    AnnData in the prepared layout (docs/anndata_layout.md).
    """
    from ..preprocess import check_finite, prepare

    adata, found = read_input(path, kind=kind, **overrides)
    if is_prepared(adata):
        if kind is not None and kind != found and not (kind == "rna" and found == "citeseq"):
            raise InputError(f"prepared as {found!r} data but {kind!r} is needed here", _where(path))
        check_finite(adata.X, _where(path), "prepared values (X)", allow_negative=True)
        return adata.copy() if copy and adata is path else adata
    return prepare(adata, found, dataset=dataset or dataset_name(path), batch=batch,
                   imaging_method=imaging_method, cofactor=cofactor)


def _where(path) -> str:
    return IN_MEMORY if is_in_memory(path) else str(path)


def _summary(adata: ad.AnnData, dataset: str) -> str:
    info = adata.uns[K.UNS]
    kind = info[K.KIND]
    if kind == "spatial":
        what = f"{adata.n_vars} markers, {adata.obsm[K.SPATIAL].shape[1]}-D coordinates"
    else:
        n_prot = adata.obsm[K.PROTEIN].shape[1] if K.PROTEIN in adata.obsm else 0
        n_iso = adata.obsm[K.ISOTYPE_CONTROLS].shape[1] if K.ISOTYPE_CONTROLS in adata.obsm else 0
        what = f"{adata.n_vars} genes, {n_prot} proteins (+{n_iso} isotype controls)"
    unknown = list(info.get("unrecognised_proteins", []))
    return f"{dataset} [{kind}]: {adata.n_obs} cells, {what}; unrecognised protein names: {unknown or 'none'}"


def prepared_paths(inputs: Sequence[PathLike | Sequence[PathLike]], outdir: PathLike,
                   dataset: str | None = None) -> list[Path]:
    """`outdir/<dataset>.h5ad` of each input of `prepare` (InputError when two would share a name)."""
    if dataset is not None and len(inputs) != 1:
        raise InputError(f"--dataset names one input, but {len(inputs)} inputs were given")
    names = [dataset or dataset_name(p) for p in inputs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"several inputs would be written as the same dataset {repeated}; prepare them "
                         "separately with --dataset")
    bad = [n for n in names if "/" in n or n in (".", "..") or "\0" in n]
    if bad:
        raise InputError(f"--dataset {bad[0]!r} is not a file name (no '/', not '.' or '..')")
    return [Path(outdir) / f"{n}.h5ad" for n in names]


def prepare_files(inputs: Sequence[PathLike | Sequence[PathLike]], outdir: PathLike, *, kind: str | None = None,
                  dataset: str | None = None, batch: str | None = None, **options) -> list[Path]:
    """Read, validate and normalise each input; write `outdir/<dataset>.h5ad` atomically for each.

    Each input is a path or an 'RNA,PROTEIN' pair; `options` are `load`'s format overrides and
    imaging_method/cofactor. Every input is read and checked before the first file is written, so a bad
    input leaves nothing behind.
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    outs = prepared_paths(inputs, outdir, dataset)
    adatas = [load(inp, kind, dataset=out.stem, batch=batch, **options) for inp, out in zip(inputs, outs)]
    for adata, out in zip(adatas, outs):
        logger.info(_summary(adata, out.stem))
    return [write_h5ad(adata, out) for adata, out in zip(adatas, outs)]
