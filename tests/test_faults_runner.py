"""Fault injection at the runner's door and exits: every mistake in a run's parameters is named in
one line before anything is locked or written (paths read from the caller's working directory, the
device, dataset vs test size); a run that fails in any way (a full disk, an error after the
notebook ran, SIGHUP) removes its temporary folder and reports its first error in one line; the
``reidlib`` CLI checks its ``--device`` and paths the same way; written files get the user's umask.
(The notebook-level faults of the runner: ``test_faults.py``.)"""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
import torch

from reidlib import runner

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ('profile = "smoke"\ndevice = "auto"\ndata_root = None\nresults_dir = "scratch/x"\nseed = 0\n'
          'init = None\nwait = 0.0')
ESE_PARAMS = ('profile = "smoke"\ndevice = "auto"\ndata_root = None\nresults_dir = "scratch/x"\nseed = 0\n'
              'init = None\ndataset = "vehicleid"\ntest_size = 800')
# the kernel runs in notebooks/: a path it is given must be absolute to be found
BODY = ("import os, time\nfrom reidlib.study.record import record\n"
        "open(results_dir + '/../started', 'w').write('1')\n"
        "time.sleep(wait)\n"
        "assert data_root is None or os.path.isdir(data_root), data_root\n"
        "assert init in (None, 'standin', 'random') or os.path.isfile(init), init\n"
        "record(results_dir, {'data_root': data_root, 'init': init})")
FORMS = "expected auto, cpu, cuda[:N] or mps"


KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _notebook(path: Path, params: str, body: str) -> None:
    cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL}), str(path))


@pytest.fixture
def lab(tmp_path):
    """A notebooks folder (``toy``: paths; ``ese``: a VehicleID page's dataset / test size) and a
    results root nothing has been written to."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "toy.ipynb", PARAMS, BODY)
    _notebook(nbs / "ese.ipynb", ESE_PARAMS, "from reidlib.study.record import record\nrecord(results_dir, {})")
    return nbs, tmp_path / "results"


def _leftovers(results: Path, name: str = "toy") -> list[str]:
    out = results / "smoke"
    return sorted(p.name for p in out.iterdir() if p.name.startswith(f".{name}.run-")) if out.is_dir() else []


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _declared(nbs: Path, name: str = "toy") -> dict:
    return runner.declared_parameters(nbs / f"{name}.ipynb")


# ---------------------------------------------------------------------------------------------
# one check at the door
# ---------------------------------------------------------------------------------------------

def test_relative_paths_are_read_from_the_callers_directory(lab, tmp_path, monkeypatch):
    nbs, results = lab
    caller = tmp_path / "caller"
    (caller / "data" / "myveri").mkdir(parents=True)
    (caller / "w").mkdir()
    (caller / "w" / "r50.pth").write_bytes(b"weights")
    monkeypatch.chdir(caller)
    rec = runner.run("toy", "smoke", {"data_root": "data/myveri", "init": "w/r50.pth"},
                     results_root=results, notebooks_dir=nbs)
    assert rec["metrics"]["data_root"] == str(caller / "data" / "myveri")
    assert rec["metrics"]["init"] == rec["parameters"]["init"] == str(caller / "w" / "r50.pth")


def test_init_keywords_are_not_paths(lab, tmp_path):
    nbs, _ = lab
    for init in ("standin", "random", None):
        assert runner.check_parameters(_declared(nbs), {"init": init}, "toy.ipynb", cwd=tmp_path) == {"init": init}


@pytest.mark.parametrize("bad, message", [
    ({"data_root": "data/nope"}, r"toy.ipynb: data_root='data/nope': no folder .*caller/data/nope \(a relative "
                                 r"path is read from the working directory .*caller\); expected a dataset folder"),
    ({"init": "nope.pth"}, r"init='nope.pth': no file .*caller/nope.pth .*expected 'standin', 'random' or a local "
                           r"ImageNet state-dict file"),
    ({"data_root": 5}, r"data_root=5 is a int; expected a dataset folder"),
])
def test_a_missing_path_is_named_at_the_door(lab, tmp_path, monkeypatch, bad, message):
    nbs, results = lab
    (tmp_path / "caller").mkdir()
    monkeypatch.chdir(tmp_path / "caller")
    with pytest.raises(runner.ExperimentError, match=message):
        runner.run("toy", "smoke", bad, results_root=results, notebooks_dir=nbs)
    assert not results.exists(), "nothing is locked or written for a refused run"


_DEVICES = ["gpu0", "cuda:99", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda"]) + \
    ([] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else ["mps"])


@pytest.mark.parametrize("device", _DEVICES)
def test_an_unavailable_device_is_named_at_the_door(lab, capsys, device):
    nbs, results = lab
    code = runner.main(["run", "toy", "--results-root", str(results), "--notebooks-dir", str(nbs),
                        "-p", f"device={device}"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: toy.ipynb: device='{device}'") and line.endswith(FORMS), line
    if device.startswith("cuda") and device != "cuda:x":
        assert "available here: cpu" in line and ("no CUDA device" in line or "CUDA device(s) visible" in line)
    assert not results.exists()


@pytest.mark.parametrize("bad, message", [
    ({"dataset": "veri776"}, "ese.ipynb: test_size=800 is a vehicleid test size; veri776 has one test set: pass "
                             "-p test_size=null"),
    ({"dataset": "veriwild"}, "ese.ipynb: test_size=800 is a vehicleid test size; veriwild accepts test_size 3000, "
                              "5000, 10000: pass -p test_size=3000 (or -p test_size=null for 3000)"),
    ({"test_size": 123}, "ese.ipynb: test_size=123; vehicleid accepts test_size 800, 1600, 2400: pass "
                         "-p test_size=800"),
    ({"dataset": "veriwild", "test_size": 1600}, "test_size=1600 is a vehicleid test size; veriwild accepts"),
])
def test_dataset_and_test_size_are_checked_together_at_the_door(lab, bad, message):
    nbs, results = lab
    with pytest.raises(runner.ExperimentError) as err:
        runner.run("ese", "smoke", bad, results_root=results, notebooks_dir=nbs)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not results.exists()


def test_valid_combinations_pass_the_door(lab, tmp_path):
    nbs, _ = lab
    declared = _declared(nbs, "ese")
    for ok in ({"dataset": "veri776", "test_size": None}, {"dataset": "veriwild", "test_size": 5000},
               {"test_size": 2400}, {"dataset": "veriwild", "test_size": None}):
        assert runner.check_parameters(declared, ok, "ese.ipynb", cwd=tmp_path) == ok


@pytest.mark.parametrize("bad, message", [
    ({"profile": "cpu"}, r"profile='cpu' is set by the runner; use --profile"),
    ({"results_dir": "x"}, r"results_dir='x' is set by the runner; use --results-root"),
    ({"results_profile": "nope"}, r"results_profile='nope'; expected one of .*smoke"),
])
def test_parameters_the_runner_owns_are_refused(lab, tmp_path, bad, message):
    nbs, _ = lab
    declared = {**_declared(nbs), "results_profile": None}
    with pytest.raises(runner.ExperimentError, match=message):
        runner.check_parameters(declared, bad, "toy.ipynb", cwd=tmp_path)


def test_runner_cli_names_an_unusable_results_root(lab, tmp_path, capsys):
    nbs, _ = lab
    not_a_folder = tmp_path / "results-file"
    not_a_folder.write_text("")
    code = runner.main(["run", "toy", "--results-root", str(not_a_folder), "--notebooks-dir", str(nbs)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "results-file" in line


# ---------------------------------------------------------------------------------------------
# cleanup always, the first error reported
# ---------------------------------------------------------------------------------------------

def _fake_execute(calls: list, fail=None):
    """A stand-in for ``papermill.execute_notebook``: writes the executed notebook (2 MB) and what
    the notebook records, or runs ``fail(output_path)`` (which raises) after writing it."""
    from reidlib.study.record import record

    def execute(src, out, parameters, **kwargs):
        calls.append(parameters)
        Path(out).write_bytes(b"x" * 2_000_000)
        if fail is not None:
            fail(out)
        record(parameters["results_dir"], {"seed": parameters.get("seed", 0)})
        Path(out).write_text(Path(src).read_text())

    return execute


def test_a_full_disk_reports_the_first_error_and_leaves_nothing_behind(lab, monkeypatch, capsys):
    import papermill

    nbs, results = lab
    calls: list = []
    monkeypatch.setattr(papermill, "execute_notebook", _fake_execute(calls))
    assert runner.main(["run", "toy", "--results-root", str(results), "--notebooks-dir", str(nbs),
                        "-p", "seed=7"]) == 0
    committed = (results / "smoke" / "toy.json").read_text()
    capsys.readouterr()

    def disk_full(out):
        def mkstemp(*args, **kwargs):                       # every later write fails too
            raise OSError(errno.ENOSPC, "No space left on device", "the-second-write")

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        raise OSError(errno.ENOSPC, "No space left on device", "the-first-write")

    monkeypatch.setattr(papermill, "execute_notebook", _fake_execute(calls, disk_full))
    for _ in range(2):                                      # and again: nothing piles up
        code = runner.main(["run", "toy", "--results-root", str(results), "--notebooks-dir", str(nbs),
                            "-p", "seed=8"])
        line = _one_line(capsys.readouterr().err)
        assert code == 2
        assert line == ("error: toy.ipynb: no space left on device (the-first-write): free some space and run "
                        "again; earlier results are unchanged"), line
        assert not _leftovers(results)
    assert (results / "smoke" / "toy.json").read_text() == committed


@pytest.mark.parametrize("where", ["provenance", "record"])
def test_an_error_after_the_temporary_folder_was_made_removes_it(lab, monkeypatch, where):
    import papermill

    from reidlib.runner import transaction

    nbs, results = lab
    monkeypatch.setattr(papermill, "execute_notebook", _fake_execute([]))
    if where == "provenance":
        def broken(*args, **kwargs):
            raise RuntimeError("git exploded\nsecond line")

        monkeypatch.setattr(transaction, "provenance", broken)
        message = "toy.ipynb: the run failed: RuntimeError: git exploded; earlier results are unchanged"
    else:
        def broken(path, obj, **kwargs):
            raise OSError(errno.EACCES, "Permission denied", str(path))

        monkeypatch.setattr(transaction, "atomic_write_json", broken)
        message = "toy.ipynb: Permission denied ("
    with pytest.raises(runner.ExperimentError) as err:
        runner.run("toy", "smoke", results_root=results, notebooks_dir=nbs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)
    assert not _leftovers(results) and not (results / "smoke" / "toy.json").exists()


def test_sighup_is_an_interrupt_that_cleans_up(lab):
    nbs, results = lab
    proc = subprocess.Popen([sys.executable, "-m", "reidlib.runner", "run", "toy", "--results-root", str(results),
                             "--notebooks-dir", str(nbs), "-p", "wait=30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            # as from a terminal: the suite itself may run under nohup (SIGHUP ignored,
                            # which the runner rightly keeps ignored)
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    t0 = time.time()
    while not list((results / "smoke").glob(".toy.run-*/started")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 60, "the notebook never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (proc.returncode, err)
    assert err.strip().splitlines()[-1].startswith("error: toy.ipynb interrupted (signal 1)"), err
    assert not _leftovers(results) and (results / "smoke" / "toy.failed.ipynb").is_file()


# ---------------------------------------------------------------------------------------------
# written files get the user's umask
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_get_the_users_umask(tmp_path, umask):
    from reidlib.utils.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "a")
        atomic_write_json(tmp_path / "b.json", {"b": 1})
        atomic_write_bytes(tmp_path / "c.bin", b"c")
        with atomic_path(tmp_path / "d.pt") as tmp:
            torch.save({"d": 1}, tmp)
        (tmp_path / "plain.txt").write_text("as open() makes it")
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.txt", "b.json", "c.bin", "d.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert json.loads((tmp_path / "b.json").read_text()) == {"b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.bin", "d.pt", "plain.txt"]


# ---------------------------------------------------------------------------------------------
# the reidlib CLI: the same door
# ---------------------------------------------------------------------------------------------

def _reidlib(*argv: str) -> int:
    from reidlib.__main__ import main

    return main(list(argv))


@pytest.mark.parametrize("device", ["gpu0", "cuda:99"])
def test_cli_evaluate_checks_the_device_at_the_door(tmp_path, capsys, device):
    ckpt = tmp_path / "model.pt"
    torch.save({"format": "nothing"}, ckpt)
    (tmp_path / "data").mkdir()
    code = _reidlib("evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--device", device)
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: --device: device='{device}'") and line.endswith(FORMS), line


def test_cli_train_checks_the_device_before_making_its_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    code = _reidlib("train", "--model", "baseline", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                    "train.device=cuda:99")
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("error: train.device: device='cuda:99'"), line
    assert not (tmp_path / "out").exists()


def test_cli_missing_data_is_named_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _reidlib("train", "--model", "baseline", "--data", "nope", "--out", "out")
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and line == (f"error: --data nope: no folder {tmp_path / 'nope'} (read from the working "
                                  f"directory {tmp_path}); expected a dataset folder"), line
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "garbage.pt"
    ckpt.write_bytes(b"not a torch file at all")
    (tmp_path / "data").mkdir()
    code = _reidlib("evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"))
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "garbage.pt" in line, line


def test_a_kernel_that_dies_of_the_interruption_still_reads_as_interrupted(lab, monkeypatch):
    """Under load the kernel can die of a SIGTERM before the runner's own interruption surfaces:
    papermill then raises its DeadKernelError; the run still reports what stopped it."""
    import papermill

    from reidlib.runner import transaction

    nbs, results = lab

    class DeadKernelError(RuntimeError):
        pass

    def dies(*args, **kwargs):
        transaction._SIGNALLED["signal"] = signal.SIGTERM        # what the stop-signal handler records
        raise DeadKernelError("Kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", dies)
    with pytest.raises(runner.ExperimentError, match=r"^toy.ipynb interrupted \(signal 15\)") as err:
        runner.run("toy", "smoke", results_root=results, notebooks_dir=nbs)
    assert err.value.__cause__ is None and not _leftovers(results)
