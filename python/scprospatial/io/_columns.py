"""Which columns of an imaging cell table are coordinates, markers, ids, cell types or metadata.

Rules (each overridable from the command line): coordinates are looked up by the common layouts
(CODEX `X`/`Y`, CyCIF `X_position`/`Y_position`, MIBI `x`/`y`, scikit-image `centroid-0/1`, MCMICRO
`X_centroid`/`Y_centroid`, QuPath `Centroid X µm`); marker columns are the numeric columns left after
removing nuclear stains, background channels, morphology, ids, tiles and cluster/label columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from ..errors import InputError
from ..vocab import name_key

# (x, y, z) candidates in priority order; skimage's centroid-0 is the row (y), centroid-1 the column (x).
COORDINATE_LAYOUTS = (
    ("X", "Y", None), ("X_position", "Y_position", "Z_position"), ("X_centroid", "Y_centroid", "Z_centroid"),
    ("x", "y", None), ("x_centroid", "y_centroid", "z_centroid"), ("centroid_x", "centroid_y", "centroid_z"),
    ("centroid-1", "centroid-0", None), ("center_x", "center_y", "center_z"), ("CellX", "CellY", None),
    ("Centroid X µm", "Centroid Y µm", "Centroid Z µm"), ("Centroid X px", "Centroid Y px", None),
    ("Pos_X", "Pos_Y", "Pos_Z"),
)
Z_NAMES = ("Z", "z")
ID_NAMES = ("CellID", "cell_id", "CellId", "Cell_ID", "cellid", "cell_id:cell_id", "Object", "ObjectNumber",
            "label", "cellLabelInImage", "id", "ID")
CELL_TYPE_NAMES = ("ClusterName", "cell_type", "celltype", "cell_types", "CellType", "cell_type_annotation",
                   "phenotype", "Phenotype", "cluster_name", "cell_lineage", "lineage", "annotation",
                   "cell_label", "Class")

# MCMICRO (mcquant) quantification tables: CellID, one column per marker, X_centroid/Y_centroid, then
# column_centroid/row_centroid and morphology (Area, MajorAxisLength, ..., Orientation), kept as metadata
MCMICRO_COLUMNS = ("CellID", "X_centroid", "Y_centroid")

CODEX_TAG = re.compile(r":\s*Cyc_\d+_ch_\d+\s*$", re.IGNORECASE)
NUCLEAR = re.compile(r"^(dapi|hoechst|draq5|draq7|dna|dsdna|ir191|ir193|syto\d*|nuclear(stain)?|nucleus)\d*$")
BACKGROUND = re.compile(r"^(bg|background|blank|empty|autofluorescence|af\d+|none|noodle)\d*$")
# elemental channels of MIBI-TOF (substrate, gold coating, contaminants): never antibody signal
ELEMENTS = ("au", "ta", "si", "na", "ca", "fe", "c", "p", "au197", "ta181", "si28", "na23", "ca40", "fe56", "c12")
MORPHOLOGY = re.compile(
    r"^(cell|nucleus|nuclear|nuclei|cytoplasm|membrane)?(area|size|volume|eccentricity|solidity|extent|orientation|"
    r"perimeter|majoraxislength|minoraxislength|convexarea|equivalentdiameter|eulernumber|circularity|"
    r"aspectratio|filledarea|compactness|roundness|diameter|length|width|homogeneity|profilehomogeneity)"
)
_META_PARTS = ("centroid", "cluster", "withintile", "neighbo", "index", "phenotype", "celltype", "patient", "sample",
               "region", "fov", "slide", "file", "image", "label", "spot", "group", "batch", "donor", "event",
               "condition", "number", "lineage", "annotation")
_META_EXACT = ("x", "y", "z", "class", "core", "roi", "tma", "object", "cell", "type", "status")


def is_nonmarker(column: str) -> bool:
    """True for nuclear stains, background channels, morphology, ids/tiles/clusters (never markers)."""
    key = name_key(str(column).split(":")[0])
    if NUCLEAR.match(key) or BACKGROUND.match(key) or MORPHOLOGY.match(key) or key in ELEMENTS:
        return True
    if key in _META_EXACT or key.endswith("id") or key.startswith(("tma", "tile")):
        return True
    return any(part in key for part in _META_PARTS)


@dataclass
class TableLayout:
    x: str
    y: str
    z: str | None
    markers: list[str]
    id_col: str | None = None
    cell_type: str | None = None
    duplicates: list[str] = field(default_factory=list)


def _find(columns: pd.Index, name: str | None) -> str | None:
    if name is None:
        return None
    if name in columns:
        return name
    folded = {str(c).lower(): c for c in columns}
    return folded.get(name.lower())


def _pandas_duplicates(df: pd.DataFrame) -> list[str]:
    """Columns pandas renamed 'X' -> 'X.1' because the header repeated them (and identical to the first)."""
    out = []
    for col in df.columns:
        m = re.match(r"^(.*)\.(\d+)$", str(col))
        if m and m.group(1) in df.columns and df[col].equals(df[m.group(1)]):
            out.append(col)
    return out


def _coordinates(df: pd.DataFrame, x_col, y_col, z_col, path) -> tuple[str, str, str | None]:
    if x_col or y_col:
        x, y = _find(df.columns, x_col or "X"), _find(df.columns, y_col or "Y")
        missing = [n for n, c in ((x_col, x), (y_col, y)) if n and c is None]
        if missing or x is None or y is None:
            raise InputError(f"coordinate column(s) {missing or [x_col, y_col]} not found in the table", path)
    else:
        for cx, cy, cz in COORDINATE_LAYOUTS:
            if cx in df.columns and cy in df.columns:
                x, y = cx, cy
                z_col = z_col or (cz if cz in df.columns else None)
                break
        else:
            raise InputError("no coordinate columns found (looked for X/Y, X_position/Y_position, x/y, "
                             "X_centroid/Y_centroid, centroid-0/1 ...); pass --x-col and --y-col", path)
        if "centroid-2" in df.columns and (x, y) == ("centroid-1", "centroid-0"):  # 3-D regionprops: (z, y, x)
            x, y, z_col = "centroid-2", "centroid-1", z_col or "centroid-0"
    z = _find(df.columns, z_col) if z_col else next((c for c in Z_NAMES if c in df.columns), None)
    if z_col and z is None:
        raise InputError(f"z column {z_col!r} not found in the table", path)
    for col in (x, y, z):
        if col is not None and not pd.api.types.is_numeric_dtype(df[col]):
            raise InputError(f"coordinate column {col!r} is not numeric", path)
    return x, y, z


def _auto_markers(df: pd.DataFrame, exclude: set[str]) -> list[str]:
    numeric = [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    codex = [c for c in numeric if CODEX_TAG.search(str(c))]
    if codex:  # CODEX tables tag every imaged channel; everything untagged is metadata
        return [c for c in codex if not is_nonmarker(CODEX_TAG.sub("", str(c)).split(" - ")[0])]
    return [c for c in numeric if not is_nonmarker(str(c)) and not _indicator(df[c])]


def _check_mostly_numeric(df: pd.DataFrame, exclude: set[str], path) -> None:
    """A column of numbers with a few stray text cells is a damaged marker column, not metadata: refuse it."""
    for col in df.columns:
        if col in exclude or pd.api.types.is_numeric_dtype(df[col]) or is_nonmarker(str(col)):
            continue
        values = df[col].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values[numbers.isna()]
        if len(values) and 0 < len(bad) <= 0.1 * len(values):
            raise InputError(f"column {col!r} is numeric except {len(bad)} cell(s) (e.g. {str(bad.iloc[0])[:40]!r} "
                             f"in row {df.index.get_loc(bad.index[0]) + 2}); fix them, or list the markers with "
                             "--marker-cols", path)


def _indicator(s: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(s) and s.nunique(dropna=True) <= 2


def detect_layout(df: pd.DataFrame, path, *, x_col=None, y_col=None, z_col=None, marker_cols=None,
                  cell_type_col=None, id_col=None) -> TableLayout:
    """Decide coordinates, markers, id and cell-type columns of a cell table (overrides win)."""
    duplicates = _pandas_duplicates(df)
    x, y, z = _coordinates(df, x_col, y_col, z_col, path)
    ident = _find(df.columns, id_col)
    if id_col and ident is None:
        raise InputError(f"id column {id_col!r} not found in the table", path)
    ident = ident or next((c for c in ID_NAMES if c in df.columns), None)
    cell_type = _find(df.columns, cell_type_col)
    if cell_type_col and cell_type is None:
        raise InputError(f"cell-type column {cell_type_col!r} not found in the table", path)
    cell_type = cell_type or next((c for c in CELL_TYPE_NAMES if c in df.columns), None)
    if marker_cols:
        missing = [m for m in marker_cols if m not in df.columns]
        if missing:
            raise InputError(f"marker column(s) {missing} not found in the table", path)
        markers = list(dict.fromkeys(marker_cols))
        bad = [m for m in markers if not pd.api.types.is_numeric_dtype(df[m])]
        if bad:
            raise InputError(f"marker column(s) {bad} are not numeric", path)
    else:
        exclude = {c for c in (x, y, z, ident, cell_type, *duplicates) if c is not None}
        _check_mostly_numeric(df, exclude, path)
        markers = _auto_markers(df, exclude)
    if not markers:
        raise InputError("no marker columns found (every numeric column looks like coordinates, ids, "
                         "nuclear stains, background or morphology); pass --marker-cols", path)
    return TableLayout(x, y, z, markers, ident, cell_type, duplicates)
