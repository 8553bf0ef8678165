"""steinbock output folders (imaging mass cytometry) -> one raw spatial AnnData over every image.

steinbock writes one CSV per image in `intensities/` (column `Object`, then one mean intensity per channel,
named by panel.csv's `name`) and in `regionprops/` (`Object`, `area`, `centroid-0` = row, `centroid-1` =
column, axis lengths, eccentricity ...). Every image becomes one library: its cells are named
`<image>_<Object>`, `obs['library_id']` holds the image (squidpy's library key) and graphs and statistics
are computed per image.
"""
from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import pandas as pd

from .. import _constants as K
from ..errors import InputError
from ._columns import is_nonmarker
from ._tables import read_cell_table, table_to_anndata

INTENSITIES = "intensities"
REGIONPROPS = "regionprops"
PANEL = "panel.csv"
OBJECT = "Object"
OVERRIDES = ("x_col", "y_col", "marker_cols")   # the format overrides that apply to a steinbock folder


def is_steinbock_folder(path: str | os.PathLike) -> bool:
    """A folder holding steinbock's `intensities/` (its `regionprops/` is checked by the reader)."""
    return Path(path).is_dir() and (Path(path) / INTENSITIES).is_dir()


def _image_tables(folder: Path) -> dict[str, Path]:
    return {p.name[:-len(".csv")]: p for p in sorted(folder.iterdir()) if p.name.endswith(".csv")
            and not p.name.startswith(".")}


def _read_part(path: Path) -> pd.DataFrame:
    df = read_cell_table(path)
    if OBJECT not in df.columns:
        raise InputError(f"no {OBJECT!r} column (steinbock names each cell's mask id {OBJECT!r})", path)
    if not pd.api.types.is_integer_dtype(df[OBJECT]):
        raise InputError(f"column {OBJECT!r} must hold whole-number mask ids", path)
    if df[OBJECT].duplicated().any():
        raise InputError(f"column {OBJECT!r} repeats {int(df[OBJECT].duplicated().sum())} ids", path)
    return df.set_index(OBJECT)


def _panel_names(root: Path) -> dict[str, str]:
    """panel.csv's channel -> name, to rename intensity columns still named by channel (metal tag)."""
    path = root / PANEL
    if not path.is_file():
        return {}
    panel = read_cell_table(path)
    missing = [c for c in ("channel", "name") if c not in panel.columns]
    if missing:
        raise InputError(f"panel has no column(s) {missing} (steinbock panels have channel,name,keep,...)", path)
    panel = panel.dropna(subset=["name"])
    if "keep" in panel.columns:
        panel = panel[pd.to_numeric(panel["keep"], errors="coerce").fillna(0).astype(bool)]
    names = panel["name"].astype(str)
    if names.duplicated().any():
        raise InputError(f"panel repeats the channel name(s) {sorted(set(names[names.duplicated()]))}", path)
    return {str(c): n for c, n in zip(panel["channel"], names) if str(c) != n}


def steinbock_table(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """(one table of every image's cells: library_id, Object, intensities, regionprops; the intensity columns)."""
    root = Path(path)
    intensities, regionprops = root / INTENSITIES, root / REGIONPROPS
    if not regionprops.is_dir():
        raise InputError(f"steinbock folder has {INTENSITIES}/ but no {REGIONPROPS}/ (cell coordinates come "
                         "from regionprops/<image>.csv: run `steinbock measure regionprops`)", root)
    images, props = _image_tables(intensities), _image_tables(regionprops)
    if not images:
        raise InputError("no <image>.csv files", intensities)
    missing = sorted(set(images) - set(props))
    if missing:
        raise InputError(f"no regionprops for image(s) {missing[:3]}{' ...' if len(missing) > 3 else ''}",
                         regionprops)
    rename = _panel_names(root)
    blocks, channels = [], None
    for image, file in images.items():
        inten = _read_part(file).rename(columns=rename)
        if channels is None:
            channels = [str(c) for c in inten.columns]
        elif [str(c) for c in inten.columns] != channels:
            raise InputError(f"channels differ from those of {next(iter(images))}.csv "
                             f"({sorted(set(map(str, inten.columns)) ^ set(channels))[:5]})", file)
        prop = _read_part(props[image])
        if not inten.index.sort_values().equals(prop.index.sort_values()):
            raise InputError(f"Object ids differ from {file} ({len(inten)} cells there, {len(prop)} here)",
                             props[image])
        prop = prop.drop(columns=[c for c in prop.columns if c in inten.columns])
        block = inten.join(prop).reset_index()
        block.insert(0, K.LIBRARY_ID, image)
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    table.insert(0, "__cell", table[K.LIBRARY_ID] + "_" + table[OBJECT].astype(str))
    return table, channels or []


def read_steinbock(path: str | os.PathLike, *, x_col: str | None = None, y_col: str | None = None,
                   marker_cols: list[str] | None = None) -> ad.AnnData:
    """A steinbock output folder (intensities/, regionprops/, optional panel.csv) -> raw spatial AnnData.

    Markers are the intensity columns (nuclear stains and background channels go to obs, as in cell tables);
    coordinates `centroid-1` (x) and `centroid-0` (y) of regionprops; every image one library.
    """
    table, channels = steinbock_table(path)
    if marker_cols is None:
        marker_cols = [c for c in channels if not is_nonmarker(c)]
        if not marker_cols:
            raise InputError(f"no marker channels among the intensities ({channels[:5]}...): every one looks like "
                             "a nuclear stain or background; pass --marker-cols", path)
    else:
        unknown = [m for m in marker_cols if m not in channels]
        if unknown:
            raise InputError(f"marker column(s) {unknown} are not intensity channels", path)
    adata = table_to_anndata(table, path, reader="steinbock", x_col=x_col or "centroid-1",
                             y_col=y_col or "centroid-0", marker_cols=marker_cols, id_col="__cell")
    adata.obs = adata.obs.drop(columns=["__cell"], errors="ignore")
    adata.obs[K.LIBRARY_ID] = adata.obs[K.LIBRARY_ID].astype("category")
    adata.uns[K.UNS][K.LIBRARY_KEY] = K.LIBRARY_ID
    return adata
