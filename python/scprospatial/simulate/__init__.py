"""Seeded simulator: a paired CITE-seq cohort, an RNA-only query and a spatial proteomics table.

    >>> from scprospatial.simulate import simulate
    >>> paths = simulate("sim", n_cells=2000, seed=1)   # doctest: +SKIP
"""
from ._simulate import simulate

__all__ = ["simulate"]
