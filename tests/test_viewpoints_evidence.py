"""The viewpoints page's evidence: per-query results per view relation, differences from the
baseline with cluster-bootstrap intervals in relation order, and the sentence written from them."""
from __future__ import annotations

import re

import numpy as np
import pytest

from reidlib.ablations import viewpoints as vp
from reidlib.claims.per_query import IDENTITY
from reidlib.data.views import VIEW_RELATIONS, view_relation
from reidlib.metrics.views import evaluate_by_view_relation


def _arrays(ap: dict, first: dict, groups) -> dict:
    """per_query arrays from ``{(model, relation): values}`` (one seed)."""
    out = {f"{m}={r}|ap": np.asarray(v, np.float32)[None] for (m, r), v in ap.items()}
    out.update({f"{m}={r}|first_rank": np.asarray(v, np.int32)[None] for (m, r), v in first.items()})
    rows = list(dict.fromkeys(f"{m}={r}" for m, r in ap))
    out.update(rows=np.array(rows), units=np.array([f"q{i}" for i in range(len(groups))]), seeds=np.array([0]),
               groups=np.asarray(groups), group_kind=np.array(IDENTITY))
    return out


@pytest.fixture(scope="module")
def constructed():
    rng = np.random.default_rng(0)
    n = 60
    groups = np.repeat(np.arange(20), 3)
    gain = {"same": 0.0, "adjacent": 0.1, "opposite": 0.3}     # the model's AP gain per relation
    ap, first = {}, {}
    # rows in a scrambled relation order: the output must still be same, adjacent, opposite
    for rel in ("opposite", "same", "adjacent"):
        base = rng.uniform(0.2, 0.6, n)
        ap[("baseline", rel)] = base
        ap[("model", rel)] = np.clip(base + gain[rel] + rng.normal(0, 0.02, n), 0, 1)
        first[("baseline", rel)] = rng.integers(0, 3, n)
        first[("model", rel)] = np.zeros(n, int)
    ap[("model", "same")][:5] = np.nan                          # no true match in that relation
    ap[("baseline", "same")][:5] = np.nan
    first[("model", "same")][:5] = -1
    first[("baseline", "same")][:5] = -1
    arrays = _arrays(ap, first, groups)
    return arrays, vp.relation_differences(arrays, resamples=400)


def test_order_and_intervals(constructed):
    arrays, d = constructed
    assert list(dict.fromkeys(d["relation"])) == list(VIEW_RELATIONS) == ["same", "adjacent", "opposite"]
    assert set(d["model"]) == {"model"} and set(d["metric"]) == {"mAP", "R1"}
    assert (d["low"] <= d["difference"]).all() and (d["difference"] <= d["high"]).all()
    m = d[d["metric"] == "mAP"].set_index("relation")
    assert m.loc["opposite", "difference"] == pytest.approx(30, abs=2)
    assert m.loc["opposite", "low"] > 0 and m.loc["same", "low"] < 0 < m.loc["same", "high"]
    # clusters: the identities with a query in the relation (the first identity's 3 queries have no same-view match)
    assert m.loc["same", "queries"] == 55 and (d["unit"] == IDENTITY).all()
    assert (d[d["relation"] == "same"]["clusters"] == 19).all() and (d[d["relation"] != "same"]["clusters"] == 20).all()
    assert m.loc["adjacent", "difference"] == pytest.approx(m.loc["adjacent", "value"] - m.loc["adjacent", "baseline"])


def test_sentence_from_the_numbers(constructed):
    _, d = constructed
    s = vp.relation_sentence(d, "model", "mAP")
    m = d[d["metric"] == "mAP"]
    nums = [f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]" for r in m.itertuples()]
    for rel, num in zip(m["relation"], nums):
        assert f"{num} on {rel}-view pairs" in s
    assert s.index("same-view") < s.index("adjacent-view") < s.index("opposite-view")
    assert "largest on opposite-view pairs" in s and "above zero on adjacent, opposite" in s
    assert s.startswith("model's mAP difference from the baseline")
    # other numbers, another sentence
    d2 = d.copy()
    d2.loc[:, ["difference", "low", "high"]] = -d2[["difference", "high", "low"]].to_numpy()
    s2 = vp.relation_sentence(d2, "model", "mAP")
    assert s2 != s and "below zero on adjacent, opposite" in s2
    assert vp.relation_sentences(d, "R1") == [vp.relation_sentence(d, "model", "R1")]


def _fake_evaluation(seed: int):
    """A tiny test set: 6 identities, each seen from 3 orientations by 2 cameras."""
    rng = np.random.default_rng(seed)
    q_pids, q_cams, q_or = np.arange(6), np.zeros(6, int), np.array([0, 1, 2, 3, 4, 5])
    g_pids = np.repeat(np.arange(6), 3)
    g_cams = np.ones(18, int)
    g_or = np.tile([0, 3, 1], 6)
    dist = rng.uniform(0, 1, (6, 18))
    return dist, q_pids, g_pids, q_cams, g_cams, q_or, g_or


def test_per_query_gives_the_relation_means():
    args = _fake_evaluation(1)
    per = vp.relation_per_query(*args)
    means = evaluate_by_view_relation(*args)
    for rel in VIEW_RELATIONS:
        ap, fr = per[rel]["ap"], per[rel]["first_rank"]
        assert len(ap) == 6 and ((fr >= 0) == ~np.isnan(ap)).all()
        if means.loc[rel, "valid_queries"]:
            assert np.nanmean(ap) * 100 == pytest.approx(means.loc[rel, "mAP"])
            assert np.mean(fr[fr >= 0] == 0) * 100 == pytest.approx(means.loc[rel, "R1"])
        assert int((~np.isnan(ap)).sum()) == means.loc[rel, "valid_queries"]


def test_same_view_share():
    dist, q_pids, g_pids, q_cams, g_cams, q_or, g_or = _fake_evaluation(0)
    share = vp.same_view_share(q_pids, g_pids, q_cams, g_cams, q_or, g_or)
    expect = [np.mean([view_relation(q, g) == "same" for g in (0, 3, 1)]) for q in q_or]
    assert share == pytest.approx(expect)
    # query 2 (left) shares SPAN's side view class with nothing; query 5 (right) neither
    view5 = vp.same_view_share(q_pids, g_pids, q_cams, g_cams, q_or, g_or, by="view5")
    assert view5[3] == pytest.approx(1 / 3) and view5[5] == 0
    # a true match from the query's own camera is not one
    assert np.isnan(vp.same_view_share(q_pids, g_pids, q_cams, np.zeros(18, int), q_or, g_or)).all()


def test_page_record_has_the_cat_row_and_the_figure():
    assert vp.VIEWPOINT_MODELS["SPAN w/ Cat"].distance == "euclidean"
    assert "SPAN w/ Cat=opposite" in vp.VIEWPOINTS.rows
    assert vp.VIEWPOINTS.figure_text("differences").caption
    assert re.match(r"^[\w ]", vp.VIEWPOINTS.figure_text("differences").alt)
