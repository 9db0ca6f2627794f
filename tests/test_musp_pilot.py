"""MUSP's formation pilot: per-module learning rates (``optim.lr_mult``), the stretched schedule,
the pilot's rows and the sentences read from its table."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from reidlib.engine.optim import WarmupMultiStepLR, build_optimizer, parameter_groups
from reidlib.errors import ConfigError

from helpers import tiny_cfg


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.attn = nn.Linear(4, 2)
        self.attn_head = nn.Linear(2, 2)
        self.frozen = nn.Linear(2, 2).requires_grad_(False)


def _lr_of(groups, module) -> float:
    ids = {id(p) for p in module.parameters()}
    return next(g["lr"] for g in groups if ids & {id(p) for p in g["params"]})


def test_parameter_groups_scale_the_named_modules_only():
    net = _Net()
    groups = parameter_groups(net, 1e-3, {"attn": 10.0, "attn_head": 2.0})
    assert _lr_of(groups, net.backbone) == pytest.approx(1e-3)
    assert _lr_of(groups, net.attn) == pytest.approx(1e-2)
    assert _lr_of(groups, net.attn_head) == pytest.approx(2e-3)        # the longest prefix wins
    trained = {id(p) for g in groups for p in g["params"]}
    assert trained == {id(p) for p in net.parameters() if p.requires_grad}   # frozen ones left out, none twice
    assert sum(len(g["params"]) for g in groups) == len(trained)


def test_the_schedule_scales_every_group_alike():
    net = _Net()
    opt = build_optimizer("adam", parameter_groups(net, 1e-3, {"attn": 10.0}), lr=1e-3)
    sched = WarmupMultiStepLR(opt, [4], gamma=0.1, warmup_iters=2, warmup_factor=0.1)
    for _ in range(5):
        opt.step()
        sched.step()
        lrs = [g["lr"] for g in opt.param_groups]
        assert max(lrs) / min(lrs) == pytest.approx(10.0)
    assert min(lrs) == pytest.approx(1e-4)                             # after the decay at 4


def test_an_unknown_prefix_is_refused_with_the_modules_named():
    with pytest.raises(ConfigError, match=r"optim.lr_mult: no trainable parameter .* 'atn'.*attn, attn_head, backbone"):
        parameter_groups(_Net(), 1e-3, {"atn": 10.0})
    with pytest.raises(ConfigError, match="'frozen'"):                 # frozen parameters are not trained
        parameter_groups(_Net(), 1e-3, {"frozen": 10.0})


@pytest.mark.parametrize("bad", [{"attn": 0}, {"attn": -1.0}, {"attn": "x"}, {"attn": True}])
def test_bad_multipliers_are_refused_when_the_config_is_built(bad):
    from reidlib.config import load_config

    with pytest.raises(ConfigError, match="optim.lr_mult"):
        load_config(model="musp", **{"optim.lr_mult": bad})


def test_a_run_trains_its_attention_at_the_multiplied_rate(tiny_veri, tmp_path):
    from reidlib.engine.training import train_reid

    cfg = tiny_cfg(tiny_veri, tmp_path / "run", "musp", **{"optim.lr_mult": {"attn": 10.0}, "optim.max_iters": 2,
                                                           "optim.warmup_iters": 0, "optim.milestones": []})
    res = train_reid(cfg)
    state = torch.load(res.last_checkpoint, map_location="cpu", weights_only=False)
    lrs = sorted(g["lr"] for g in state["optimizer"]["param_groups"])
    assert len(lrs) == 2 and lrs[1] / lrs[0] == pytest.approx(10.0) and lrs[0] == pytest.approx(cfg.optim.lr)


def test_the_default_keeps_the_cache_keys_of_runs_made_before_it(tiny_veri, tmp_path):
    from reidlib.study import Study

    study = Study("smoke", "cpu", data_root=str(tiny_veri), cache_dir=str(tmp_path / "runs"), init="random")
    cfg = study.reid_config("musp", 0)
    assert cfg.optim.lr_mult == {}
    plain = study.run_dir("reid", cfg)
    cfg_dict = cfg.to_dict()
    cfg_dict["optim"].pop("lr_mult")                                   # a config from before the field existed
    from reidlib.config import Config

    old = Config.from_dict(cfg_dict)
    assert study.run_dir("reid", old) == plain
    assert study.run_dir("reid", study.reid_config("musp", 0, **{"optim.lr_mult": {"attn": 10.0}})) != plain


def test_stretched_schedule_in_iterations_and_in_epochs():
    from reidlib.ablations.musp import stretched_schedule
    from reidlib.config import load_config

    cfg = load_config(model="musp", **{"optim.unit": "iter", "optim.max_iters": 250, "optim.milestones": [150, 212],
                                       "optim.warmup_iters": 25, "train.checkpoint_every": 63})
    assert stretched_schedule(cfg, 2) == {"optim.max_iters": 500, "optim.milestones": [300, 424],
                                          "optim.warmup_iters": 50, "train.checkpoint_every": 126}
    ep = load_config(model="musp")                                     # MUSP's own recipe: 90 epochs
    out = stretched_schedule(ep, 2)
    assert ep.optim.unit == "epoch" and out["optim.max_iters"] == 180 and out["optim.milestones"] == [60, 120]
    with pytest.raises(ValueError, match="factor"):
        stretched_schedule(cfg, 0)


def test_the_pilot_rows_change_one_factor_each(tiny_veri, tmp_path):
    from reidlib.ablations.musp import MUSP_PILOT, MUSP_PILOT_SETTINGS, musp_pilot_variants, musp_variant
    from reidlib.study import Study

    study = Study("smoke", "cpu", data_root=str(tiny_veri), cache_dir=str(tmp_path / "runs"), init="random")
    variants = musp_pilot_variants(study)
    assert tuple(variants) == MUSP_PILOT.rows == tuple(MUSP_PILOT_SETTINGS)
    assert all(v.seeds == 1 and v.model == "musp" for v in variants.values())
    seed = study.seeds[0]
    cfgs = {k: study.reid_config("musp", seed, **v.config) for k, v in variants.items()}
    # the profile's row is Table 5's n = 5 first seed: one run, one cache entry
    table5 = study.reid_config("musp", seed, **musp_variant(num_attentions=5).config)
    assert study.run_dir("reid", cfgs["profile's"]) == study.run_dir("reid", table5)
    base = cfgs["profile's"]
    assert cfgs["diversity x10"].model.kwargs["div_weight"] == 10.0 and base.model.kwargs.get("div_weight", 1.0) == 1.0
    assert cfgs["attention lr x10"].optim.lr_mult == {"attn": 10.0}
    long = cfgs["schedule x2"]
    assert long.optim.max_iters == 2 * base.optim.max_iters
    assert long.optim.warmup_iters == 2 * base.optim.warmup_iters
    assert long.optim.milestones == [2 * m for m in base.optim.milestones]
    # the validation curve still has the profile's number of points over the longer run
    assert long.train.checkpoint_every == 2 * base.train.checkpoint_every
    for k, c in cfgs.items():                                          # nothing else changes
        assert c.model.kwargs["num_attentions"] == 5 and c.data == base.data and c.loss == base.loss, k


def _pilot_table(gaps: dict) -> pd.DataFrame:
    rows = {name: {"best soft IoU": 30 + g, "prior soft IoU": 30.0, "gap": g, "formed": g >= 5,
                   "variation of kept maps": 0.1, "final val mAP": 50.0, "last-quarter change": 0.5,
                   "test mAP": 40 + g, "training minutes": 2.0} for name, g in gaps.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def test_the_reading_follows_the_numbers():
    from reidlib.ablations.musp import musp_pilot_reading

    none = musp_pilot_reading(_pilot_table({"profile's": 1.0, "diversity x10": 2.0}))
    assert len(none) == 3 and "gap +1.0" in none[0] and "formed at 5: no" in none[0]
    assert "+1.0 gap and +1.0 mAP against profile's" in none[1]
    assert "No setting tried made the attentions form" in none[-1]
    one = musp_pilot_reading(_pilot_table({"profile's": 1.0, "schedule x2": 6.0}))
    assert "formed at 5: yes" in one[1] and one[-1].startswith("Formed only under schedule x2")
    assert "not tested here" in one[-1]
    ok = musp_pilot_reading(_pilot_table({"profile's": 7.0}))
    assert ok[-1].startswith("The attentions form with the profile's setting")
