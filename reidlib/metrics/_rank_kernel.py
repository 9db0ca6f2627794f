"""Compiled ranking kernel (numba), used by :mod:`reidlib.metrics.rank` when numba is installed.

It computes exactly what the numpy path computes: for every true match ``p`` of a query row, the
number of gallery items that come before it, i.e. ``(d_j, j) < (d_p, col_p)`` in lexicographic
order (smaller distance first, ties broken by the lower gallery index). Per row, in cache:

1. a monotone bucket map ``bucket(x) = clip(floor((x - lo) * scale), 0, B - 1)`` fitted to the
   row's finite true-match distances (``scale`` finite and positive: 1.0 where the range is too
   narrow for a finite one, e.g. subnormal distances, so no product is ever NaN); every match
   gets its bucket;
2. every item gets its bucket by the same float64 arithmetic; a histogram of the items' buckets
   gives, for each match, the items in lower buckets (all strictly closer, by monotonicity);
3. the items that share a bucket with a match (collected without branches) are compared with
   those matches exactly, in the input dtype, by (value, index).

Monotonicity alone makes this exact, whatever the rounding. The kernel releases the GIL; the caller
runs chunks of rows on several threads. Its compilation (about a second) is cached on disk where a
writable cache directory exists (:func:`reidlib.metrics.jit.njit_cached`); see
``benchmarks/bench_eval.py`` for the first call of a fresh process, cold and cached.
"""
from __future__ import annotations

import numpy as np

from reidlib.metrics.jit import njit_cached

__all__ = ["count_before"]


@njit_cached(nogil=True)
def count_before(dist, t_start, t_cols, t_vals, before, nbk):
    """``dist [n, ng]``; the true matches of row ``r`` are ``t_start[r]:t_start[r+1]`` of ``t_cols`` /
    ``t_vals`` (sorted by value, then column). Fills ``before [T]``; returns True if any distance is
    NaN (then ``before`` is meaningless)."""
    n, ng = dist.shape
    hist = np.empty(nbk, np.int64)            # items per bucket
    first = np.empty(nbk, np.int64)           # first match with bucket >= b (m if none)
    bkt = np.empty(ng, np.int32)              # bucket of each item of the row
    cand = np.empty(ng + 1, np.int64)         # items in a bucket that holds a match
    has_match = np.empty(nbk, np.int64)       # 1 where a bucket holds a match
    max_m = 0
    for r in range(n):
        max_m = max(max_m, t_start[r + 1] - t_start[r])
    pb = np.empty(max_m, np.int64)            # bucket of each match of the row
    for r in range(n):
        p0, p1 = t_start[r], t_start[r + 1]
        m = p1 - p0
        row = dist[r]
        # pass 1 (vectorisable): NaN check
        nan = False
        for j in range(ng):
            nan |= row[j] != row[j]
        if nan:
            return True
        if m == 0:
            continue
        # the bucket map, fitted to the finite true-match distances of this row
        lo = np.inf
        hi = -np.inf
        for k in range(p0, p1):
            v = np.float64(t_vals[k])
            if v > -np.inf and v < np.inf:
                lo = min(lo, v)
                hi = max(hi, v)
        if not lo <= hi:                      # no finite true-match distance
            lo = 0.0
        # a range narrower than ~1e-305 (subnormal distances) would overflow the scale to inf, and
        # (lo - lo) * inf = NaN then becomes a bucket index: fall back to 1.0 like the numpy path
        # (any finite positive scale keeps the map monotone)
        scale = (nbk - 1.0) / (hi - lo) if hi > lo else 1.0
        if not 0.0 < scale < np.inf:
            scale = 1.0
        top = nbk - 1.0
        for k in range(m):
            pb[k] = int(min(max((np.float64(t_vals[p0 + k]) - lo) * scale, 0.0), top))
        k = 0
        for b in range(nbk):
            while k < m and pb[k] < b:
                k += 1
            first[b] = k
        # pass 2 (vectorisable): every item's bucket, by the same arithmetic as the matches'
        for j in range(ng):
            bkt[j] = int(min(max((np.float64(row[j]) - lo) * scale, 0.0), top))
        # pass 3: histogram, and (branch-free) the list of items sharing a bucket with a match
        hist[:] = 0
        has_match[:] = 0
        for k in range(m):
            has_match[pb[k]] = 1
            before[p0 + k] = 0
        nc = 0
        for j in range(ng):
            b = bkt[j]
            hist[b] += 1
            cand[nc] = j
            nc += has_match[b]
        # pass 4: those items against the matches of their bucket, exactly (value, then index)
        for c in range(nc):
            j = cand[c]
            b = bkt[j]
            d = row[j]
            s = first[b]
            while s < m and pb[s] == b:
                pv = t_vals[p0 + s]
                # item j comes before match s (branch-free: the outcome is a coin flip)
                before[p0 + s] += (d < pv) | ((d == pv) & (j < t_cols[p0 + s]))
                s += 1
        # items in lower buckets come before every match of a bucket
        acc = 0
        k = 0
        for b in range(nbk):
            while k < m and pb[k] == b:
                before[p0 + k] += acc
                k += 1
            acc += hist[b]
    return False
