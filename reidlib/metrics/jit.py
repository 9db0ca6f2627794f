"""numba helpers shared by the compiled kernels (:mod:`reidlib.metrics._rank_kernel`,
:mod:`reidlib.metrics._cpdm_kernel`). numba is optional (``pip install reidlib[fast]``): importing
this module raises ``ImportError`` without it, and the callers fall back to numpy / torch."""
from __future__ import annotations

from typing import Callable

from numba import njit

__all__ = ["njit_cached"]


def njit_cached(**options) -> Callable:
    """``numba.njit(cache=True, **options)`` where numba finds a writable cache directory (next to
    the source, ``NUMBA_CACHE_DIR``, or the user cache directory), else ``njit(**options)``
    without a cache, silently: a read-only install then compiles on the first call of each
    process instead of failing at import (numba raises ``RuntimeError: cannot cache function``)."""

    def decorate(fn: Callable) -> Callable:
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            return njit(cache=False, **options)(fn)

    return decorate
