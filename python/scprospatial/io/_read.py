"""One entry point for every supported input: format and kind detection, then the matching reader."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from . import _spatialdata, _steinbock
from ._cite import PROTEIN_KEYS, align_pair, protein_from_modality, read_h5ad_cite, rna_from_anndata, split_10x
from ._tables import OVERRIDES, read_spatial_table, spatial_from_anndata, table_suffix, table_to_anndata

PathLike = str | os.PathLike
RNA_MODALITIES = ("rna", "RNA", "gex", "GEX")
PROTEIN_MODALITIES = ("prot", "protein", "adt", "ADT", "cite")
COORDINATE_OBS = (("X", "Y"), ("X_position", "Y_position"), ("X_centroid", "Y_centroid"), ("x", "y"),
                  ("centroid-1", "centroid-0"))


def split_input(path: PathLike | Sequence[PathLike]) -> list[Path]:
    """'rna.h5ad,protein.h5ad' or a 2-sequence -> two paths; anything else -> one path."""
    if isinstance(path, (list, tuple)):
        parts = [Path(p) for p in path]
    else:
        parts = [Path(p.strip()) for p in str(path).split(",") if p.strip()]
    if not parts or len(parts) > 2:
        raise InputError("expected one input path or an RNA,PROTEIN pair", str(path))
    for p in parts:
        if not p.exists():
            raise InputError("file not found", p)
    return parts


def read_h5ad(path: Path) -> ad.AnnData:
    """An .h5ad file; one that cannot be read is an InputError naming it (not a crash)."""
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001 - h5py/anndata raise many types for a bad file
        raise InputError(f"cannot read as .h5ad ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                         path) from exc


def is_prepared(adata: ad.AnnData) -> bool:
    info = adata.uns.get(K.UNS)
    return isinstance(info, dict) and K.NORMALISATION in info and K.KIND in info


def _is_spatial_h5ad(adata: ad.AnnData) -> bool:
    if any(k in adata.obsm for k in PROTEIN_KEYS):
        return False
    return K.SPATIAL in adata.obsm or any(x in adata.obs and y in adata.obs for x, y in COORDINATE_OBS)


def _check_overrides(overrides: dict, allowed: Sequence[str], path) -> dict:
    unknown = set(overrides) - set(OVERRIDES) - set(_spatialdata.OVERRIDES) - {"protein_key"}
    if unknown:
        raise InputError(f"unknown format override(s) {sorted(unknown)}", path)
    ignored = sorted(k for k, v in overrides.items() if k not in allowed and v is not None)
    if ignored:
        logger.warning("%s: format override(s) %s do not apply to this input and are ignored", path, ignored)
    return {k: v for k, v in overrides.items() if k in allowed and v is not None}


def read_pair(rna_path: PathLike, protein_path: PathLike, *, rna_only: bool = False) -> ad.AnnData:
    """Two .h5ad files with the same cells: RNA counts, and ADT counts (X, var_names = antibody names)."""
    rna = read_h5ad(Path(rna_path))
    prot = read_h5ad(Path(protein_path))
    protein = None if rna_only else align_pair(rna, protein_from_modality(prot), protein_path)
    out = rna_from_anndata(rna, rna_path, reader="h5ad_pair", protein=protein)
    out.uns[K.UNS]["source"] = f"{rna_path},{protein_path}"
    return out


def read_h5mu(path: PathLike, *, rna_only: bool = False) -> ad.AnnData:
    """MuData with an RNA modality ('rna'/'gex') and optionally a protein one ('prot'/'adt')."""
    import mudata

    try:
        mdata = mudata.read_h5mu(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read as .h5mu ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    return mudata_to_raw(mdata, path, rna_only=rna_only)


def mudata_to_raw(mdata, path, *, rna_only: bool = False) -> ad.AnnData:
    """An in-memory MuData (RNA modality 'rna'/'gex', optional protein 'prot'/'adt') -> raw standard layout."""
    rna_key = next((m for m in RNA_MODALITIES if m in mdata.mod), None)
    if rna_key is None:
        raise InputError(f"no RNA modality (looked for {RNA_MODALITIES}; found {sorted(mdata.mod)})", path)
    rna = mdata.mod[rna_key]
    prot_key = None if rna_only else next((m for m in PROTEIN_MODALITIES if m in mdata.mod), None)
    protein = None if prot_key is None else align_pair(rna, protein_from_modality(mdata.mod[prot_key]), path)
    return rna_from_anndata(rna, path, reader=f"h5mu:{rna_key}" + (f"+{prot_key}" if prot_key else ""),
                            protein=protein)


def _10x_folder(path: Path) -> Path | None:
    for cand in (path, path / "filtered_feature_bc_matrix", path / "outs" / "filtered_feature_bc_matrix"):
        if any((cand / f).exists() for f in ("matrix.mtx.gz", "matrix.mtx")):
            return cand
    return None


def read_10x(path: PathLike, *, rna_only: bool = False) -> ad.AnnData:
    """Cell Ranger `filtered_feature_bc_matrix` folder or .h5 (Antibody Capture features become protein)."""
    import scanpy as sc

    path = Path(path)
    try:
        if path.is_dir():
            folder = _10x_folder(path)
            if folder is None:
                raise InputError("folder is not a 10x matrix (no matrix.mtx[.gz] inside)", path)
            adata = sc.read_10x_mtx(folder, var_names="gene_symbols", gex_only=False, make_unique=False)
        else:
            adata = sc.read_10x_h5(path, gex_only=False)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read as a 10x matrix ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    return split_10x(adata, path, reader="10x_folder" if path.is_dir() else "10x_h5", rna_only=rna_only)


def _kind_of(adata: ad.AnnData) -> str:
    return "citeseq" if K.PROTEIN_RAW in adata.obsm else "rna"


def read_input(path: PathLike | Sequence[PathLike], kind: str | None = None, **overrides) -> tuple[ad.AnnData, str]:
    """Read any supported input into its raw standard AnnData; returns (adata, kind).

    `path` may also be an in-memory AnnData, MuData or pandas cell table (see `object_to_raw`).
    Formats: .h5ad (CITE-seq layouts, RNA-only, spatial, or already prepared), an RNA,PROTEIN .h5ad pair,
    .h5mu, 10x folder or .h5, cell tables (.csv/.tsv/.parquet, MCMICRO quantification tables among them),
    steinbock output folders and SpatialData zarr stores. Kind: 'spatial' for tables, imaging folders,
    stores and h5ad with coordinates, 'citeseq' when protein counts are present, 'rna' otherwise.
    """
    if kind is not None and kind not in K.KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(K.KINDS)}", str(path))
    if is_in_memory(path):
        return object_to_raw(path, kind, **overrides)
    parts = split_input(path)
    first = parts[0]
    rna_only = kind == "rna"
    if len(parts) == 2:
        _check_overrides(overrides, (), first)
        adata = read_pair(*parts, rna_only=rna_only)
    elif table_suffix(first):
        adata = read_spatial_table(first, **_check_overrides(overrides, OVERRIDES, first))
        return _require(adata, "spatial", kind, first), "spatial"
    elif len(parts) == 1 and _spatialdata.is_spatialdata_store(first):
        adata = _spatialdata.read_spatialdata(first, **_check_overrides(overrides, _spatialdata.OVERRIDES, first))
        return _require(adata, "spatial", kind, first), "spatial"
    elif _steinbock.is_steinbock_folder(first):
        adata = _steinbock.read_steinbock(first, **_check_overrides(overrides, _steinbock.OVERRIDES, first))
        return _require(adata, "spatial", kind, first), "spatial"
    elif first.is_dir() or first.suffix.lower() == ".h5":
        _check_overrides(overrides, (), first)
        adata = read_10x(first, rna_only=rna_only)
    elif first.suffix.lower() == ".h5mu":
        _check_overrides(overrides, (), first)
        adata = read_h5mu(first, rna_only=rna_only)
    elif first.suffix.lower() == ".h5ad":
        return anndata_to_raw(read_h5ad(first), first, kind, **overrides)
    else:
        raise InputError("unsupported input format (expected .h5ad, .h5mu, a 10x folder or .h5, "
                         ".csv/.tsv/.parquet, a steinbock folder, a SpatialData .zarr store, or RNA,PROTEIN "
                         ".h5ad pair)", first)
    return _checked(adata, kind, first)


def _checked(adata: ad.AnnData, kind: str | None, path) -> tuple[ad.AnnData, str]:
    """(adata, kind) of an RNA/CITE-seq reader's output, after checking it fits the kind asked for."""
    return _require(adata, _kind_of(adata), kind, path), (kind or _kind_of(adata))


def _require(adata: ad.AnnData, found: str, wanted: str | None, path) -> ad.AnnData:
    if wanted is None or wanted == found or (wanted == "rna" and found == "citeseq"):
        return adata
    if wanted == "citeseq" and found == "rna":
        raise InputError("no protein measurements found (expected ADT counts in obsm, a protein modality, "
                         "Antibody Capture features or an RNA,PROTEIN pair)", path)
    raise InputError(f"input looks like {found!r} data but --kind {wanted} was given", path)


IN_MEMORY = "<in-memory>"  # the 'path' named in messages about an in-memory object


def is_in_memory(obj) -> bool:
    """True for an AnnData, a MuData, a SpatialData or a pandas DataFrame (anything `object_to_raw` reads)."""
    return isinstance(obj, (ad.AnnData, pd.DataFrame)) or type(obj).__name__ in ("MuData", "SpatialData")


def anndata_to_raw(raw: ad.AnnData, path, kind: str | None = None, **overrides) -> tuple[ad.AnnData, str]:
    """An AnnData (read from .h5ad or in memory) -> (raw standard layout, kind); a prepared one is returned
    as it is. Readers build new objects: `raw` is not modified."""
    if is_prepared(raw):
        return raw, raw.uns[K.UNS][K.KIND]
    if kind == "spatial" or (kind is None and _is_spatial_h5ad(raw)):
        return spatial_from_anndata(raw, path, **_check_overrides(overrides, OVERRIDES, path)), "spatial"
    adata = read_h5ad_cite(raw, path, rna_only=kind == "rna", **_check_overrides(overrides, ("protein_key",), path))
    return _checked(adata, kind, path)


def object_to_raw(obj, kind: str | None = None, **overrides) -> tuple[ad.AnnData, str]:
    """An in-memory AnnData, MuData, SpatialData or pandas cell table -> (raw standard layout, kind), as
    `read_input` does for the same content in a file. The object itself is never modified."""
    path = IN_MEMORY
    if isinstance(obj, pd.DataFrame):
        return _require(table_to_anndata(obj, path, reader="dataframe", **_check_overrides(overrides, OVERRIDES,
                                                                                            path)),
                        "spatial", kind, path), "spatial"
    if isinstance(obj, ad.AnnData):
        return anndata_to_raw(obj, path, kind, **overrides)
    if type(obj).__name__ == "SpatialData":
        adata = _spatialdata.spatialdata_to_raw(obj, path, **_check_overrides(overrides, _spatialdata.OVERRIDES, path))
        return _require(adata, "spatial", kind, path), "spatial"
    _check_overrides(overrides, (), path)
    adata = mudata_to_raw(obj, path, rna_only=kind == "rna")
    return _checked(adata, kind, path)
