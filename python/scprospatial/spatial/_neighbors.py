"""`spatial_neighbors` (squidpy-compatible AnnData keys) and the file-level `graph_file` behind the CLI."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _constants as K
from .._logging import logger
from ..errors import InputError
from ._builders import GraphBuilder, make_builder
from ._kernels import resolve_backend


def graph_keys(key_added: str = K.SPATIAL) -> tuple[str, str, str]:
    """(connectivities, distances, uns) keys for `key_added`, squidpy's '{key_added}_...' convention."""
    def swap(key: str) -> str:
        return key.replace(K.SPATIAL, key_added, 1)

    return swap(K.SPATIAL_CONNECTIVITIES), swap(K.SPATIAL_DISTANCES), swap(K.SPATIAL_NEIGHBORS)


def _block_diagonal(builder: GraphBuilder, coords: np.ndarray, libraries: pd.Series):
    """One graph per library, cells keeping their global index (no edge crosses libraries)."""
    codes, names = pd.factorize(libraries, use_na_sentinel=True)
    if (codes < 0).any():
        raise InputError(f"library column {libraries.name!r} has {int((codes < 0).sum())} missing values")
    n = len(coords)
    rows, cols, data, used = [], [], [], set()
    for code, name in enumerate(names):
        cells = np.flatnonzero(codes == code)
        try:
            block, backend = builder.build(coords[cells])
        except InputError as exc:
            raise InputError(f"library {name!r} ({len(cells)} cells): {exc}") from None
        used.add(backend)
        rows.append(cells[np.repeat(np.arange(len(cells)), np.diff(block.indptr))])
        cols.append(cells[block.indices])
        data.append(block.data)
    graph = sparse.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return graph, "+".join(sorted(used))


def spatial_neighbors(adata, *, method: str = "knn", n_neighs: int = 10, radius: float | None = None,
                      library_key: str | None = None, backend: str = "auto", threads: int | None = None,
                      spatial_key: str = K.SPATIAL, key_added: str = K.SPATIAL, coord_type: str | None = None,
                      delaunay: bool = False, copy: bool = False, device: str | None = None):
    """Spatial neighbour graph of the cells in `adata.obsm[spatial_key]`, written as squidpy does.

    method: 'knn' (n_neighs nearest other cells, directed; `radius` prunes longer edges), 'radius'
    (all cells within `radius`) or 'delaunay' (triangulation neighbours; `radius` prunes).
    library_key: obs column of samples; each sample gets its own graph (block-diagonal overall).
    Writes obsp['{key_added}_connectivities'] (binary, float64), obsp['{key_added}_distances']
    (column-sorted CSR; cells at one position keep explicit 0 distances) and
    uns['{key_added}_neighbors'] = {'connectivities_key', 'distances_key', 'params'}.
    coord_type, delaunay: squidpy's names, so a call written for squidpy.gr.spatial_neighbors runs here:
    coord_type must be None or 'generic' (cell tables; squidpy handles Visium 'grid' coordinates) and
    delaunay=True means method='delaunay'.
    Returns the AnnData when copy=True, else None.

    Parameters
    ----------
    adata
        Cells with coordinates in ``obsm[spatial_key]``.
    method, n_neighs, radius
        Graph type and its size (see above).
    library_key
        obs column of samples (one graph each), or None.
    backend, threads
        Kernel backend ('auto', 'cpp', 'cuda', 'scipy') and CPU threads.
    spatial_key, key_added
        Coordinates key; prefix of the written keys.
    coord_type, delaunay
        squidpy-compatible aliases.
    copy
        Return a new AnnData instead of writing into `adata`.
    device
        None (the backend decides: 'auto' is the C++ CPU kernel), 'cpu', 'cuda' (the kNN graph's CUDA kernel, the
        same graph bit for bit; the radius and Delaunay graphs have none and stay on the CPU, warned) or 'auto'
        (the CUDA kernel where the core has it and sees a GPU). The backend that ran is recorded in
        ``uns['{key_added}_neighbors']['params']['backend']``.

    Returns
    -------
    The AnnData when copy=True, else None (results written into `adata`).
    """
    if coord_type not in (None, "generic"):
        raise InputError(f"coord_type={coord_type!r}: only 'generic' coordinates (cell tables) are supported; "
                         "for Visium grids use squidpy.gr.spatial_neighbors")
    method = "delaunay" if delaunay else method
    adata = adata.copy() if copy else adata
    if spatial_key not in adata.obsm:
        raise InputError(f"no coordinates: obsm[{spatial_key!r}] is missing")
    builder = make_builder(method, n_neighs=n_neighs, radius=radius, backend=backend, threads=threads, device=device)
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if library_key is None:
        distances, used = builder.build(coords)
    elif library_key not in adata.obs:
        raise InputError(f"library_key {library_key!r} is not an obs column")
    else:
        distances, used = _block_diagonal(builder, coords, adata.obs[library_key])
    distances = sparse.csr_matrix(distances)
    distances.sort_indices()
    connectivities = sparse.csr_matrix(
        (np.ones(distances.nnz), distances.indices.copy(), distances.indptr.copy()), shape=distances.shape)
    conns_key, dists_key, uns_key = graph_keys(key_added)
    adata.obsp[conns_key] = connectivities
    adata.obsp[dists_key] = distances
    params = {**builder.params(), "coord_type": "generic", "library_key": library_key, "backend": used}
    adata.uns[uns_key] = {
        "connectivities_key": conns_key,
        "distances_key": dists_key,
        "params": {k: v for k, v in params.items() if v is not None},  # h5ad cannot store None
    }
    logger.info("spatial graph (%s, %s): %d cells, %.2f neighbours per cell", builder.method, used,
                adata.n_obs, distances.nnz / max(adata.n_obs, 1))
    return adata if copy else None


def graph_file(input, out, *, method: str = "knn", k: int = 10, radius: float | None = None,
               library_key: str | None = None, backend: str = "auto", threads: int | None = None,
               device: str = "auto", **overrides) -> os.PathLike:
    """`scprospatial spatial-graph`: read a spatial input (any supported layout), add the graph, write
    `out` (.h5ad) atomically. `overrides` are the readers' format overrides (x_col, y_col, ...). library_key
    defaults to the input's own image column (uns['scprospatial']['library_key'], set by multi-image readers);
    device: as --device ('auto' runs the kNN graph's CUDA kernel where there is one and a GPU)."""
    from ..io import load, write_h5ad  # anndata-heavy: imported only where files are read and written

    resolve_backend(backend, device=device)  # an unusable --device cuda stops here, before the input is read
    adata = load(input, kind="spatial", **overrides)
    library_key = library_key or adata.uns[K.UNS].get(K.LIBRARY_KEY)  # several images: one graph each
    spatial_neighbors(adata, method=method, n_neighs=k, radius=radius, library_key=library_key,
                      backend=backend, threads=threads, device=device)
    return write_h5ad(adata, out)
