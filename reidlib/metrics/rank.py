"""Ranking metrics for re-ID: CMC, mAP (two AP definitions) and mINP, from a distance matrix
(:func:`evaluate_rank`) or straight from features, chunk by chunk (:func:`evaluate_features`).

Protocol (market style, the de-facto vehicle re-ID protocol)
------------------------------------------------------------
For each query, gallery items with the query's id AND camera are *junk* and are removed.
The remaining gallery items with the query's id are its *true matches*; a query without any
is *skipped* (counted in ``num_skipped_queries``, left out of every mean). Ranks are counted
after junk removal. With ``r_0 < r_1 < ... < r_{m-1}`` the 0-based ranks of the ``m`` true
matches:

* CMC@k: fraction of valid queries with ``r_0 < k``.
* AP, ``ap="mean_precision"`` (toolboxes' Python code): ``mean_k (k+1)/(r_k+1)``.
* AP, ``ap="trapezoid"`` (the VeRi / Market-1501 MATLAB kit ``compute_AP.m``): the trapezoid
  area under the precision-recall curve that starts at precision 1, recall 0. Each true match
  adds a recall step ``1/m`` whose left edge is the precision just *before* the match,
  ``k/r_k`` (1 when ``r_k == 0``), and right edge the precision at the match ``(k+1)/(r_k+1)``:
  ``AP = (1/m) sum_k (k/r_k + (k+1)/(r_k+1)) / 2``. It is never above the mean-precision AP.
* INP = ``m / (r_{m-1}+1)``; mINP is its mean over valid queries.

Tie rule
--------
Equal distances are broken by gallery index: the lower index ranks first. This is exactly the
order of a *stable* sort of each row by distance (``np.argsort(row, kind="stable")``), so the
results do not depend on a sort implementation. (Peers use non-stable sorts; with ties, e.g.
quantised or duplicated features, their numbers can move.) NaN distances are rejected.

How it is fast
--------------
No gallery row is sorted. The rank of a true match is the number of gallery items that come
before it (strictly closer, or equally close with a lower index) minus the junk
before it. The items before each true match are counted with one pass over the row: every
distance is mapped to one of ``B`` buckets by a monotone (non-decreasing) affine map fitted to the
query's true-match distances, a histogram of the buckets gives the count of items in lower
buckets, and only the few items that share a bucket with a true match are compared exactly.
Monotonicity alone makes this exact (bucket(a) < bucket(b) implies a < b), whatever the rounding.
All of it is vectorised over a chunk of queries, so memory is bounded by the chunk: the passes
over every element run on cache-sized blocks of rows (int32 keys; torch's ``bincount`` and
``index_select``), the work sized by the true matches once per chunk, and chunks are ranked on
several threads (numpy and torch release the GIL in their large array operations).
With numba installed (it is in the lock; ``pip install reidlib[fast]``), the per-row work runs in a
compiled kernel (:mod:`reidlib.metrics._rank_kernel`: the same bucket idea, one row at a time,
in cache) instead; ``backend="numpy"`` or ``REIDLIB_RANK_BACKEND=numpy`` forces the numpy path.
``benchmarks/bench_eval.py`` measures both against a plain per-query loop.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from reidlib.metrics.distance import distance_rows, num_rows, slice_rows
from reidlib.metrics.pairwise import check_chunk_size, to_numpy
from reidlib.utils.optional import optional_attr, resolve_backend as resolve_kernel_backend

__all__ = ["RankResult", "evaluate_rank", "evaluate_features"]

AP_DEFINITIONS = ("mean_precision", "trapezoid")
_N_BUCKETS = 4094            # buckets inside the true-match range; 2 more for below / above
_RANK_CHUNK_ELEMENTS = 8_000_000   # query x gallery elements ranked in one call (one thread's work item)
_RANK_BLOCK_ELEMENTS = 500_000     # ... of which the per-element passes handle this many at once
_BYTES_PER_ELEMENT = 40      # rough peak bytes per query x gallery element (distances + ranking)


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass
class RankResult:
    """Re-ID ranking metrics.

    ``cmc[k]`` is the fraction of valid queries whose first true match is within rank ``k+1``
    (length ``max_rank``); ``mAP`` and ``mINP`` are fractions in [0, 1]. When no query is valid
    every metric is undefined: ``cmc`` is all NaN and ``mAP`` / ``mINP`` are NaN (never 0, which
    would read as a model that ranks nothing right). ``ap`` names the AP definition used for
    ``mAP`` and ``query_ap``. Per-query arrays (length = number of queries; NaN / -1 for skipped
    queries) let callers pick the worst queries (see ``reidlib.viz.ranked.worst_queries``).
    ``distmat``: the float32 ``[Nq, Ng]`` distance matrix, only from
    ``evaluate_features(..., return_distmat=True)``.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int
    ap: str = "mean_precision"
    query_ap: np.ndarray | None = field(default=None, repr=False)
    query_inp: np.ndarray | None = field(default=None, repr=False)
    query_first_rank: np.ndarray | None = field(default=None, repr=False)
    query_num_matches: np.ndarray | None = field(default=None, repr=False)
    distmat: np.ndarray | None = field(default=None, repr=False)

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based); NaN if ``k`` is beyond ``max_rank``."""
        if k < 1 or k > len(self.cmc):
            return float("nan")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, Any]:
        """Scalars only: R1, R5, R10, mAP, mINP (fractions), the query counts and the AP definition.

        JSON-safe: an undefined value (no valid query, or a rank beyond ``max_rank``) is ``None``,
        never NaN (``json.dump`` would write a bare ``NaN``, which is not JSON)."""
        return {
            "R1": _defined(self.rank(1)),
            "R5": _defined(self.rank(5)),
            "R10": _defined(self.rank(10)),
            "mAP": _defined(self.mAP),
            "mINP": _defined(self.mINP),
            "num_valid_queries": int(self.num_valid_queries),
            "num_skipped_queries": int(self.num_skipped_queries),
            "ap_definition": self.ap,
        }


def _defined(x) -> float | None:
    """``float(x)``, or None where it is NaN (undefined)."""
    x = float(x)
    return None if x != x else x


# --------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------
def _encode_labels(q, g) -> tuple[np.ndarray, np.ndarray]:
    """Map query and gallery labels (ints, strings, tensors) to shared int64 codes."""
    q = to_numpy(q).reshape(-1)
    g = to_numpy(g).reshape(-1)
    if q.dtype.kind in "iub" and g.dtype.kind in "iub":
        return q.astype(np.int64, copy=False), g.astype(np.int64, copy=False)
    _, inv = np.unique(np.concatenate([q, g]), return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    return inv[: len(q)], inv[len(q):]


def _check_ap(ap: str) -> str:
    if ap not in AP_DEFINITIONS:
        raise ValueError(f"ap={ap!r} is not an AP definition; expected one of {AP_DEFINITIONS}")
    return ap


class _GalleryIndex:
    """Gallery items grouped by id, to list each query's same-id items without a dense scan."""

    def __init__(self, g_pids: np.ndarray, g_cams: np.ndarray):
        self.g_pids = g_pids
        self.g_cams = g_cams
        self.num_gallery = len(g_pids)
        self.order = np.argsort(g_pids, kind="stable")          # within an id: ascending index
        sorted_pids = g_pids[self.order]
        self.uniq, starts = np.unique(sorted_pids, return_index=True)
        self.starts = starts.astype(np.int64)
        self.ends = np.append(self.starts[1:], len(g_pids)).astype(np.int64)

    def same_id_items(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, gallery column) of every gallery item sharing the id of query row ``row``;
        rows ascending, columns ascending within a row."""
        if len(self.uniq) == 0:
            e = np.zeros(0, dtype=np.int64)
            return e, e
        pos = np.minimum(np.searchsorted(self.uniq, q_pids), len(self.uniq) - 1)
        found = self.uniq[pos] == q_pids
        starts = np.where(found, self.starts[pos], 0)
        lengths = np.where(found, self.ends[pos] - self.starts[pos], 0)
        rows = np.repeat(np.arange(len(q_pids), dtype=np.int64), lengths)
        offs = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = self.order[np.repeat(starts, lengths) + offs]
        return rows, cols


# --------------------------------------------------------------------------------------------
# the ranking core: one chunk of queries
# --------------------------------------------------------------------------------------------
class _Workspace:
    """Buffers reused from chunk to chunk (fresh large allocations cost page faults)."""

    def __init__(self):
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, size: int, dtype) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < size or buf.dtype != np.dtype(dtype):
            buf = np.empty(size, dtype=dtype)
            self._bufs[name] = buf
        return buf[:size]

    def zeros_bool(self, name: str, size: int) -> np.ndarray:
        """An all-False bool buffer; the caller must reset what it sets."""
        buf = self._bufs.get(name)
        if buf is None or buf.size < size:
            buf = np.zeros(size, dtype=bool)
            self._bufs[name] = buf
        return buf[:size]


BACKENDS = ("auto", "numba", "numpy")


def _compiled_kernel():
    """The numba kernel (``reidlib.metrics._rank_kernel.count_before``), or None without numba."""
    return optional_attr("reidlib.metrics._rank_kernel", "count_before")


def resolve_backend(backend: str = "auto") -> str:
    """``"auto"`` -> the ``REIDLIB_RANK_BACKEND`` environment variable if set, else ``"numba"`` when
    numba is installed, else ``"numpy"``. Both give identical results (tests check every field on
    both); the compiled one is about twice as fast."""
    return resolve_kernel_backend(backend, "REIDLIB_RANK_BACKEND", BACKENDS, "numpy", _compiled_kernel)


def _rank_chunk(dist: np.ndarray, q_pids: np.ndarray, q_cams: np.ndarray, gidx: _GalleryIndex,
                ws: _Workspace | None = None, block_elements: int = _RANK_BLOCK_ELEMENTS,
                backend: str = "numpy"):
    """Per-query statistics for one chunk of rows of the distance matrix.

    Returns ``(num_matches [n], row_of_match [T], k_of_match [T], rank_of_match [T])`` where the
    true matches of each row are listed in rank order and ``rank`` is 0-based after junk removal.

    The per-element passes (bucket keys, histogram, picking the items that share a bucket with a
    true match) run on cache-sized blocks of ``block_elements``; everything sized by the true
    matches runs once for the whole chunk, so its fixed per-call cost is paid once.
    """
    n, ng = dist.shape
    ws = ws if ws is not None else _Workspace()
    if dist.dtype == np.float16 or dist.dtype.kind == "b":
        dist = dist.astype(np.float32)
    elif dist.dtype.kind not in "fiu":
        raise TypeError(f"distance matrix has dtype {dist.dtype}; expected a real number type")
    dist = np.ascontiguousarray(dist)

    # same-id items (true matches + junk), sorted per row by (distance, gallery index)
    rows, cols = gidx.same_id_items(q_pids)          # rows ascending, cols ascending per row
    dvals = dist[rows, cols]
    if dist.dtype.kind == "f" and np.isnan(dvals).any():
        raise ValueError("distance matrix contains NaN; the ranking is undefined")
    lengths = np.bincount(rows, minlength=n)
    row_start = np.cumsum(lengths) - lengths
    pos_in_row = np.arange(len(rows)) - row_start[rows]      # same-id items before, same row
    if len(rows):
        # per-row stable sort of a padded [n, Lmax] block (pads sort after equal real values)
        lmax = int(lengths.max())
        pad = np.inf if dvals.dtype.kind == "f" else np.iinfo(dvals.dtype).max
        block = np.full((n, lmax), pad, dtype=dvals.dtype)
        block[rows, pos_in_row] = dvals
        perm = np.argsort(block, axis=1, kind="stable")
        order = perm[np.arange(lmax)[None, :] < lengths[:, None]] + row_start[rows]
        cols, dvals = cols[order], dvals[order]
    is_pos = gidx.g_cams[cols] != q_cams[rows]

    t_rows, t_cols, t_vals = rows[is_pos], cols[is_pos], dvals[is_pos]
    t_before = pos_in_row[is_pos]
    num_matches = np.bincount(t_rows, minlength=n)
    num_t = len(t_rows)
    if num_t == 0:
        if dist.dtype.kind == "f" and dist.size and np.isnan(dist.min()):
            raise ValueError("distance matrix contains NaN; the ranking is undefined")
        e = np.zeros(0, np.int64)
        return num_matches, e, e, e

    # items before each true match (any item: matches and junk included)
    if backend == "numba":
        t_start = np.concatenate([[0], np.cumsum(num_matches)]).astype(np.int64)
        before = np.empty(num_t, dtype=np.int64)
        n_buckets = int(min(4096, max(64, ng // 8)))
        if _compiled_kernel()(dist, t_start, np.ascontiguousarray(t_cols, dtype=np.int64),
                              np.ascontiguousarray(t_vals), before, n_buckets):
            raise ValueError("distance matrix contains NaN; the ranking is undefined")
    else:
        before = _count_before_numpy(dist, t_rows, t_cols, t_vals, ws, block_elements)

    k_of = np.arange(num_t) - (np.cumsum(num_matches) - num_matches)[t_rows]  # index among matches
    ranks = before - (t_before - k_of)                         # drop the junk before it
    return num_matches, t_rows, k_of, ranks


def _count_before_numpy(dist: np.ndarray, t_rows: np.ndarray, t_cols: np.ndarray, t_vals: np.ndarray,
                        ws: _Workspace, block_elements: int) -> np.ndarray:
    """``before [T]``: for each true match (``t_rows`` ascending, sorted by value then column
    within a row) the number of items of its row that come before it, in numpy and torch."""
    n, ng = dist.shape
    num_t = len(t_rows)
    # ---- monotone bucket map per row, fitted to the row's finite true-match distances ----
    # bucket(d) = clip((d - lo) * scale, -1, nb - 2) + 1 + local_row * nb, truncated to an
    # integer: a composition of monotone float operations, so bucket(a) < bucket(b) implies a < b.
    nb = _N_BUCKETS + 2
    block_rows = max(1, min(n, block_elements // max(ng, 1), 2**24 // nb))   # offsets exact in float32
    work_dtype = dist.dtype if dist.dtype.kind == "f" else np.dtype(np.float64)
    tv = t_vals.astype(np.float64)
    fin = np.isfinite(tv)
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, t_rows[fin], tv[fin])
    np.maximum.at(hi, t_rows[fin], tv[fin])
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo = np.where(ok, lo, 0.0).astype(work_dtype)
    width = np.where(ok, hi - lo.astype(np.float64), 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        scale = (_N_BUCKETS - 0.5) / width
    max_scale = float(np.finfo(work_dtype).max) / 1e6
    scale = np.where(np.isfinite(scale) & (scale > 0) & (scale < max_scale), scale, 1.0).astype(work_dtype)
    offset = (np.arange(block_rows) * nb + 1).astype(work_dtype)
    # keys are int32: float -> int32 truncation is a SIMD pass, and torch counts and gathers int32
    # keys directly and releases the GIL, so chunks ranked on several threads overlap
    key_dtype = np.int32 if block_rows * nb < 2**31 else np.int64

    before = np.empty(num_t, dtype=np.int64)
    t_flat = t_rows * ng + t_cols
    t_bounds = np.searchsorted(t_rows, np.arange(0, n + block_rows, block_rows))   # t_rows ascending
    firsts, e_flats, e_grps = [], [], []
    n_groups = 0
    for b, r0 in enumerate(range(0, n, block_rows)):
        r1 = min(n, r0 + block_rows)
        nr, size = r1 - r0, (r1 - r0) * ng
        p0, p1 = int(t_bounds[b]), int(t_bounds[b + 1])
        t = ws.get("t", size, work_dtype).reshape(nr, ng)
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(dist[r0:r1], lo[r0:r1, None], out=t)
            np.multiply(t, scale[r0:r1, None], out=t)
        np.clip(t, -1.0, nb - 2, out=t)
        if np.isnan(t.min()):
            raise ValueError("distance matrix contains NaN; the ranking is undefined")
        if p0 == p1:                                             # no true match in these rows
            continue
        np.add(t, offset[:nr, None], out=t)
        key = ws.get("key", size, key_dtype)
        np.copyto(key, t.reshape(-1), casting="unsafe")          # truncation: monotone too
        key_t = torch.from_numpy(key)
        hist = torch.bincount(key_t, minlength=nr * nb).numpy()  # [nr * nb]
        cum = np.cumsum(hist, out=ws.get("cum", nr * nb, np.int64))
        t_key = key.take(t_flat[p0:p1] - r0 * ng).astype(np.int64)   # sorted (rows, then value)
        base = (t_rows[p0:p1] - r0) * nb
        before[p0:p1] = (cum[t_key] - hist[t_key]) - (cum[base] - hist[base])   # lower buckets

        # the items sharing a bucket with a true match, and which bucket group they belong to
        first = np.flatnonzero(np.diff(t_key, prepend=-1))       # first match of each bucket
        marked = ws.zeros_bool("marked", nr * nb)
        marked[t_key] = True
        lut = ws.get("lut", nr * nb, np.int64)
        lut[t_key[first]] = n_groups + np.arange(len(first))
        sel = ws.get("sel", size, np.bool_)
        torch.index_select(torch.from_numpy(marked), 0, key_t, out=torch.from_numpy(sel))
        marked[t_key] = False                                    # leave the buffer all-False
        e_local = np.flatnonzero(sel)
        e_grps.append(lut.take(key.take(e_local)))
        e_flats.append(e_local + r0 * ng)
        firsts.append(first + p0)
        n_groups += len(first)

    # exact comparisons inside the shared buckets, for the whole chunk at once
    first = np.concatenate(firsts)
    counts = np.diff(first, append=num_t)                        # true matches per group
    e_flat = np.concatenate(e_flats)
    e_grp = np.concatenate(e_grps)
    e_col = e_flat % ng
    e_val = dist.reshape(-1).take(e_flat)
    cnt = counts[e_grp]
    lo_t = first[e_grp]
    total = int(cnt.sum())
    pe = np.repeat(np.arange(len(e_flat)), cnt)
    pt = np.repeat(lo_t, cnt) + (np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    ev, tvv = e_val[pe], t_vals[pt]
    less = (ev < tvv) | ((ev == tvv) & (e_col[pe] < t_cols[pt]))
    before += np.bincount(pt[less], minlength=num_t)
    return before


def _query_stats(num_matches, t_rows, k_of, ranks):
    """Per-query first rank, AP (both definitions) and INP from the sorted match ranks."""
    n = len(num_matches)
    m = num_matches.astype(np.float64)
    r = ranks.astype(np.float64)
    k = k_of.astype(np.float64)
    prec = (k + 1.0) / (r + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prev = np.where(r > 0, k / np.where(r > 0, r, 1.0), 1.0)
    valid = num_matches > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ap_mean = np.bincount(t_rows, weights=prec, minlength=n) / m
        ap_trap = np.bincount(t_rows, weights=(prev + prec) * 0.5, minlength=n) / m
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    is_first = k_of == 0
    first[t_rows[is_first]] = ranks[is_first]
    is_last = k_of == (num_matches[t_rows] - 1)
    last[t_rows[is_last]] = ranks[is_last]
    with np.errstate(divide="ignore", invalid="ignore"):
        inp = np.where(valid, m / (last + 1.0), np.nan)
    ap_mean[~valid] = np.nan
    ap_trap[~valid] = np.nan
    return first, ap_mean, ap_trap, inp


def default_num_threads() -> int:
    """Threads the ranker uses by default: the CPU cores this process may run on, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _run_parallel(work: Callable[[Any], None], items: list, num_threads: int | None) -> None:
    """``work(item)`` for every item, on ``num_threads`` threads (numpy, torch and the numba kernel
    release the GIL in the ranker's large operations). Items write disjoint slices, so the order is free and the
    results are identical to a sequential run; the first exception is re-raised."""
    threads = default_num_threads() if num_threads is None else int(num_threads)
    if threads < 1:
        raise ValueError(f"num_threads={num_threads}; expected a positive integer or None")
    if threads == 1 or len(items) <= 1:
        for it in items:
            work(it)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="reidlib-rank") as ex:
        for _ in ex.map(work, items):
            pass


def _split_rows(nq: int, ng: int, num_threads: int | None) -> int:
    """Rows per ranking work item: at most ~``_RANK_CHUNK_ELEMENTS`` elements each, and a
    multiple of the thread count of items, so that the threads finish together."""
    threads = default_num_threads() if num_threads is None else max(1, int(num_threads))
    items = max(1, -(-nq * ng // _RANK_CHUNK_ELEMENTS))
    items = -(-items // threads) * threads
    return max(1, -(-nq // items))


class _Accumulator:
    """Per-query results, filled chunk by chunk (chunks may be ranked on several threads: each
    thread has its own workspace, each chunk writes its own rows)."""

    def __init__(self, num_queries: int):
        self.first = np.full(num_queries, -1, dtype=np.int64)
        self.ap = {d: np.full(num_queries, np.nan) for d in AP_DEFINITIONS}
        self.inp = np.full(num_queries, np.nan)
        self.num_matches = np.zeros(num_queries, dtype=np.int64)
        self._local = threading.local()

    @property
    def ws(self) -> _Workspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = _Workspace()
        return ws

    def add(self, i0: int, i1: int, dist: np.ndarray, q_pids, q_cams, gidx, backend: str = "numpy"):
        nm, tr, ko, rk = _rank_chunk(dist, q_pids[i0:i1], q_cams[i0:i1], gidx, self.ws, backend=backend)
        first, ap_m, ap_t, inp = _query_stats(nm, tr, ko, rk)
        self.first[i0:i1] = first
        self.ap["mean_precision"][i0:i1] = ap_m
        self.ap["trapezoid"][i0:i1] = ap_t
        self.inp[i0:i1] = inp
        self.num_matches[i0:i1] = nm

    def result(self, max_rank: int, ap: str) -> RankResult:
        valid = self.num_matches > 0
        nv = int(valid.sum())
        ns = int(len(valid) - nv)
        if nv == 0:
            warnings.warn(f"0 of {len(valid)} queries have a true match in the gallery (all {ns} "
                          f"skipped): CMC (R1, R5, ...), mAP and mINP are undefined (NaN)",
                          RuntimeWarning, stacklevel=3)
            cmc = np.full(max_rank, np.nan)
            m_ap = m_inp = float("nan")
        else:
            f = self.first[valid]
            hist = np.bincount(np.minimum(f, max_rank), minlength=max_rank + 1)[:max_rank]
            cmc = np.cumsum(hist) / nv
            m_ap = float(np.mean(self.ap[ap][valid]))
            m_inp = float(np.mean(self.inp[valid]))
        return RankResult(cmc=cmc.astype(np.float64), mAP=m_ap, mINP=m_inp,
                          num_valid_queries=nv, num_skipped_queries=ns, ap=ap,
                          query_ap=self.ap[ap], query_inp=self.inp,
                          query_first_rank=self.first, query_num_matches=self.num_matches)


def _prepare_labels(q_pids, g_pids, q_camids, g_camids, nq: int, ng: int):
    qp, gp = _encode_labels(q_pids, g_pids)
    qc, gc = _encode_labels(q_camids, g_camids)
    for name, arr, want in (("q_pids", qp, nq), ("g_pids", gp, ng), ("q_camids", qc, nq),
                            ("g_camids", gc, ng)):
        if len(arr) != want:
            raise ValueError(f"{name} has {len(arr)} entries; expected {want} to match the "
                             f"{'queries' if want == nq else 'gallery'}")
    return qp, gp, qc, gc


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, *, max_rank: int = 50,
                  ap: str = "mean_precision", chunk_size: int | None = None,
                  num_threads: int | None = None, backend: str = "auto") -> RankResult:
    """CMC, mAP and mINP from a ``[num_query, num_gallery]`` distance matrix (smaller = closer).

    ``distmat`` may be a numpy array or a torch tensor on any device (it is moved to the CPU one
    chunk of rows at a time). Ids and cameras may be ints or strings (numpy, lists, tensors).
    ``ap`` is ``"mean_precision"`` (toolboxes' Python) or ``"trapezoid"`` (VeRi MATLAB kit); see
    the module docstring for the exact definitions and the tie rule (ties -> lower gallery index
    first, i.e. a stable sort by distance). ``cmc`` has exactly ``max_rank`` entries.
    ``chunk_size`` (queries per chunk: ``None`` = auto, else a positive integer) only bounds
    temporary memory; it never changes results.
    ``num_threads`` (default :func:`default_num_threads`) ranks chunks in parallel, and ``backend``
    (:func:`resolve_backend`: the numba kernel when numba is installed, else numpy) picks the
    implementation; neither ever changes results. Half-precision matrices (float16, bfloat16) are
    ranked in float32. With no valid query every metric is NaN and a ``RuntimeWarning`` says so.
    """
    _check_ap(ap)
    backend = resolve_backend(backend)
    chunk_size = check_chunk_size(chunk_size, allow_zero=False)
    if max_rank < 1:
        raise ValueError(f"max_rank={max_rank}; expected a positive integer")
    if len(getattr(distmat, "shape", ())) != 2:
        distmat = np.asarray(distmat)
        if distmat.ndim != 2:
            raise ValueError(f"distmat has shape {distmat.shape}; expected [num_query, num_gallery]")
    nq, ng = (int(s) for s in distmat.shape)
    qp, gp, qc, gc = _prepare_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    gidx = _GalleryIndex(gp, gc)
    acc = _Accumulator(nq)
    step = chunk_size or _split_rows(nq, ng, num_threads)

    def work(i0: int) -> None:
        i1 = min(nq, i0 + step)
        acc.add(i0, i1, to_numpy(distmat[i0:i1]), qp, qc, gidx, backend)

    _run_parallel(work, list(range(0, nq, step)), num_threads)
    return acc.result(max_rank, ap)


# --------------------------------------------------------------------------------------------
# features -> distances, chunk by chunk
# --------------------------------------------------------------------------------------------
def evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, *,
                      distance: str | Callable = "euclidean", chunk_size: int | None = None,
                      max_rank: int = 50, ap: str = "mean_precision", device=None,
                      memory_budget_mb: float = 512.0, num_threads: int | None = None,
                      backend: str = "auto", return_distmat: bool = False) -> RankResult:
    """Evaluate from features without ever holding the full query x gallery distance matrix.

    Distances are computed for ``chunk_size`` queries at a time against the whole gallery and
    ranked at once, with the protocol, tie rule and AP definitions of :func:`evaluate_rank`
    (identical results to ``evaluate_rank`` on the same distance values; note that a BLAS may
    round a row's distances differently in a chunk than in the full product, which can reorder
    exact-tie candidates of non-integer features).

    ``q_feats`` / ``g_feats``: ``[N, D]`` arrays or tensors, or tuples of arrays/tensors indexed
    along dim 0 (e.g. ``(part_feats[N, P, d], area_ratios[N, P])``). ``distance``:
    ``"euclidean"`` (true, square-rooted), ``"sqeuclidean"``, ``"cosine"``, or a callable
    ``distance(q_chunk, g_all) -> [n, Ng]`` (numpy or torch) where ``q_chunk`` has the structure
    of ``q_feats`` (tuples are sliced elementwise), e.g.
    ``reidlib.metrics.distance.build_distance("cpdm")``. Built-in distances run in torch on
    ``device`` (default: ``q_feats``' device if it is a tensor, else CPU), in float32 for float16 /
    bfloat16 / integer features (see :func:`reidlib.metrics.distance.distance_rows`). For a
    callable, the inputs are passed unchanged when ``device`` is None (numpy arrays become torch
    tensors sharing their memory for a ``Distance``, so its gallery operand is cached), else
    converted to torch tensors on ``device``. ``chunk_size``: ``None`` (auto, below) or a positive
    integer.

    ``return_distmat=True`` keeps the distances computed on the way: ``RankResult.distmat`` is the
    float32 ``[Nq, Ng]`` numpy matrix (4 * Nq * Ng bytes on top of the budget below), assembled from
    the chunks, so callers (plots, re-ranking) need not recompute it.

    Memory: with ``chunk_size=None`` the chunk is chosen so that one chunk's distances and
    temporaries take about ``memory_budget_mb`` (budgeting ~40 bytes per query x gallery element;
    a callable with bigger temporaries, e.g. per-part distances, needs an explicit ``chunk_size``).
    Beyond the features themselves, peak memory is then about the budget plus ~50 MB of ranking
    buffers per ranking thread (``num_threads``), so VERI-Wild Large (10,000 x ~128,500; 5 GB as a
    float32 matrix) fits well under 4 GB.
    """
    _check_ap(ap)
    backend = resolve_backend(backend)
    chunk_size = check_chunk_size(chunk_size, allow_zero=False)
    if max_rank < 1:
        raise ValueError(f"max_rank={max_rank}; expected a positive integer")
    nq, ng = num_rows(q_feats), num_rows(g_feats)
    qp, gp, qc, gc = _prepare_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    gidx = _GalleryIndex(gp, gc)
    q_feats, fn = distance_rows(q_feats, g_feats, distance, device)

    if chunk_size is None:
        budget = float(memory_budget_mb) * 2**20
        chunk_size = max(1, min(nq, int(budget // (_BYTES_PER_ELEMENT * max(ng, 1)))))

    acc = _Accumulator(nq)
    full = np.empty((nq, ng), dtype=np.float32) if return_distmat else None     # [Nq, Ng]
    for i0 in range(0, nq, chunk_size):
        i1 = min(nq, i0 + chunk_size)
        d = fn(slice_rows(q_feats, i0, i1))                                      # [n, Ng]
        if d.shape != (i1 - i0, ng):
            raise ValueError(f"distance returned shape {d.shape} for {i1 - i0} queries; "
                             f"expected {(i1 - i0, ng)}")
        if full is not None:
            full[i0:i1] = d
        step = _split_rows(i1 - i0, ng, num_threads)             # the ranker's own sub-chunks

        def work(j0: int, i0=i0, i1=i1, d=d, step=step) -> None:
            j1 = min(i1 - i0, j0 + step)
            acc.add(i0 + j0, i0 + j1, d[j0:j1], qp, qc, gidx, backend)

        _run_parallel(work, list(range(0, i1 - i0, step)), num_threads)
        del d
    res = acc.result(max_rank, ap)
    res.distmat = full
    return res
