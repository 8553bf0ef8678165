"""Write an .h5ad file chunk by chunk, so memory stays flat however many cells there are.

The file follows anndata's on-disk specification (the same groups, datasets and encoding attributes
`AnnData.write_h5ad` produces): X is a CSR group whose `data`/`indices`/`indptr` grow with each chunk,
obs is a dataframe of appended categorical codes, and each `obsm` entry is a dataframe of appended
numeric columns. Small, fixed parts (var, uns, categories) go through `anndata.io.write_elem`.
HDF5 chunk shapes are fixed here, not taken from the appended sizes, so the file's content does not
depend on how the cells were batched.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

_COMPRESSION = {"compression": "gzip", "compression_opts": 4}
_CHUNK = 1 << 16  # HDF5 chunk length (elements) of every growing dataset


def _encoding(obj, kind: str, version: str) -> None:
    obj.attrs["encoding-type"] = kind
    obj.attrs["encoding-version"] = version


def _growing(group: h5py.Group, name: str, dtype, *, kind: str = "array") -> h5py.Dataset:
    ds = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_CHUNK,), **_COMPRESSION)
    _encoding(ds, kind, "0.2.0")
    return ds


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    start = ds.shape[0]
    ds.resize((start + len(values),))
    ds[start:] = values


def _dataframe_group(parent: h5py.Group, name: str, columns: list[str]) -> h5py.Group:
    group = parent.create_group(name)
    _encoding(group, "dataframe", "0.2.0")
    group.attrs["_index"] = "_index"
    group.attrs["column-order"] = np.array(columns, dtype=object)
    _growing(group, "_index", h5py.string_dtype("utf-8"), kind="string-array")
    return group


class H5adStream:
    """Append cells to an AnnData file; var, categories and obsm columns are fixed up front.

    Parameters
    ----------
    path
        File to write (the caller handles atomic renaming).
    var
        The var dataframe (index = gene symbols).
    categories
        obs column -> its categories; appended values are integer codes into them.
    obsm_columns
        obsm key -> column names of the numeric dataframe stored there.
    uns
        Written once, as anndata writes a dict.
    max_obs
        Upper bound on the cells to come: CSR `indices` and `indptr` are int32 when the matrix can
        hold no more than 2**31 - 1 entries, int64 otherwise (scipy needs both of one dtype).
    """

    def __init__(self, path: str | Path, *, var: pd.DataFrame, categories: dict[str, list[str]],
                 obsm_columns: dict[str, list[str]], uns: dict, max_obs: int, dtype=np.float32,
                 obsm_dtype=np.float64):
        from anndata.io import write_elem

        self.n_obs, self.n_vars = 0, var.shape[0]
        self._obsm_dtype = obsm_dtype
        self._file = h5py.File(path, "w")
        f = self._file
        _encoding(f, "anndata", "0.1.0")
        x = f.create_group("X")
        _encoding(x, "csr_matrix", "0.1.0")
        self._data = _growing(x, "data", dtype)
        index_dtype = np.int32 if max_obs * self.n_vars < np.iinfo(np.int32).max else np.int64
        self._indices = _growing(x, "indices", index_dtype)
        self._indptr = _growing(x, "indptr", index_dtype)
        _append(self._indptr, np.zeros(1, dtype=index_dtype))
        obs = _dataframe_group(f, "obs", list(categories))
        self._codes = {}
        for col, cats in categories.items():
            group = obs.create_group(col)
            _encoding(group, "categorical", "0.2.0")
            group.attrs["ordered"] = False
            write_elem(group, "categories", np.array(cats, dtype=object))
            self._codes[col] = _growing(group, "codes", np.int8 if len(cats) < 127 else np.int32)
        self._obs_index = obs["_index"]
        obsm = f.create_group("obsm")
        _encoding(obsm, "dict", "0.1.0")
        self._obsm = {}
        for key, columns in obsm_columns.items():
            group = _dataframe_group(obsm, key, columns)
            self._obsm[key] = (group["_index"], [_growing(group, c, obsm_dtype) for c in columns])
        write_elem(f, "var", var)
        write_elem(f, "uns", uns)
        for empty in ("layers", "obsp", "varm", "varp"):
            _encoding(f.create_group(empty), "dict", "0.1.0")

    def append(self, *, obs_names: np.ndarray, X: sp.csr_matrix, codes: dict[str, np.ndarray],
               obsm: dict[str, np.ndarray]) -> None:
        """Add `len(obs_names)` cells: their counts (CSR), obs codes and obsm rows."""
        n = len(obs_names)
        if X.shape != (n, self.n_vars):
            raise ValueError(f"chunk X has shape {X.shape}, expected ({n}, {self.n_vars})")
        X = X.tocsr()
        X.sort_indices()
        nnz_before = self._data.shape[0]
        _append(self._data, X.data.astype(self._data.dtype, copy=False))
        _append(self._indices, X.indices.astype(self._indices.dtype, copy=False))
        _append(self._indptr, (X.indptr[1:].astype(np.int64) + nnz_before).astype(self._indptr.dtype))
        names = np.asarray(obs_names, dtype=object)
        _append(self._obs_index, names)
        for col, ds in self._codes.items():
            _append(ds, np.asarray(codes[col], dtype=ds.dtype))
        for key, (index, columns) in self._obsm.items():
            values = np.asarray(obsm[key], dtype=self._obsm_dtype)
            _append(index, names)
            for j, ds in enumerate(columns):
                _append(ds, values[:, j])
        self.n_obs += n

    def close(self) -> None:
        if self._file.id.valid:
            self._file["X"].attrs["shape"] = np.array([self.n_obs, self.n_vars], dtype=np.int64)
            self._file.close()

    def __enter__(self) -> H5adStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
