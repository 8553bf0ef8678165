"""Logging to stderr and progress bars that stay quiet when nobody watches."""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger("scprospatial")


def configure(verbosity: int = 0) -> None:
    """Send package logs to stderr; verbosity -1 quiet, 0 info, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s scprospatial %(levelname)s: %(message)s", "%H:%M:%S"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm bar on stderr, shown only when stderr is a terminal or logging is at INFO."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    disable = not (tty or logger.isEnabledFor(logging.INFO))
    # In a log file (Nextflow, CI) one line every 30 s is enough to show the work is alive.
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=disable,
                     mininterval=1.0 if tty else 30.0, dynamic_ncols=True, leave=tty, delay=2.0))
