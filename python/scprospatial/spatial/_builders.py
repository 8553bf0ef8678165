"""Graph builders: one small object per construction method, all returning distance CSR arrays whose
rows are sorted by distance (ties by column)."""
from __future__ import annotations

import abc
import warnings
from typing import ClassVar

import numpy as np

from ..errors import InputError
from ._kernels import BACKENDS, CSRArrays, as_coordinates, knn_arrays, radius_arrays, sort_rows


def prune(arrays: CSRArrays, radius: float | None) -> CSRArrays:
    """Drop edges longer than `radius` (rows keep their order); None keeps everything."""
    if radius is None:
        return arrays
    n = len(arrays.indptr) - 1
    keep = arrays.distances <= radius
    rows = np.repeat(np.arange(n), np.diff(arrays.indptr))
    indptr = np.zeros_like(arrays.indptr)
    np.cumsum(np.bincount(rows[keep], minlength=n), out=indptr[1:])
    return CSRArrays(indptr, arrays.indices[keep], arrays.distances[keep], arrays.backend)


class GraphBuilder(abc.ABC):
    """Builds a spatial graph from n x 2 / n x 3 coordinates; `params()` describes it for uns."""

    method: ClassVar[str]

    def __init__(self, *, backend: str = "auto", threads: int | None = None, device: str | None = None):
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.threads = threads
        self.device = device

    @abc.abstractmethod
    def arrays(self, coords) -> CSRArrays:
        """CSR arrays (indptr, indices, distances) and the backend that computed them."""

    def params(self) -> dict:
        return {"method": self.method}

    def build(self, coords):
        """(scipy CSR of distances, backend used)."""
        arrays = self.arrays(coords)
        return arrays.to_csr(), arrays.backend


class KNNBuilder(GraphBuilder):
    """The k nearest other cells of each cell (directed, like squidpy); `radius` prunes longer edges."""

    method = "knn"

    def __init__(self, k: int = 10, *, radius: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.k = k
        self.radius = radius

    def arrays(self, coords) -> CSRArrays:
        found = knn_arrays(coords, self.k, backend=self.backend, threads=self.threads, device=self.device)
        return prune(found, self.radius)

    def params(self) -> dict:
        return {**super().params(), "n_neighbors": self.k, "radius": self.radius}


class RadiusBuilder(GraphBuilder):
    """Every other cell within `radius` (inclusive); symmetric."""

    method = "radius"

    def __init__(self, radius: float | None, **kwargs):
        super().__init__(**kwargs)
        if radius is None:
            raise InputError("method 'radius' needs a radius")
        self.radius = radius

    def arrays(self, coords) -> CSRArrays:
        return radius_arrays(coords, self.radius, backend=self.backend, threads=self.threads, device=self.device)

    def params(self) -> dict:
        return {**super().params(), "radius": self.radius}


class DelaunayBuilder(GraphBuilder):
    """Neighbours in the Delaunay triangulation (scipy / Qhull); `radius` prunes longer edges."""

    method = "delaunay"

    def __init__(self, *, radius: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.radius = radius
        if self.backend not in ("auto", "scipy"):
            warnings.warn(f"the Delaunay graph is computed with scipy (Qhull); backend {self.backend!r} is not used",
                          UserWarning, stacklevel=2)
        elif self.device == "cuda":
            warnings.warn("the Delaunay graph is computed on the CPU with scipy (Qhull); device 'cuda' is not used",
                          UserWarning, stacklevel=2)

    def arrays(self, coords) -> CSRArrays:
        from scipy.spatial import Delaunay, QhullError

        x = as_coordinates(coords)
        n, dim = x.shape
        if n < dim + 2:
            raise InputError(f"a {dim}-D Delaunay triangulation needs at least {dim + 2} cells, got {n}")
        try:
            indptr, indices = Delaunay(x).vertex_neighbor_vertices
        except QhullError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "Qhull failed"
            raise InputError(f"cannot triangulate the coordinates (all on a line or plane?): {first}") from None
        lonely = int((np.diff(indptr) == 0).sum())
        if lonely:
            warnings.warn(f"{lonely} cells share a position with another cell and have no Delaunay neighbours",
                          UserWarning, stacklevel=2)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        dist = np.sqrt(((x[rows] - x[indices]) ** 2).sum(axis=1))
        arrays = CSRArrays(*sort_rows(rows, indices.astype(np.int64), dist, n, False, np.float64), "scipy")
        return prune(arrays, self.radius)

    def params(self) -> dict:
        return {**super().params(), "radius": self.radius}


BUILDERS = {b.method: b for b in (KNNBuilder, RadiusBuilder, DelaunayBuilder)}


def make_builder(method: str, *, n_neighs: int = 10, radius: float | None = None, backend: str = "auto",
                 threads: int | None = None, device: str | None = None) -> GraphBuilder:
    if method not in BUILDERS:
        raise InputError(f"unknown graph method {method!r}; choose one of {', '.join(BUILDERS)}")
    common = {"backend": backend, "threads": threads, "device": device}
    if method == "knn":
        return KNNBuilder(n_neighs, radius=radius, **common)
    if method == "radius":
        return RadiusBuilder(radius, **common)
    return DelaunayBuilder(radius=radius, **common)
