"""Evidence: paired bootstrap intervals, three-valued verdicts, claims checked on per-query files,
and the invariants each book page asserts. Constructed cases only — never a verdict of a real run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reidlib.claims import per_query
from reidlib.claims.checks import check_table, check_verdicts
from reidlib.ablations import CLAIMS, EXPERIMENTS, experiment
from reidlib.claims.verdicts import compare_with_paper, evaluate_claims, summary_table
from reidlib.claims.stats import (Interval, bootstrap_interval, combine_verdicts, contrast, paired_bootstrap,
                           verdict)


# ---------------------------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------------------------

def test_constant_difference_has_a_zero_width_interval():
    rng = np.random.default_rng(0)
    b = rng.random(200)
    iv = paired_bootstrap(b + 0.25, b)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((0.25, 0.25, 0.25))
    assert (iv.resamples, iv.seed, iv.seeds, iv.units) == (2000, 0, 1, 200)


def test_two_units_give_the_exact_bootstrap_quantiles():
    # differences {0, 2}: resampled means are 0, 1, 2 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles of 2,000 draws are exactly 0 and 2
    iv = paired_bootstrap(np.array([0.0, 2.0]), np.zeros(2))
    assert (iv.estimate, iv.low, iv.high) == (1.0, 0.0, 2.0)


def test_undefined_units_are_left_out_of_both():
    a = np.array([1.0, np.nan, 3.0, 5.0])
    b = np.array([0.0, np.nan, 2.0, 4.0])
    assert paired_bootstrap(a, b).estimate == pytest.approx(1.0)
    assert bootstrap_interval(a).estimate == pytest.approx(3.0)


def test_the_interval_is_of_the_difference_not_of_each_model():
    """Paired: two noisy models that differ by a constant on every query have a narrow interval
    for the difference although each one's own interval is wide."""
    rng = np.random.default_rng(1)
    b = rng.random(300) * 100
    a = b + 1.0
    own = bootstrap_interval(a)
    diff = paired_bootstrap(a, b)
    assert own.high - own.low > 5 and diff.high - diff.low < 1e-9 and verdict(diff) == "holds"


def test_training_seeds_are_resampled_first():
    """Two seeds whose differences disagree widen the interval beyond the query noise of either."""
    rng = np.random.default_rng(2)
    b = rng.random((2, 400))
    a = b + np.array([[2.0], [-1.0]])                      # seed 0: +2, seed 1: -1
    iv = paired_bootstrap(a, b)
    assert iv.seeds == 2 and iv.estimate == pytest.approx(0.5)
    assert iv.low == pytest.approx(-1.0) and iv.high == pytest.approx(2.0)   # all-seed-0 / all-seed-1 draws
    one = paired_bootstrap(a[:1], b[:1])
    assert one.high - one.low < 1e-9


def test_seed_of_the_bootstrap_is_reproducible():
    rng = np.random.default_rng(3)
    a, b = rng.random(100), rng.random(100)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    assert paired_bootstrap(a, b, seed=5) != paired_bootstrap(a, b, seed=6)


def test_contrast_of_several_rows():
    rows = {2: np.array([1.0, 2.0]), 3: np.array([3.0, 4.0]), 5: np.array([10.0, 10.0])}
    c = contrast(rows, {5: 1.0, 2: -0.5, 3: -0.5})
    assert c.tolist() == [[8.0, 7.0]]


# ---------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------

def _iv(lo, hi):
    return Interval((lo + hi) / 2, lo, hi)


def test_three_valued_verdicts_and_their_conjunction():
    assert verdict(_iv(0.1, 2.0)) == "holds"
    assert verdict(_iv(-2.0, -0.1)) == "contradicted"
    assert verdict(_iv(-0.5, 0.5)) == "inconclusive"
    assert verdict(_iv(49.0, 52.0), threshold=50.0) == "inconclusive"
    assert verdict(_iv(float("nan"), float("nan"))) == "inconclusive"
    assert combine_verdicts(["holds", "holds"]) == "holds"
    assert combine_verdicts(["holds", "inconclusive"]) == "inconclusive"
    assert combine_verdicts(["holds", "contradicted", "inconclusive"]) == "contradicted"


def _aggregation_arrays(gap: float, n: int = 300, seed: int = 0) -> dict:
    """Per-query results of SPAN Table 2's rows where CPDM beats Cat by ``gap`` AP on every query."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.7, n)
    first = rng.integers(0, 5, n)
    evals = {}
    for row, shift, rank_shift in (("baseline", 0.0, 0), ("span_fc", 0.0, 0), ("span_cat", 0.0, 0),
                                   ("span_cpdm", gap, -1 if gap > 0 else (1 if gap < 0 else 0))):
        rr = type("RR", (), {})()
        rr.query_ap = np.clip(base + shift, 0, 1)
        rr.query_inp = rr.query_ap / 2
        rr.query_first_rank = np.clip(first + rank_shift, 0, None)
        evals[row] = [{"rank_result": rr, "query": {"paths": [f"q{i}.jpg" for i in range(n)]}}]
    return per_query.from_evaluations(evals, [0])


@pytest.mark.parametrize("gap,expected", [(0.05, "holds"), (-0.05, "contradicted"), (0.0, "inconclusive")])
def test_constructed_cases_give_the_expected_verdict(gap, expected):
    exp = experiment("span_aggregation")
    verdicts, comparisons = evaluate_claims(exp.claims, _aggregation_arrays(gap), paper=exp.paper_numbers)
    row = verdicts[(verdicts["claim"].str.startswith("w/ CPDM beats w/ Cat")) & (verdicts["metric"] == "mAP")].iloc[0]
    assert row["verdict"] == expected and bool(row["stated"])
    assert row["difference"] == pytest.approx(100 * gap, abs=1e-5)   # AP stored as float32
    assert row["paper difference"] == pytest.approx(68.9 - 63.1)
    # identical rows: zero difference, inconclusive
    same = verdicts[verdicts["claim"].str.startswith("concatenated")]
    assert set(same["verdict"]) == {"inconclusive"} and set(same["difference"]) == {0.0}
    assert set(verdicts["metric"]) == {"mAP", "R1"} and len(comparisons) == 2 * 3
    check_verdicts(verdicts, exp.claims, "constructed")


def test_a_claim_over_several_rows_is_a_conjunction():
    n = 200
    rng = np.random.default_rng(4)
    base = rng.uniform(0.2, 0.6, n)
    evals = {}
    for row, shift in ((2, 0.0), (3, 0.0), (4, 0.1), (5, 0.2), (6, 0.25)):       # 6, not 5, is best
        rr = type("RR", (), {})()
        rr.query_ap = base + shift
        rr.query_inp = rr.query_ap
        rr.query_first_rank = np.zeros(n, int)
        evals[row] = [{"rank_result": rr, "query": {"paths": [f"q{i}" for i in range(n)]}}]
    arrays = per_query.from_evaluations(evals, [0])
    v, comps = evaluate_claims(experiment("musp_attentions").claims, arrays)
    best = v[(v["claim"] == "n = 5 attentions gives the best mAP") & (v["metric"] == "mAP")].iloc[0]
    assert best["verdict"] == "contradicted" and best["difference"] == pytest.approx(-5.0)  # the weakest: 5 - 6
    more = v[v["claim"].str.startswith("four or more") & (v["metric"] == "mAP")].iloc[0]
    assert more["verdict"] == "holds" and more["difference"] == pytest.approx(100 * (0.55 / 3))


def test_missing_rows_are_not_measured():
    arrays = _aggregation_arrays(0.05)
    arrays = {k: v for k, v in arrays.items() if not k.startswith("span_fc|")}
    arrays["rows"] = np.array(["baseline", "span_cat", "span_cpdm"])
    v, _ = evaluate_claims(experiment("span_aggregation").claims, arrays)
    assert set(v[v["claim"].str.startswith("concatenated")]["verdict"]) == {"not measured"}


def test_mask_claims_use_the_mean_iou_of_images():
    n = 50
    ious = {"a=0.5": np.full((n, 3), 0.30), "a=0.7": np.full((n, 3), 0.40), "a=0.9": np.full((n, 3), 0.20),
            "m=0": np.full((n, 3), 0.40), "m=0.04": np.full((n, 3), 0.40)}
    ious["a=0.7"][:, 2] = np.nan                           # side never defined: mean over front, rear
    arrays = per_query.from_mask_ious({k: [v] for k, v in ious.items()}, [f"i{i}" for i in range(n)], [0])
    v, _ = evaluate_claims(experiment("span_hyperparams").claims, arrays)
    a = v[v["claim"].str.startswith("a = 0.7")].iloc[0]
    m = v[v["claim"].str.startswith("m = 0.04")].iloc[0]
    assert a["verdict"] == "holds" and a["difference"] == pytest.approx(10.0)
    assert m["verdict"] == "inconclusive" and m["difference"] == pytest.approx(0.0)


def test_threshold_claims():
    n = 40
    arrays = per_query.from_mask_ious({"paper weights": [np.full((n, 3), 0.2)],
                                       "recon x10, larger digits": [np.full((n, 3), 0.8)]},
                                      [f"t{i}" for i in range(n)], [0])
    v, _ = evaluate_claims(experiment("multidigit").claims, arrays)
    assert v["verdict"].tolist() == ["contradicted", "holds"]
    assert v["difference"].tolist() == pytest.approx([-30.0, 30.0])


# ---------------------------------------------------------------------------------------------
# per-query files and the summary
# ---------------------------------------------------------------------------------------------

def test_per_query_files_round_trip(tmp_path):
    arrays = _aggregation_arrays(0.05)
    per_query.save(tmp_path / "per_query.npz", arrays)
    back = per_query.load(tmp_path / "per_query.npz")
    assert set(back) == set(arrays)
    assert all(np.array_equal(back[k], arrays[k], equal_nan=back[k].dtype.kind == "f") for k in arrays)
    assert per_query.row_names(back) == ["baseline", "span_fc", "span_cat", "span_cpdm"]
    r1 = per_query.values(back, "span_cpdm", "R1")
    assert set(np.unique(r1)) <= {0.0, 100.0}


def test_summary_recomputes_verdicts_from_the_committed_files(tmp_path):
    exp = tmp_path / "span_aggregation"
    exp.mkdir()
    per_query.save(exp / "per_query.npz", _aggregation_arrays(0.05))
    pd.DataFrame({"R1": [50.0, 51.0, 52.0, 55.0], "mAP": [30.0, 31.0, 29.0, 35.0]},
                 index=["baseline", "span_fc", "span_cat", "span_cpdm"]).to_csv(exp / "table.csv")
    verdicts, side = summary_table(tmp_path, EXPERIMENTS)
    page = verdicts[verdicts["experiment"] == "SPAN Table 2: global and part features"]
    mine = page[page["source"] == "paper"]
    # the same-features claim compares a row the file does not hold (the CPDM model ranked by Euclidean)
    same = mine["claim"].str.startswith("CPDM beats Euclidean")
    assert set(mine[~same]["verdict"]) <= {"holds", "inconclusive"} and len(mine) == 8
    assert set(mine[same]["verdict"]) == {"not measured"}
    assert set(page[page["source"] == "ours"]["verdict"]) == {"not measured"}   # its other rows are not in the file
    others = verdicts[verdicts["experiment"] != "SPAN Table 2: global and part features"]
    assert set(others["verdict"]) == {"not measured"}
    assert len(verdicts[verdicts["stated"].astype(bool)]) == len(CLAIMS)
    assert set(side["row"]) == {"baseline", "span_fc", "span_cat", "span_cpdm"}


def test_comparison_with_the_paper():
    ours = pd.DataFrame({"R1": [50.0, 55.0], "mAP": [30.0, 35.0]}, index=["baseline", "span_cpdm"])
    cmp = compare_with_paper(experiment("span_aggregation").paper_numbers, ours)
    assert cmp.loc["span_cpdm", "paper mAP"] == 68.9 and cmp.loc["span_cpdm", "ours mAP"] == 35.0


# ---------------------------------------------------------------------------------------------
# the checks notebooks run on their own results
# ---------------------------------------------------------------------------------------------

def _table(**over):
    t = pd.DataFrame({"R1": [20.0, 30.0], "R5": [40.0, 50.0], "mAP": [15.0, 25.0], "mINP": [5.0, 8.0],
                      "mAP_low": [12.0, 22.0], "mAP_high": [18.0, 28.0]}, index=["a", "b"])
    for k, v in over.items():
        t[k] = v
    return t


def test_page_checks_catch_wrong_tables():
    check_table(_table(), ["a", "b"], "ok")
    with pytest.raises(AssertionError, match="rows"):
        check_table(_table(), ["a", "b", "c"], "p")
    with pytest.raises(AssertionError, match="R1 > R5"):
        check_table(_table(R1=[45.0, 30.0]), ["a", "b"], "p")
    with pytest.raises(AssertionError, match=r"outside \[0, 100\]"):
        check_table(_table(mAP=[15.0, 125.0], mAP_high=[18.0, 130.0]), ["a", "b"], "p")
    with pytest.raises(AssertionError, match="outside its own 95% interval"):
        check_table(_table(mAP=[19.0, 25.0]), ["a", "b"], "p")
    with pytest.raises(AssertionError, match="undefined"):
        check_table(_table(R1=[np.nan, np.nan]), ["a", "b"], "p")


def test_page_checks_catch_inconsistent_verdicts():
    claim = experiment("musp_ese").claims
    good = pd.DataFrame([{"claim": claim[0].text, "metric": "R1", "verdict": "holds", "low": 0.5, "high": 2.0}])
    check_verdicts(good, claim, "ok")
    with pytest.raises(AssertionError, match="'holds' with an interval"):
        check_verdicts(good.assign(low=-0.5), claim, "p")
    with pytest.raises(AssertionError, match="not in"):
        check_verdicts(good.assign(verdict="yes"), claim, "p")
