"""Readers for every supported input layout, `load` (prepared AnnData from anything) and atomic writers."""
from ._cite import SYMBOL_COLUMNS, protein_frame
from ._columns import detect_layout, is_nonmarker
from ._outputs import Rollback, check_output, check_outputs, folder_lock, remove_stale_temporaries
from ._prepare_files import dataset_name, load, prepare_files, prepared_paths
from ._read import is_in_memory, is_prepared, read_10x, read_h5ad, read_h5mu, read_input, read_pair
from ._spatialdata import check_spatialdata_out, is_spatialdata_store, read_spatialdata, write_spatialdata
from ._steinbock import is_steinbock_folder, read_steinbock
from ._tables import read_spatial_table, spatial_from_anndata, table_suffix
from ._write import atomic_path, write_bytes, write_h5ad, write_table, write_text

__all__ = [
    "SYMBOL_COLUMNS",
    "Rollback",
    "check_output",
    "check_outputs",
    "check_spatialdata_out",
    "folder_lock",
    "prepared_paths",
    "remove_stale_temporaries",
    "atomic_path",
    "dataset_name",
    "detect_layout",
    "is_in_memory",
    "is_nonmarker",
    "is_prepared",
    "is_spatialdata_store",
    "is_steinbock_folder",
    "load",
    "prepare_files",
    "protein_frame",
    "read_10x",
    "read_h5ad",
    "read_h5mu",
    "read_input",
    "read_pair",
    "read_spatial_table",
    "read_spatialdata",
    "read_steinbock",
    "spatial_from_anndata",
    "table_suffix",
    "write_bytes",
    "write_h5ad",
    "write_spatialdata",
    "write_table",
    "write_text",
]
