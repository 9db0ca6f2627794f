"""The stand-in for ImageNet: its data share no vehicle with the evaluation data, the check would
see a shared one, and the backbone it writes is a torchvision state dict every model starts from."""
from __future__ import annotations

import torch

from reidlib.data.synth.config import preset_params
from reidlib.data.synth.disjoint import detail_signature, first_disjoint_seed, identity_signature, shared_vehicles
from reidlib.data.synth.plan import build_plan
from reidlib.study.profiles import PROFILES


def test_every_profiles_pretraining_data_share_no_vehicle_with_its_evaluation_data():
    for name, prof in PROFILES.items():
        if prof.synth_preset == "veri":          # the same plan code; checked on the smaller presets
            continue
        seed = first_disjoint_seed(prof.synth_preset, [0], 1000)
        assert shared_vehicles(prof.synth_preset, seed, prof.synth_preset, 0) == {
            "identities": 0, "detail combinations": 0, "plates": 0}, name


def test_the_check_sees_a_shared_vehicle():
    plan = build_plan(preset_params("tiny"), seed=0)
    idents = list(plan.identities.values())
    assert shared_vehicles("tiny", 0, "tiny", 0)["identities"] == len(idents)
    a, b = dict(idents[0]), dict(idents[0])
    b["vid"], b["family"] = 999, 99                   # the same vehicle under another id
    assert identity_signature(a) == identity_signature(b)
    b["scale_l"] = a["scale_l"] + 0.01                # a slightly longer body: another identity ...
    assert identity_signature(a) != identity_signature(b)
    assert detail_signature(a) == detail_signature(b)  # ... with the same details
    b["colour"] = "other"
    assert detail_signature(a) != detail_signature(b)


def test_the_standin_backbone_is_a_torchvision_state_dict(tmp_path):
    from reidlib.models.backbones import build_resnet
    from reidlib.study import Study

    tiny = {"synth_preset": "tiny", "pretrain_iters": 1, "batch_p": 2, "batch_k": 2, "num_workers": 0}
    study = Study("smoke", "cpu", cache_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"),
                  overrides=tiny)
    assert study.init == "standin" and study.pretrain_seed != study.data_seed
    path, info = study.pretrained_backbone("resnet18")
    state = torch.load(path, weights_only=True)
    assert "conv1.weight" in state and "layer4.1.bn2.running_var" in state
    net = build_resnet("resnet18", weights=path)
    assert torch.equal(net.conv1.weight, state["conv1.weight"])
    # the pretraining data: every image of the other seed's folder, none of the evaluation folder's
    pre = {r.path.split("/")[-1] for r in study.pretraining_dataset().train}
    assert study.pretraining_dataset().root != study.root and len(pre) > len(study.data.train)
    # every model of the study starts from it
    assert study.reid_config("baseline", 0).model.weights == str(path)
    assert study.span_config(0).model.weights == str(path)
