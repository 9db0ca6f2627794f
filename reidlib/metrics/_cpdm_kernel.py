"""Compiled (numba) element-wise work of the CPDM inference tiles, used by :mod:`reidlib.metrics.cpdm` when
numba is installed (``pip install reidlib[fast]``).

Per tile of ``n`` query rows x ``m`` gallery columns, torch's batched GEMM gives the per-part
matrices ``S_k = (AR_a,k AR_b,k)^2 ||f_a,k - f_b,k||^2`` (``[K, n, m]``; for MUSP one more slice,
the unweighted global ``||f_a,0 - f_b,0||^2``). This kernel does the rest of SPAN eqs. (4)-(5) /
MUSP eqs. (9)-(10) in ONE pass over them, row by row in cache::

    den       = sum_k AR_a,k AR_b,k                                   (eq. 4 / eq. 9 denominator)
    out[i, j] = sum_k sqrt(max(S_k[i, j], 0)) / den  [+ g sqrt(max(S_glob[i, j], 0))]

with the hardware square root (IEEE, correctly rounded). The torch fallback needs a GEMM for
``den`` and four to seven tensor passes (clamp, sqrt, sum, divide, ...), and its square root (MKL's
vector sqrt on the CPU) takes a slow path on exact zeros, which CPDM has in abundance: a part
absent from one image zeroes that part's whole row or column of ``S_k``. The order of the sums is
the fallback's (parts 0, 1, ..., K-1); the square root (torch's is not correctly rounded: about 1
value in 6 differs by one ulp) and ``den`` (a plain sum here, a fused multiply-add chain in the
GEMM) round differently, so results agree within float32 rounding (``tests/test_cpdm.py`` holds
both to a float64 per-pair loop; ``benchmarks/bench_cpdm.py`` reports the largest difference).
NaN propagates as in torch.
"""
from __future__ import annotations

import math

import numpy as np

from reidlib.metrics.jit import njit_cached

__all__ = ["cpdm_tile"]


@njit_cached(nogil=True, error_model="numpy")
def cpdm_tile(parts, ar_a, ar_b_t, floor, g, out, r0, c0):
    """One inference tile of CPDM, written into ``out[r0:r0+n, c0:c0+m]``.

    ``parts [T, n, m]`` (C-contiguous): ``T = K`` weighted squared part distances, plus (MUSP,
    ``T = K + 1``) the unweighted squared global distance last. ``ar_a [Na, K]``, ``ar_b_t [K, Nb]``:
    the area ratios of the weighted parts (C-contiguous, whole sets; the tile's rows / columns are
    at ``r0`` / ``c0``). ``floor``: the denominator is clamped below at it when ``> 0`` (MUSP:
    disjoint views give ``0 / floor = 0``). ``g``: the global weight (used when ``T = K + 1``).
    ``out [Na, Nb]`` (C-contiguous).
    """
    T, n, m = parts.shape
    K = ar_a.shape[1]
    zero = parts.dtype.type(0)
    gw = parts.dtype.type(g)
    den = np.empty(m, parts.dtype)
    for i in range(n):
        o = out[r0 + i, c0:c0 + m]
        # sum_k AR_a,k AR_b,k ||f_a,k - f_b,k||  (sqrt of (AR AR)^2 ||.||^2, clamped at 0)
        p = parts[0, i]
        for j in range(m):
            v = p[j]
            o[j] = math.sqrt(zero if v < zero else v)          # NaN stays NaN (as torch's clamp)
        for k in range(1, K):
            p = parts[k, i]
            for j in range(m):
                v = p[j]
                o[j] += math.sqrt(zero if v < zero else v)
        # eq. (4) / (9) denominator
        a = ar_a[r0 + i]
        b = ar_b_t[0, c0:c0 + m]
        ak = a[0]
        for j in range(m):
            den[j] = ak * b[j]
        for k in range(1, K):
            b = ar_b_t[k, c0:c0 + m]
            ak = a[k]
            for j in range(m):
                den[j] += ak * b[j]
        if floor > 0:
            for j in range(m):
                v = den[j]
                o[j] /= floor if v < floor else v
        else:
            for j in range(m):
                o[j] /= den[j]
        # MUSP eq. (10): + g ||f_a,0 - f_b,0||
        if T > K:
            p = parts[K, i]
            for j in range(m):
                v = p[j]
                o[j] += gw * math.sqrt(zero if v < zero else v)
