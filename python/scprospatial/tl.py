"""Tools, scanpy style: protein prediction, mapping onto spatial proteomics and spatial statistics.

Every function takes AnnData objects, writes its results into them (copy=False) or returns new ones (copy=True).
"""
from __future__ import annotations

from collections.abc import Sequence

from . import _constants as K
from .spatial import (
    map_cells,
    nhood_enrichment,
    niche_composition,
    spatial_autocorr,
    spatial_neighbors,
)

__all__ = ["map_cells", "nhood_enrichment", "niche_composition", "predict_proteins", "spatial_autocorr",
           "spatial_neighbors"]


def predict_proteins(adata, model, *, proteins: Sequence[str] | None = None, all_proteins: bool = False,
                     key_added: str = K.PROTEIN_PREDICTED, batch_size: int = 4096, copy: bool = False,
                     min_support: str = "any"):
    """Predict protein abundance (CLR scale) with SDs for RNA cells (`ScProSpatial.predict`, scanpy defaults).

    Parameters
    ----------
    adata
        RNA cells; X log-normalised, or raw counts (normalised for the model with a warning; X is not changed).
    model
        A trained `scprospatial.ScProSpatial`.
    proteins, all_proteins
        Proteins to predict (default: those measured in training; all_proteins: the whole vocabulary).
    key_added
        obsm/uns key of the predicted means (default 'protein_predicted'); SDs go to ``key_added + '_sd'``.
    batch_size
        Cells per chunk.
    copy
        Return a new AnnData instead of writing into `adata`.
    min_support
        'measured', 'detected' or 'any' (default): keep only proteins with this support or better; every
        protein's support class and expected accuracy go to ``uns[key_added]['proteins']``.

    Returns
    -------
    The AnnData with the predictions when copy=True, else None.
    """
    return model.predict(adata, proteins=proteins, all_proteins=all_proteins, batch_size=batch_size, copy=copy,
                         key_added=key_added, min_support=min_support)
