"""Access to the compiled extension, with one clear warning when it is missing."""
from __future__ import annotations

import warnings
from types import ModuleType

_core: ModuleType | None = None
_tried = False


class ExtensionMissingWarning(UserWarning):
    """The compiled core (scprospatial._core) could not be imported; slower fallbacks are used."""


def core() -> ModuleType | None:
    """The compiled ``scprospatial._core`` module, or None (warned about once per process)."""
    global _core, _tried
    if not _tried:
        _tried = True
        try:
            from . import _core as mod

            _core = mod
        except ImportError as exc:
            warnings.warn(
                f"scprospatial's compiled extension is not available ({exc}); falling back to "
                "pure-Python/scipy code paths, which are slower. Reinstall with "
                "`pip install .` (needs a C++ compiler and CMake) to build it.",
                ExtensionMissingWarning,
                stacklevel=2,
            )
    return _core


def require() -> ModuleType:
    """The compiled core, for code paths chosen because it is available (e.g. backend 'cpp'); an InputError
    saying so when it is not."""
    mod = core()
    if mod is None:
        from .errors import InputError

        raise InputError("this needs scprospatial's compiled extension (scprospatial._core), which is not available")
    return mod


def cuda_compiled() -> bool:
    """True when the core was built with its CUDA kernels (SCPROSPATIAL_CUDA=1)."""
    mod = core()
    return bool(mod is not None and mod.compiled_with_cuda())


def cuda_ready() -> bool:
    """True when the core has CUDA kernels and sees a CUDA device (what device 'auto' needs to pick the GPU)."""
    return cuda_unavailable_reason() is None


def cuda_unavailable_reason() -> str | None:
    """Why the core's CUDA kernels cannot run here (one line), or None when they can."""
    mod = core()
    if mod is None:
        return "scprospatial's compiled extension is not available"
    if not mod.compiled_with_cuda():
        return "scprospatial's C++ core was built without CUDA kernels (reinstall with SCPROSPATIAL_CUDA=1)"
    if mod.cuda_device_count() == 0:
        return "no CUDA device is visible"
    return None


def is_device_array(x) -> bool:
    """True for arrays that live on a CUDA device (torch CUDA tensors, CuPy, ...: __cuda_array_interface__)."""
    return x is not None and hasattr(x, "__cuda_array_interface__")
