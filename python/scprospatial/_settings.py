"""Run-wide settings: device choice, thread count and seeding."""
from __future__ import annotations

import os
import random

import numpy as np

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> str:
    """'auto' picks CUDA when torch sees a GPU; asking for 'cuda' without one is an error."""
    import torch

    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but torch sees no CUDA device")
    return device


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads in torch and the C++ core (None: every available CPU)."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    n = threads or available_cpus()
    os.environ["SCPROSPATIAL_THREADS"] = str(n)
    # BLAS/OpenMP pools oversubscribe a shared machine badly (an 800 x 2000 SVD took 6-30 s instead of 1 s).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return n


def get_threads() -> int:
    return int(os.environ.get("SCPROSPATIAL_THREADS", 0)) or available_cpus()


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; returns a numpy Generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
    return np.random.default_rng(seed)
