"""Plots, taking AnnData objects: the figures of the report and of spatial-stats, written as PNG files."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import _constants as K
from .errors import InputError
from .io import write_bytes
from .report import figures as _report
from .spatial import enrichment_heatmap, enrichment_key, protein_map_panels
from .spatial import protein_maps as _protein_maps

__all__ = ["nhood_enrichment", "predicted_vs_measured", "protein_maps", "spatial_scatter"]


def _require(adata, where, key: str, run: str) -> None:
    if key not in where:
        raise InputError(f"{key!r} not found in the AnnData; run {run} first")


def nhood_enrichment(adata, cluster_key: str, path: str | os.PathLike, *, title: str = "") -> Path:
    """Heatmap of the neighbourhood-enrichment z-scores computed by `scprospatial.tl.nhood_enrichment`.

    Parameters
    ----------
    adata
        AnnData holding ``uns['{cluster_key}_nhood_enrichment']``.
    cluster_key
        The cluster key given to `tl.nhood_enrichment`.
    path
        PNG file to write.
    title
        Figure title.

    Returns
    -------
    The path written.
    """
    key = enrichment_key(cluster_key)
    _require(adata, adata.uns, key, "scprospatial.tl.nhood_enrichment")
    res = adata.uns[key]
    return enrichment_heatmap(np.asarray(res["zscore"]), res["categories"], path, title=title)


def protein_maps(adata, proteins: Sequence[str], path: str | os.PathLike, *, spatial_key: str = K.SPATIAL) -> Path:
    """Measured beside imputed values of `proteins` at the cells' coordinates (one row per protein).

    Parameters
    ----------
    adata
        Imaged cells with ``obsm[spatial_key]`` and obsm['protein'] and/or obsm['protein_predicted'].
    proteins
        Proteins to show.
    path
        PNG file to write.
    spatial_key
        obsm key of the coordinates.

    Returns
    -------
    The path written.
    """
    _require(adata, adata.obsm, spatial_key, "scprospatial.pp.read(..., kind='spatial')")
    return _protein_maps(np.asarray(adata.obsm[spatial_key]), protein_map_panels(adata, list(proteins)), path)


def spatial_scatter(adata, keys: Sequence[str], path: str | os.PathLike, *, spatial_key: str = K.SPATIAL) -> Path:
    """Cells at their coordinates coloured by obs columns (one panel each; categorical columns by label).

    Parameters
    ----------
    adata
        Cells with ``obsm[spatial_key]``.
    keys
        obs columns to show.
    path
        PNG file to write.
    spatial_key
        obsm key of the coordinates.

    Returns
    -------
    The path written.
    """
    _require(adata, adata.obsm, spatial_key, "scprospatial.pp.read(..., kind='spatial')")
    values = {k: adata.obs[k].to_numpy() for k in keys}
    categorical = next((k for k in keys if not np.issubdtype(adata.obs[k].dtype, np.number)), None)
    png = _report.spatial_scatter(np.asarray(adata.obsm[spatial_key]), values, categorical=categorical)
    return write_bytes(png, path)


def predicted_vs_measured(adata, proteins: Sequence[str], path: str | os.PathLike, *,
                          key: str = K.PROTEIN_PREDICTED) -> Path:
    """Scatter of predicted against measured values per protein (cells with both).

    Parameters
    ----------
    adata
        Cells with measured obsm['protein'] and predictions in ``obsm[key]``.
    proteins
        Proteins to show.
    path
        PNG file to write.
    key
        obsm key of the predictions (`tl.predict_proteins`' key_added).

    Returns
    -------
    The path written.
    """
    _require(adata, adata.obsm, key, "scprospatial.tl.predict_proteins")
    _require(adata, adata.obsm, K.PROTEIN, "scprospatial.pp.read on a CITE-seq input")
    png = _report.predicted_vs_measured(adata.obsm[key], adata.obsm[K.PROTEIN], list(proteins))
    return write_bytes(png, path)
