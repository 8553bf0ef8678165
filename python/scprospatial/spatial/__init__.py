"""Spatial graphs over cell coordinates (kNN, radius, Delaunay) on the compiled grid kernels.

Mapping and spatial statistics live beside this in their own modules.
"""
from ._builders import DelaunayBuilder, GraphBuilder, KNNBuilder, RadiusBuilder, make_builder
from ._kernels import knn_graph, radius_graph
from ._mapping import map_cells, map_files, rna_output_path, topk_similarity
from ._neighbors import graph_file, graph_keys, spatial_neighbors
from ._stats import morans_i, nhood_enrichment, niche_composition, spatial_autocorr, spatial_stats_file

__all__ = [
    "DelaunayBuilder",
    "GraphBuilder",
    "KNNBuilder",
    "RadiusBuilder",
    "graph_file",
    "graph_keys",
    "knn_graph",
    "make_builder",
    "map_cells",
    "map_files",
    "morans_i",
    "nhood_enrichment",
    "niche_composition",
    "radius_graph",
    "rna_output_path",
    "spatial_autocorr",
    "spatial_neighbors",
    "spatial_stats_file",
    "topk_similarity",
]
