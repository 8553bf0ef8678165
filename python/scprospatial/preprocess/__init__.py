"""Normalisation (RNA log1p, ADT CLR, imaging arcsinh/quantile) and input validation."""
from ._normalize import (
    arcsinh,
    choose_cofactor,
    clr,
    clr_transform,
    log1p_library_size,
    normalize_rna,
    quantile_scale,
)
from ._prepare import prepare
from ._validate import (
    LogNormalisedInputWarning,
    check_finite,
    check_genes_shared,
    check_not_empty,
    check_unique_cells,
    looks_log_normalised,
    rna_input_state,
)

__all__ = [
    "LogNormalisedInputWarning",
    "arcsinh",
    "check_finite",
    "check_genes_shared",
    "check_not_empty",
    "check_unique_cells",
    "choose_cofactor",
    "clr",
    "clr_transform",
    "log1p_library_size",
    "looks_log_normalised",
    "normalize_rna",
    "prepare",
    "quantile_scale",
    "rna_input_state",
]
