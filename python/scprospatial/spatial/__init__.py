"""Spatial graphs over cell coordinates (kNN, radius, Delaunay) on the compiled grid kernels.

Mapping and spatial statistics live beside this in their own modules.
"""
from ._builders import DelaunayBuilder, GraphBuilder, KNNBuilder, RadiusBuilder, make_builder
from ._figures import enrichment_heatmap, protein_maps
from ._kernels import knn_graph, radius_graph
from ._mapping import map_cells, map_files, rna_output_path, topk_similarity
from ._neighbors import graph_file, graph_keys, spatial_neighbors
from ._stats import (
    enrichment_key,
    morans_i,
    nhood_enrichment,
    niche_composition,
    protein_map_panels,
    spatial_autocorr,
    spatial_stats_file,
    stats_path,
)

__all__ = [
    "DelaunayBuilder",
    "GraphBuilder",
    "KNNBuilder",
    "RadiusBuilder",
    "enrichment_heatmap",
    "enrichment_key",
    "graph_file",
    "graph_keys",
    "knn_graph",
    "make_builder",
    "map_cells",
    "map_files",
    "morans_i",
    "nhood_enrichment",
    "niche_composition",
    "protein_map_panels",
    "protein_maps",
    "radius_graph",
    "rna_output_path",
    "spatial_autocorr",
    "spatial_neighbors",
    "spatial_stats_file",
    "stats_path",
    "topk_similarity",
]
