"""The view-relation split of the evaluation (claims and intervals: ``test_claims.py``)."""
from __future__ import annotations

import numpy as np
import pytest

from reidlib.data.views import view_relation
from reidlib.metrics.rank import evaluate_rank
from reidlib.metrics.views import evaluate_by_view_relation


def _reference_by_relation(dist, qp, gp, qc, gc, qo, go, rel):
    """Per query: keep only gallery items in relation `rel`, then the plain protocol."""
    aps, r1 = [], []
    for i in range(len(qp)):
        keep = np.array([view_relation(qo[i], g) == rel for g in go])
        if not keep.any():
            continue
        res = evaluate_rank(dist[i:i + 1, keep], qp[i:i + 1], gp[keep], qc[i:i + 1], gc[keep], max_rank=5)
        if res.num_valid_queries:
            aps.append(res.mAP)
            r1.append(res.cmc[0])
    return 100 * np.mean(aps), 100 * np.mean(r1), len(aps)


def test_view_relation_split_matches_per_query_reference():
    rng = np.random.default_rng(0)
    nq, ng = 40, 120
    qp, gp = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
    qc, gc = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    qo, go = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
    dist = rng.random((nq, ng))
    df = evaluate_by_view_relation(dist, qp, gp, qc, gc, qo, go)
    assert list(df.index) == ["all", "same", "adjacent", "opposite"]
    full = evaluate_rank(dist, qp, gp, qc, gc)
    assert df.loc["all", "mAP"] == pytest.approx(full.mAP * 100)
    assert df.loc["all", "R1"] == pytest.approx(full.cmc[0] * 100)
    for rel in ("same", "adjacent", "opposite"):
        mAP, r1, n = _reference_by_relation(dist, qp, gp, qc, gc, qo, go, rel)
        assert df.loc[rel, "mAP"] == pytest.approx(mAP)
        assert df.loc[rel, "R1"] == pytest.approx(r1)
        assert df.loc[rel, "valid_queries"] == n


def test_unknown_orientation_is_left_out():
    dist = np.array([[0.1, 0.2], [0.3, 0.4]])
    df = evaluate_by_view_relation(dist, [1, 2], [1, 2], [0, 0], [1, 1], [0, None], [0, -1])
    assert df.loc["same", "valid_queries"] == 1  # query 1 has no orientation; gallery 1 neither
    assert df.loc["same", "R1"] == 100.0
