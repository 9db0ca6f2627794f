"""The summary page's hub: one wide table per paper table (rows in the paper's order, the paper's
value, ours with its interval, the differences from the reference row side by side) and one
verdict line per distinct comparison with its "why ours may differ" clause, on constructed results
folders (never a real run's numbers)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reidlib.ablations import experiment
from reidlib.ablations.experiment import Page
from reidlib.ablations.summary import (BUDGETS, DEPARTURES, SUMMARY, show_wide, summarise, why_ours_may_differ,
                                       wide_table)
from reidlib.claims import per_query
from reidlib.claims.stats import paired_bootstrap
from reidlib.study.profiles import PROFILES

ROOT = Path(__file__).resolve().parent.parent
RESAMPLES = 200
PAGES = ("span_losses", "span_aggregation", "musp_attentions", "musp_ese")


def _arrays(shifts: dict, n: int = 120, seeds: int = 1, seed: int = 0) -> dict:
    """Per-query arrays in :mod:`reidlib.claims.per_query`'s format: row -> AP shift (and rank-1
    hits following the AP), queries of ``n // 4`` identities."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.7, (seeds, n))
    out = {"rows": np.array([str(r) for r in shifts], dtype=str), "seeds": np.arange(seeds, dtype=np.int64),
           "units": np.array([f"q{i}.jpg" for i in range(n)], dtype=str),
           "groups": np.arange(n, dtype=np.int64) // 4, "group_kind": np.array(per_query.IDENTITY)}
    for row, shift in shifts.items():
        ap = np.clip(base + shift + rng.normal(0, 0.02, base.shape), 0, 1).astype(np.float32)
        out[f"{row}|ap"] = ap
        out[f"{row}|inp"] = ap / 2
        out[f"{row}|first_rank"] = np.where(ap > 0.45, 0, 2).astype(np.int32)
    return out


def _write_page(folder: Path, name: str, arrays: dict, per_query_file: bool = True) -> pd.DataFrame:
    page = folder / name
    page.mkdir(parents=True)
    if per_query_file:
        per_query.save(page / "per_query.npz", arrays)
    table = pd.DataFrame({m: per_query.means(arrays, m) for m in ("mAP", "R1")})
    for m in ("mAP", "R1"):
        table[f"{m}_low"], table[f"{m}_high"] = table[m] - 1.5, table[m] + 2.5
    table["seeds"] = len(arrays["seeds"])
    table.to_csv(page / "table.csv")
    return table


@pytest.fixture
def results(tmp_path):
    """A ``cpu`` results folder: SPAN Tables 1 and 2 sharing the full-vs-baseline comparison (the
    same per-query values), MUSP Table 5 (written in the record's row order, not the paper's) and
    Table 6 without its per-query file."""
    folder = tmp_path / "cpu"
    span = {"baseline": 0.0, "only_recon": -0.01, "wo_area": 0.0, "wo_div": 0.01, "full": 0.05}
    _write_page(folder, "span_losses", _arrays(span))
    agg = _arrays({"baseline": 0.0, "span_fc": 0.0, "span_cat": 0.02, "span_cpdm": 0.05,
                   "span_cpdm_model_euclidean": 0.01})
    losses = per_query.load(folder / "span_losses" / "per_query.npz")
    for f in ("ap", "inp", "first_rank"):            # the same models as Table 1's baseline and full
        agg[f"baseline|{f}"], agg[f"span_cpdm|{f}"] = losses[f"baseline|{f}"], losses[f"full|{f}"]
    _write_page(folder, "span_aggregation", agg)
    _write_page(folder, "musp_attentions",
                _arrays({"baseline": 0.0, 2: 0.01, 3: 0.0, 4: 0.02, 5: 0.03, 6: 0.02}, seeds=2))
    _write_page(folder, "musp_ese", _arrays({"with_ese": 0.02, "without_ese": 0.0}), per_query_file=False)
    return folder


@pytest.fixture
def summary(results):
    return summarise(results, [experiment(p) for p in PAGES], resamples=RESAMPLES)


# ---------------------------------------------------------------------------------------------
# the wide tables
# ---------------------------------------------------------------------------------------------

def test_a_wide_table_keeps_the_papers_row_order_with_values_intervals_and_differences(results):
    exp = experiment("musp_attentions")
    table = wide_table(results, exp, resamples=RESAMPLES)
    ours = pd.read_csv(results / exp.name / "table.csv", index_col=0)
    arrays = per_query.load(results / exp.name / "per_query.npz")
    assert table["row"].tolist() == [str(r) for r in exp.rows]            # the record's order, baseline first
    ref = table.attrs["reference"]
    assert ref == str(next(r for r in exp.rows if r in exp.paper_numbers))
    t = table.set_index("row")
    for m in ("mAP", "R1"):
        for row in exp.rows:
            r = str(row)
            assert t.loc[r, f"ours {m}"] == pytest.approx(ours.loc[r, m])
            assert (t.loc[r, f"ours {m} low"], t.loc[r, f"ours {m} high"]) == pytest.approx(
                (ours.loc[r, f"{m}_low"], ours.loc[r, f"{m}_high"]))
            paper = exp.paper_numbers.get(row, {}).get(m)
            if paper is None:
                assert np.isnan(t.loc[r, f"paper {m}"]) and np.isnan(t.loc[r, f"paper Δ{m}"])
            else:
                assert t.loc[r, f"paper {m}"] == paper
            if r == ref:
                assert np.isnan(t.loc[r, f"ours Δ{m}"]) and np.isnan(t.loc[r, f"paper Δ{m}"])
                continue
            assert t.loc[r, f"ours Δ{m}"] == pytest.approx(ours.loc[r, m] - ours.loc[ref, m])
            iv = paired_bootstrap(per_query.values(arrays, r, m), per_query.values(arrays, ref, m),
                                  groups=arrays["groups"], unit=per_query.IDENTITY, resamples=RESAMPLES)
            assert (t.loc[r, f"ours Δ{m} low"], t.loc[r, f"ours Δ{m} high"]) == pytest.approx((iv.low, iv.high))
            assert t.loc[r, f"ours Δ{m} low"] <= t.loc[r, f"ours Δ{m}"] + 1e-9 <= t.loc[r, f"ours Δ{m} high"] + 2e-9
            if paper is not None:
                assert t.loc[r, f"paper Δ{m}"] == pytest.approx(paper - exp.paper_numbers[int(ref)][m])


def test_a_wide_table_has_the_metrics_the_paper_reports_and_no_interval_without_per_query_results(results):
    exp = experiment("musp_ese")
    table = wide_table(results, exp, resamples=RESAMPLES)
    assert table.attrs["metrics"] == ("R1",) and not [c for c in table.columns if "mAP" in c]
    t = table.set_index("row")
    other = [str(r) for r in exp.rows if str(r) != table.attrs["reference"]]
    assert np.isfinite(t.loc[other, "ours ΔR1"]).all() and np.isnan(t.loc[other, "ours ΔR1 low"]).all()
    assert wide_table(results, experiment("span_hyperparams")) is None       # no published numbers


def test_the_shown_wide_table_has_no_index_and_says_whose_data_is_whose(summary):
    styled = summary.show_wide("musp_attentions")
    html = styled.to_html()
    assert "SynthVeRi" in html and "real data" in html and "cpu profile" in html
    assert 'class="row_heading' not in html                                  # the index is hidden
    shown = styled.data
    assert shown[("", "row")].tolist() == [str(r) for r in experiment("musp_attentions").rows]
    ref = summary.wide["musp_attentions"].attrs["reference"]
    assert shown.loc[shown[("", "row")] == ref, ("mAP", f"Δ from {ref}: ours [95%]")].item() == "reference"
    assert [t for t, _ in summary.wide_tables()] == [experiment(p).title for p in PAGES]
    plain = show_wide(summary.wide["musp_ese"]).data
    assert {c[0] for c in plain.columns} == {"", "R1"}
    assert plain[("R1", "ours: 95% interval")].str.match(r"^\[\d+\.\d, \d+\.\d\]$").all()


# ---------------------------------------------------------------------------------------------
# the verdict lines
# ---------------------------------------------------------------------------------------------

def test_one_verdict_line_per_distinct_comparison_each_with_why(summary):
    v = summary.verdicts[summary.verdicts["stated"].astype(bool)]
    distinct = v[v["distinct"].fillna(True).astype(bool)]
    lines = [line for line in summary.verdict_lines().splitlines() if line.startswith("- ")]
    whys = [line for line in summary.verdict_lines().splitlines() if line.startswith("  - ")]
    assert len(lines) == len(distinct) == len(summary.comparisons) == len(whys) < len(v)
    assert len(lines) == len(set(lines))
    for (_, row), line, why in zip(distinct.iterrows(), lines, whys):
        assert row["claim"] in line and f"**{row['reading']}**" in line
        assert why.startswith("  - *Why ours may differ:* ")
    shared = v[~v["distinct"].fillna(True).astype(bool)]              # SPAN Table 2's w/ CPDM vs baseline
    assert len(shared) == 1
    named = f"{shared['experiment'].iloc[0]}: {shared['claim'].iloc[0]}"
    assert [line for line in lines if shared["claim"].iloc[0] in line] == [
        line for line in lines if f"The same comparison: {named}." in line]
    first = summary.comparisons[summary.comparisons["also"] != ""]
    assert first["claim"].tolist() == [experiment("span_losses").claims[0].text]


def test_the_why_clause_is_built_from_the_frame(summary):
    c = summary.comparisons.set_index("claim")
    v = summary.distinct().set_index("claim")
    ese = experiment("musp_ese").claims[0].text
    assert c.loc[ese, "why"] == v.loc[ese, "note"] and "not measured" in c.loc[ese, "reading"]
    for claim, row in c.drop(index=ese).iterrows():
        if "not measured" in str(row["reading"]):          # a claim on rows the fixture does not hold
            continue
        seeds = int(v.loc[claim, "seeds"].iloc[0] if isinstance(v.loc[claim, "seeds"], pd.Series)
                    else v.loc[claim, "seeds"])
        assert ("one training seed" in row["why"]) == (seeds == 1)
        assert (f"{seeds} training seeds" in row["why"]) == (seeds > 1)
        assert "preconditions" in row["why"] and "not checked" in row["why"]
        assert f"{PROFILES['cpu'].reid_iters:,} iterations" in row["why"]      # the cpu profile's budget
        assert f"{PROFILES['paper'].reid_iters:,} iterations" in row["why"]
        assert "departures: data, initialisation" in row["why"]
        assert "resampled one by one" not in row["why"]                      # identities were saved
        d = v.loc[claim]
        d = d.iloc[0] if isinstance(d, pd.DataFrame) else d
        if np.isfinite(d["paper difference"]):
            assert f"{d['paper difference']:+.1f}" in row["why"] and f"{d['detectable']:.1f} points" in row["why"]
    five = experiment("musp_attentions").claims[0].text
    assert "2 training seeds" in c.loc[five, "why"]


def test_why_reads_each_fact_it_is_given():
    row = {"claim": "x beats y", "metric": "mAP", "verdict": "inconclusive", "seeds": 3,
           "preconditions": "failed: models converged; checked: models separable", "detectable": 2.0,
           "paper difference": 1.0, "unit": "query", "clusters": 50}
    why = why_ours_may_differ(row, "musp_ese", "gpu")
    assert "3 training seeds" in why and "failed (models converged), checked (models separable)" in why
    assert "detect differences of 2.0 points" in why and "+1.0 is below that" in why
    assert "50 queries resampled one by one" in why
    gpu = PROFILES["gpu"]
    assert f"{gpu.input_size[0]} × {gpu.input_size[1]} px for {gpu.reid_iters:,} iterations" in why
    assert "SPAN step 1" not in why and why.endswith("ESE")
    assert "budget" not in why_ours_may_differ(row, "musp_ese", None)        # no profile: no budget
    assert "the paper gives no difference" in why_ours_may_differ({**row, "paper difference": float("nan")})
    assert "within reach" in why_ours_may_differ({**row, "paper difference": 3.0})


def test_the_profile_comes_from_each_pages_record(tmp_path, results):
    run = tmp_path / "myrun"
    results.rename(run)
    (run / "musp_attentions.json").write_text(json.dumps({"name": "musp_attentions", "profile": "smoke",
                                                          "profile_settings": PROFILES["smoke"].to_dict()}))
    s = summarise(run, [experiment("musp_attentions"), experiment("span_losses")], resamples=RESAMPLES)
    assert s.profiles == {"musp_attentions": "smoke", "span_losses": None}
    c = s.comparisons.set_index("experiment")["why"]
    smoke = PROFILES["smoke"]
    assert all(f"the smoke profile's budget: re-ID {smoke.reid_backbone.replace('resnet', 'ResNet-')} at "
               f"{smoke.input_size[0]} × {smoke.input_size[1]} px" in w
               for w in c.loc[experiment("musp_attentions").title])
    assert "budget" not in c.loc[experiment("span_losses").title].iloc[0]
    assert "smoke profile" in s.show_wide("musp_attentions").to_html()


def test_departures_and_budgets_name_what_exists():
    text = (ROOT / "book" / "departures.md").read_text()
    rows = {m.strip() for m in re.findall(r"^\| ([^|]+?) \|", text, flags=re.M)}
    for key, names in DEPARTURES.items():
        page = key if isinstance(key, str) else key[0]
        exp = experiment(page)
        if not isinstance(key, str):
            assert key[1] in {c.text for c in exp.claims}, key
        assert set(names) <= rows, sorted(set(names) - rows)
    for page, kinds in BUDGETS.items():
        assert experiment(page).claims and set(kinds) <= {"reid", "span"}


def test_the_page_records_the_wide_tables(tmp_path, summary):
    args = summary.record_args()
    assert {f"wide_{p}" for p in summary.wide} <= set(args["tables"]) and "comparisons" in args["tables"]
    page = Page(SUMMARY)
    page.record(tmp_path, **args)
    back = pd.read_csv(tmp_path / "wide_musp_attentions.csv", index_col=0)
    assert [str(r) for r in back.index] == [str(r) for r in experiment("musp_attentions").rows]
    assert "paper ΔmAP" in back.columns
    assert page.check(tmp_path)
