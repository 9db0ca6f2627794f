"""One notebook run as a transaction: ``python -m reidlib.runner run NAME --profile P [-p key=value]``
executes ``notebooks/NAME.ipynb`` with papermill into ``results/P/NAME.ipynb`` and writes
``results/P/NAME.json``: the metrics the notebook recorded (:mod:`reidlib.study.record`) and the
provenance of the run (:mod:`reidlib.runner.provenance`). Tables and figures the notebook recorded
are written next to it (``results/P/NAME/``).

Every file is written atomically. A failed run keeps the executed notebook as
``results/P/NAME.failed.ipynb`` for inspection, leaves earlier results untouched, and exits non-zero.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from reidlib.runner.notebooks import (NAME_RE, PROFILE_ORDER, ExperimentError, check_parameters,
                                      declared_parameters, notebook_path, results_root as _results_root)
from reidlib.runner.provenance import provenance
from reidlib.study.record import METRICS_FILE
from reidlib.utils.io import atomic_path, atomic_write_json, atomic_write_text, file_lock

_TMP_PREFIX = "."            # temporary run folders: results/<profile>/.<name>.run-<id>/
_COMMITTED = "COMMITTED"     # marker: the run succeeded; its files replace the results


def _run_lock(path: Path):
    """One run of ``results/<profile>/<name>`` at a time: an exclusive ``flock`` on
    ``.<name>.lock`` (:func:`reidlib.utils.io.file_lock`; released by the OS when the process dies,
    so a killed run never blocks), noting ``pid N since T`` in it; a second run refuses at once,
    naming the first."""
    def busy(holder: str) -> ExperimentError:
        return ExperimentError(f"{path.stem.lstrip('.')} is already running for this profile "
                               f"({holder or 'another process'}, lock {path}); wait for it to finish or stop it")

    return file_lock(path, blocking=False, note_holder=True, error=busy)


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

    from reidlib.study.profiles import PROFILES

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ExperimentError(f"notebook name {name!r}: expected a name such as 'span_losses' (letters, digits, "
                              "'_' and '-'), not a path")
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    src = notebook_path(name, Path(notebooks_dir) if notebooks_dir else None)
    declared = declared_parameters(src)
    params = dict(parameters or {})
    check_parameters(declared, params, src.name)

    out_dir = _results_root(results_root) / profile
    failed_nb = out_dir / f"{name}.failed.ipynb"
    with _run_lock(out_dir / f"{_TMP_PREFIX}{name}.lock"):
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
    root = _results_root(results_root)
    for prof in PROFILE_ORDER:
        nb = root / prof / f"{name}.ipynb"
        if nb.is_file() and (root / prof / f"{name}.json").is_file():
            return nb
    return None

