"""Result tables: the view-relation split, bootstrap intervals, paper comparisons and claims."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reidlib.ablations import claims_verdict, compare_with_paper, summary_table
from reidlib.data.views import view_relation
from reidlib.metrics.rank import evaluate_rank
from reidlib.metrics.views import bootstrap_ci, evaluate_by_view_relation


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


def test_bootstrap_ci_brackets_the_mean():
    v = np.random.default_rng(1).random(500)
    lo, hi = bootstrap_ci(v, seed=0)
    assert lo < v.mean() < hi
    assert hi - lo < 0.1
    assert np.isnan(bootstrap_ci([np.nan])[0])


def _ours(rows):
    return pd.DataFrame.from_dict(rows, orient="index")


def test_claims_and_comparison_tables():
    ours = _ours({"baseline": {"R1": 50.0, "mAP": 30.0}, "span_fc": {"R1": 51.0, "mAP": 31.0},
                  "span_cat": {"R1": 52.0, "mAP": 29.0}, "span_cpdm": {"R1": 55.0, "mAP": 35.0}})
    verdict = claims_verdict("span_aggregation", ours).set_index("claim")["holds on our data"]
    assert verdict["concatenated part features beat an FC aggregation (mAP)"] == "no"
    assert verdict["CPDM beats Euclidean distance on the same concatenated features (mAP)"] == "yes"
    cmp = compare_with_paper("span_aggregation", ours)
    assert cmp.loc["span_cpdm", "paper mAP"] == 68.9 and cmp.loc["span_cpdm", "ours mAP"] == 35.0


def test_summary_reads_results_files(tmp_path):
    exp = tmp_path / "cpu" / "musp_activation"
    exp.mkdir(parents=True)
    _ours({"softmax": {"R1": 60.0, "mAP": 40.0}, "sigmoid": {"R1": 61.0, "mAP": 41.0}}).to_csv(exp / "table.csv")
    side, verdicts = summary_table("cpu", results_root=tmp_path)
    row = verdicts[verdicts["claim"].str.startswith("softmax")].iloc[0]
    assert row["holds"] == "no"
    assert (verdicts["claim"] == "(not run for this profile)").sum() == 4
    assert set(side["row"]) == {"softmax", "sigmoid"}


def test_summary_mask_claims_from_results_files(tmp_path):
    """span_hyperparams / multidigit tables (no paper numbers) give verdicts on the mask claims."""
    hp = tmp_path / "cpu" / "span_hyperparams"
    hp.mkdir(parents=True)
    pd.DataFrame({"parameter": ["a", "a", "a", "m", "m"], "value": [0.5, 0.7, 0.9, 0.0, 0.04],
                  "front": 0.0, "rear": 0.0, "side": 0.0,
                  "mean IoU": [20.0, 19.0, 18.0, 15.0, 19.0]}).to_csv(hp / "table.csv", index=False)
    _, verdicts = summary_table("cpu", results_root=tmp_path)
    got = dict(zip(verdicts["claim"], verdicts["holds"]))
    a_claim = next(c for c in got if c.startswith("a = 0.7"))
    m_claim = next(c for c in got if c.startswith("m = 0.04"))
    d_claim = next(c for c in got if c.startswith("SPAN localises"))
    assert (got[a_claim], got[m_claim], got[d_claim]) == ("no", "yes", "not measured")
    md = tmp_path / "cpu" / "multidigit"
    md.mkdir()
    pd.DataFrame({"paper weights": {"digit 0": 60.0, "digit 1": 55.0, "digit 2": 52.0, "mean": 55.7},
                  "recon x10, larger digits": {"digit 0": 1.0, "digit 1": 0.0, "digit 2": 0.0, "mean": 0.3}}
                 ).to_csv(md / "table.csv")
    _, verdicts = summary_table("cpu", results_root=tmp_path)
    got = dict(zip(verdicts["claim"], verdicts["holds"]))
    assert got[d_claim] == "yes" and got[next(c for c in got if "with our adjustment" in c)] == "no"
