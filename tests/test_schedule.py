"""Would a longer schedule change the verdicts? The page's short rows are each model's own first-seed
run, its long rows change the schedule only (stretched alike), and its table and sentences read the
per-query results and the validation curves as constructed."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_standin_gain import _arrays, _keys, _Results


@pytest.fixture(scope="module")
def study(tiny_veri, tmp_path_factory):
    from reidlib.study import Study

    return Study("smoke", "cpu", data_root=str(tiny_veri), cache_dir=str(tmp_path_factory.mktemp("runs")),
                 init="standin")


def test_short_rows_are_each_models_own_first_seed_run(study):
    from reidlib.ablations.musp import MUSP_ATTENTION_VARIANTS
    from reidlib.ablations.schedule import SCHEDULE, SCHEDULE_MODELS, SCHEDULES, row_name, schedule_variants
    from reidlib.ablations.span import SPAN_LOSS_VARIANTS

    variants = schedule_variants(study)
    assert list(variants) == list(SCHEDULE.rows) == [row_name(m, s) for m in SCHEDULE_MODELS for s in SCHEDULES]
    assert all(v.seeds == 1 for v in variants.values())
    own = {"baseline": SPAN_LOSS_VARIANTS["baseline"], "SPAN + CPDM": SPAN_LOSS_VARIANTS["full"],
           "SPAN on true masks": SPAN_LOSS_VARIANTS["true_masks"], "MUSP (n = 5)": MUSP_ATTENTION_VARIANTS[5]}
    seed = study.seeds[0]
    for model, v in own.items():
        assert _keys(study, variants[row_name(model, SCHEDULES[0])], seed) == _keys(study, v, seed), model


def test_long_rows_stretch_the_schedule_and_change_nothing_else(study):
    from reidlib.ablations.schedule import SCHEDULE_FACTOR, SCHEDULE_MODELS, SCHEDULES, row_name, schedule_variants

    variants = schedule_variants(study, factor=SCHEDULE_FACTOR)
    seed = study.seeds[0]
    for model in SCHEDULE_MODELS:
        short, long_ = variants[row_name(model, SCHEDULES[0])], variants[row_name(model, SCHEDULES[1])]
        a = study.reid_config(short.model, seed, **short.config).to_dict()
        b = study.reid_config(long_.model, seed, **long_.config).to_dict()
        assert b["optim"]["max_iters"] == round(a["optim"]["max_iters"] * SCHEDULE_FACTOR), model
        assert b["optim"]["milestones"] == [round(m * SCHEDULE_FACTOR) for m in a["optim"]["milestones"]], model
        assert b["optim"]["warmup_iters"] == round(a["optim"]["warmup_iters"] * SCHEDULE_FACTOR), model
        for key in ("max_iters", "milestones", "warmup_iters"):
            a["optim"][key] = b["optim"][key]
        a["train"]["checkpoint_every"] = b["train"]["checkpoint_every"]   # the validation points span the run
        a["train"]["out_dir"] = b["train"]["out_dir"] = None
        assert a == b, model
        assert long_.span == short.span, model                            # SPAN step 1 (its masks) unchanged
    # the long SPAN rows are built on the short rows' SPAN step 1: the same cache entry
    for model in ("SPAN + CPDM", "SPAN on true masks"):
        s0 = _keys(study, variants[row_name(model, SCHEDULES[0])], seed)[0]
        s1 = _keys(study, variants[row_name(model, SCHEDULES[1])], seed)[0]
        assert s0 == s1 and s0 is not None


def _plateau(changes: dict) -> pd.DataFrame:
    from reidlib.claims.plateau import PLATEAU_TOLERANCE

    return pd.DataFrame({"last-quarter change": changes,
                         "converged": {k: v < PLATEAU_TOLERANCE for k, v in changes.items()}})


def test_the_table_and_reading_follow_the_numbers():
    from reidlib.ablations.schedule import (SCHEDULE_MODELS, SCHEDULES, row_name, schedule_display,
                                            schedule_reading, schedule_table)

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, 120)
    # (short, long) offsets from the baseline's short level: the baseline gains 10 points; SPAN is
    # 5 below it at the short schedule and 5 above at the long one; true masks level at both; MUSP
    # 8 below at both
    offsets = {"baseline": (0.0, 0.10), "SPAN + CPDM": (-0.05, 0.15), "SPAN on true masks": (0.0, 0.10),
               "MUSP (n = 5)": (-0.08, 0.02)}
    ap = {}
    for model, (short, long_) in offsets.items():
        ap[row_name(model, SCHEDULES[0])] = base + short + rng.normal(0, 0.005, 120)
        ap[row_name(model, SCHEDULES[1])] = base + long_ + rng.normal(0, 0.005, 120)
    changes = {row_name(m, s): (3.0 if s == SCHEDULES[0] else 0.4) for m in SCHEDULE_MODELS for s in SCHEDULES}
    table = schedule_table(_Results(_arrays(ap)), _plateau(changes))
    assert list(table.index) == list(SCHEDULE_MODELS)
    assert table.loc["baseline", "gain"] == pytest.approx(10, abs=0.5)
    assert table.loc["SPAN + CPDM", "vs baseline, profile's schedule"] == pytest.approx(-5, abs=0.5)
    assert table.loc["SPAN + CPDM", f"vs baseline, {SCHEDULES[1]}"] == pytest.approx(5, abs=0.5)
    assert table.loc["baseline", f"converged, {SCHEDULES[1]}"] and not table.loc["baseline", f"converged, {SCHEDULES[0]}"]
    said = schedule_reading(table)
    assert len(said) == 7
    assert said[0].startswith("baseline: ") and "converged" in said[0]
    spn = next(s for s in said if s.startswith("SPAN + CPDM against"))
    assert "changes with the schedule: below the baseline" in spn and "above it" in spn
    assert "same reading at both schedules" in next(s for s in said if s.startswith("SPAN on true masks against"))
    assert "same reading at both schedules" in next(s for s in said if s.startswith("MUSP (n = 5) against"))
    shown = schedule_display(table)
    assert list(shown["model"]) == list(SCHEDULE_MODELS) and shown.loc[0, "vs baseline, profile's schedule"] == ""


def test_the_page_is_in_the_book_before_the_summary():
    from reidlib.ablations import EXPERIMENTS

    names = [e.name for e in EXPERIMENTS]
    assert names.index("schedule") < names.index("summary")
    assert all(c.source == "ours" for c in EXPERIMENTS[names.index("schedule")].claims)


def test_the_first_screen_sentence_counts_plateaus_and_gives_each_claims_verdict_and_why():
    from reidlib.ablations.schedule import SCHEDULES, row_name, schedule_outcome

    converged = {row_name("baseline", SCHEDULES[0]): [False, "still improving"], row_name("baseline", SCHEDULES[1]): [True, ""],
                 row_name("MUSP (n = 5)", SCHEDULES[0]): [True, ""], row_name("MUSP (n = 5)", SCHEDULES[1]): [True, ""]}
    claims = [{"claim": "trained 4x longer, A beats B", "metric": "mAP", "stated": True, "verdict": "not tested here",
               "difference": 2.46, "low": 0.68, "high": 4.12, "detectable": 2.5,
               "preconditions": "failed: mechanism formed; checked: models converged"},
              {"claim": "trained 4x longer, A beats B", "metric": "R1", "stated": False, "verdict": "contradicted",
               "difference": -3.0, "low": -5.0, "high": -1.0, "detectable": 5.0, "preconditions": ""},
              {"claim": "trained 4x longer, C beats B", "metric": "mAP", "stated": True, "verdict": "inconclusive",
               "difference": 0.08, "low": -1.5, "high": 1.66, "detectable": 2.26,
               "preconditions": "checked: models converged, mechanism formed"}]
    text = schedule_outcome({"metrics": {"facts": {"converged": converged}, "claims": claims}})
    assert "1 of 2 at the profile's schedule, 2 of 2 at the schedule x4." in text
    assert "- Trained 4x longer, A beats B: **not tested here** (+2.5 [+0.7, +4.1] mAP; failed precondition: mechanism formed)." in text
    assert "- Trained 4x longer, C beats B: **inconclusive** (+0.1 [-1.5, +1.7] mAP; the smallest difference these runs would detect: 2.3)." in text
    assert "R1" not in text                                   # only each claim's stated metric
    assert "<generated/schedule>" in text
