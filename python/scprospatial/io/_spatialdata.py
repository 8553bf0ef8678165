"""SpatialData zarr stores: read a table of cells (coordinates from the shapes/labels it annotates), and write
results back as a table annotating the same elements, for napari-spatialdata and squidpy.

The `spatialdata` package is optional (`pip install 'scprospatial[spatialdata]'`); it is imported only here.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .. import _constants as K
from .._logging import logger
from ..errors import InputError

EXTRA = "spatialdata"                  # the optional dependency group that installs the package
OVERRIDES = ("marker_cols", "cell_type_col", "table_name", "coordinate_system")
ELEMENT_KINDS = ("shapes", "labels", "points")
REGION_KEY, INSTANCE_KEY = "region", "instance_id"   # of a table written for cells read from a cell table
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@contextlib.contextmanager
def _quiet():
    """spatialdata, zarr and ome-zarr warn about their own internals (zarr v3 sharding, label parents): not ours to
    show; a failure still raises."""
    ome = logging.getLogger("ome_zarr")
    level = ome.level
    ome.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ome.setLevel(level)


def _package(path):
    try:
        import spatialdata
    except ImportError:
        raise InputError(f"SpatialData stores need the 'spatialdata' package: pip install 'scprospatial[{EXTRA}]'",
                         path) from None
    return spatialdata


def is_spatialdata_store(path: str | os.PathLike) -> bool:
    """A zarr folder (zarr.json or .zgroup) holding SpatialData element groups (tables, shapes, labels ...)."""
    p = Path(path)
    return (p.is_dir() and ((p / "zarr.json").is_file() or (p / ".zgroup").is_file())
            and any((p / g).is_dir() for g in ("tables", "shapes", "labels", "points", "images")))


def read_sdata(path: str | os.PathLike):
    sd = _package(path)
    try:
        with _quiet():
            return sd.read_zarr(path)
    except Exception as exc:  # noqa: BLE001 - zarr, ome-zarr and pydantic raise many types for a bad store
        raise InputError(f"cannot read as a SpatialData store ({type(exc).__name__}: {exc})".splitlines()[0][:300],
                         path) from exc


def _pick_table(sdata, table_name: str | None, path) -> str:
    """The table asked for, else the store's only table (leaving out result tables that scprospatial wrote)."""
    names = list(sdata.tables)
    if table_name is not None:
        if table_name not in names:
            raise InputError(f"no table {table_name!r} in the store (tables: {names or 'none'})", path)
        return table_name
    inputs = [n for n in names if K.UNS not in sdata.tables[n].uns]  # not the results scprospatial wrote there
    if len(inputs) == 1 and len(names) > 1:
        return inputs[0]
    if len(names) != 1:
        raise InputError(f"the store has {len(names)} tables ({names}); choose one with --table-name" if names else
                         "the store has no table (scprospatial reads cells from a table annotating shapes or labels)",
                         path)
    return names[0]


def _system(sdata, region: str, asked: str | None, path) -> str:
    from spatialdata.transformations import get_transformation

    systems = list(get_transformation(sdata[region], get_all=True))
    if asked is not None:
        if asked not in systems:
            raise InputError(f"element {region!r} is not in coordinate system {asked!r} (it is in {systems})", path)
        return asked
    if "global" in systems or len(systems) == 1:
        return "global" if "global" in systems else systems[0]
    raise InputError(f"element {region!r} is in several coordinate systems {systems}; choose one with "
                     "--coordinate-system", path)


def _coordinates(sd, sdata, table: ad.AnnData, attrs: dict, systems: dict, path) -> np.ndarray:
    """Each cell's centroid in its element's coordinate system, matched by the instance key."""
    regions = table.obs[attrs["region_key"]].astype(str).to_numpy()
    ids = table.obs[attrs["instance_key"]].to_numpy()
    coords = np.full((table.n_obs, 3), np.nan)
    for region, system in systems.items():
        rows = np.flatnonzero(regions == region)
        with _quiet():
            centroids = sd.get_centroids(sdata[region], coordinate_system=system).compute()
        found = centroids.reindex(ids[rows])
        lost = found.index[found.isna().any(axis=1)]
        if len(lost):
            raise InputError(f"{len(lost)} cells of the table have {attrs['instance_key']} values not found in "
                             f"element {region!r} (e.g. {lost[0]})", path)
        axes = [a for a in ("x", "y", "z") if a in centroids.columns]
        coords[rows, : len(axes)] = found[axes].to_numpy(dtype=np.float64)
    return coords[:, : 3 if np.isfinite(coords[:, 2]).any() else 2]


def spatialdata_to_raw(sdata, path, *, table_name: str | None = None, coordinate_system: str | None = None,
                       **overrides) -> ad.AnnData:
    """A SpatialData object -> raw spatial AnnData of one of its tables; markers from the table's X, coordinates
    the centroids of the shapes/labels it annotates (in `coordinate_system`, default 'global')."""
    from ._tables import spatial_from_anndata

    sd = _package(path)
    name = _pick_table(sdata, table_name, path)
    table = sdata.tables[name]
    attrs = table.uns.get("spatialdata_attrs") or {}
    if not all(attrs.get(k) for k in ("region", "region_key", "instance_key")):
        raise InputError(f"table {name!r} annotates no element (no region/region_key/instance_key in its "
                         "uns['spatialdata_attrs']), so its cells have no coordinates", path)
    regions = [attrs["region"]] if isinstance(attrs["region"], str) else [str(r) for r in attrs["region"]]
    for key in (attrs["region_key"], attrs["instance_key"]):
        if key not in table.obs:
            raise InputError(f"table {name!r} has no obs column {key!r} (named in its spatialdata_attrs)", path)
    for region in regions:
        if not any(region in getattr(sdata, kind) for kind in ELEMENT_KINDS):
            raise InputError(f"table {name!r} annotates {region!r}, which is not a shapes, labels or points element "
                             "of the store", path)
    present = set(table.obs[attrs["region_key"]].astype(str))
    systems = {r: _system(sdata, r, coordinate_system, path) for r in regions if r in present}
    cells = ad.AnnData(X=table.X, obs=table.obs.copy(), var=pd.DataFrame(index=table.var_names.astype(str)))
    cells.obsm[K.SPATIAL] = _coordinates(sd, sdata, table, attrs, systems, path)
    raw = spatial_from_anndata(cells, path, **overrides)
    info = raw.uns[K.UNS]
    info["reader"] = "spatialdata"
    info["coordinate_columns"] = ["x", "y", "z"][: raw.obsm[K.SPATIAL].shape[1]]  # centroids of the elements
    info[K.SPATIALDATA] = {"store": str(Path(sdata.path).resolve()) if sdata.path else "", "table": name,
                           "region": regions, "region_key": str(attrs["region_key"]),
                           "instance_key": str(attrs["instance_key"]), "coordinate_system": list(systems.values())}
    if len(systems) > 1:  # cells of several images: graphs and statistics per element
        info[K.LIBRARY_KEY] = str(attrs["region_key"])
    return raw


def read_spatialdata(path: str | os.PathLike, **overrides) -> ad.AnnData:
    """A SpatialData zarr store -> raw spatial AnnData (see `spatialdata_to_raw`)."""
    return spatialdata_to_raw(read_sdata(path), path, **overrides)


# --- writing results back -----------------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if not name or name.startswith(("__", ".")) or _NAME.search(name):
        raise InputError(f"--spatialdata-table {name!r} is not a SpatialData element name (letters, digits, '_', "
                         "'.', '-'; not starting with '__' or '.')")


def _sanitized(sd, table: ad.AnnData) -> ad.AnnData:
    """SpatialData refuses obs/var/obsm/uns keys other than letters, digits, '_', '-', '.': its own
    `sanitize_table` renames them; the renamed columns are logged."""
    before = list(table.obs.columns)
    sd.sanitize_table(table, inplace=True)
    renamed = {b: a for b, a in zip(before, table.obs.columns) if b != a}
    if renamed:
        logger.warning("obs columns renamed for SpatialData (letters, digits, '_', '.', '-' only): %s", renamed)
    return table


def _circles(coords: np.ndarray, area: pd.Series | None, ids: np.ndarray, system: str):
    """Circles at the cells' centroids: radius from their area, else half the median nearest-cell distance."""
    import geopandas as gpd
    from scipy.spatial import cKDTree
    from shapely import points
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Identity

    if area is not None:
        radius = np.sqrt(np.clip(area.to_numpy(dtype=np.float64), 0, None) / np.pi)
    else:
        dist = cKDTree(coords[:, :2]).query(coords[:, :2], k=2)[0][:, 1] if len(coords) > 1 else np.ones(1)
        radius = np.full(len(coords), max(float(np.median(dist)) / 2, 1e-6))
    frame = gpd.GeoDataFrame({"radius": radius}, geometry=points(coords[:, :2]), index=pd.Index(ids))
    return ShapesModel.parse(frame, transformations={system: Identity()})


def _own_elements(table: ad.AnnData) -> tuple[ad.AnnData, dict, dict]:
    """Cells read from a cell table: circles at their centroids, one shapes element per library (its own
    coordinate system), and the columns that link the table to them."""
    info = table.uns.get(K.UNS, {})
    library = info.get(K.LIBRARY_KEY)
    groups = table.obs[library].astype(str).to_numpy() if library in table.obs else np.array(["cells"] * table.n_obs)
    area_col = next((c for c in table.obs.columns if str(c).lower() == "area"
                     and pd.api.types.is_numeric_dtype(table.obs[c])), None)
    region_key = REGION_KEY if REGION_KEY not in table.obs else f"scprospatial_{REGION_KEY}"
    instance_key = INSTANCE_KEY if INSTANCE_KEY not in table.obs else f"scprospatial_{INSTANCE_KEY}"
    names = {g: _NAME.sub("_", g if library is None else f"{g}_cells") for g in dict.fromkeys(groups)}
    region = np.empty(table.n_obs, dtype=object)
    instance = np.zeros(table.n_obs, dtype=np.int64)
    shapes = {}
    coords = np.asarray(table.obsm[K.SPATIAL], dtype=np.float64)
    for group, name in names.items():
        rows = np.flatnonzero(groups == group)
        region[rows], instance[rows] = name, np.arange(len(rows))
        area = table.obs[area_col].iloc[rows] if area_col else None
        system = "global" if library is None else _NAME.sub("_", group)
        shapes[name] = _circles(coords[rows], area, instance[rows], system)
    table.obs[region_key] = pd.Categorical(region, categories=list(names.values()))
    table.obs[instance_key] = instance
    return table, shapes, {"region": list(names.values()), "region_key": region_key, "instance_key": instance_key}


def result_table(sd, adata: ad.AnnData) -> tuple[ad.AnnData, dict, dict | None]:
    """(the result as a SpatialData table, the shapes it annotates when it needs its own, the SpatialData link
    of its cells or None when they were read from a cell table)."""
    from spatialdata.models import TableModel

    table = adata.copy()
    table.uns.pop("spatialdata_attrs", None)
    link = dict(table.uns.get(K.UNS, {}).get(K.SPATIALDATA) or {}) or None
    shapes: dict = {}
    if link is None:
        table, shapes, attrs = _own_elements(table)
    else:
        attrs = {k: link[k] for k in ("region", "region_key", "instance_key")}
        attrs["region"] = [str(r) for r in np.atleast_1d(attrs["region"])]
        missing = [attrs[k] for k in ("region_key", "instance_key") if attrs[k] not in table.obs]
        if missing:
            raise InputError(f"the cells lost the obs column(s) {missing} that link them to their SpatialData "
                             f"element(s) {attrs['region']}")
        table.obs[attrs["region_key"]] = table.obs[attrs["region_key"]].astype(str).astype("category")
    table = _sanitized(sd, table)
    with _quiet():
        table = TableModel.parse(table, region=attrs["region"], region_key=attrs["region_key"],
                                 instance_key=attrs["instance_key"], overwrite_metadata=True)
    return table, shapes, link


def check_spatialdata_out(store: str | os.PathLike, table_name: str) -> None:
    """Refuse, before any work, a --spatialdata-out that could not be written (InputError naming it)."""
    from ._outputs import check_output

    _check_name(table_name)
    store = Path(store)
    if not store.exists():
        check_output(store, folder=True, what="--spatialdata-out")
        return
    if not is_spatialdata_store(store):
        raise InputError("exists and is not a SpatialData zarr store; give a store to add the table to, or a new "
                         "path", f"--spatialdata-out {store}")
    if not os.access(store, os.W_OK | os.X_OK):
        raise InputError("is not writable", f"--spatialdata-out {store}")
    _check_free(read_sdata(store), table_name, f"--spatialdata-out {store}")


def _check_free(sdata, table_name: str, where: str) -> bool:
    """True when `table_name` is a table scprospatial wrote before (it is replaced); InputError when the name is
    taken by anything else."""
    if table_name in sdata.tables:
        if K.UNS not in sdata.tables[table_name].uns:
            raise InputError(f"the store already has a table {table_name!r} that scprospatial did not write; choose "
                             "another --spatialdata-table", where)
        return True
    if table_name in sdata:
        raise InputError(f"the store already has an element named {table_name!r}; choose another "
                         "--spatialdata-table", where)
    return False


def write_spatialdata(adata: ad.AnnData, store: str | os.PathLike, *, table_name: str = "scprospatial") -> Path:
    """Write `adata` (cells with results) as table `table_name` of a SpatialData zarr store; returns the store.

    An existing store gets the table added (a table of that name that scprospatial wrote before is replaced;
    any other is refused); the elements the cells came from must be in it. A new store is written whole, into
    a temporary folder renamed at the end: the table plus the elements it annotates, copied from the store the
    cells were read from, or, for cells read from a cell table, circles at their centroids (one shapes element
    per image, `<image>_cells`, in its own coordinate system; else `cells` in 'global').
    """
    sd = _package(store)
    _check_name(table_name)
    store = Path(store)
    table, shapes, link = result_table(sd, adata)
    regions = list(table.uns["spatialdata_attrs"]["region"] if not isinstance(
        table.uns["spatialdata_attrs"]["region"], str) else [table.uns["spatialdata_attrs"]["region"]])
    if store.exists():
        if not is_spatialdata_store(store):
            check_spatialdata_out(store, table_name)
        _write_into(sd, store, table, table_name, regions, from_table=link is None)
    else:
        elements = shapes if link is None else _source_elements(sd, link, regions, store)
        _write_new(sd, store, table, table_name, elements)
    logger.info("wrote table %r (%d cells) annotating %s into %s", table_name, table.n_obs, regions, store)
    return store


def _source_elements(sd, link: dict, regions: Sequence[str], store: Path) -> dict:
    source = link.get("store") or ""
    if not source or not is_spatialdata_store(source):
        raise InputError(f"the cells came from a SpatialData store that is no longer there ({source or 'in memory'});"
                         " write into a store that holds their element(s) " + ", ".join(regions),
                         f"--spatialdata-out {store}")
    sdata = read_sdata(source)
    missing = [r for r in regions if r not in sdata]
    if missing:
        raise InputError(f"{source} no longer has the element(s) {missing} the cells came from",
                         f"--spatialdata-out {store}")
    return {r: sdata[r] for r in regions}


def _write_new(sd, store: Path, table: ad.AnnData, table_name: str, elements: dict) -> None:
    from spatialdata.models import Labels2DModel, Labels3DModel, PointsModel, ShapesModel, get_model

    groups: dict = {"shapes": {}, "labels": {}, "points": {}}
    for name, element in elements.items():
        model = get_model(element)
        kind = ("labels" if model in (Labels2DModel, Labels3DModel) else "points" if model is PointsModel
                else "shapes" if model is ShapesModel else None)
        if kind is None:
            raise InputError(f"element {name!r} is not shapes, labels or points", f"--spatialdata-out {store}")
        groups[kind][name] = element
    if table_name in elements:
        raise InputError(f"--spatialdata-table {table_name!r} is also the name of the element the table annotates; "
                         "choose another", f"--spatialdata-out {store}")
    sdata = sd.SpatialData(**groups, tables={table_name: table})
    tmp = store.with_name(f".{store.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _quiet():
            sdata.write(tmp)
        os.replace(tmp, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_into(sd, store: Path, table: ad.AnnData, table_name: str, regions: Sequence[str], *,
                from_table: bool) -> None:
    where = f"--spatialdata-out {store}"
    if from_table:
        raise InputError("the cells were read from a cell table, not from this store, so no element of it holds "
                         "them; give a new path to write a store with circles at their centroids", where)
    sdata = read_sdata(store)
    missing = [r for r in regions if r not in sdata]
    if missing:
        raise InputError(f"the store has no element {missing} that the cells came from", where)
    replace = _check_free(sdata, table_name, where)
    try:
        with _quiet():
            if replace:  # spatialdata cannot overwrite inside its own store: the old table (ours) goes first
                sdata.delete_element_from_disk(table_name)
                del sdata.tables[table_name]
            sdata.tables[table_name] = table
            sdata.write_element(table_name)
            if sdata.has_consolidated_metadata():
                sdata.write_consolidated_metadata()
    except BaseException:
        shutil.rmtree(store / "tables" / table_name, ignore_errors=True)
        raise
