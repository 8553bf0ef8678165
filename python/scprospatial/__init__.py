"""scprospatial: infer and impute single-cell spatial proteomics from scRNA-seq.

Learns RNA→protein translation from paired CITE-seq cohorts, predicts protein abundance
for RNA-only cells, and maps scRNA-seq cells onto spatial proteomics images.
"""
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("scprospatial")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from . import _constants as keys  # noqa: E402  (AnnData key names, the public contract)

# scanpy-style namespaces and the model, imported on first use so `import scprospatial` stays light (no torch)
_SUBMODULES = ("pl", "pp", "tl")
_LAZY = {"ScProSpatial": ("model", "ScProSpatial"), "ModelConfig": ("model", "ModelConfig"),
         "threads": ("_settings", "threads")}

__all__ = ["ModelConfig", "ScProSpatial", "__version__", "keys", "pl", "pp", "threads", "tl"]


def __getattr__(name: str):
    from importlib import import_module

    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
