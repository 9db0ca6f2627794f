"""One notebook run as a transaction: ``python -m reidlib.runner run NAME --profile P [-p key=value]``
executes ``notebooks/NAME.ipynb`` with papermill into ``results/P/NAME.ipynb`` and writes
``results/P/NAME.json``: the metrics the notebook recorded (:mod:`reidlib.study.record`) and the
provenance of the run (:mod:`reidlib.runner.provenance`). Tables and figures the notebook recorded
are written next to it (``results/P/NAME/``).

Every file is written atomically. A failed run keeps the executed notebook as
``results/P/NAME.failed.ipynb`` for inspection, leaves earlier results untouched, and exits non-zero.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

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


#: the stop signal that arrived during the current run (None: none): the kernel may die of the
#: interruption first, and papermill then raises its DeadKernelError instead of our KeyboardInterrupt
#: (module state: signal handlers cannot return anything else)
_SIGNALLED: dict = {"signal": None}


def _terminate_as_interrupt(signum, frame):
    _SIGNALLED["signal"] = signum
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_signals() -> tuple:
    """SIGTERM and SIGHUP (where the platform has it): raised as KeyboardInterrupt during a run, so
    that its temporary folder is removed like after Ctrl-C."""
    return tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM / SIGHUP raise KeyboardInterrupt in the block (main thread only; a signal the
    process ignores, e.g. SIGHUP under ``nohup``, stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _stop_signals()}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, _terminate_as_interrupt)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held off while a failed run cleans up (a second Ctrl-C must not
    leave the temporary folder half-deleted); main thread only. The run fails anyway, with its
    first error."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for s in (signal.SIGINT, *_stop_signals()):
        handler = signal.getsignal(s)
        if handler is not signal.SIG_IGN:
            previous[s] = signal.signal(s, lambda signum, frame: None)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _discard(tmp: Path, out_dir: Path, name: str, failed_nb: Path) -> bool:
    """After a failure: keep the executed notebook as ``failed_nb`` where it can be written, then
    remove the temporary folder (a run that had committed is finished instead). Never raises:
    the error reported is the run's first. Returns whether the executed notebook was kept."""
    kept = False
    with _signals_deferred():
        tmp_nb = tmp / f"{name}.ipynb"
        if (tmp / _COMMITTED).exists():          # failed while committing: finish it
            with contextlib.suppress(Exception):
                _commit(tmp, out_dir, name)
            return False
        if tmp_nb.exists():
            try:
                with atomic_path(failed_nb, suffix=".ipynb") as copy:
                    shutil.copyfile(tmp_nb, copy)
                kept = True
            except Exception:                    # e.g. the disk is full: the first error counts
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    return kept


def _os_error(err: OSError) -> str:
    """An OSError in one line: what failed, on which file, and for a full disk what to do."""
    what = err.strerror or str(err).splitlines()[0]
    on = f" ({err.filename})" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"no space left on device{on}: free some space and run again"
    return f"{what}{on}"


def _reported(err: BaseException, notebook: str, timeout: Optional[int], kept_at: Optional[Path]) -> BaseException:
    """The one-line :class:`ExperimentError` a failed run reports (``err`` itself for an
    :class:`ExperimentError`, or an exit the run must not turn into an error)."""
    from papermill.exceptions import PapermillExecutionError

    where = f"; executed notebook kept at {kept_at}" if kept_at is not None else ""
    if isinstance(err, ExperimentError) or not isinstance(err, (Exception, KeyboardInterrupt)):
        return err
    if _SIGNALLED["signal"] is not None and not isinstance(err, KeyboardInterrupt):
        err = KeyboardInterrupt(f"signal {_SIGNALLED['signal']}")     # what stopped the run, whatever followed
    if isinstance(err, PapermillExecutionError):
        return ExperimentError(f"{notebook} failed in cell {err.exec_count}: {err.ename}: {err.evalue}{where}")
    if isinstance(err, KeyboardInterrupt):
        return ExperimentError(f"{notebook} interrupted ({err or 'SIGINT'}); earlier results are unchanged{where}")
    if type(err).__name__ in ("CellTimeoutError", "TimeoutError"):
        return ExperimentError(f"{notebook}: a cell ran longer than --timeout {timeout} s; earlier results are "
                               f"unchanged{where}")
    if isinstance(err, OSError):
        return ExperimentError(f"{notebook}: {_os_error(err)}; earlier results are unchanged{where}")
    first = (str(err).splitlines() or [""])[0][:300]
    return ExperimentError(f"{notebook}: the run failed: {type(err).__name__}: {first}; earlier results are "
                           f"unchanged{where}")


def run(name: str, profile: str = "smoke", parameters: Optional[Mapping[str, Any]] = None, *,
        results_root: Optional[str | os.PathLike] = None, notebooks_dir: Optional[str | os.PathLike] = None,
        kernel_name: Optional[str] = None, progress_bar: bool = False, timeout: Optional[int] = None) -> dict[str, Any]:
    """Execute ``notebooks/<name>.ipynb`` for ``profile``; return the JSON record written next to it.

    Every parameter is checked first (:func:`reidlib.runner.notebooks.check_parameters`: types,
    ranges, paths read from the caller's working directory, the device, dataset and test size):
    a mistake is one :class:`ExperimentError` line before anything is locked or written.

    Results are written the way a database commits: the notebook runs into a temporary folder
    beside ``results/<profile>/`` and only a successful run replaces ``<name>.ipynb``,
    ``<name>.json`` and ``<name>/`` (tables, figures). A failed, timed-out, interrupted (SIGINT,
    SIGTERM, SIGHUP) or killed run, or one that cannot write its files (a full disk), changes
    nothing but ``<name>.failed.ipynb`` (the executed notebook, for inspection, where it can be
    written; not after SIGKILL), leaves no temporary file behind (a killed run's are removed by the
    next run of the same notebook) and reports its first error in one line. One run per notebook
    and profile at a time."""
    import papermill

    from reidlib.study.profiles import PROFILES

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ExperimentError(f"notebook name {name!r}: expected a name such as 'span_losses' (letters, digits, "
                              "'_' and '-'), not a path")
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    src = notebook_path(name, Path(notebooks_dir) if notebooks_dir else None)
    declared = declared_parameters(src)
    params = check_parameters(declared, dict(parameters or {}), src.name)

    out_dir = _results_root(results_root) / profile
    failed_nb = out_dir / f"{name}.failed.ipynb"
    with _run_lock(out_dir / f"{_TMP_PREFIX}{name}.lock"):
        _recover(out_dir, name)
        tmp = out_dir / f"{_TMP_PREFIX}{name}.run-{os.getpid()}-{int(time.time())}"
        _SIGNALLED["signal"] = None
        with _signals_as_interrupt():  # SIGTERM / SIGHUP: as Ctrl-C, cleaned up like it
            try:
                work_dir = tmp / name  # tables, figures, metrics.json
                work_dir.mkdir(parents=True)
                params.update(profile=profile, results_dir=str(work_dir.resolve()))
                if "results_root" in declared:
                    params.setdefault("results_root", str(out_dir.parent.resolve()))
                merged = {**declared, **params}
                prov = provenance(profile, merged, merged.get("device") or "auto")  # the code as the run starts
                start = _dt.datetime.now(_dt.timezone.utc)
                t0 = time.perf_counter()
                papermill.execute_notebook(str(src), str(tmp / f"{name}.ipynb"), parameters=params,
                                           kernel_name=kernel_name, progress_bar=progress_bar, cwd=str(src.parent),
                                           execution_timeout=timeout)
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
            except BaseException as err:
                kept = _discard(tmp, out_dir, name, failed_nb)
                reported = _reported(err, src.name, timeout, failed_nb if kept else None)
                if reported is err:
                    raise
                # a failure of the notebook speaks for itself; anything else keeps its cause attached
                quiet = isinstance(err, KeyboardInterrupt) or _SIGNALLED["signal"] is not None or type(err).__name__ in (
                    "PapermillExecutionError", "CellTimeoutError", "TimeoutError")
                raise reported from (None if quiet else err)
        if failed_nb.exists():
            with contextlib.suppress(OSError):
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

