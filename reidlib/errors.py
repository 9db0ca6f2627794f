"""Errors with enough context to fix the input: the file, the line, and what was expected."""
from __future__ import annotations

import os


class DataFormatError(ValueError):
    """Bad dataset input. ``str(err)`` reads ``<file>:<line>: <problem>; expected <form>``."""

    def __init__(self, path: str | os.PathLike, problem: str, *, line: int | None = None,
                 expected: str | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.expected = expected
        where = self.path if line is None else f"{self.path}:{line}"
        msg = f"{where}: {problem}"
        if expected:
            msg += f"; expected {expected}"
        super().__init__(msg)


class ConfigError(ValueError):
    """Bad configuration or parameters (unknown key, wrong type)."""


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used: truncated, corrupt, not reidlib's, or
    holding Python objects (refused: loading them would run code from the file)."""
