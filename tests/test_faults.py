"""Fault injection: nothing lost, nothing executed, nothing hangs, no silent wrong number.

Each test is one case of the reliability issue: a run that fails, is killed, times out or races
another must leave the committed results as they were; files are never trusted to hold code;
damaged checkpoints are named and skipped; a resumed run never trains with settings other than
the ones it records. (Data and generator faults: ``test_faults_data.py``; evaluator faults:
``test_faults_metrics.py``.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

from reidlib import runner
from reidlib.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parent.parent
PARAMS = 'profile = "smoke"\ndevice = "auto"\ndata_root = None\nresults_dir = "scratch/x"\nseed = 0\nwait = 0.0'
RECORD = ("import time, pandas as pd\nfrom reidlib.study.record import record\n"
          "open(results_dir + '/../started', 'w').write('1')\n"
          "time.sleep(wait)\n"
          "record(results_dir, {'seed': seed, 'wait': wait}, tables={'t': pd.DataFrame({'x': [seed]})})")


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMS), nbformat.v4.new_code_cell(body)]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def lab(tmp_path):
    """A notebooks folder with one recording notebook, and its committed results (seed 7)."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "toy.ipynb", RECORD)
    _notebook(nbs / "nodata.ipynb", "from reidlib.study import dataset_root\ndataset_root('smoke', '/no/such/dir')")
    results = tmp_path / "results"
    runner.run("toy", "smoke", {"seed": 7}, results_root=results, notebooks_dir=nbs)
    return nbs, results


def _committed(results: Path) -> dict:
    out = results / "smoke"
    return {"json": json.loads((out / "toy.json").read_text())["metrics"],
            "table": (out / "toy" / "t.csv").read_text(), "nb": (out / "toy.ipynb").exists()}


def _leftovers(results: Path) -> list[str]:
    return sorted(p.name for p in (results / "smoke").iterdir() if p.name.startswith(".toy.run-"))


def _cli(nbs: Path, results: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reidlib.runner", "run", "toy", "--results-root",
                             str(results), "--notebooks-dir", str(nbs), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_started(results: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not list((results / "smoke").glob(".toy.run-*/started")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "the notebook never started"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [{"seed": -1}, {"seed": "abc"}, {"wait": "long"}])
def test_rejected_parameters_change_nothing(lab, bad):
    nbs, results = lab
    before = _committed(results)
    with pytest.raises(runner.ExperimentError, match="seed must be a non-negative integer|expected a"):
        runner.run("toy", "smoke", bad, results_root=results, notebooks_dir=nbs)
    assert _committed(results) == before and not _leftovers(results)


def test_failed_notebook_keeps_results_and_its_executed_copy(lab):
    nbs, results = lab
    with pytest.raises(runner.ExperimentError, match="FileNotFoundError"):
        runner.run("nodata", "smoke", results_root=results, notebooks_dir=nbs)
    assert (results / "smoke" / "nodata.failed.ipynb").is_file()
    assert not (results / "smoke" / "nodata").exists()
    assert not [p for p in (results / "smoke").iterdir() if p.name.startswith(".nodata.run-")]


def test_names_are_names_not_paths(lab, tmp_path):
    nbs, results = lab
    for name in (str(nbs / "toy"), "../toy", "toy/../../x", ""):
        with pytest.raises(runner.ExperimentError, match="not a path"):
            runner.run(name, "smoke", results_root=results, notebooks_dir=nbs)
    assert sorted(p.name for p in nbs.iterdir()) == ["nodata.ipynb", "toy.ipynb"]


def test_sigkill_mid_notebook_leaves_results_and_the_next_run_cleans_up(lab):
    nbs, results = lab
    before = _committed(results)
    proc = _cli(nbs, results, "-p", "seed=1", "-p", "wait=30")
    _wait_started(results, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert _committed(results) == before
    assert _leftovers(results), "the killed run's temporary folder is there until the next run"
    runner.run("toy", "smoke", {"seed": 2}, results_root=results, notebooks_dir=nbs)
    assert _committed(results)["json"]["seed"] == 2 and not _leftovers(results)


def test_sigterm_keeps_results_and_failed_notebook(lab):
    nbs, results = lab
    before = _committed(results)
    proc = _cli(nbs, results, "-p", "seed=1", "-p", "wait=30")
    _wait_started(results, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    # one line of ours (the kernel may log its own shutdown noise above it), never our traceback
    assert err.strip().splitlines()[-1].startswith("error: toy.ipynb interrupted (signal 15)")
    assert "reidlib/runner/" not in err and "papermill" not in err
    assert _committed(results) == before and not _leftovers(results)
    assert (results / "smoke" / "toy.failed.ipynb").is_file()


def test_timeout_is_a_short_error_and_keeps_results(lab):
    nbs, results = lab
    before = _committed(results)
    proc = _cli(nbs, results, "-p", "wait=20", "--timeout", "2")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1].startswith("error: toy.ipynb: a cell ran longer than --timeout 2 s"), err
    assert "reidlib/runner/" not in err and "papermill" not in err
    assert _committed(results) == before and not _leftovers(results)
    assert (results / "smoke" / "toy.failed.ipynb").is_file()


def test_two_runs_of_one_notebook_the_second_refuses(lab):
    nbs, results = lab
    first = _cli(nbs, results, "-p", "seed=3", "-p", "wait=6")
    _wait_started(results, first)
    second = _cli(nbs, results, "-p", "seed=4")
    out2, err2 = second.communicate(timeout=60)
    out1, err1 = first.communicate(timeout=120)
    assert second.returncode == 2 and "already running" in err2
    assert first.returncode == 0, err1
    assert _committed(results)["json"] == {"seed": 3, "wait": 6, "tables": ["t"]}
    assert "seed 3" not in err2 and _committed(results)["table"].strip().endswith("3")


def test_a_commit_killed_half_way_is_finished_by_the_next_run(lab):
    """Simulate a kill between the renames of a commit: the COMMITTED marker rolls it forward."""
    nbs, results = lab
    out = results / "smoke"
    tmp = out / ".toy.run-1-1"
    (tmp / "toy").mkdir(parents=True)
    (tmp / "toy" / "t.csv").write_text(",x\n0,99\n")
    (tmp / "toy.ipynb").write_text((out / "toy.ipynb").read_text())
    (tmp / "toy.json").write_text(json.dumps({"metrics": {"seed": 99}}))
    (tmp / "COMMITTED").write_text("")
    os.replace(tmp / "toy", out / "toy-moved")            # pretend the first rename happened ...
    os.replace(out / "toy-moved", out / "toy-new")
    os.replace(out / "toy", tmp / "old")                  # ... the old table is set aside
    os.replace(out / "toy-new", out / "toy")
    from reidlib.runner import transaction

    transaction._recover(out, "toy")
    assert json.loads((out / "toy.json").read_text())["metrics"] == {"seed": 99}
    assert (out / "toy" / "t.csv").read_text().endswith("99\n") and not _leftovers(results)


# ---------------------------------------------------------------------------------------------
# files never run code; damaged checkpoints are named and skipped
# ---------------------------------------------------------------------------------------------

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/reidlib-pwned",))


def test_a_crafted_checkpoint_is_refused(tmp_path):
    from reidlib.engine.artifacts import load_model, load_span
    from reidlib.engine.checkpoint import load_checkpoint

    path = tmp_path / "evil.pt"
    torch.save({"format": "reidlib-checkpoint", "model": _Payload()}, path)
    Path("/tmp/reidlib-pwned").unlink(missing_ok=True)
    for load in (load_checkpoint, load_model, load_span):
        with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
            load(path)
    assert not Path("/tmp/reidlib-pwned").exists()


def _tiny_trainer(out: Path, lr: float = 0.1, max_iters: int = 4):
    from reidlib.engine.trainer import Trainer

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [{"x": torch.randn(4, 3), "y": torch.randn(4, 1)} for _ in range(2)]

    def step(m, b):
        return torch.nn.functional.mse_loss(m(b["x"]), b["y"]), {}

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return Trainer(model, step, optimizer=opt, data_loader=data, max_iters=max_iters, out_dir=out,
                   checkpoint_every=1, keep_last=2, device="cpu", progress=False,
                   config={"optim": {"lr": lr, "max_iters": max_iters}, "train": {"progress": False}})


def test_truncated_last_pt_is_named_and_the_newest_intact_checkpoint_used(tmp_path):
    t = _tiny_trainer(tmp_path, max_iters=3)
    t.fit()
    last = tmp_path / "last.pt"
    os.unlink(last)                                   # a damaged copy replaces the file
    last.write_bytes((tmp_path / "iter_0000003.pt").read_bytes()[:100])
    from reidlib.engine.checkpoint import load_checkpoint

    with pytest.raises(CheckpointError, match=r"last\.pt: unreadable \(truncated or corrupt"):
        load_checkpoint(last)
    resumed = _tiny_trainer(tmp_path, max_iters=5)
    with pytest.warns(UserWarning, match=r"last\.pt: unreadable.*resuming from .*iter_0000003\.pt"):
        assert resumed.resume()
    assert resumed.iteration == 3


def test_a_kill_during_save_leaves_no_temporary_for_good(tmp_path):
    t = _tiny_trainer(tmp_path, max_iters=1)
    t.fit()
    stale = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".iter_0000001.pt.link.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    _tiny_trainer(tmp_path, max_iters=2).fit(resume=True)
    assert not any(p.exists() for p in stale)


def test_resume_refuses_a_changed_learning_rate(tmp_path):
    _tiny_trainer(tmp_path, lr=0.1, max_iters=2).fit()
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.1 in the checkpoint, 0\.5 now"):
        _tiny_trainer(tmp_path, lr=0.5, max_iters=4).fit(resume=True)
    t = _tiny_trainer(tmp_path, lr=0.1, max_iters=4)     # a longer run with the same settings is fine
    t.fit(resume=True)
    assert t.iteration == 4


def test_cli_resume_with_changed_lr_exits_with_the_reason(tmp_path):
    from helpers import make_veri776

    make_veri776(tmp_path / "veri")
    data = tmp_path / "veri"
    base = [sys.executable, "-m", "reidlib", "train", "--model", "baseline", "--data", str(data), "--out",
            str(tmp_path / "run"), "--no-progress", "model.backbone=resnet18", "data.height=32", "data.width=32",
            "data.p=2", "data.k=2", "data.num_workers=0", "optim.unit=iter", "optim.max_iters=2",
            "optim.milestones=[]", "optim.warmup_iters=0", "train.device=cpu"]
    assert subprocess.run(base, capture_output=True, text=True, cwd=ROOT).returncode == 0
    r = subprocess.run(base[:4] + ["--resume"] + base[4:] + ["optim.lr=0.5"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "optim.lr" in r.stderr and "cannot resume" in r.stderr
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "lr: 0.5" not in saved, "the refused settings must not be recorded as the run's"


def test_cli_evaluate_with_no_valid_query_fails_and_writes_no_nan(tmp_path):
    from helpers import make_veri776

    from reidlib.engine.training import train_reid

    make_veri776(tmp_path / "veri")
    data = tmp_path / "veri"
    res = train_reid(None, **{"model.name": "baseline", "model.backbone": "resnet18", "data.root": str(data),
                              "data.height": 32, "data.width": 32, "data.p": 2, "data.k": 2, "data.num_workers": 0,
                              "optim.unit": "iter", "optim.max_iters": 1, "optim.milestones": [],
                              "optim.warmup_iters": 0, "train.device": "cpu", "train.progress": False,
                              "train.out_dir": str(tmp_path / "run")})
    # the gallery: one image of an identity no query has
    names = (data / "name_test.txt").read_text().split()
    stranger = "0999_c001_00000001_0.jpg"
    (data / "image_test" / stranger).write_bytes((data / "image_test" / names[0]).read_bytes())
    (data / "name_test.txt").write_text(stranger + "\n")
    for f in ("gt_index.txt", "jk_index.txt", "keypoint_test.txt"):
        (data / f).unlink(missing_ok=True)
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, "-m", "reidlib", "evaluate", "--checkpoint", str(res.checkpoint),
                        "--data", str(data), "--json", str(out), "--device", "cpu"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "no query has a true match" in r.stderr
    text = out.read_text()
    assert "NaN" not in text and json.loads(text)["mAP"] is None
