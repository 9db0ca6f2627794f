"""Optional dependencies: a function of a module that may not import (numba's compiled kernels),
and the choice between a compiled kernel and its pure fallback."""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Optional, Sequence

__all__ = ["optional_attr", "resolve_backend"]

#: module state: one import attempt per (module, name) and process (a failed numba import is slow)
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


def resolve_backend(backend: str, env_var: str, choices: Sequence[str], fallback: str,
                    kernel: Callable[[], Optional[Any]], compiled: str = "numba") -> str:
    """The implementation to run: ``backend`` (one of ``choices``: ``"auto"``, ``compiled`` and
    ``fallback``). ``"auto"`` -> the environment variable ``env_var`` if set, else ``compiled``
    when ``kernel()`` finds the compiled kernel (not None), else ``fallback``. Asking for
    ``compiled`` without it raises ``ImportError``; a value outside ``choices``, ``ValueError``
    (naming ``env_var`` when it came from there)."""
    if backend == "auto":
        backend = os.environ.get(env_var, "auto") or "auto"
        if backend not in choices:
            raise ValueError(f"{env_var}={backend!r}; expected one of {choices}")
    if backend not in choices:
        raise ValueError(f"backend={backend!r}; expected one of {choices}")
    if backend == fallback:
        return fallback
    if kernel() is None:
        if backend == compiled:
            raise ImportError(f"backend={compiled!r} needs {compiled} (pip install {compiled}); backend='auto' "
                              f"falls back to {fallback}")
        return fallback
    return compiled
