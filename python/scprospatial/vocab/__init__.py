"""Protein vocabulary: canonical protein names, their coding genes, and the antibody-name normaliser.

>>> from scprospatial.vocab import normalise_protein_name
>>> normalise_protein_name("PD-1 (CD279)").canonical
'CD279'
"""
from ._names import isotype_canonical, name_key, strip_vendor
from ._table import (
    ISOTYPE_CONTROL,
    PROTEIN,
    ProteinMatch,
    ProteinVocabulary,
    default_table_path,
    get_vocabulary,
    normalise_protein_name,
)

__all__ = [
    "ISOTYPE_CONTROL",
    "PROTEIN",
    "ProteinMatch",
    "ProteinVocabulary",
    "default_table_path",
    "get_vocabulary",
    "isotype_canonical",
    "name_key",
    "normalise_protein_name",
    "strip_vendor",
]
