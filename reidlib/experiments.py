"""The experiment runner: papermill notebooks in, executed notebooks + metrics with provenance out.

``python -m reidlib.experiments run NAME --profile P [-p key=value ...]`` executes
``notebooks/NAME.ipynb`` into ``results/P/NAME.ipynb`` and writes ``results/P/NAME.json`` holding
the metrics the notebook recorded (through :func:`record`) and the provenance of the run: git commit
and dirty flag, reidlib/torch/torchvision versions, device, profile, seeds, parameters, start, end,
duration. Tables the notebook records are written as CSV next to it (``results/P/NAME/``).

Every file is written atomically. A failed run keeps the executed notebook as
``results/P/NAME.failed.ipynb`` for inspection, leaves earlier results untouched, and exits non-zero.

``python -m reidlib.experiments reproduce --profile P --jobs J`` runs every notebook of
``notebooks/order.json`` that way, ``J`` at a time (:func:`reproduce`): one notebook per GPU
(``CUDA_VISIBLE_DEVICES``) on a GPU machine, at most one per core on the CPU, the ``summary``
notebook last, after all the others.

Notebook contract: a cell tagged ``parameters`` declaring at least ``profile``, ``device``,
``data_root``, ``results_dir`` and ``seed``; the notebook calls :func:`record` with its metrics.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from reidlib import paths
from reidlib.utils.io import atomic_path, atomic_write_json, atomic_write_text

REPO_ROOT = paths.home()
REQUIRED_PARAMETERS = ("profile", "device", "data_root", "results_dir", "seed")
PROFILE_ORDER = ("paper", "gpu", "cpu", "smoke")  # the book shows the most complete run available
METRICS_FILE = "metrics.json"


class ExperimentError(RuntimeError):
    """A notebook could not be run as asked (unknown notebook or parameter, failed execution)."""


# --------------------------------------------------------------------------------------------
# called from inside notebooks
# --------------------------------------------------------------------------------------------

def record(results_dir: str | os.PathLike, metrics: Mapping[str, Any], tables: Optional[Mapping[str, Any]] = None,
           figures: Optional[Mapping[str, Any]] = None) -> Path:
    """Store a notebook's results in ``results_dir``: ``metrics.json`` (merged with what earlier
    calls recorded), ``<table>.csv`` for each pandas DataFrame in ``tables`` and ``<figure>.png`` for
    each matplotlib Figure in ``figures``. All writes are atomic. Returns ``results_dir``."""
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    merged.update(_jsonable(dict(metrics)))
    for name, df in (tables or {}).items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=True))
        merged.setdefault("tables", [])
        if name not in merged["tables"]:
            merged["tables"].append(name)
    for name, fig in (figures or {}).items():
        with atomic_path(out / f"{name}.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    atomic_write_json(path, merged)
    return out


def record_results(results_dir: str | os.PathLike, table, *, arrays: Optional[Mapping[str, Any]] = None,
                   verdicts=None, comparisons=None, tables: Optional[Mapping[str, Any]] = None,
                   figures: Optional[Mapping[str, Any]] = None, **metrics: Any) -> Path:
    """:func:`record` for an ablation page: ``table`` as ``table.csv`` and, in the metrics, its
    numeric columns by row (a multi-level row key ``("a", 0.5)`` becomes ``"a=0.5"``); the
    per-query ``arrays`` as ``per_query.npz`` (:mod:`reidlib.per_query`); the claims' ``verdicts``
    (and their ``comparisons``) as ``claims.csv`` (``comparisons.csv``) and, in the metrics, as
    records; further ``tables``, ``figures`` and ``metrics`` as given."""
    from reidlib import per_query

    numeric = table.select_dtypes("number")
    rows = {("=".join(f"{x:g}" if isinstance(x, float) else str(x) for x in k) if isinstance(k, tuple) else k): v
            for k, v in numeric.to_dict(orient="index").items()}
    out = {"table": rows, **metrics}
    extra = {"table": table, **(tables or {})}
    if verdicts is not None:
        out["claims"] = verdicts.to_dict(orient="records")
        extra["claims"] = verdicts
    if comparisons is not None:
        extra["comparisons"] = comparisons
    if arrays is not None:
        per_query.save(Path(results_dir) / "per_query.npz", arrays)
        out["per_query"] = "per_query.npz"
    return record(results_dir, out, tables=extra, figures=figures)


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------

def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(profile: str, parameters: Mapping[str, Any], device: str = "auto") -> dict[str, Any]:
    """What produced a result: code (commit, dirty flag, versions), machine, profile, seeds, parameters."""
    import torch
    import torchvision

    import reidlib
    from reidlib.engine.trainer import precision_name, resolve_amp
    from reidlib.utils.device import device_name, resolve_device

    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    seeds = parameters.get("seeds")
    if seeds is None:
        seeds = [parameters.get("seed")]
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "reidlib": reidlib.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_name(device),
        # what training and feature extraction use by default on this device (train.amp=auto)
        "precision": precision_name(resolve_amp("auto", resolve_device(device)), channels_last=False),
        "torch_threads": torch.get_num_threads(),
        "profile": profile,
        "seeds": seeds,
        "parameters": _jsonable(dict(parameters)),
    }


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------

def notebook_path(name: str, notebooks_dir: Optional[Path] = None) -> Path:
    nb_dir = Path(notebooks_dir) if notebooks_dir else REPO_ROOT / "notebooks"
    path = nb_dir / f"{name}.ipynb"
    if not path.is_file():
        known = sorted(p.stem for p in nb_dir.glob("*.ipynb"))
        raise ExperimentError(f"no notebook {path}; known notebooks: {known}")
    return path


def declared_parameters(path: Path) -> dict[str, Any]:
    """Parameters declared in the notebook's ``parameters`` cell (name -> default as written)."""
    import papermill

    params = papermill.inspect_notebook(str(path))
    missing = [p for p in REQUIRED_PARAMETERS if p not in params]
    if missing:
        raise ExperimentError(f"{path}: the parameters cell does not declare {missing} "
                              f"(every notebook must declare {list(REQUIRED_PARAMETERS)})")
    out = {}
    for key, spec in params.items():
        raw = spec.get("default")
        try:
            out[key] = ast.literal_eval(raw) if isinstance(raw, str) else raw
        except (ValueError, SyntaxError):
            out[key] = raw  # an expression (e.g. a call): kept as its source text
    return out


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["lr=0.1", "seeds=[0,1]"]`` -> ``{"lr": 0.1, "seeds": [0, 1]}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ExperimentError(f"parameter {pair!r} is not of the form key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_TMP_PREFIX = "."            # temporary run folders: results/<profile>/.<name>.run-<id>/
_COMMITTED = "COMMITTED"     # marker: the run succeeded; its files replace the results


def check_parameters(declared: Mapping[str, Any], params: Mapping[str, Any], notebook: str) -> None:
    """Refuse parameters the notebook does not declare, or whose type differs from the declared
    default's (``seed=abc``); ``seed`` must be a non-negative integer."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ExperimentError(f"{notebook} does not declare parameter(s) {unknown}; declared: {sorted(declared)}")
    for key, value in params.items():
        default = declared[key]
        if default is None or value is None or isinstance(default, str) and key in ("results_dir", "data_root"):
            continue
        want = type(default)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ExperimentError(f"{notebook}: parameter {key}={value!r} is a {type(value).__name__}; expected a "
                                  f"{want.__name__} like its default {default!r}")
    from reidlib.data.registry import DATASETS

    if "dataset" in params and params["dataset"] not in DATASETS:
        raise ExperimentError(f"{notebook}: dataset={params['dataset']!r}; expected one of {', '.join(DATASETS)}")
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ExperimentError(f"{notebook}: seed must be a non-negative integer, got {seed!r}")


class _RunLock:
    """One run of ``results/<profile>/<name>`` at a time: an exclusive ``flock`` on
    ``.<name>.lock`` (released by the OS when the process dies, so a killed run never blocks)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise ExperimentError(f"{self.path.stem.lstrip('.')} is already running for this profile ({holder}, "
                                  f"lock {self.path}); wait for it to finish or stop it") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} since {_dt.datetime.now().isoformat(timespec='seconds')}")
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False


def _commit(tmp: Path, out_dir: Path, name: str) -> None:
    """Move the run's ``<name>/``, ``<name>.ipynb`` and ``<name>.json`` from ``tmp`` over the
    results (each by one rename; earlier files go to ``tmp/old`` first), then delete ``tmp``.
    Idempotent: after a crash half-way, running it again finishes the job."""
    old = tmp / "old"
    old.mkdir(exist_ok=True)
    for item in (name, f"{name}.ipynb", f"{name}.json"):
        src, dst = tmp / item, out_dir / item
        if not src.exists():            # already moved by an interrupted commit
            continue
        if dst.exists():
            os.replace(dst, old / item)
        os.replace(src, dst)
    shutil.rmtree(tmp, ignore_errors=True)


def _recover(out_dir: Path, name: str) -> None:
    """Finish the commit of a run that was killed while committing; delete the temporary folders
    of runs that did not succeed (killed, timed out)."""
    for tmp in sorted(out_dir.glob(f"{_TMP_PREFIX}{name}.run-*")):
        if (tmp / _COMMITTED).exists():
            _commit(tmp, out_dir, name)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(name: str, profile: str = "smoke", parameters: Optional[Mapping[str, Any]] = None, *,
        results_root: Optional[str | os.PathLike] = None, notebooks_dir: Optional[str | os.PathLike] = None,
        kernel_name: Optional[str] = None, progress_bar: bool = False, timeout: Optional[int] = None) -> dict[str, Any]:
    """Execute ``notebooks/<name>.ipynb`` for ``profile``; return the JSON record written next to it.

    Results are written the way a database commits: the notebook runs into a temporary folder
    beside ``results/<profile>/`` and only a successful run replaces ``<name>.ipynb``,
    ``<name>.json`` and ``<name>/`` (tables, figures). A failed, timed-out, interrupted (SIGINT,
    SIGTERM) or killed run changes nothing but ``<name>.failed.ipynb`` (the executed notebook, for
    inspection; not after SIGKILL) and leaves no temporary file behind (a killed run's are removed
    by the next run of the same notebook). One run per notebook and profile at a time."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from reidlib.profiles import PROFILES

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ExperimentError(f"notebook name {name!r}: expected a name such as 'span_losses' (letters, digits, "
                              "'_' and '-'), not a path")
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    src = notebook_path(name, Path(notebooks_dir) if notebooks_dir else None)
    declared = declared_parameters(src)
    params = dict(parameters or {})
    check_parameters(declared, params, src.name)

    out_dir = (Path(results_root) if results_root else REPO_ROOT / "results") / profile
    failed_nb = out_dir / f"{name}.failed.ipynb"
    with _RunLock(out_dir / f"{_TMP_PREFIX}{name}.lock"):
        _recover(out_dir, name)
        tmp = out_dir / f"{_TMP_PREFIX}{name}.run-{os.getpid()}-{int(time.time())}"
        work_dir = tmp / name  # tables, figures, metrics.json
        work_dir.mkdir(parents=True)
        params.update(profile=profile, results_dir=str(work_dir.resolve()))
        if "results_root" in declared:
            params.setdefault("results_root", str(out_dir.parent.resolve()))
        merged = {**declared, **params}
        device = merged.get("device") or "auto"

        prov = provenance(profile, merged, device)  # the code as it is when the run starts
        start = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        tmp_nb = tmp / f"{name}.ipynb"
        import threading

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if main else None
        try:
            try:
                papermill.execute_notebook(str(src), str(tmp_nb), parameters=params, kernel_name=kernel_name,
                                           progress_bar=progress_bar, cwd=str(src.parent),
                                           execution_timeout=timeout)
            except BaseException as err:
                if tmp_nb.exists():
                    with atomic_path(failed_nb, suffix=".ipynb") as kept:
                        shutil.copyfile(tmp_nb, kept)
                shutil.rmtree(tmp, ignore_errors=True)
                where = f"; executed notebook kept at {failed_nb}" if failed_nb.exists() else ""
                if isinstance(err, PapermillExecutionError):
                    raise ExperimentError(f"{src.name} failed in cell {err.exec_count}: {err.ename}: "
                                          f"{err.evalue}{where}") from None
                if isinstance(err, KeyboardInterrupt):
                    raise ExperimentError(f"{src.name} interrupted ({err or 'SIGINT'}); earlier results are "
                                          f"unchanged{where}") from None
                if type(err).__name__ in ("CellTimeoutError", "TimeoutError"):
                    raise ExperimentError(f"{src.name}: a cell ran longer than --timeout {timeout} s; earlier "
                                          f"results are unchanged{where}") from None
                raise
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        end = _dt.datetime.now(_dt.timezone.utc)

        metrics_path = work_dir / METRICS_FILE
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        if metrics_path.exists():  # its content lives on in NAME.json, next to the provenance
            metrics_path.unlink()
        rec = {
            "name": name,
            "metrics": metrics,
            **prov,
            "start": start.isoformat(timespec="seconds"),
            "end": end.isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - t0, 1),
        }
        atomic_write_json(tmp / f"{name}.json", rec)
        atomic_write_text(tmp / _COMMITTED, "")
        _commit(tmp, out_dir, name)
        if failed_nb.exists():
            failed_nb.unlink()
    return rec


def best_result(name: str, results_root: Optional[Path] = None) -> Optional[Path]:
    """The executed notebook of the most complete profile available (paper > gpu > cpu > smoke)."""
    root = Path(results_root) if results_root else REPO_ROOT / "results"
    for prof in PROFILE_ORDER:
        nb = root / prof / f"{name}.ipynb"
        if nb.is_file() and (root / prof / f"{name}.json").is_file():
            return nb
    return None


# --------------------------------------------------------------------------------------------
# all notebooks of a profile, several at a time
# --------------------------------------------------------------------------------------------

#: the notebook that collects the others' results: :func:`reproduce` runs it last, after all others
SUMMARY = "summary"


def notebook_order(notebooks_dir: Optional[str | os.PathLike] = None) -> list[str]:
    """The notebooks of ``notebooks/order.json``, in the book's order."""
    nb_dir = Path(notebooks_dir) if notebooks_dir else REPO_ROOT / "notebooks"
    return list(json.loads((nb_dir / "order.json").read_text()))


def visible_gpus() -> list[str]:
    """The GPUs a job may be given, as ``CUDA_VISIBLE_DEVICES`` entries: those this process sees
    (its own ``CUDA_VISIBLE_DEVICES``, else ``0 .. n-1``); empty without CUDA."""
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        n = 0
    if n == 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        ids = [d.strip() for d in env.split(",") if d.strip()]
        return ids[:n]
    return [str(i) for i in range(n)]


def job_slots(jobs: int, gpus: list[str], cores: Optional[int] = None) -> list[dict[str, str]]:
    """The environment of each of the parallel job slots: ``jobs`` capped at the number of GPUs
    (one GPU per slot through ``CUDA_VISIBLE_DEVICES``) or, without GPUs, at the number of CPU
    cores; with more than one slot every job gets ``cores // slots`` threads (``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS``, unless this process sets them). One slot: the environment as it is."""
    if int(jobs) < 1:
        raise ExperimentError(f"--jobs must be >= 1, got {jobs}")
    cores = int(cores or os.cpu_count() or 1)
    n = min(int(jobs), len(gpus)) if gpus else min(int(jobs), cores)
    if n == 1:
        return [{}]
    threads = str(max(1, cores // n))
    slots = []
    for i in range(n):
        env = {k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in os.environ}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i]
        slots.append(env)
    return slots


def reproduce(profile: str = "smoke", jobs: int = 1, names: Optional[Iterable[str]] = None, *,
              results_root: Optional[str | os.PathLike] = None, notebooks_dir: Optional[str | os.PathLike] = None,
              kernel_name: Optional[str] = None, timeout: Optional[int] = None, keep_going: bool = False,
              gpus: Optional[list[str]] = None, cores: Optional[int] = None, command=None,
              log=None) -> dict[str, Any]:
    """Run ``names`` (default: :func:`notebook_order`) for ``profile``, each as
    ``python -m reidlib.experiments run NAME`` in its own process (:func:`run`: atomic results,
    one run per notebook and profile), ``jobs`` at a time; the :data:`SUMMARY` notebook runs last,
    alone, once all the others succeeded.

    ``jobs=1`` is the sequential loop of ``make reproduce`` (the job's output goes straight to
    this process's). With more jobs, each job slot (:func:`job_slots`) owns one GPU of
    ``gpus`` (default :func:`visible_gpus`) through ``CUDA_VISIBLE_DEVICES``; without GPUs at
    most ``cores`` (default: all) jobs run; a job's output is printed in one block when it ends.
    Independent notebooks share trained models through :class:`reidlib.study.Study`'s per-entry
    locks, so none is trained twice. After a failure no new notebook starts (``keep_going``: the
    independent ones still do; the summary never runs after a failure).

    ``command(name) -> argv`` replaces the default command (tests); ``log`` (a callable taking a
    line) replaces ``print``. Returns ``{"jobs", "slots", "ok", "failed": {name: exit code},
    "not_run"}``."""
    import subprocess
    import threading
    from collections import deque

    say = log or (lambda line: print(line, flush=True))
    names = list(names) if names is not None else notebook_order(notebooks_dir)
    for name in names:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ExperimentError(f"notebook name {name!r}: expected a name such as 'span_losses'")
        notebook_path(name, Path(notebooks_dir) if notebooks_dir else None)
    gpus = visible_gpus() if gpus is None else list(gpus)
    slots = job_slots(jobs, gpus, cores)
    if len(slots) < int(jobs):
        where = f"{len(gpus)} GPU(s)" if gpus else f"{cores or os.cpu_count()} CPU core(s)"
        say(f"reproduce: {jobs} jobs asked, {where}: running {len(slots)} at a time")

    def default_command(name: str) -> list[str]:
        argv = [sys.executable, "-m", "reidlib.experiments", "run", name, "--profile", profile]
        for flag, value in (("--results-root", results_root), ("--notebooks-dir", notebooks_dir),
                            ("--kernel", kernel_name), ("--timeout", timeout)):
            if value is not None:
                argv += [flag, str(value)]
        return argv

    make = command or default_command
    first = [n for n in names if n != SUMMARY]
    last = [n for n in names if n == SUMMARY][:1]
    ok: list[str] = []
    failed: dict[str, int] = {}
    lock = threading.Lock()
    running: dict[str, subprocess.Popen] = {}
    stop = threading.Event()
    capture = len(slots) > 1

    def run_one(name: str, slot_env: dict[str, str]) -> None:
        env = {**os.environ, **slot_env}
        where = f" on GPU {slot_env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in slot_env else ""
        t0 = time.perf_counter()
        if capture:
            say(f"== {name} [{profile}] started{where}")
        proc = subprocess.Popen(make(name), env=env, cwd=str(REPO_ROOT), text=True,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.STDOUT if capture else None)
        with lock:
            running[name] = proc
        output, _ = proc.communicate()
        with lock:
            running.pop(name, None)
            if proc.returncode == 0:
                ok.append(name)
            else:
                failed[name] = proc.returncode
            if proc.returncode != 0 and not keep_going:
                stop.set()
            if capture:
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                say(f"== {name} [{profile}] {status}{where} after {time.perf_counter() - t0:.0f} s"
                    + (f"\n{output.rstrip()}" if output and output.strip() else ""))

    queue = deque(first)

    def slot_loop(slot_env: dict[str, str]) -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                name = queue.popleft()
            run_one(name, slot_env)

    try:
        if capture:
            threads = [threading.Thread(target=slot_loop, args=(env,), daemon=True) for env in slots]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        else:
            slot_loop(slots[0])
        if last and not failed and not stop.is_set():  # alone: all the threads, the first slot's GPU
            run_one(last[0], {k: v for k, v in slots[0].items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    except KeyboardInterrupt:
        stop.set()
        with lock:
            for proc in running.values():
                proc.terminate()
        raise
    done = set(ok) | set(failed)
    return {"jobs": len(slots), "slots": slots, "ok": ok, "failed": failed,
            "not_run": [n for n in names if n not in done]}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlib.experiments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute one notebook with papermill into results/<profile>/")
    p_run.add_argument("name")
    p_run.add_argument("--profile", default="smoke")
    p_run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                       help="override a notebook parameter (value parsed as YAML); repeatable")
    p_run.add_argument("--results-root", default=None)
    p_run.add_argument("--notebooks-dir", default=None, help="where NAME.ipynb is (default: notebooks/)")
    p_run.add_argument("--kernel", default=None)
    p_run.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p_rep = sub.add_parser("reproduce", help="run the notebooks of notebooks/order.json for a profile, JOBS at a "
                           "time (one per GPU; the summary last)")
    p_rep.add_argument("names", nargs="*", help="notebooks (default: notebooks/order.json)")
    p_rep.add_argument("--profile", default="smoke")
    p_rep.add_argument("--jobs", type=int, default=1,
                       help="notebooks at a time: one per GPU (CUDA_VISIBLE_DEVICES), at most one per CPU core")
    p_rep.add_argument("--keep-going", action="store_true", help="after a failure, still start the other notebooks")
    p_rep.add_argument("--results-root", default=None)
    p_rep.add_argument("--notebooks-dir", default=None)
    p_rep.add_argument("--kernel", default=None)
    p_rep.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p_list = sub.add_parser("list", help="list notebooks and the results available for each")
    p_list.add_argument("--results-root", default=None)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "run":
            rec = run(args.name, args.profile, parse_overrides(args.parameter), results_root=args.results_root,
                      notebooks_dir=args.notebooks_dir, kernel_name=args.kernel, progress_bar=sys.stderr.isatty(), timeout=args.timeout)
            shown = {k: v for k, v in rec["metrics"].items() if not isinstance(v, (dict, list))}
            print(f"{args.name} [{args.profile}] done in {rec['duration_s']} s on {rec['device']}: "
                  f"{json.dumps(shown)[:400]}")
        elif args.cmd == "reproduce":
            res = reproduce(args.profile, args.jobs, args.names or None, results_root=args.results_root,
                            notebooks_dir=args.notebooks_dir, kernel_name=args.kernel, timeout=args.timeout,
                            keep_going=args.keep_going)
            if res["failed"]:
                failed = ", ".join(f"{n} (exit {c})" for n, c in res["failed"].items())
                not_run = f"; not run: {', '.join(res['not_run'])}" if res["not_run"] else ""
                print(f"error: reproduce [{args.profile}]: failed: {failed}{not_run}", file=sys.stderr)
                return 1
            print(f"reproduce [{args.profile}]: {len(res['ok'])} notebook(s) done, {res['jobs']} at a time")
        elif args.cmd == "list":
            root = Path(args.results_root) if args.results_root else REPO_ROOT / "results"
            for nb in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
                have = [p for p in PROFILE_ORDER if (root / p / f"{nb.stem}.json").is_file()]
                print(f"{nb.stem:24s} {' '.join(have) or '-'}")
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
