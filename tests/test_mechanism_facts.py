"""The precondition "mechanism formed" from measured masks and attentions, on constructed cases:
a SPAN whose masks beat every reference forms, one that loses to the trivial split does not, and
the claim that compares it reads "not tested here"."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import reidlib.ablations.span as span_mod
from reidlib.claims.verdicts import MECHANISM
from reidlib.data.records import Record
from reidlib.study import Variant

REFS = pd.DataFrame({"mean IoU": [40.0, 33.3, 55.0], "two-view mean IoU": [47.7, 30.0, 50.0]},
                    index=["labelled masks take the car", "foreground takes every mask", "view classifier's target"])


class _Study:
    seeds = [0]

    def span_model(self, seed, **overrides):
        return ("good" if not overrides else "bad"), {}


@pytest.fixture
def fake_masks(monkeypatch):
    recs = [Record(f"/x/{i}.jpg", i, 0, view=v) for i, v in enumerate([0, 3, 4, 3])]   # F, FS, RS, FS
    ious = {"good": np.full((4, 3), 0.8), "bad": np.full((4, 3), 0.3)}
    monkeypatch.setattr(span_mod, "mask_eval_records", lambda study, *a, **k: recs)
    monkeypatch.setattr(span_mod, "_span_mask_eval", lambda study, span, recs_, *a, **k: {"target": ious[span]})


def test_masks_that_beat_every_reference_formed(fake_masks):
    ok, reason, mine = span_mod.mask_formation(_Study(), "good", REFS)
    assert ok and reason == "" and mine["mean IoU"] == pytest.approx(80.0)


def test_masks_below_the_trivial_split_did_not_form(fake_masks):
    ok, reason, _ = span_mod.mask_formation(_Study(), "bad", REFS)
    assert not ok and "labelled masks take the car" in reason and "view classifier" in reason


def test_facts_per_row_and_the_claim_reads_not_tested_here(fake_masks):
    from reidlib.claims.verdicts import beats, evaluate_claims, reid_claim

    variants = {"baseline": Variant("baseline"), "good": Variant("span"),
                "bad": Variant("span", span={"span.use_area": False})}
    facts, table = span_mod.mask_mechanism_facts(_Study(), variants, REFS)
    assert set(facts[MECHANISM]) == {"good", "bad"} and facts[MECHANISM]["good"][0] and not facts[MECHANISM]["bad"][0]
    assert bool(table.loc["good", "formed"]) and not bool(table.loc["bad", "formed"])
    rng = np.random.default_rng(0)
    arrays = {"rows": np.array(["bad", "baseline"]), "seeds": np.array([0]), "units": np.array([f"q{i}" for i in range(30)])}
    for r in ("bad", "baseline"):
        ap = rng.uniform(0.2, 0.8, (1, 30)).astype(np.float32)
        arrays.update({f"{r}|ap": ap, f"{r}|inp": ap, f"{r}|first_rank": np.zeros((1, 30), np.int32)})
    v, _ = evaluate_claims([reid_claim("bad beats baseline", "mAP", beats("bad", "baseline"), preconditions=(MECHANISM,))],
                           arrays, facts=facts)
    assert (v["verdict"] == "not tested here").all()
