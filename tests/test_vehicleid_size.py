"""MUSP Table 6 on a VehicleID-sized test set: the ``small_vehicleid`` preset's VehicleID layout
holds VehicleID small's 800 test identities (the ``small`` preset's holds 33), and the cpu and gpu
profiles' VehicleID studies use it while the smoke profile stays tiny."""
from __future__ import annotations

import json
import time

import pytest

from reidlib.data.synth.config import PRESETS, preset_params
from reidlib.data.synth.disjoint import first_disjoint_seed, shared_vehicles
from reidlib.data.synth.layouts import tier_sizes
from reidlib.data.synth.plan import build_plan
from reidlib.data.vehicleid import TEST_SIZES
from reidlib.study import dataset_path
from reidlib.study.profiles import get_profile
from reidlib.study.study import synth_preset

PRESET = "small_vehicleid"
N = 800          # VehicleID small's test identities (Liu et al., CVPR 2016)


def test_the_preset_plans_vehicleid_small():
    plan = build_plan(preset_params(PRESET), seed=0)
    assert tier_sizes(len(plan.test_ids), tuple(TEST_SIZES))[800] >= N
    assert tier_sizes(PRESETS["small"]["n_test_ids"], tuple(TEST_SIZES))[800] < 50     # why the preset exists
    per_id = len(plan.images) / (PRESETS[PRESET]["n_train_ids"] + PRESETS[PRESET]["n_test_ids"])
    assert 6 <= per_id <= 12                                   # VehicleID: ~8 images per identity
    train = sum(im.split == "train" for im in plan.images)
    assert train < 6000                                        # the training side stays small


def test_profiles_use_it_for_the_vehicleid_layout_only():
    for name in ("cpu", "gpu"):
        prof = get_profile(name)
        assert synth_preset(prof, "vehicleid") == PRESET
        assert synth_preset(prof, "veri776") == prof.synth_preset != PRESET
        assert f"synthveri-{PRESET}-" in dataset_path(prof, 0, "/d", "vehicleid").name
        assert PRESET not in dataset_path(prof, 0, "/d", "veri776").name
    smoke = get_profile("smoke")
    assert synth_preset(smoke, "vehicleid") == "tiny"


def test_the_cpu_stand_in_shares_no_vehicle_with_it():
    prof = get_profile("cpu")
    seed = first_disjoint_seed(prof.synth_preset, [0], 1000)
    assert shared_vehicles(prof.synth_preset, seed, PRESET, 0) == {"identities": 0, "detail combinations": 0,
                                                                  "plates": 0}


@pytest.mark.slow
def test_generated_layout_has_800_test_ids(tmp_path):
    from reidlib.data import VehicleID
    from reidlib.data.synth import generate

    t = time.time()
    root = generate(tmp_path / "vid", preset=PRESET, image_size=32, seed=0, workers=2, layout="vehicleid",
                    progress=False)
    assert time.time() - t < 300
    man = json.loads((root / "manifest.json").read_text())
    assert man["counts"]["test_ids"] >= 2400 and man["test_sizes"]["800"]["ids"] >= N
    ds = VehicleID(root, test_size=800)
    assert len({r.pid for r in ds.gallery}) >= N and len({r.pid for r in ds.query}) >= N
