"""Re-ID metrics split by the viewpoint relation of query and gallery (same, adjacent, opposite).

For a relation r, each query is ranked against only the gallery images whose 8-way orientation
stands in relation r to the query's (``reidlib.data.views.view_relation``); queries with no true
match left in that subset are skipped (and counted). Queries and gallery images with unknown
orientation are left out. Queries are grouped by orientation, so each (orientation, relation)
pair is one call of :func:`reidlib.metrics.rank.evaluate_rank` on a sub-matrix.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from reidlib.data.views import VIEW_RELATIONS, view_relation
from reidlib.metrics.rank import evaluate_rank


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def evaluate_by_view_relation(distmat, q_pids, g_pids, q_camids, g_camids, q_orient, g_orient,
                              *, ap: str = "mean_precision") -> pd.DataFrame:
    """Rows ``all``, ``same``, ``adjacent``, ``opposite``; columns R1, R5, mAP, mINP (percent), and
    ``valid_queries`` / ``skipped_queries``. ``q_orient`` / ``g_orient``: 8-way codes, -1 or None = unknown."""
    dist = _np(distmat).astype(np.float64, copy=False)
    q_pids, g_pids, q_cams, g_cams = (_np(a) for a in (q_pids, g_pids, q_camids, g_camids))
    qo = np.array([-1 if o is None else int(o) for o in _np(q_orient).tolist()])
    go = np.array([-1 if o is None else int(o) for o in _np(g_orient).tolist()])

    rows = {}
    full = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5, ap=ap)
    rows["all"] = _row(full.query_ap, full.query_inp, full.query_first_rank, full.num_skipped_queries)
    for rel in VIEW_RELATIONS:
        aps, inps, firsts, skipped = [], [], [], 0
        for o in np.unique(qo[qo >= 0]):
            qi = np.flatnonzero(qo == o)
            gi = np.flatnonzero([(g >= 0) and view_relation(o, g) == rel for g in go])
            if len(gi) == 0:
                skipped += len(qi)
                continue
            with warnings.catch_warnings():  # a group without any true match is normal here
                warnings.simplefilter("ignore", RuntimeWarning)
                res = evaluate_rank(dist[np.ix_(qi, gi)], q_pids[qi], g_pids[gi], q_cams[qi], g_cams[gi],
                                    max_rank=5, ap=ap)
            aps.append(res.query_ap)
            inps.append(res.query_inp)
            firsts.append(res.query_first_rank)
            skipped += res.num_skipped_queries
        cat = (lambda xs: np.concatenate(xs) if xs else np.array([]))
        rows[rel] = _row(cat(aps), cat(inps), cat(firsts), skipped)
    return pd.DataFrame.from_dict(rows, orient="index")


def _row(query_ap, query_inp, first_rank, skipped) -> dict:
    ap = np.asarray(query_ap, dtype=float)
    valid = ~np.isnan(ap)
    fr = np.asarray(first_rank)[valid]
    n = int(valid.sum())
    pct = (lambda v: float(v) * 100.0 if n else float("nan"))
    # query_first_rank is 0-based (0 = the first true match is ranked first)
    return {"R1": pct(np.mean(fr == 0)) if n else float("nan"),
            "R5": pct(np.mean((fr >= 0) & (fr < 5))) if n else float("nan"),
            "mAP": pct(np.nanmean(ap)) if n else float("nan"),
            "mINP": pct(np.nanmean(np.asarray(query_inp, dtype=float)[valid])) if n else float("nan"),
            "valid_queries": n, "skipped_queries": int(skipped)}
