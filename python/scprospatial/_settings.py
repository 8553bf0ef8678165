"""Run-wide settings: device choice, thread count and seeding."""
from __future__ import annotations

import functools
import inspect
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


THREADS_ENV = "SCPROSPATIAL_THREADS"  # the C++ core's thread count (get_threads)


def thread_count(threads: int | None) -> int:
    """`threads` checked (>= 1), or every available CPU when None."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    return threads or available_cpus()


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch


@contextmanager
def threads(n: int | None = None) -> Iterator[int]:
    """Use `n` CPU threads (None: every available CPU) in BLAS/OpenMP pools, torch and the C++ core inside the
    ``with`` block only; the process's previous limits and torch thread count are restored afterwards.

    Parameters
    ----------
    n
        Number of threads (>= 1), or None for every CPU this process may run on.

    Returns
    -------
    A context manager yielding the thread count in use.
    """
    from threadpoolctl import threadpool_limits

    n = thread_count(n)
    torch, old_env = _torch(), os.environ.get(THREADS_ENV)
    old_torch = torch.get_num_threads() if torch is not None else None
    os.environ[THREADS_ENV] = str(n)
    try:
        with threadpool_limits(limits=n):
            if torch is not None:
                torch.set_num_threads(n)
            yield n
    finally:
        if old_env is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = old_env
        if torch is not None:
            torch.set_num_threads(old_torch)


def scoped_threads(fn: Callable) -> Callable:
    """Run a library function (with a `threads` keyword) inside `threads(threads)`: its thread limits end with
    the call, so importing code keeps its own (the CLI sets process-wide ones with `set_threads`)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = signature.bind(*args, **kwargs).arguments.get("threads")
        with threads(n):
            return fn(*args, **kwargs)

    return wrapper


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads in torch and the C++ core for the whole process (None: every available CPU).
    For the CLI only: library code uses the scoped `threads` context manager."""
    n = thread_count(threads)
    os.environ[THREADS_ENV] = str(n)
    # BLAS/OpenMP pools oversubscribe a shared machine badly (an 800 x 2000 SVD took 6-30 s instead of 1 s).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(n)
    return n


def get_threads() -> int:
    return int(os.environ.get(THREADS_ENV, 0)) or available_cpus()


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
