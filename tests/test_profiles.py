"""Every profile's path runs end to end on the CPU at the smallest size: its input size, backbones,
initialisation (the stand-in is pretrained, for 1 iteration), SPAN options and loaders, on
SynthVeRi ``tiny`` with 1-2 iterations per model. So the ``gpu`` and ``paper`` profiles are
known to work the day a GPU is lent, although only their schedules differ there."""
from __future__ import annotations

import math

import pytest

from reidlib.study.profiles import PROFILES, get_profile

#: make any profile tiny without touching what defines its path (sizes, backbones, options)
TINY = {"synth_preset": "tiny", "seeds": [0], "pretrain_iters": 1, "reid_iters": 1, "span_iters": 1,
        "batch_p": 2, "batch_k": 2, "span_batch": 2, "span_per_view": 2, "eval_batch": 16,
        "fg_source": "gt", "num_workers": 0, "val_ids": 4}


def test_every_profile_is_a_typed_record():
    for name, prof in PROFILES.items():
        assert prof.name == name and isinstance(prof.seeds, tuple)
        assert prof.init in ("standin", "random") and prof.input_size[0] == prof.image_size
    with pytest.raises(Exception):                     # frozen: a profile cannot be changed in place
        PROFILES["cpu"].lr = 1.0


def test_a_typo_in_a_profile_field_fails_at_once_naming_it():
    from reidlib.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown profile field\(s\) \['reid_iter'\]; valid fields: .*reid_iters"):
        get_profile("cpu", reid_iter=3)
    assert get_profile("cpu", seeds=[0, 1]).seeds == (0, 1)


def test_asking_for_a_config_makes_nothing(tmp_path):
    """Resolving a run configuration is pure: no SynthVeRi folder is generated, no stand-in trained."""
    from reidlib.study import Study

    study = Study("paper", "cpu", cache_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"))
    cfg = study.reid_config("musp", 0)
    assert cfg.model.name == "musp" and cfg.model.weights.endswith("backbone-resnet50.pth")
    assert study.span_config(0).model.weights.endswith("backbone-resnet34.pth")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_seeds_have_one_meaning_each(tmp_path):
    from reidlib.study import Study

    study = Study("smoke", "cpu", None, 3, cache_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"),
                  train_seeds=[5, 6], eval_seed=2)
    assert study.seeds == [5, 6] and study.root_path.name.endswith("seed3")
    assert study.reid_config("baseline", 6).train.seed == 6
    rec = study.seeds_record()
    assert rec["data_seed"] == 3 and rec["training_seeds"] == [5, 6] and rec["span_step1_seeds"] == [5, 6]
    assert rec["eval_seed"] == 2 and rec["pretrain_data_seed"] >= 1003
    with pytest.raises(ValueError, match="data_seed must be a non-negative integer"):
        Study("smoke", "cpu", None, -1)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_profile_path_end_to_end(profile, tmp_path):
    from reidlib.ablations.musp import musp_variant
    from reidlib.ablations.span import SPAN_LOSS_VARIANTS
    from reidlib.study import Study

    study = Study(profile, "cpu", data_seed=0, cache_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"),
                  overrides=TINY)
    prof = get_profile(profile)
    assert study.prof.input_size == prof.input_size and study.init == prof.init
    # every model family trains (1 iteration); the most involved one is also evaluated
    for variant in (SPAN_LOSS_VARIANTS["baseline"], musp_variant(num_attentions=3)):
        (model,) = study.variant_models(variant)
        assert not model.training
    results = study.run({"full": SPAN_LOSS_VARIANTS["full"]})
    table = results.table()
    assert not table[["R1", "mAP"]].isna().any().any() and 0 <= table.loc["full", "mAP"] <= 100
    # the stand-in was trained for each backbone of the profile and every model started from it
    w = study.backbone_weights(prof.reid_backbone)
    assert w and w.endswith(f"backbone-{prof.reid_backbone}.pth")
    span, info = study.span_model(0)
    assert span.config["stride"] == prof.span_options["stride"]
    assert span.config["decoder"] == prof.span_options["decoder"]
    h, w_ = prof.input_size
    feats = results.runs["full"][0]["query"]["feats"]
    assert feats.shape[1] == 4 and math.isfinite(float(feats.abs().sum()))
