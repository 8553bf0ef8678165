"""scprospatial: infer and impute single-cell spatial proteomics from scRNA-seq.

Learns RNA→protein translation from paired CITE-seq cohorts, predicts protein abundance
for RNA-only cells, and maps scRNA-seq cells onto spatial proteomics images.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("scprospatial")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from . import _constants as keys  # noqa: E402  (AnnData key names, the public contract)

__all__ = ["__version__", "keys"]
