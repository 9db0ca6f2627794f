"""Engine tests: schedule values, optimisers, atomic checkpoints, exact resumption (2N vs N + resume
+ N on a real reidlib model with PKSampler + ImageDataset), a killed run, JSON-lines logs and the
high-level tasks on a tiny VeRi-layout fixture, their evaluation checked against an independent
ranking (distances and metrics recomputed by plain loops). CPU only, tiny sizes."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reidlib.engine.checkpoint import (CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state,
                                       save_checkpoint)
from reidlib.engine.logging import JSONLLogger, read_jsonl
from reidlib.engine.optim import WarmupMultiStepLR, build_optimizer, epochs_to_iters, warmup_multistep_factor
from reidlib.data.loaders import build_loader
from reidlib.data.sampler import RandomBatchSampler
from reidlib.engine.trainer import Trainer, criterion_step, resolve_amp
from reidlib.errors import ConfigError
from reidlib.utils.device import seed_everything

from helpers import assert_ranked_by, make_vehicleid, ref_cpdm, ref_euclidean
from helpers import tiny_cfg as _tiny_cfg

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# schedule and optimisers
# ------------------------------------------------------------------------------------------------

def test_warmup_multistep_values():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sch = WarmupMultiStepLR(opt, milestones=[10, 20], gamma=0.1, warmup_iters=5, warmup_factor=0.1)
    lrs = []
    for _ in range(25):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    expected = [0.1 + (1 - 0.1) * i / 5 for i in range(5)] + [1.0] * 5 + [0.1] * 10 + [0.01] * 5
    assert np.allclose(lrs, expected), lrs
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(0.28)
    # closed form == stepped; MUSP Sec. 5.2 in epochs: 3.5e-5 -> 3.5e-4 over 10, / 10 at 30 and 60
    ipe = 7
    ms = [epochs_to_iters(e, ipe) for e in (30, 60)]
    assert 3.5e-4 * warmup_multistep_factor(0, ms, 0.1, 10 * ipe, 0.1) == pytest.approx(3.5e-5)
    assert 3.5e-4 * warmup_multistep_factor(10 * ipe, ms, 0.1, 10 * ipe, 0.1) == pytest.approx(3.5e-4)
    assert 3.5e-4 * warmup_multistep_factor(60 * ipe, ms, 0.1, 10 * ipe, 0.1) == pytest.approx(3.5e-6)
    # constant warm-up, and restoring the scheduler continues on the same values
    sch2 = WarmupMultiStepLR(torch.optim.SGD([p], lr=1.0), [10], warmup_iters=4, warmup_method="constant")
    assert sch2.get_last_lr()[0] == pytest.approx(0.1)
    opt3 = torch.optim.SGD([p], lr=1.0)
    sch3 = WarmupMultiStepLR(opt3, milestones=[10, 20], gamma=0.1, warmup_iters=5, warmup_factor=0.1)
    sch3.load_state_dict(sch.state_dict())
    assert sch3.last_epoch == 25
    with pytest.raises(ConfigError):
        WarmupMultiStepLR(opt3, milestones=[20, 10])


def test_build_optimizer():
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    m[0].requires_grad_(False)
    adam = build_optimizer("adam", m, lr=3.5e-4, weight_decay=5e-4, momentum=0.9)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.9, 0.999)
    assert sum(p.numel() for g in adam.param_groups for p in g["params"]) == 8  # frozen layer left out
    sgd = build_optimizer("SGD", m.parameters(), lr=0.01, momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ConfigError, match="unknown optimizer"):
        build_optimizer("rmsprop", m, lr=0.1)


def test_cpu_precision_follows_the_processor(monkeypatch):
    import reidlib.utils.device as dev

    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(dev, "cpu_bf16_supported", lambda native=native: native)
        assert resolve_amp("auto", cpu) == (torch.bfloat16 if native else None)
        assert resolve_amp("bf16", cpu) == torch.bfloat16          # asked for: used (emulated if not native)
        for amp in ("fp16", "off", None, False, "fp32"):
            assert resolve_amp(amp, cpu) is None
    with pytest.raises(ValueError, match="unknown amp"):
        resolve_amp("int8", cpu)
    monkeypatch.setattr(dev, "cpu_bf16_supported", lambda: False)
    t = Trainer(nn.Linear(2, 2), lambda m, b: (m(b).sum(), {}), optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), 0.1),
                data_loader=[torch.zeros(1, 2)], max_iters=0, device="cpu", amp="auto", channels_last=True,
                progress=False)
    assert t.amp_dtype is None and not t.channels_last and not t.scaler.is_enabled() and t.precision == "fp32"
    t = Trainer(nn.Linear(2, 2), lambda m, b: (m(b).sum(), {}), optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), 0.1),
                data_loader=[torch.zeros(1, 2)], max_iters=0, device="cpu", amp="bf16", channels_last=True,
                progress=False)
    assert t.amp_dtype == torch.bfloat16 and t.channels_last and not t.scaler.is_enabled()
    assert t.meta["precision"] == "bf16-autocast+channels-last"


def test_losses_are_float32_under_autocast():
    from reidlib.engine.trainer import float32_losses

    x = torch.randn(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch.nn.Linear(3, 2)(x)
        assert y.dtype == torch.bfloat16
        with float32_losses({"feats": y, "ids": torch.arange(4)}) as out:
            assert out["feats"].dtype == torch.float32 and out["ids"].dtype == torch.int64
            assert (out["feats"] @ out["feats"].T).dtype == torch.float32     # autocast is off here


# ------------------------------------------------------------------------------------------------
# checkpoints and logs
# ------------------------------------------------------------------------------------------------

def test_rng_state_roundtrip():
    seed_everything(3)
    st = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(st)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_checkpoint_atomic_no_partial_file(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for it in (1, 2, 3):
        mgr.save({"iteration": it, "model": {"w": torch.full((2,), float(it))}}, it)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000002.pt", "iter_0000003.pt", "last.pt"]
    assert load_checkpoint(tmp_path)["iteration"] == 3  # a folder resolves to last.pt

    # a failure while writing (here: fsync) leaves the previous last.pt intact and no temporary file
    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        mgr.save({"iteration": 4, "model": {"w": torch.zeros(2)}}, 4)
    monkeypatch.undo()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["iter_0000002.pt", "iter_0000003.pt", "last.pt"], names
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 3
    # a state that cannot be serialised never creates the file
    with pytest.raises(Exception):
        save_checkpoint(tmp_path / "bad.pt", {"x": lambda: 0})
    assert not (tmp_path / "bad.pt").exists() and not list(tmp_path.glob(".bad.pt*"))
    with pytest.raises(ValueError, match="not a reidlib checkpoint"):
        torch.save({"a": 1}, tmp_path / "other.pt")
        load_checkpoint(tmp_path / "other.pt")


def test_checkpoint_iter_files_are_links_that_keep_their_content(tmp_path):
    """iter_*.pt shares last.pt's bytes on disk (one copy), and keeps its own iteration after
    last.pt has been replaced by a newer save."""
    mgr = CheckpointManager(tmp_path, keep_last=2)
    mgr.save({"iteration": 1, "model": {"w": torch.full((2,), 1.0)}}, 1)
    assert os.stat(tmp_path / "iter_0000001.pt").st_ino == os.stat(tmp_path / "last.pt").st_ino
    mgr.save({"iteration": 2, "model": {"w": torch.full((2,), 2.0)}}, 2)
    assert load_checkpoint(tmp_path / "iter_0000001.pt")["iteration"] == 1
    assert load_checkpoint(tmp_path / "iter_0000002.pt")["model"]["w"].tolist() == [2.0, 2.0]
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 2
    assert not list(tmp_path.glob(".*"))  # no temporary link left behind


def test_study_cache_keeps_model_and_drops_training_state(tiny_veri, tmp_path):
    """A finished cached run keeps model.pt + config + log (reloaded, not retrained); its
    optimiser-carrying last.pt / iter_*.pt are removed unless keep_state=True."""
    from reidlib.study import Study

    study = Study("smoke", "cpu", data_root=str(tiny_veri), cache_dir=str(tmp_path / "runs"), init="standin",
                  overrides={"reid_iters": 2, "batch_p": 2, "batch_k": 2, "input_size": (32, 32), "val_ids": 1})
    model, info = study.reid_model("baseline", 0)
    out = Path(info["out_dir"])
    assert not info["cached"] and (out / "model.pt").is_file() and (out / "log.jsonl").is_file()
    assert not (out / "last.pt").exists() and not list(out.glob("iter_*.pt"))
    again, info2 = study.reid_model("baseline", 0)
    assert info2["cached"] and info2["out_dir"] == str(out)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    keep = Study("smoke", "cpu", data_root=str(tiny_veri), cache_dir=str(tmp_path / "runs-keep"), keep_state=True,
                 init="standin", overrides={"reid_iters": 2, "batch_p": 2, "batch_k": 2, "input_size": (32, 32), "val_ids": 1})
    _, info3 = keep.reid_model("baseline", 0)
    assert (Path(info3["out_dir"]) / "last.pt").is_file()


def test_jsonl_logger_append_and_resume_trim(tmp_path):
    path = tmp_path / "log.jsonl"
    with JSONLLogger(path) as log:
        for it in (10, 20, 30):
            log.log({"iter": it, "loss": torch.tensor(1.0 / it), "lr": 0.1, "bad": float("nan")})
    rows = read_jsonl(path)
    assert [r["iter"] for r in rows] == [10, 20, 30] and rows[0]["loss"] == pytest.approx(0.1)
    assert rows[0]["bad"] == "nan"
    with open(path, "a") as fh:
        fh.write('{"iter": 40, "lo')  # a line cut by a kill
    assert [r["iter"] for r in read_jsonl(path)] == [10, 20, 30]
    JSONLLogger(path, resume_from=20).close()  # resuming from iteration 20 drops what came after
    assert [r["iter"] for r in read_jsonl(path)] == [10, 20]


# ------------------------------------------------------------------------------------------------
# exact resumption with a real model, PKSampler and ImageDataset (random augmentation)
# ------------------------------------------------------------------------------------------------

def _reid_trainer(root: Path, out: Path, max_iters: int, checkpoint_every: int, fail_at: int | None = None,
                  workers: int = 0):
    from reidlib.data import ImageDataset, PKSampler, VeRi776, build_transforms, relabel
    from reidlib.models.registry import build_model

    seed_everything(0)
    ds = VeRi776(root)
    pid_map = relabel(ds.train)
    train = ImageDataset(ds.train, build_transforms(32, 32, train=True, pad=4), pid_map)
    sampler = PKSampler(train.pids, p=2, k=2, seed=0)  # 16 images -> 4 batches per epoch
    loader = build_loader(train, sampler, num_workers=workers, seed=0)
    model = build_model("baseline", len(pid_map), backbone="resnet18", last_stride=1)
    crit = _criterion(len(pid_map))
    calls = {"n": 0}

    def step(m, batch):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt("killed")
        out = m(batch["img"])
        return crit(out, batch["pid"])

    opt = build_optimizer("adam", model, lr=1e-3, weight_decay=5e-4)
    sch = WarmupMultiStepLR(opt, milestones=[4], warmup_iters=2)
    return Trainer(model, step, optimizer=opt, scheduler=sch, data_loader=loader, max_iters=max_iters, out_dir=out,
                   checkpoint_every=checkpoint_every, log_every=1, device="cpu", progress=False, seed=0,
                   config={"test": True})


def _criterion(num_classes: int):
    from reidlib.losses.reid import ReIDCriterion

    return ReIDCriterion(num_classes, triplet_on="global")


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("n", [3, 4])  # 3: checkpoint mid-epoch; 4: exactly at an epoch boundary
def test_resume_is_bit_exact(tiny_veri, tmp_path, n):
    full = _reid_trainer(tiny_veri, tmp_path / "full", 2 * n, checkpoint_every=0)
    full.fit()
    half = _reid_trainer(tiny_veri, tmp_path / "split", n, checkpoint_every=n)
    half.fit()
    assert load_checkpoint(tmp_path / "split" / "last.pt")["iteration"] == n
    rest = _reid_trainer(tiny_veri, tmp_path / "split", 2 * n, checkpoint_every=n)
    rest.fit(resume=True)
    assert rest.iteration == 2 * n
    assert _same_state(full.model.state_dict(), rest.model.state_dict())
    assert rest.state.epoch == full.state.epoch and rest.state.batch_in_epoch == full.state.batch_in_epoch
    la = [r["loss"] for r in read_jsonl(tmp_path / "full" / "log.jsonl")]
    lb = [r["loss"] for r in read_jsonl(tmp_path / "split" / "log.jsonl")]
    assert la == lb  # the same batches, augmentations and losses, iteration by iteration
    st = load_checkpoint(tmp_path / "split" / "last.pt")
    assert {"model", "optimizer", "scheduler", "data", "rng", "config", "meta", "iteration"} <= set(st)
    assert st["data"]["sampler"] == {"epoch": full.state.epoch, "offset": full.state.batch_in_epoch}


def test_resume_is_exact_with_worker_processes(tiny_veri, tmp_path):
    """Per-sample augmentation seeds: 0 workers uninterrupted == 2 workers split by a resume."""
    full = _reid_trainer(tiny_veri, tmp_path / "full", 6, checkpoint_every=0, workers=0)
    full.fit()
    _reid_trainer(tiny_veri, tmp_path / "split", 3, checkpoint_every=3, workers=2).fit()
    rest = _reid_trainer(tiny_veri, tmp_path / "split", 6, checkpoint_every=3, workers=2)
    rest.fit(resume=True)
    assert _same_state(full.model.state_dict(), rest.model.state_dict())


def test_killed_run_loses_at_most_n_iterations(tiny_veri, tmp_path):
    ref = _reid_trainer(tiny_veri, tmp_path / "ref", 7, checkpoint_every=0)
    ref.fit()
    killed = _reid_trainer(tiny_veri, tmp_path / "run", 7, checkpoint_every=2, fail_at=6)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 4  # killed during iteration 6
    again = _reid_trainer(tiny_veri, tmp_path / "run", 7, checkpoint_every=2)
    again.fit(resume=True)
    assert _same_state(ref.model.state_dict(), again.model.state_dict())
    assert [r["iter"] for r in read_jsonl(tmp_path / "run" / "log.jsonl")] == list(range(1, 8))


def test_a_few_steps_lower_the_loss():
    seed_everything(0)
    from reidlib.models.registry import build_model

    model = build_model("baseline", 4, backbone="resnet18", last_stride=1)
    x = torch.randn(8, 3, 32, 32)
    y = torch.arange(4).repeat_interleave(2)
    crit = _criterion(4)
    opt = build_optimizer("adam", model, lr=1e-3)
    t = Trainer(model, criterion_step(crit), optimizer=opt, data_loader=[{"img": x, "pid": y}], max_iters=8,
                log_every=1, device="cpu", progress=False)
    hist = t.fit()
    assert len(hist) == 8 and hist[-1]["loss"] < hist[0]["loss"]
    assert all(np.isfinite(h["loss"]) for h in hist)


def test_random_batch_sampler_resume():
    s = RandomBatchSampler(10, 3, drop_last=True, seed=1)
    assert len(s) == 3
    it = iter(s)
    first = [next(it), next(it)]
    st = s.state_dict()
    assert st == {"epoch": 0, "offset": 2}
    s2 = RandomBatchSampler(10, 3, seed=1)
    s2.load_state_dict(st)
    assert list(s2) == s.batches(0)[2:] and all(len(b) == 3 for b in first)
    assert list(s2) == s.batches(1)
    assert len(RandomBatchSampler(2, 8)) == 1  # smaller than a batch: one short batch


def test_non_finite_loss_raises():
    p = nn.Parameter(torch.ones(1))
    t = Trainer(nn.Linear(1, 1), lambda m, b: (p * float("nan"), {}), optimizer=torch.optim.SGD([p], 0.1),
                data_loader=[0], max_iters=1, device="cpu", progress=False)
    with pytest.raises(FloatingPointError, match="iteration 1"):
        t.fit()


# ------------------------------------------------------------------------------------------------
# tasks
# ------------------------------------------------------------------------------------------------

def test_train_and_evaluate_reid_task(tiny_veri, tmp_path):
    from reidlib.engine.artifacts import load_model
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.engine.training import train_reid

    cfg = _tiny_cfg(tiny_veri, tmp_path / "run")
    res = train_reid(cfg)
    assert res.iterations == 3 and res.checkpoint.name == "model.pt" and res.last_checkpoint.is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert [r["iter"] for r in read_jsonl(res.log_path)] == [1, 2, 3]
    m = evaluate_reid(res.model, tiny_veri, cfg, return_features=True, return_distmat=True)
    assert {"R1", "R5", "R10", "mAP", "mINP", "num_query", "num_gallery"} <= set(m)
    assert m["num_query"] == 3 and m["num_gallery"] == 12 and m["distance"] == "euclidean"
    q, g = m["query"], m["gallery"]
    assert q["feats"].shape[:2] == (3, 1) and q["area_ratios"] is None
    # the metrics are those of the returned features, ranked by an independent loop
    assert_ranked_by(m, ref_euclidean(q["feats"], g["feats"]))
    # the features are the trained model's: re-extracted from the weights in model.pt
    model, state = load_model(res.checkpoint)
    assert state["iteration"] == 3 and all(torch.equal(a, b.cpu()) for a, b in
                                           zip(model.state_dict().values(), res.model.state_dict().values()))
    mf = evaluate_reid(model, tiny_veri, cfg, return_features=True)
    torch.testing.assert_close(mf["query"]["feats"], q["feats"])
    # from the checkpoint file: same numbers; a distance override is used
    m2 = evaluate_reid(res.checkpoint, tiny_veri)
    assert m2["R1"] == pytest.approx(m["R1"]) and m2["mAP"] == pytest.approx(m["mAP"], abs=1e-6)
    mc = evaluate_reid(res.checkpoint, tiny_veri, distance="cosine", return_features=True, return_distmat=True)
    qn = mc["query"]["feats"][:, 0] / mc["query"]["feats"][:, 0].norm(dim=1, keepdim=True)
    gn = mc["gallery"]["feats"][:, 0] / mc["gallery"]["feats"][:, 0].norm(dim=1, keepdim=True)
    assert mc["distance"] == "cosine"
    assert_ranked_by(mc, 1.0 - (qn.double() @ gn.double().T).numpy())
    model, state = load_model(res.last_checkpoint)
    assert not model.training and state["meta"]["task"] == "reid"


def test_span_pipeline_tasks(tiny_veri, tmp_path):
    """SPAN step 1 (gt foreground of the fixture) -> SPAN re-ID step 2 with CPDM -> evaluation."""
    from reidlib.engine.artifacts import load_span
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.engine.training import train_reid, train_span

    step1 = train_span(_tiny_cfg(tiny_veri, tmp_path / "span1", "span-masks", **{"optim.max_iters": 2,
                                                                                 "span.fg_source": "gt"}))
    assert step1.iterations == 2 and step1.meta["per_view"] >= 1
    assert {"loss"} <= set(step1.history[-1])
    span = load_span(step1.checkpoint)
    assert not span.training
    cfg = _tiny_cfg(tiny_veri, tmp_path / "span2", "span", **{"model.span_checkpoint": str(step1.checkpoint),
                                                              "model.kwargs.dim": 16, "optim.max_iters": 2})
    res = train_reid(cfg)
    assert res.meta["triplet_on"] == "cpdm" and res.meta["distance"] == "cpdm"
    # the frozen SPAN inside the re-ID model is the step-1 network, unchanged by step 2
    assert all(torch.equal(a, b.cpu()) for a, b in zip(span.state_dict().values(),
                                                      res.model.span.state_dict().values()))
    m = evaluate_reid(res.checkpoint, tiny_veri, return_features=True, return_distmat=True)
    q, g = m["query"], m["gallery"]
    assert m["distance"] == "cpdm" and q["area_ratios"].shape == (3, 4)
    # ranked by CPDM (SPAN eqs. 4-5), recomputed pair by pair
    assert_ranked_by(m, ref_cpdm(q["feats"], q["area_ratios"], g["feats"], g["area_ratios"]))
    me = evaluate_reid(res.model, tiny_veri, cfg, distance="euclidean", return_features=True, return_distmat=True)
    assert me["distance"] == "euclidean"
    assert_ranked_by(me, ref_euclidean(me["query"]["feats"], me["gallery"]["feats"]))


def test_foreground_task(tiny_veri, tmp_path):
    from reidlib.engine.training import train_foreground

    res = train_foreground(_tiny_cfg(tiny_veri, tmp_path / "fg", "foreground",
                                     **{"optim.max_iters": 2, "foreground.source": "auto"}))
    assert res.iterations == 2 and "iou" in res.history[-1]
    assert res.meta["fg_source"].startswith("grabcut:")  # GrabCut masks, cached beside the run folder
    assert len(list((tmp_path / "grabcut-cache").rglob("*.png"))) == 16


def test_evaluate_vehicleid_runs_all_trials_with_one_extraction(tmp_path, monkeypatch):
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.models.registry import build_model

    make_vehicleid(tmp_path / "vid")
    seed_everything(0)
    model = build_model("baseline", 3, backbone="resnet18", last_stride=1)
    calls = []
    from reidlib.data import dataset as dataset_mod

    orig = dataset_mod.ImageDataset

    class Counting(orig):
        def __getitem__(self, i):
            calls.append(self.records[i].path)
            return super().__getitem__(i)

    monkeypatch.setattr(dataset_mod, "ImageDataset", Counting)
    cfg = {"data.dataset": "vehicleid", "data.height": 32, "data.width": 32, "eval.num_workers": 0,
           "train.device": "cpu"}
    m = evaluate_reid(model, tmp_path / "vid", cfg, trials=3)
    assert m["trials"] == 3 and len(m["per_trial"]) == 3 and set(m["std"]) >= {"R1", "mAP"}
    assert m["R1"] == pytest.approx(np.mean([t["R1"] for t in m["per_trial"]]))
    assert len(calls) == len(set(calls)) == 12  # every test image extracted once for all trials
