"""Optional dependencies: a function of a module that may not import (numba's compiled kernels)."""
from __future__ import annotations

import importlib
from typing import Any, Optional

__all__ = ["optional_attr"]

_CACHE: dict[tuple[str, str], Any] = {}


def optional_attr(module: str, name: str) -> Optional[Any]:
    """``module.name``, or None when ``module`` cannot be imported (e.g. numba is not installed);
    looked up once per process."""
    key = (module, name)
    if key not in _CACHE:
        try:
            _CACHE[key] = getattr(importlib.import_module(module), name)
        except ImportError:
            _CACHE[key] = None
    return _CACHE[key]
