"""Per-step options of the pipeline, in one place (a module of its own so that the CLI reads them without
importing the runner).

These are the defaults of `scprospatial spatial-graph`, `map` and `spatial-stats`, of `scprospatial run`
(which passes them to those steps), and of the Nextflow pipeline, whose parameters (graph_method, graph_k,
graph_radius, map_k, n_perms) are unset by default so that each task runs the command with these defaults.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StepOptions:
    graph_method: str = "knn"          # spatial neighbour graph: knn, radius or delaunay
    graph_k: int = 10                  # neighbours per imaged cell of the knn graph
    graph_radius: float | None = None  # radius graph: the radius; knn/delaunay: pruning distance
    map_k: int = 10                    # scRNA-seq neighbours per imaged cell in map
    map_impute: str = "knn"            # imaged cells' proteome in map: knn, regression or blend (spatial/_regress.py)
    n_perms: int = 1000                # permutations of the neighbourhood-enrichment test

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULTS = StepOptions()
MAP_IMPUTE_METHODS = ("knn", "regression", "blend")
