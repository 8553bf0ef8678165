"""Preprocessing, scanpy style: read any input (file or in-memory object) into the prepared layout, normalise.

>>> import scprospatial as scp
>>> cite = scp.pp.read(adata)                 # CITE-seq AnnData / MuData / path -> prepared copy
>>> imaged = scp.pp.read(cell_table_df, kind="spatial")
"""
from .io import load as read
from .preprocess import arcsinh, clr, rna_input_state
from .preprocess import normalize_rna as normalize

__all__ = ["arcsinh", "clr", "normalize", "read", "rna_input_state"]
