"""The generic stand-in for ImageNet pretraining: attribute labels of SynthVeRi images
(``reidlib.data.attributes``), the attribute network and its loss (``reidlib.models.attributes``),
its training task (``reidlib.engine.attributes``: model.pt, exact resume, a trunk every model
loads) and the near-duplicate check between the pretraining and the evaluation worlds
(``reidlib.data.synth.disjoint.nearest_distances``)."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_cfg
from reidlib.data.attributes import ATTRIBUTES, attribute_labels
from reidlib.errors import ConfigError, DataFormatError
from reidlib.models.attributes import AttributeNet, attribute_loss

SIZE = 64
#: the tiny training run of the brief: resnet18, 64 px, batches of 8, 6 iterations
RUN = {"data.height": SIZE, "data.width": SIZE, "data.batch_size": 8, "optim.max_iters": 6,
       "optim.milestones": [4], "optim.warmup_iters": 1, "train.checkpoint_every": 2}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A real SynthVeRi folder (preset tiny, 64 px, VeRi-776 layout): images and identities.json."""
    from reidlib.data.synth import generate

    return Path(generate(tmp_path_factory.mktemp("synth") / "tiny", preset="tiny", image_size=SIZE, seed=0,
                         workers=1, progress=False))


def _records(root: Path) -> list:
    from reidlib.data.registry import load_dataset

    ds = load_dataset("veri776", root)
    return list(ds.train) + list(ds.query)


# ------------------------------------------------------------------------------------------------
# labels
# ------------------------------------------------------------------------------------------------

def test_labels_are_the_identities_attributes(synth):
    recs = _records(synth)
    labels = attribute_labels(recs, synth)
    assert labels.dtype == np.int64 and labels.shape == (len(recs), len(ATTRIBUTES))
    idents = json.loads((synth / "identities.json").read_text())
    names = list(ATTRIBUTES)
    for r, row in zip(recs, labels):
        vid = int(Path(r.path).name.split("_")[0])          # VeRi names start with the vehicle id
        ident = idents[str(vid)]
        for j, name in enumerate(names):
            classes = ATTRIBUTES[name]
            assert 0 <= row[j] < len(classes), (name, row[j])
            if name == "view":
                assert row[j] == r.view                      # SPAN's view class of the image
            else:
                assert classes[row[j]] == str(ident[name])   # the identity's, e.g. "suv", "red", "3"
    # every attribute takes more than one value over the folder (something to learn)
    assert all(len(set(labels[:, j])) > 1 for j in range(len(names)))


def test_unknown_view_is_minus_one_and_names_select_columns(synth):
    recs = _records(synth)[:3]
    blind = [dataclasses.replace(r, view=None) for r in recs]
    full = attribute_labels(recs, synth)
    got = attribute_labels(blind, synth)
    v = list(ATTRIBUTES).index("view")
    assert (got[:, v] == -1).all() and (full[:, v] >= 0).all()
    assert np.array_equal(np.delete(got, v, axis=1), np.delete(full, v, axis=1))
    sub = attribute_labels(recs, synth, names=["view", "colour"])
    assert np.array_equal(sub, full[:, [v, list(ATTRIBUTES).index("colour")]])


def test_a_folder_without_identities_json_is_refused_in_one_line(synth, tmp_path):
    with pytest.raises(DataFormatError) as err:
        attribute_labels(_records(synth)[:2], tmp_path)        # e.g. a real VeRi-776 folder
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "identities.json") in msg and "stand-in" in msg


def test_a_record_of_another_folder_is_refused(synth):
    stranger = dataclasses.replace(_records(synth)[0], pid=9999)
    with pytest.raises(DataFormatError, match="no identity 9999"):
        attribute_labels([stranger], synth)


# ------------------------------------------------------------------------------------------------
# the network and its loss
# ------------------------------------------------------------------------------------------------

def test_forward_shapes():
    torch.manual_seed(0)
    net = AttributeNet(backbone="resnet18")
    x = torch.randn(3, 3, SIZE, SIZE)
    logits = net(x)
    assert logits.shape == (3, sum(len(c) for c in ATTRIBUTES.values())) == (3, net.num_logits)
    parts = net.split(logits)
    assert list(parts) == list(ATTRIBUTES) and all(parts[n].shape == (3, len(c)) for n, c in ATTRIBUTES.items())
    assert net(x[:1]).shape == (1, net.num_logits)
    sub = AttributeNet(heads=["colour", "view"], backbone="resnet18", last_stride=2)
    assert sub.heads == {"colour": 10, "view": 5} and sub(x).shape == (3, 15)
    with pytest.raises(ValueError, match="unknown attribute"):
        AttributeNet(heads=["wheels"], backbone="resnet18")


def test_loss_is_the_mean_cross_entropy_over_attributes_ignoring_unknowns():
    heads = {"a": 3, "b": 4, "c": 2}
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 9, generator=g, requires_grad=True)
    labels = torch.tensor([[0, 3, -1], [2, -1, -1], [1, 0, -1], [-1, 2, -1], [0, 1, -1]])  # c: none known
    loss, logs = attribute_loss(logits, labels, heads)
    la, lb = logits[:, :3], logits[:, 3:7]
    ref = (F.cross_entropy(la[[0, 1, 2, 4]], labels[[0, 1, 2, 4], 0])
           + F.cross_entropy(lb[[0, 2, 3, 4]], labels[[0, 2, 3, 4], 1])) / 2     # c has no label: left out
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert logits.grad[3, :3].abs().sum() == 0 and logits.grad[1, 3:7].abs().sum() == 0   # ignored entries
    assert logits.grad[:, 7:].abs().sum() == 0                                          # unlabelled head
    acc_a = float((la.argmax(1)[[0, 1, 2, 4]] == labels[[0, 1, 2, 4], 0]).float().mean())
    assert set(logs) == {"acc_a", "acc_b", "acc_c"} and logs["acc_a"] == pytest.approx(acc_a) and logs["acc_c"] == 0
    none, _ = attribute_loss(logits, torch.full((5, 3), -1), heads)
    assert float(none.detach()) == 0.0 and torch.isfinite(none)
    with pytest.raises(ValueError, match="labels"):
        attribute_loss(logits, labels[:, :2], heads)


# ------------------------------------------------------------------------------------------------
# the training task
# ------------------------------------------------------------------------------------------------

def test_registry_entry_and_its_run_defaults():
    from reidlib.config import load_config
    from reidlib.engine.artifacts import model_meta, rebuild
    from reidlib.models.registry import MODELS, constructor_kwargs

    assert MODELS["attributes"].task == "attributes"
    cfg = load_config(model="attributes", **{"model.kwargs.heads": "[colour, view]"})
    assert cfg.model.kwargs == {"heads": ["colour", "view"]} and cfg.data.batch_size == 64
    kw = constructor_kwargs("attributes", "resnet18", None, 1, cfg.model.kwargs)
    assert rebuild(model_meta("attributes", kw)).heads == {"colour": 10, "view": 5}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].device)) for k in a)


def test_train_resume_and_the_trunk_every_model_loads(synth, tmp_path, monkeypatch):
    from reidlib.engine.artifacts import load_model
    from reidlib.engine.attributes import AttributeStep, train_attributes
    from reidlib.engine.logging import read_jsonl
    from reidlib.models.backbones import build_resnet, trunk_to_torchvision
    from reidlib.models.registry import build_model

    recs = _records(synth)
    full = train_attributes(tiny_cfg(synth, tmp_path / "full", "attributes", **RUN), records=recs)
    assert full.iterations == 6 and full.checkpoint.name == "model.pt" and full.last_checkpoint.is_file()
    assert full.meta["data_path"].startswith("cache:") and full.meta["train_images"] == len(recs)
    assert {f"acc_{n}" for n in ATTRIBUTES} <= set(full.history[-1])
    model, state = load_model(full.checkpoint)
    assert isinstance(model, AttributeNet) and state["meta"]["task"] == "attributes"
    assert _same(model.state_dict(), full.model.state_dict())

    # an interrupted run (killed in iteration 5, after the checkpoint of iteration 4) continues
    calls = {"n": 0, "fail_at": 5}
    real = AttributeStep.forward

    def step(self, m, batch):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyboardInterrupt("killed")
        return real(self, m, batch)

    monkeypatch.setattr(AttributeStep, "forward", step)
    cfg = tiny_cfg(synth, tmp_path / "split", "attributes", **RUN)
    with pytest.raises(KeyboardInterrupt):
        train_attributes(cfg, records=recs)
    calls.update(n=0, fail_at=-1)
    rest = train_attributes(cfg, records=recs, resume=True)
    assert calls["n"] == 2 and rest.iterations == 6, "the resumed run continues from iteration 4"
    assert _same(full.model.state_dict(), rest.model.state_dict())            # bit-exact on the CPU
    assert [r["iter"] for r in read_jsonl(rest.log_path)] == list(range(1, 7))

    # the trunk as a torchvision file: build_resnet and every model's `weights` load it
    path = tmp_path / "backbone-resnet18.pth"
    trunk_state = {k: v.detach().cpu() for k, v in rest.model.base.state_dict().items()}
    torch.save(trunk_to_torchvision(trunk_state), path)
    net = build_resnet("resnet18", path)
    assert torch.equal(net.conv1.weight, trunk_state["0.weight"])
    assert torch.equal(net.layer4[1].conv2.weight, trunk_state["7.1.conv2.weight"])
    reid = build_model("baseline", 4, backbone="resnet18", weights=str(path))
    assert _same(reid.base.state_dict(), trunk_state)


def test_the_per_image_path_and_labels_given(synth, tmp_path):
    from reidlib.engine.attributes import train_attributes

    recs = _records(synth)[:16]
    labels = np.zeros((len(recs), 2), np.int64)
    res = train_attributes(tiny_cfg(synth, tmp_path / "files", "attributes", **{
        **RUN, "optim.max_iters": 2, "data.loader": "files", "model.kwargs.heads": ["colour", "view"]}),
        records=recs, labels=labels)
    assert res.meta["data_path"].startswith("files:") and res.iterations == 2
    assert set(res.history[-1]) >= {"acc_colour", "acc_view"}
    with pytest.raises(ConfigError, match="labels"):             # 2 columns for the 6 default heads
        train_attributes(tiny_cfg(synth, tmp_path / "bad", "attributes", **RUN), records=recs, labels=labels)


# ------------------------------------------------------------------------------------------------
# near duplicates between the pretraining and the evaluation worlds
# ------------------------------------------------------------------------------------------------

def test_a_world_is_at_distance_zero_from_itself():
    from reidlib.data.synth.disjoint import nearest_identity_distances

    got = nearest_identity_distances("tiny", 0, "tiny", 0)
    assert got["identities"] == 26 and got["histogram"] == {0: 26} and got["exact_detail_matches"] == 26


def test_constructed_near_duplicates_are_found_at_their_distance():
    from reidlib.data.synth.disjoint import _plan_identities, nearest_distances

    world = _plan_identities("tiny", 0)
    one = copy.deepcopy(world[0])
    one["grille"] = (one["grille"] + 1) % 5                  # one discrete attribute changed
    two = copy.deepcopy(world[1])
    two["roof"]["rack"] = not two["roof"]["rack"]            # a detail ...
    two["colour"] = "orange" if two["colour"] != "orange" else "green"   # ... and the colour
    same = copy.deepcopy(world[2])                           # only placement, size and plate changed
    same.update(plate="ZZ99999", scale_l=same["scale_l"] + 0.01, vid=999, family=999)
    same["wheels"]["rim"] = [1, 2, 3]
    got = nearest_distances(world, [one, two, same])
    assert got["histogram"] == {0: 1, 1: 1, 2: 1} and got["exact_detail_matches"] == 1
    assert sum(got["histogram"].values()) == got["identities"] == 3
    assert "grille" in got["fields"] and "roof.rack" in got["fields"] and "plate" not in got["fields"]


def test_the_histogram_counts_every_evaluation_identity():
    from reidlib.data.synth.disjoint import nearest_identity_distances

    got = nearest_identity_distances("tiny", 1000, "small", 0)
    assert sum(got["histogram"].values()) == got["identities"] == 250
    assert got["exact_detail_matches"] == got["histogram"].get(0, 0)
