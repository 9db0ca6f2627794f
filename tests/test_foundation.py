"""The environment and the experiment runner (issue: foundation)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from reidlib import runner
from reidlib.runner.provenance import provenance
from reidlib.utils import paths
from reidlib.utils.io import atomic_path, atomic_write_json

ROOT = Path(__file__).resolve().parent.parent


def test_torch_torchvision_reidlib_import_in_this_env():
    # The local CPU-only torch wheel breaks torchvision ("operator torchvision::nms does not exist");
    # the lock pins a registry pair. Check in a fresh interpreter, including a compiled op.
    code = ("import torch, torchvision, reidlib; from torchvision.ops import nms; "
            "b = torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.]]); "
            "print(nms(b, torch.tensor([0.9, 0.8]), 0.5).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[0]"


def _pins(lines):
    return dict(m.groups() for m in (re.match(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", ln) for ln in lines) if m)


def test_environment_yml_agrees_with_lock():
    lock = {k.lower(): v for k, v in _pins((ROOT / "requirements-lock.txt").read_text().splitlines()).items()}
    env = {k.lower(): v for k, v in _pins((ROOT / "environment.yml").read_text().splitlines()).items()}
    assert env, "environment.yml has no pins"
    for name, version in env.items():
        assert lock.get(name) == version, f"{name}: environment.yml {version} != lock {lock.get(name)}"
    assert lock["jupyter-book"].startswith("1."), "Jupyter Book must stay 1.x"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def _notebook(path: Path, body: str, params: str | None = None) -> Path:
    params = params or ('profile = "smoke"\ndevice = "auto"\ndata_root = None\n'
                        'results_dir = "scratch/toy"\nseed = 0\nscale = 2')
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy"),
                nbformat.v4.new_code_cell(params),
                nbformat.v4.new_code_cell(body)]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def toy_dirs(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "toy.ipynb", "from reidlib.study.record import record\n"
                                 "import pandas as pd\n"
                                 "record(results_dir, {'value': scale * 21, 'seed': seed},\n"
                                 "       tables={'t': pd.DataFrame({'x': [1, 2]})})\nprint('ok')")
    _notebook(nbs / "broken.ipynb", "raise ValueError('boom')")
    _notebook(nbs / "noparams.ipynb", "x = 1", params="x = 0")
    return nbs, tmp_path / "results"


def _git_repo(root: Path):
    """``root`` as a git repository with one commit (``a.txt``, ``results/r.json``); returns a
    function running git there."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                               "-c", "commit.gpgsign=false", *args], cwd=root, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (root / "a.txt").write_text("1\n")
    (root / "results").mkdir(exist_ok=True)
    (root / "results" / "r.json").write_text("{}")
    git("add", "a.txt", "results/r.json")
    git("commit", "-q", "-m", "first")
    return git


def test_runner_writes_notebook_metrics_and_provenance(toy_dirs, monkeypatch):
    import datetime as dt

    import torch
    import torchvision

    import reidlib

    nbs, results = toy_dirs
    git = _git_repo(nbs.parent)                             # the notebooks live in a repository of their own
    monkeypatch.setenv("REIDLIB_HOME", str(nbs.parent))
    head = git("rev-parse", "HEAD")
    rec = runner.run("toy", "smoke", {"scale": 3}, results_root=results, notebooks_dir=nbs)
    assert rec["metrics"]["value"] == 63
    on_disk = json.loads((results / "smoke" / "toy.json").read_text())
    assert on_disk == json.loads(json.dumps(rec))
    assert on_disk["commit"] == head and on_disk["dirty"] is False   # notebooks/ and results/ untracked
    assert (on_disk["reidlib"], on_disk["torch"], on_disk["torchvision"]) == (
        reidlib.__version__, torch.__version__, torchvision.__version__)
    assert isinstance(on_disk["device"], str) and on_disk["device"]
    assert on_disk["profile"] == "smoke" and on_disk["seeds"] == [0]
    assert on_disk["parameters"]["scale"] == 3 and on_disk["parameters"]["profile"] == "smoke"
    start, end = dt.datetime.fromisoformat(on_disk["start"]), dt.datetime.fromisoformat(on_disk["end"])
    assert start <= end and 0 <= on_disk["duration_s"] <= (end - start).total_seconds() + 1.0
    executed = nbformat.read(str(results / "smoke" / "toy.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert (results / "smoke" / "toy" / "t.csv").read_text().startswith(",x")


def test_provenance_records_the_real_commit_and_dirty_flag(tmp_path, monkeypatch):
    """``commit`` is ``git rev-parse HEAD``; ``dirty`` is whether a tracked file outside results/
    differs from it or a file under reidlib/ is untracked (other untracked files and results/ do not
    count), as ``git status --porcelain``."""
    git = _git_repo(tmp_path)
    monkeypatch.setenv("REIDLIB_HOME", str(tmp_path))
    first = git("rev-parse", "HEAD")
    p = provenance("smoke", {"seed": 3})
    assert (p["commit"], p["dirty"], p["seeds"], p["profile"]) == (first, False, [0], "smoke")
    assert p["seeds_by_meaning"]["data_seed"] == 3 and p["seeds_by_meaning"]["training_seeds"] == [0]
    assert provenance("gpu", {"seed": 0})["seeds"] == [0, 1, 2]         # what a gpu run trains
    (tmp_path / "untracked.txt").write_text("x")
    (tmp_path / "results" / "r.json").write_text('{"new": 1}')
    assert provenance("smoke", {})["dirty"] is False
    # a library module no commit holds ran too: the run is dirty and the record names it
    (tmp_path / "reidlib" / "ablations").mkdir(parents=True)
    (tmp_path / "reidlib" / "ablations" / "new_page.py").write_text("x = 1\n")
    p = provenance("smoke", {})
    assert p["dirty"] is True and p["dirty_paths"] == ["reidlib/ablations/new_page.py"]
    (tmp_path / "reidlib" / "ablations" / "new_page.py").unlink()
    (tmp_path / "a.txt").write_text("2\n")
    assert git("status", "--porcelain", "--untracked-files=no") != ""
    assert provenance("smoke", {})["dirty"] is True
    assert provenance("smoke", {})["dirty_paths"] == ["a.txt"]       # which files, not just a flag
    git("commit", "-q", "-am", "second")
    p = provenance("smoke", {"seeds": [0, 1]})
    assert p["commit"] == git("rev-parse", "HEAD") != first and p["dirty"] is False and p["seeds"] == [0, 1]
    # outside a repository: unknown, not a made-up value
    monkeypatch.setenv("REIDLIB_HOME", str(tmp_path / "results"))
    (tmp_path / ".git").rename(tmp_path / "git-moved")
    p = provenance("smoke", {})
    assert p["commit"] is None and p["dirty"] is None


def test_provenance_of_this_checkout():
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.home(), capture_output=True, text=True,
                              check=True).stdout.strip()

    status = ("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    new_code = ("status", "--porcelain", "--untracked-files=all", "--", "reidlib")

    def dirty():
        return bool(git(*status)) or any(line.startswith("??") for line in git(*new_code).splitlines())

    before = dirty()
    p = provenance("smoke", {})
    after = dirty()
    assert p["commit"] == git("rev-parse", "HEAD") and len(p["commit"]) == 40
    if before == after:                                   # (other processes may edit the checkout)
        assert p["dirty"] is before


def test_runner_refuses_an_unknown_profile(toy_dirs):
    nbs, results = toy_dirs
    with pytest.raises(runner.ExperimentError, match=r"unknown profile 'nope'; expected one of \[.*'smoke'"):
        runner.run("toy", "nope", results_root=results, notebooks_dir=nbs)
    assert not results.exists() or not any(results.rglob("*"))
    assert runner.main(["run", "toy", "--profile", "nope", "--results-root", str(results),
                             "--notebooks-dir", str(nbs)]) == 2
    assert not results.exists() or not any(results.rglob("*"))


def test_runner_rejects_undeclared_parameters(toy_dirs):
    nbs, results = toy_dirs
    with pytest.raises(runner.ExperimentError, match=r"does not declare parameter\(s\) \['lr', 'sclae'\]"):
        runner.run("toy", "smoke", {"sclae": 3, "lr": 1}, results_root=results, notebooks_dir=nbs)
    assert not (results / "smoke" / "toy.json").exists()


def test_runner_requires_contract_parameters(toy_dirs):
    nbs, results = toy_dirs
    with pytest.raises(runner.ExperimentError, match="does not declare"):
        runner.run("noparams", "smoke", results_root=results, notebooks_dir=nbs)


def test_failed_run_keeps_notebook_and_previous_results(toy_dirs):
    nbs, results = toy_dirs
    (results / "smoke").mkdir(parents=True)
    (results / "smoke" / "broken.json").write_text('{"old": true}')
    with pytest.raises(runner.ExperimentError, match="ValueError: boom"):
        runner.run("broken", "smoke", results_root=results, notebooks_dir=nbs)
    assert (results / "smoke" / "broken.failed.ipynb").exists()
    assert not (results / "smoke" / "broken.ipynb").exists()
    assert json.loads((results / "smoke" / "broken.json").read_text()) == {"old": True}


def test_cli_exit_codes(toy_dirs, monkeypatch):
    nbs, results = toy_dirs
    monkeypatch.setenv("REIDLIB_HOME", str(nbs.parent))
    assert runner.main(["run", "toy", "--results-root", str(results), "-p", "scale=1"]) == 0
    assert runner.main(["run", "toy", "--results-root", str(results), "-p", "nope=1"]) == 2
    assert runner.main(["run", "broken", "--results-root", str(results)]) == 2


def test_parse_overrides_types():
    assert runner.parse_overrides(["a=1", "b=[0, 1]", "c=cuda", "d=null"]) == {
        "a": 1, "b": [0, 1], "c": "cuda", "d": None}
    with pytest.raises(runner.ExperimentError):
        runner.parse_overrides(["novalue"])


def test_every_notebook_follows_the_contract():
    order = json.loads((ROOT / "notebooks" / "order.json").read_text())
    on_disk = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(order) == on_disk, "notebooks/order.json must list every notebook exactly once"
    for name in order:
        params = runner.declared_parameters(ROOT / "notebooks" / f"{name}.ipynb")
        assert params["profile"] == "smoke", name
        assert params["device"] == "auto", name
        nb = nbformat.read(str(ROOT / "notebooks" / f"{name}.ipynb"), as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: commit without outputs"


def test_the_book_shows_where_a_run_was_moved_not_its_temporary_folder():
    """The runner executes in ``results/<profile>/.<name>.run-*/``: the book's copy of the injected
    parameters names the folder the results live in, and says it was moved there."""
    from reidlib.runner.book import _final_results_dir

    injected = ('# Parameters\nprofile = "cpu"\n'
                'results_dir = "/home/u/reid/results/cpu/.span_pilot.run-12-34/span_pilot"\nseed = 0\n')
    shown = _final_results_dir(injected, Path("/anywhere/results/cpu/span_pilot.ipynb"))
    assert 'results_dir = "results/cpu/span_pilot"' in shown
    assert ".run-" not in shown and "/home/u" not in shown
    assert 'profile = "cpu"' in shown and "seed = 0" in shown and "moved here" in shown


def test_home_is_the_checkout_the_package_was_imported_from(monkeypatch):
    """Without ``REIDLIB_HOME``, data, runs and results live in the source checkout (never in the
    caller's working directory, e.g. ``notebooks/`` where papermill runs a kernel)."""
    monkeypatch.delenv("REIDLIB_HOME", raising=False)
    root = Path(__file__).resolve().parent.parent
    assert paths.home() == root and (root / "pyproject.toml").is_file()
    assert paths.runs_dir("cpu") == root / "runs" / "cpu"
