"""The fair race's machinery: a validation split carved from the training identities, the
plateau check read as the precondition "converged", rows trained with fewer seeds compared on the
seeds both rows have."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reidlib.claims import per_query
from reidlib.claims.plateau import convergence_facts, last_quarter_change, plateau_table
from reidlib.claims.verdicts import CONVERGED, beats, evaluate_claims, reid_claim
from reidlib.data.records import Record
from reidlib.data.validation import validation_ids, validation_split
from reidlib.study import Variant


def _records(n_ids=10, cams=3, per_cam=2):
    return [Record(f"/x/{p:04d}_c{c:03d}_{i}.jpg", p, c) for p in range(1, n_ids + 1) for c in range(cams)
            for i in range(per_cam)]


def test_validation_split_holds_identities_out_and_lays_them_out_as_a_test_set():
    recs = _records()
    split = validation_split(recs, 3)
    assert len(split.ids) == 3 and not {r.pid for r in split.train} & set(split.ids)
    assert {r.pid for r in split.gallery} == set(split.ids) and len(split.train) + len(split.gallery) == len(recs)
    # one query per (identity, camera); every query has a true match in another camera
    assert sorted((r.pid, r.camid) for r in split.query) == sorted({(r.pid, r.camid) for r in split.gallery})
    assert validation_ids(recs, 3) == validation_ids(list(reversed(recs)), 3)     # a fixed draw, order-free
    with pytest.raises(ValueError, match="data.val_ids=9"):
        validation_split(recs, 9)


def test_single_camera_identities_give_no_query():
    recs = [Record(f"/x/{p}_{i}.jpg", p, 0 if p == 1 else i % 2) for p in range(1, 9) for i in range(4)]
    split = validation_split(recs, 6)
    assert all(r.pid != 1 for r in split.query)
    assert {r.pid for r in split.query} == set(split.ids) - {1}


def test_train_reid_never_trains_on_the_held_out_identities(tiny_veri, tmp_path):
    from reidlib.engine.training import train_reid

    res = train_reid(None, **{"model.backbone": "resnet18", "data.root": str(tiny_veri), "data.height": 32,
                              "data.width": 32, "data.p": 2, "data.k": 2, "optim.max_iters": 2,
                              "data.val_ids": 1, "train.out_dir": str(tmp_path / "r"), "train.progress": False,
                              "train.device": "cpu"})
    assert res.meta["num_classes"] == 3 and res.meta["dataset"]["validation_ids"] == 1   # 4 ids, 1 held out


def _curve(vals, its=(100, 200, 300, 400)):
    return pd.DataFrame({"iteration": its, "val mAP": vals})


def test_last_quarter_change_and_plateau_facts():
    assert last_quarter_change(_curve([10, 20, 30, 40])) == pytest.approx(10.0)
    assert last_quarter_change(_curve([10, 20, 30, 30.5])) == pytest.approx(0.5)
    table = plateau_table({"a": [_curve([10, 20, 30, 30.5]), _curve([10, 20, 30, 30.0])],
                           "b": [_curve([10, 20, 30, 40])], "c": [None]})
    assert table.loc["a", "converged"] and not table.loc["b", "converged"] and table.loc["c", "converged"] is None
    assert table.loc["a", "seeds"] == 2 and table.loc["a", "last-quarter change"] == pytest.approx(0.25)
    facts = convergence_facts(table)[CONVERGED]
    assert facts["a"] == (True, "") and not facts["b"][0] and "still improving" in facts["b"][1] and "c" not in facts


def _arrays(rows: dict, n_units=60, seed=0):
    """Per-query arrays of rows with given per-seed mean APs (a row's list: one value per seed)."""
    rng = np.random.default_rng(seed)
    out = {"rows": np.array(list(rows)), "seeds": np.arange(max(len(v) for v in rows.values())),
           "units": np.array([f"q{i}" for i in range(n_units)]), "groups": np.arange(n_units) // 3,
           "group_kind": np.array("vehicle identity")}
    for r, means in rows.items():
        ap = np.clip(np.array([m + 0.05 * rng.standard_normal(n_units) for m in means]), 0, 1).astype(np.float32)
        out[f"{r}|ap"] = ap
        out[f"{r}|inp"] = ap
        out[f"{r}|first_rank"] = np.zeros_like(ap, dtype=np.int32)
    return out


def test_a_comparison_with_a_one_seed_row_uses_the_first_seed_and_says_in_this_run():
    arrays = _arrays({"A": [0.6, 0.6, 0.6], "B": [0.4]})
    a, b = per_query.common_seeds(per_query.values(arrays, "A", "mAP"), per_query.values(arrays, "B", "mAP"))
    assert a.shape == b.shape == (1, 60)
    verdicts, _ = evaluate_claims([reid_claim("A beats B", "mAP", beats("A", "B"), preconditions=())], arrays)
    row = verdicts[verdicts["metric"] == "mAP"].iloc[0]
    assert row["seeds"] == 1 and row["verdict"] == "holds" and "in this run" in row["reading"]
    three = _arrays({"A": [0.6, 0.6, 0.6], "B": [0.4, 0.4, 0.4]})
    row3 = evaluate_claims([reid_claim("A beats B", "mAP", beats("A", "B"), preconditions=())], three)[0].iloc[0]
    assert row3["seeds"] == 3 and "in this run" not in row3["reading"]


def test_a_row_still_improving_makes_its_claim_not_tested_here():
    arrays = _arrays({"A": [0.6], "B": [0.4]})
    facts = convergence_facts(plateau_table({"A": [_curve([10, 20, 30, 40])], "B": [_curve([10, 20, 30, 30])]}))
    verdicts, _ = evaluate_claims([reid_claim("A beats B", "mAP", beats("A", "B"), preconditions=(CONVERGED,))],
                                  arrays, facts=facts)
    row = verdicts[verdicts["metric"] == "mAP"].iloc[0]
    assert row["verdict"] == "not tested here" and "still improving" in row["reading"] + str(row.get("why", ""))


def test_variant_seeds():
    assert Variant("baseline").seeds is None and Variant("baseline", seeds=1).describe()["seeds"] == "1"
    with pytest.raises(ValueError, match="Variant.seeds"):
        Variant("baseline", seeds=0)
