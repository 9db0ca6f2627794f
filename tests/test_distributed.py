"""More than one process (reidlib.engine.distributed): 2 ranks on the CPU with gloo, launched with
torch.multiprocessing and with torchrun, on the tiny VeRi-layout fixture of tests/helpers.py.

* equivalence: 2 ranks (P/2 identities x K each, SyncBatchNorm, loss on the gathered global batch)
  vs one process with the same global P x K batch: weights after one epoch (2 iterations) equal
  within ATOL (see below); the same run without synchronised BatchNorm is far outside it;
* evaluation: sharded extraction + ranking on rank 0 == single-process evaluation, exactly;
* resume: a run interrupted during iteration 3 (checkpoint at 2) and resumed == the uninterrupted
  2-rank run, bit for bit; resumed on 1 process it continues the same global batches;
* all ranks raise on a non-finite loss of one rank (no rank left waiting);
* the batch split of the samplers and the augmentation of a slice of a global batch;
* the ablation runner's parallel ``reproduce``.

ATOL = 1e-5 (absolute, on weights of magnitude 0.1-1.5 and BatchNorm running statistics): the two
runs compute the same function in another float32 summation order (convolutions over 4 instead
of 8 images, gradient all-reduce, statistics combined across ranks), i.e. differences of a few
float32 ulps per operation. Measured: 1.7e-6 after 2 iterations (SGD, lr 1e-3 then 1e-2); a
single process whose weights are perturbed by 1e-7 (relative) drifts by 8.5e-7 over the same 2
iterations. Gradients are compared through SGD's momentum buffers with GRAD_RTOL = 1e-4
relative to each buffer's largest entry (measured 3.8e-5: the first convolution's gradient sums
2048 products per weight, with cancellation), logged losses with rtol 1e-5 (measured 1.7e-6).
Every real mismatch moves weights by lr * gradient ~ 1e-3: per-rank BatchNorm
statistics give 6e-3 after one iteration and 0.2 after two (asserted below as the control). The
comparison stops after 2 iterations because this tiny set-up is chaotic later (the same 1e-7
perturbation grows to 1e-3 at iteration 3 in a single process). Adam is not used: its
normalised step turns rounding-level gradients of opposite sign into steps of +-lr.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import make_tiny_veri

from reidlib.data.batch_augment import BatchAugment
from reidlib.data.loaders import SeededBatchSampler
from reidlib.data.sampler import PKSampler, RandomBatchSampler
from reidlib.errors import ConfigError

ATOL = 1e-5
GRAD_RTOL = 1e-4
WORLD = 2
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------
# fast checks of the pieces (one process)
# ------------------------------------------------------------------------------------------------

PIDS = [pid for rep in range(6) for pid in range(100, 108)]   # 8 ids x 6 images


def test_pk_batch_split_keeps_the_global_batch():
    whole = PKSampler(PIDS, p=4, k=3, seed=7)
    ranks = [PKSampler(PIDS, p=4, k=3, seed=7) for _ in range(WORLD)]
    for r, s in enumerate(ranks):
        s.set_batch_split(r, WORLD)
    assert [len(s) for s in ranks] == [len(whole)] * WORLD     # the epoch length does not change
    for _ in range(2):                                          # two epochs
        got = [list(s) for s in ranks]
        for j, batch in enumerate(list(whole)):
            assert got[0][j] + got[1][j] == batch                # rank order = single-process order
            for part in (got[0][j], got[1][j]):                 # a valid (P/2) x K batch: 2 ids x 3
                ids = [PIDS[i] for i in part]
                assert len(part) == 6 and len(set(ids)) == 2 and ids[:3] == [ids[0]] * 3
    assert ranks[1].last_slice == (6, 12)
    assert ranks[1].state_dict() == whole.state_dict() == {"epoch": 2, "offset": 0}


def test_batch_split_errors_are_clear():
    with pytest.raises(ConfigError, match=r"data.p=3 .* over 2 ranks.*multiple of 2"):
        PKSampler(PIDS, p=3, k=2).set_batch_split(0, 2)
    with pytest.raises(ConfigError, match="not both"):
        PKSampler(PIDS, p=4, k=2, num_replicas=2, rank=0).set_batch_split(0, 2)
    with pytest.raises(ConfigError, match="data.batch_size=5"):
        RandomBatchSampler(20, 5).set_batch_split(1, 2)
    with pytest.raises(ConfigError, match="rank must be in 0..world_size-1"):
        PKSampler(PIDS, p=4, k=2).set_batch_split(2, 2)
    s = RandomBatchSampler(10, 4, seed=3)
    s.set_batch_split(1, 2)
    assert list(s) == [b[2:] for b in RandomBatchSampler(10, 4, seed=3).batches(0)]


def test_augmenting_a_slice_equals_slicing_the_augmented_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8, generator=g)
    aug = BatchAugment(train=True, pad=4)
    whole = aug(images, torch.Generator().manual_seed(5))
    first = aug(images[:4], torch.Generator().manual_seed(5), slots=(0, 8))
    second = aug(images[4:], torch.Generator().manual_seed(5), slots=(4, 8))
    assert torch.equal(torch.cat([first, second]), whole)
    assert torch.equal(aug(images, torch.Generator().manual_seed(5), slots=(0, 8)), whole)
    with pytest.raises(ValueError, match="outside a global batch of 8"):
        aug(images[:4], torch.Generator().manual_seed(5), slots=(6, 8))


def test_per_sample_seeds_follow_the_global_slot():
    whole = SeededBatchSampler(PKSampler(PIDS, p=4, k=2, seed=1), seed=9)
    ranks = []
    for r in range(WORLD):
        inner = PKSampler(PIDS, p=4, k=2, seed=1)
        inner.set_batch_split(r, WORLD)
        ranks.append(SeededBatchSampler(inner, seed=9))
    for a, b, c in zip(whole, ranks[0], ranks[1]):
        assert b + c == a                                        # same (index, seed) pairs


def test_resume_ignores_config_keys_added_since_the_checkpoint():
    from reidlib.config import load_config
    from reidlib.engine.trainer import check_resumable

    cfg = load_config(model="baseline").to_dict()
    old = json.loads(json.dumps(cfg))
    del old["train"]["sync_bn"]                                  # written before the key existed
    check_resumable({"config": old, "path": "last.pt"}, cfg)    # its default: no change
    cfg["train"]["sync_bn"] = "on"
    with pytest.raises(ConfigError, match=r"train.sync_bn: None in the checkpoint, 'on' now"):
        check_resumable({"config": old, "path": "last.pt"}, cfg)


# ------------------------------------------------------------------------------------------------
# 2 ranks
# ------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(root: Path, out: Path, **extra):
    from reidlib.config import load_config

    over = {"data.root": str(root), "data.height": 32, "data.width": 32, "data.p": 4, "data.k": 2,
            "data.num_workers": 0, "data.loader": "cache", "data.cache_dir": str(out.parent / "cache"),
            "model.backbone": "resnet18", "optim.name": "sgd", "optim.lr": 0.01, "optim.unit": "iter",
            "optim.max_iters": 4, "optim.milestones": [3], "optim.warmup_iters": 1, "train.out_dir": str(out),
            "train.checkpoint_every": 2, "train.keep_last": 2, "train.log_every": 1, "train.progress": False,
            "train.device": "cpu", "train.amp": "off", "train.sync_bn": "on", "eval.batch_size": 4,
            "eval.num_workers": 0}
    over.update(extra)
    return load_config(model="baseline", **over)


def _rank_worker(rank: int, port: int, root: str, tmp: str) -> None:
    """Everything the 2-rank tests need, in one launch (each launch costs seconds)."""
    import torch.distributed as dist

    from reidlib.engine import distributed as ddp
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.engine.trainer import Trainer
    from reidlib.engine.training import prepare_reid, start_run, train_reid

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert ddp.init_from_env("cpu", timeout_s=60) and dist.get_backend() == "gloo"
    root, tmp = Path(root), Path(tmp)
    report: dict = {"rank": rank}

    # 1. 4 iterations on 2 ranks (checkpoints at 2 and 4), then the sharded evaluation
    full = train_reid(_cfg(root, tmp / "ddp"))
    report["history"] = full.history
    m = evaluate_reid(full.model, root, _cfg(root, tmp / "ddp"), return_features=True)
    report["metrics"] = {k: m[k] for k in ("R1", "R5", "R10", "mAP", "mINP", "num_query", "num_gallery")}
    report["has_features"] = "query" in m
    if rank == 0:
        torch.save({"query": m["query"]["feats"], "gallery": m["gallery"]["feats"]}, tmp / "ddp_features.pt")

    # 2. the same run interrupted during iteration 3 on every rank, then resumed
    cfg = start_run(_cfg(root, tmp / "killed"))
    trainer, _ = prepare_reid(cfg)
    step = trainer.train_step

    def interrupted(batch):
        if trainer.iteration == 2:
            raise KeyboardInterrupt("killed during iteration 3")
        return step(batch)

    trainer.train_step = interrupted
    try:
        trainer.fit()
    except KeyboardInterrupt:
        report["interrupted_at"] = trainer.iteration
    train_reid(_cfg(root, tmp / "killed"), resume=True)

    # 3. control: the same 2 iterations with per-rank BatchNorm statistics
    train_reid(_cfg(root, tmp / "nosync", **{"train.sync_bn": "off", "optim.max_iters": 2}))

    # 4. a non-finite loss on rank 1 only, at iteration 2: both ranks raise
    model = torch.nn.Linear(2, 1)

    def step_fn(mdl, batch):
        loss = mdl(batch).pow(2).mean()
        return (loss * float("nan") if rank == 1 and trainer2.iteration == 1 else loss), {}

    trainer2 = Trainer(model, step_fn, optimizer=torch.optim.SGD(model.parameters(), 0.1),
                       data_loader=[torch.ones(3, 2)], max_iters=3, device="cpu", progress=False)
    try:
        trainer2.fit()
        report["non_finite"] = None
    except FloatingPointError as err:
        report["non_finite"] = str(err)
    (tmp / f"rank{rank}.json").write_text(json.dumps(report))
    ddp.shutdown()


def _spawn(fn, args, timeout: float = 150) -> None:
    ctx = torch.multiprocessing.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {WORLD} ranks did not finish within {timeout} s")


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    root = make_tiny_veri(tmp / "veri")            # 4 train ids x 4 images: 2 batches of 4 x 2 per epoch
    _spawn(_rank_worker, (_free_port(), str(root), str(tmp)))
    reports = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return root, tmp, reports


@pytest.mark.distributed
def test_two_ranks_equal_one_process_with_the_same_global_batch(two_ranks):
    from reidlib.engine.training import train_reid

    root, tmp, _ = two_ranks
    torch.set_num_threads(1)
    single = train_reid(_cfg(root, tmp / "single", **{"optim.max_iters": 2}))
    ddp_state = _state(tmp / "ddp" / "iter_0000002.pt")
    assert ddp_state["iteration"] == 2 and ddp_state["world_size"] == 2 and len(ddp_state["rng_ranks"]) == 2
    a = {k: v for k, v in single.model.state_dict().items() if v.is_floating_point()}
    b = ddp_state["model"]
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= ATOL, worst
    # the control: per-rank BatchNorm statistics are far outside the tolerance
    c = _state(tmp / "nosync" / "last.pt")["model"]
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 100 * ATOL
    # the logged losses of the global batch (rank 0 writes the log)
    one = [r["loss"] for r in single.history]
    two = [r["loss"] for r in json.loads((tmp / "rank0.json").read_text())["history"][:2]]
    assert np.allclose(one, two, rtol=1e-5, atol=0), (one, two)                   # measured: 1.7e-6
    # the momentum buffers (sums of gradients), relative to each buffer's largest entry
    sa = _state(tmp / "single" / "last.pt")["optimizer"]["state"]
    sb = ddp_state["optimizer"]["state"]
    rel = max(float((sa[i]["momentum_buffer"] - sb[i]["momentum_buffer"]).abs().max()
                    / sa[i]["momentum_buffer"].abs().max()) for i in sa)
    assert rel <= GRAD_RTOL, rel


@pytest.mark.distributed
def test_sharded_evaluation_equals_single_process_evaluation(two_ranks):
    from reidlib.engine.artifacts import load_model
    from reidlib.engine.evaluation import evaluate_reid

    root, tmp, reports = two_ranks
    torch.set_num_threads(1)
    model, _ = load_model(tmp / "ddp" / "model.pt")
    m = evaluate_reid(model, root, _cfg(root, tmp / "eval"), return_features=True)
    feats = torch.load(tmp / "ddp_features.pt", weights_only=True)
    assert torch.equal(feats["query"], m["query"]["feats"]) and torch.equal(feats["gallery"], m["gallery"]["feats"])
    expected = {k: m[k] for k in ("R1", "R5", "R10", "mAP", "mINP", "num_query", "num_gallery")}
    assert expected["num_query"] == 3 and expected["num_gallery"] == 12
    assert reports[0]["metrics"] == expected and reports[1]["metrics"] == expected   # every rank gets them
    assert reports[0]["has_features"] and not reports[1]["has_features"]


@pytest.mark.distributed
def test_interrupted_two_rank_run_resumes_bit_exactly(two_ranks):
    from reidlib.engine.logging import read_jsonl

    _, tmp, reports = two_ranks
    assert [r["interrupted_at"] for r in reports] == [2, 2]
    full, resumed = _state(tmp / "ddp" / "last.pt"), _state(tmp / "killed" / "last.pt")
    assert full["iteration"] == resumed["iteration"] == 4
    assert full["model"].keys() == resumed["model"].keys()
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
    sa, sb = full["optimizer"]["state"], resumed["optimizer"]["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert full["data"] == resumed["data"]
    assert [r["loss"] for r in read_jsonl(tmp / "ddp" / "log.jsonl")] == \
        [r["loss"] for r in read_jsonl(tmp / "killed" / "log.jsonl")]
    assert [r["iter"] for r in read_jsonl(tmp / "killed" / "log.jsonl")] == [1, 2, 3, 4]


@pytest.mark.distributed
def test_a_two_rank_checkpoint_resumes_on_one_process(two_ranks):
    from reidlib.engine.training import train_reid

    root, tmp, reports = two_ranks
    torch.set_num_threads(1)
    out = tmp / "one"
    out.mkdir()
    shutil.copyfile(tmp / "ddp" / "iter_0000002.pt", out / "last.pt")
    with pytest.warns(UserWarning, match=r"written by a run on 2 rank\(s\); continuing on 1.*not bit-exact"):
        res = train_reid(_cfg(root, out), resume=True)
    assert res.iterations == 4
    ddp_last = _state(tmp / "ddp" / "last.pt")
    assert _state(out / "last.pt")["data"] == ddp_last["data"]          # the same place in the same epoch
    # iteration 3 trains on the same global batch from (nearly) the same weights: the same loss
    ddp_loss3 = reports[0]["history"][2]["loss"]
    assert res.history[2]["iter"] == 3 and abs(res.history[2]["loss"] - ddp_loss3) <= 1e-5 * ddp_loss3


@pytest.mark.distributed
def test_every_rank_raises_on_a_non_finite_loss_of_one_rank(two_ranks):
    _, _, reports = two_ranks
    for r in reports:
        assert r["non_finite"] is not None
        assert "non-finite loss at iteration 2 on at least one of the 2 ranks" in r["non_finite"]


@pytest.mark.distributed
def test_torchrun_cli_trains_and_evaluates_on_two_ranks(tmp_path):
    from reidlib.engine.artifacts import load_model
    from reidlib.engine.evaluation import evaluate_reid

    root = make_tiny_veri(tmp_path / "veri")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
           "-m", "reidlib", "train", "--model", "baseline", "--data", str(root), "--out", str(out),
           "--device", "cpu", "--eval", "--no-progress", "data.height=32", "data.width=32", "data.p=4", "data.k=2",
           "data.num_workers=0", f"data.cache_dir={tmp_path / 'cache'}", "model.backbone=resnet18", "optim.unit=iter",
           "optim.max_iters=2", "optim.warmup_iters=0", "train.amp=off", "train.log_every=1", "eval.batch_size=4",
           "eval.num_workers=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("trained baseline: 2 iterations") for line in lines) == 1   # rank 0 prints
    assert "ranks: 2 (DistributedDataParallel, sync_bn=False)" in lines                   # auto: off on CPU
    model, state = load_model(out / "model.pt")
    assert state["meta"]["world_size"] == 2 and state["iteration"] == 2
    m = evaluate_reid(model, root, {"data.height": 32, "data.width": 32, "eval.batch_size": 4,
                                    "eval.num_workers": 0, "train.device": "cpu"})
    metrics = next(line for line in lines if line.startswith("R1 "))
    assert metrics.startswith(f"R1 {m['R1']:.2f}  R5 {m['R5']:.2f}  R10 {m['R10']:.2f}  mAP {m['mAP']:.2f}  "
                              f"mINP {m['mINP']:.2f}"), metrics


# ------------------------------------------------------------------------------------------------
# the ablation runner, several notebooks at a time
# ------------------------------------------------------------------------------------------------

_FAKE_JOB = textwrap.dedent("""
    import json, os, sys, time
    name, marks = sys.argv[1], sys.argv[2]
    open(os.path.join(marks, name + ".start"), "w").write(json.dumps({
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": os.environ.get("OMP_NUM_THREADS"),
        "done_before": sorted(f[:-5] for f in os.listdir(marks) if f.endswith(".done"))}))
    print("output of", name)
    if name == "bad":
        sys.exit(3)
    open(os.path.join(marks, name + ".done"), "w").write("")
""")


def _fake_notebooks(tmp_path: Path, names):
    nb = tmp_path / "notebooks"
    nb.mkdir()
    for n in names:
        (nb / f"{n}.ipynb").write_text("{}")
    (nb / "order.json").write_text(json.dumps(list(names)))
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "job.py"
    script.write_text(_FAKE_JOB)
    return nb, marks, (lambda name: [sys.executable, str(script), name, str(marks)])


def _marks(marks: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in marks.glob("*.start")}


def test_reproduce_spreads_notebooks_over_gpus_and_runs_the_summary_last(tmp_path, monkeypatch):
    from reidlib.runner import reproduce

    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    names = ["summary", "a", "b", "c", "d", "e"]
    nb, marks, command = _fake_notebooks(tmp_path, names)
    lines = []
    res = reproduce("gpu", jobs=4, notebooks_dir=nb, gpus=["0", "1", "2"], cores=6, command=command,
                    log=lines.append)
    assert res["jobs"] == 3 and res["failed"] == {} and res["not_run"] == []
    assert sorted(res["ok"]) == sorted(names) and res["ok"][-1] == "summary"
    assert [s["CUDA_VISIBLE_DEVICES"] for s in res["slots"]] == ["0", "1", "2"]
    started = _marks(marks)
    assert {started[n]["gpu"] for n in "abcde"} <= {"0", "1", "2"}
    assert all(started[n]["threads"] == "2" for n in "abcde")        # 6 cores / 3 jobs
    assert started["summary"]["threads"] is None and started["summary"]["gpu"] == "0"   # alone: all threads
    assert started["summary"]["done_before"] == ["a", "b", "c", "d", "e"]
    assert lines[0] == "reproduce: 4 jobs asked, 3 GPU(s): running 3 at a time"
    assert any(line.startswith("== a [gpu] done on GPU ") and line.endswith("output of a") for line in lines)


def test_reproduce_on_cpu_caps_jobs_at_the_cores_and_one_job_is_the_plain_loop(tmp_path):
    from reidlib.runner import job_slots, reproduce

    assert len(job_slots(8, [], cores=2)) == 2 and all("CUDA_VISIBLE_DEVICES" not in s for s in job_slots(8, [], 2))
    assert job_slots(1, ["0", "1"], cores=8) == [{}]                   # JOBS=1: the environment as it is
    nb, marks, command = _fake_notebooks(tmp_path, ["a", "b", "summary"])
    res = reproduce("cpu", jobs=1, notebooks_dir=nb, gpus=[], cores=2, command=command, log=lambda _: None)
    assert res == {"jobs": 1, "slots": [{}], "ok": ["a", "b", "summary"], "failed": {}, "not_run": []}
    assert _marks(marks)["summary"]["done_before"] == ["a", "b"]


def test_reproduce_says_before_it_starts_when_the_cpu_computes_in_float32(tmp_path, monkeypatch):
    from reidlib.runner import reproduce
    from reidlib.utils import device

    nb, _, command = _fake_notebooks(tmp_path, ["a"])
    for native, profile, gpus, expected in ((False, "cpu", [], True), (True, "cpu", [], False),
                                            (False, "smoke", [], False), (False, "gpu", ["0"], False)):
        monkeypatch.setattr(device, "cpu_bf16_supported", lambda native=native: native)
        lines: list[str] = []
        reproduce(profile, jobs=1, notebooks_dir=nb, gpus=gpus, cores=2, command=command, log=lines.append)
        said = [line for line in lines if "no native bfloat16" in line]
        assert bool(said) == expected, (native, profile, gpus)
        if said:                                                      # first, one line, with the measured times
            assert lines[0] is said[0] and "\n" not in said[0] and "float32" in said[0] and "0.69 s" in said[0]


def test_reproduce_reports_a_failed_notebook_and_skips_the_summary(tmp_path):
    from reidlib.runner import reproduce

    nb, marks, command = _fake_notebooks(tmp_path, ["a", "bad", "c", "summary"])
    res = reproduce("cpu", jobs=1, notebooks_dir=nb, gpus=[], cores=2, command=command, log=lambda _: None)
    assert res["ok"] == ["a"] and res["failed"] == {"bad": 3} and res["not_run"] == ["c", "summary"]
    for f in marks.iterdir():
        f.unlink()
    res = reproduce("cpu", jobs=2, notebooks_dir=nb, gpus=[], cores=2, command=command, keep_going=True,
                    log=lambda _: None)
    assert sorted(res["ok"]) == ["a", "c"] and res["failed"] == {"bad": 3} and res["not_run"] == ["summary"]


def test_reproduce_cli_names_the_failed_notebook(tmp_path, capsys, monkeypatch):
    from reidlib import runner
    from reidlib.runner import cli

    nb, _, command = _fake_notebooks(tmp_path, ["a", "bad", "summary"])
    real = runner.reproduce
    monkeypatch.setattr(cli, "reproduce",
                        lambda *a, **k: real(*a, **{**k, "command": command, "gpus": [], "log": lambda _: None}))
    rc = runner.main(["reproduce", "--profile", "cpu", "--notebooks-dir", str(nb)])
    assert rc == 1
    assert capsys.readouterr().err.strip() == "error: reproduce [cpu]: failed: bad (exit 3); not run: summary"
    with pytest.raises(runner.ExperimentError, match="no notebook"):
        runner.reproduce("cpu", names=["missing"], notebooks_dir=nb, command=command)
