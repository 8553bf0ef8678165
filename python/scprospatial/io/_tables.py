"""Imaging cell tables (.csv/.tsv/.parquet, or an .h5ad of markers) -> raw spatial AnnData."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from ._columns import MCMICRO_COLUMNS, detect_layout

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
OVERRIDES = ("x_col", "y_col", "z_col", "marker_cols", "cell_type_col", "id_col")


def table_suffix(path: str | os.PathLike) -> str:
    """'.csv' for 'cells.csv.gz', '' when the file is not a table."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in TABLE_SUFFIXES else ""


def read_cell_table(path: str | os.PathLike) -> pd.DataFrame:
    suffix = table_suffix(path)
    sep = "," if suffix == ".csv" else "\t"
    try:
        if suffix in (".parquet", ".pq"):
            df = _read_parquet(path)
            header = [str(c) for c in df.columns]
        else:  # utf-8-sig: a byte-order mark is not part of the first column's name
            df = pd.read_csv(path, sep=sep, low_memory=False, encoding="utf-8-sig")
            header = [str(c) for c in pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str,
                                                  encoding="utf-8-sig").iloc[0]]
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError, IndexError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read the cell table ({type(exc).__name__}: {exc})".splitlines()[0], path) from exc
    _check_repeated_header(df, header, path)
    return df


def _read_parquet(path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - a damaged file raises pyarrow's own errors (ArrowException ...)
        raise InputError(f"cannot read as parquet ({type(exc).__name__}: {exc})".splitlines()[0][:300], path) from exc


def _check_repeated_header(df: pd.DataFrame, header: list[str], path) -> None:
    """pandas renames a repeated column 'A' to 'A.1': identical copies are dropped later, different ones refused."""
    seen: dict[str, int] = {}
    for name in header:
        seen[name] = seen.get(name, 0) + 1
        n = seen[name] - 1
        if n and f"{name}.{n}" in df.columns and name in df.columns and not df[f"{name}.{n}"].equals(df[name]):
            raise InputError(f"column {name!r} appears {header.count(name)} times in the header with different "
                             "values; rename the copies", path)


def _clean_obs(meta: pd.DataFrame) -> pd.DataFrame:
    """h5ad-safe metadata: no '/' in column names, text columns as strings."""
    renamed = {c: str(c).replace("/", "_") for c in meta.columns if "/" in str(c)}
    if renamed:
        logger.warning("renamed metadata columns with '/' (not storable in .h5ad): %s", sorted(renamed))
    meta = meta.rename(columns=renamed)
    meta.columns = [str(c) for c in meta.columns]
    for col in meta.columns:
        if meta[col].dtype == object:
            meta[col] = meta[col].astype(str)
    return meta


def _obs_names(df: pd.DataFrame, id_col: str | None, explicit: bool, path) -> pd.Index:
    if id_col is None:
        return pd.Index([f"cell{i}" for i in range(len(df))])
    ids = df[id_col].astype(str)
    if ids.is_unique:
        return pd.Index(ids.to_numpy())
    n_dup = int(ids.duplicated().sum())
    if explicit:
        raise InputError(f"duplicate cell ids: {n_dup} repeated values in column {id_col!r}", path)
    logger.warning("%s: detected id column %r repeats %d values; cells are named by row number instead "
                   "(pass --id-col to choose another column)", path, id_col, n_dup)
    return pd.Index([f"cell{i}" for i in range(len(df))])


def table_to_anndata(df: pd.DataFrame, path, *, reader: str, x_col=None, y_col=None, z_col=None,
                     marker_cols=None, cell_type_col=None, id_col=None) -> ad.AnnData:
    """Raw spatial AnnData: X raw marker intensities (var_names as found), obsm['spatial'], obs metadata."""
    if df.shape[0] == 0:
        raise InputError("the cell table has no rows", path)
    layout = detect_layout(df, path, x_col=x_col, y_col=y_col, z_col=z_col, marker_cols=marker_cols,
                           cell_type_col=cell_type_col, id_col=id_col)
    coords_cols = [c for c in (layout.x, layout.y, layout.z) if c is not None]
    coords = df[coords_cols].to_numpy(dtype=np.float64)
    if not np.isfinite(coords).all():
        raise InputError(f"coordinates contain NaN or Inf in {int((~np.isfinite(coords)).any(axis=1).sum())} "
                         f"cells (columns {coords_cols})", path)
    values = df[layout.markers].to_numpy(dtype=np.float32)
    meta_cols = [c for c in df.columns if c not in set(layout.markers) | set(coords_cols) | set(layout.duplicates)]
    obs = _clean_obs(df[meta_cols].reset_index(drop=True))
    obs.index = _obs_names(df, layout.id_col, explicit=id_col is not None, path=path)
    adata = ad.AnnData(X=values, obs=obs, var=pd.DataFrame(index=pd.Index([str(m) for m in layout.markers])))
    adata.obsm[K.SPATIAL] = coords
    info = {"source": str(path), "reader": reader, "coordinate_columns": coords_cols}
    if layout.cell_type is not None:
        info["cell_type_key"] = str(layout.cell_type).replace("/", "_")
        adata.obs[info["cell_type_key"]] = adata.obs[info["cell_type_key"]].astype(str).astype("category")
    adata.uns[K.UNS] = info
    logger.debug("%s: markers %s; coordinates %s; dropped duplicate columns %s", path, layout.markers,
                 coords_cols, layout.duplicates)
    return adata


def read_spatial_table(path: str | os.PathLike, **overrides) -> ad.AnnData:
    """Read a .csv/.tsv/.parquet cell table (MCMICRO quantification tables among them) into a raw spatial AnnData."""
    df = read_cell_table(path)
    reader = "mcmicro" if all(c in df.columns for c in MCMICRO_COLUMNS) else f"table{table_suffix(path)}"
    return table_to_anndata(df, path, reader=reader, **overrides)


def spatial_from_anndata(adata: ad.AnnData, path, **overrides) -> ad.AnnData:
    """An .h5ad of imaged cells (markers in X; coordinates in obsm['spatial'] or obs) -> raw spatial AnnData."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    df = pd.DataFrame(x, columns=[str(v) for v in adata.var_names], index=adata.obs_names)
    coords_given = K.SPATIAL in adata.obsm and not (overrides.get("x_col") or overrides.get("y_col"))
    if coords_given:
        coords = np.asarray(adata.obsm[K.SPATIAL], dtype=np.float64)
        names = ["__x", "__y", "__z"][: coords.shape[1]]
        df = df.assign(**{n: coords[:, i] for i, n in enumerate(names)})
        overrides = {**overrides, "x_col": "__x", "y_col": "__y", "z_col": "__z" if coords.shape[1] > 2 else None}
    markers = overrides.pop("marker_cols", None)
    if markers is None:  # markers are the var of X, filtered like table columns; obs is metadata only
        from ._columns import is_nonmarker

        markers = [v for v in df.columns[: adata.n_vars] if not is_nonmarker(v)]
    obs = adata.obs.loc[:, [c for c in adata.obs.columns if c not in df.columns]].reset_index(drop=True)
    table = pd.concat([df.reset_index(drop=True), obs], axis=1)
    table.insert(0, "__cell", adata.obs_names.to_numpy())
    out = table_to_anndata(table, path, reader="h5ad_spatial", marker_cols=markers,
                           id_col=overrides.pop("id_col", None) or "__cell", **overrides)
    out.obs = out.obs.drop(columns=["__cell"], errors="ignore")
    return out
