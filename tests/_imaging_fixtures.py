"""Small generated inputs in the imaging pipelines' layouts: MCMICRO tables, steinbock folders, SpatialData stores."""
from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

MORPHOLOGY = ["Area", "MajorAxisLength", "MinorAxisLength", "Eccentricity", "Solidity", "Extent", "Orientation"]
MARKERS = ["CD3", "CD8", "CD20", "CD68"]


def mcmicro_table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """mcquant's column order: CellID, markers (with a DNA channel), centroids, morphology."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"CellID": np.arange(1, n + 1), "DNA_1": rng.gamma(5, 400, n)})
    for m in MARKERS:
        df[m] = rng.gamma(2, 300, n)
    df["X_centroid"], df["Y_centroid"] = rng.uniform(0, 500, n), rng.uniform(0, 400, n)
    df["column_centroid"], df["row_centroid"] = df["X_centroid"].round(), df["Y_centroid"].round()
    df["Area"] = rng.integers(40, 200, n)
    for m in MORPHOLOGY[1:]:
        df[m] = rng.random(n)
    return df


def write_steinbock(root: Path, images=(("img_A", 30), ("img_B", 25)), seed: int = 0, metal_tags: bool = True) -> Path:
    """intensities/ and regionprops/ per image; with metal_tags the intensity columns are panel channels, renamed
    by panel.csv (channel -> name)."""
    rng = np.random.default_rng(seed)
    (root / "intensities").mkdir(parents=True)
    (root / "regionprops").mkdir()
    panel = pd.DataFrame({"channel": ["Ir191", "Sm152", "Er170", "Yb176", "Nd150"],
                          "name": ["DNA1", "CD3", "CD8", "CD20", "unused"], "keep": [1, 1, 1, 1, 0]})
    panel.to_csv(root / "panel.csv", index=False)
    kept = panel[panel["keep"] == 1]
    columns = list(kept["channel"] if metal_tags else kept["name"])
    for image, n in images:
        objects = rng.permutation(np.arange(1, n + 1))
        inten = pd.DataFrame(rng.gamma(2, 3, (n, len(columns))), columns=columns)
        inten.insert(0, "Object", objects)
        inten.to_csv(root / "intensities" / f"{image}.csv", index=False)
        props = pd.DataFrame({"Object": np.sort(objects), "area": rng.integers(10, 80, n),
                              "centroid-0": rng.uniform(0, 100, n), "centroid-1": rng.uniform(0, 200, n),
                              "axis_major_length": rng.random(n) * 6, "axis_minor_length": rng.random(n) * 3,
                              "eccentricity": rng.random(n)})
        props.to_csv(root / "regionprops" / f"{image}.csv", index=False)
    return root


def spatialdata_object(n: int = 50, seed: int = 0, *, labels_table: bool = False, two_regions: bool = False):
    """Circles 'cells' (instance ids 100.., table rows in another order) and labels 'seg' (ids 1, 2), annotated by
    table 'table' (shapes, or labels with labels_table); with two_regions a second shapes element 'cells_b' in
    its own coordinate system, both annotated by one table."""
    import geopandas as gpd
    import spatialdata as sd
    from shapely import points
    from spatialdata.models import Labels2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    rng = np.random.default_rng(seed)
    ids = np.arange(100, 100 + n)
    xy = rng.uniform(0, 100, (n, 2))
    shapes = {"cells": ShapesModel.parse(gpd.GeoDataFrame({"radius": np.full(n, 1.5)}, geometry=points(xy),
                                                         index=ids))}
    labels = np.zeros((40, 50), dtype=np.int32)
    labels[4:10, 6:16], labels[20:30, 30:44] = 1, 2
    seg = Labels2DModel.parse(labels, dims=("y", "x"), transformations={"global": Scale([2.0, 2.0], axes=("y", "x"))})
    if labels_table:
        region, instance, regions = ["seg", "seg"], [2, 1], "seg"
    elif two_regions:
        shapes["cells_b"] = ShapesModel.parse(gpd.GeoDataFrame({"radius": np.full(n, 1.5)}, geometry=points(xy),
                                                               index=ids), transformations={"b": Identity()})
        half = n // 2
        region = ["cells"] * half + ["cells_b"] * (n - half)
        instance, regions = list(ids), ["cells", "cells_b"]
    else:
        order = rng.permutation(n)
        region, instance, regions = ["cells"] * n, list(ids[order]), "cells"
    m = len(instance)
    obs = pd.DataFrame({"region": pd.Categorical(region), "cell_id": np.asarray(instance, dtype=np.int64),
                        "cell_type": rng.choice(["T", "B", "Myeloid"], m)}, index=[f"c{i}" for i in range(m)])
    table = ad.AnnData(rng.gamma(2, 2, (m, 5)).astype(np.float32), obs=obs)
    table.var_names = [*MARKERS, "DAPI"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = TableModel.parse(table, region=regions, region_key="region", instance_key="cell_id")
        return sd.SpatialData(shapes=shapes, labels={"seg": seg}, tables={"table": table}), xy, ids


def write_store(sdata, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdata.write(path)
    return path
