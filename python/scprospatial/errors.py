"""Errors with a meaning for the command line.

``InputError`` is a problem with what the user gave (exit code 2); anything else that
escapes is an internal error (exit code 1).
"""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input or usage: a one-line message that names the file and the problem."""

    exit_code = 2

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class MissingStepError(InputError):
    """An input lacks what an earlier step writes (e.g. a graph before statistics)."""
