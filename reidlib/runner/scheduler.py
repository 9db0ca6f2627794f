"""Every notebook of a profile, several at a time: ``python -m reidlib.runner reproduce --profile P
--jobs J`` runs the notebooks of ``notebooks/order.json`` through :func:`reidlib.runner.transaction.run`,
each in its own process, ``J`` at a time: one notebook per GPU (``CUDA_VISIBLE_DEVICES``) on a GPU
machine, at most one per core on the CPU, the ``summary`` notebook last, after all the others."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from reidlib.runner.notebooks import NAME_RE, SUMMARY, ExperimentError, notebook_order, notebook_path
from reidlib.utils import paths



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


#: what the `cpu` profile's budget was planned from, and what the same run took on a CPU without
#: native bfloat16 (the stand-in of the pretraining page, seconds per iteration on 2 cores)
BF16_BUDGET_NOTE = ("the cpu profile's budget (planned at about 3 h, at most 45 min a page) comes from times "
                    "measured with bf16 autocast on 2 cores with AMX; the stand-in took 2.47 s an iteration in "
                    "float32 on 2 AVX2 cores against 0.69 s there")


def compute_notice(profile: str, gpus: list[str]) -> Optional[str]:
    """One line before a long run on a CPU without native bfloat16 (AVX-512 BF16 / AMX): every run
    then computes in float32 (``train.amp=auto``), several times slower than the budget the
    profile's pages state. None on GPUs, for the smoke profile, or where bf16 is native."""
    from reidlib.utils.device import cpu_bf16_supported

    if gpus or profile == "smoke" or cpu_bf16_supported():
        return None
    return (f"reproduce [{profile}]: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so every run computes "
            f"in float32 and takes several times the pages' stated time ({BF16_BUDGET_NOTE})")


def reproduce(profile: str = "smoke", jobs: int = 1, names: Optional[Iterable[str]] = None, *,
              results_root: Optional[str | os.PathLike] = None, notebooks_dir: Optional[str | os.PathLike] = None,
              kernel_name: Optional[str] = None, timeout: Optional[int] = None, keep_going: bool = False,
              gpus: Optional[list[str]] = None, cores: Optional[int] = None, command=None,
              log=None) -> dict[str, Any]:
    """Run ``names`` (default: :func:`notebook_order`) for ``profile``, each as
    ``python -m reidlib.runner run NAME`` in its own process (:func:`run`: atomic results,
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
    notice = compute_notice(profile, gpus)
    if notice:
        say(notice)
    slots = job_slots(jobs, gpus, cores)
    if len(slots) < int(jobs):
        where = f"{len(gpus)} GPU(s)" if gpus else f"{cores or os.cpu_count()} CPU core(s)"
        say(f"reproduce: {jobs} jobs asked, {where}: running {len(slots)} at a time")

    def default_command(name: str) -> list[str]:
        argv = [sys.executable, "-m", "reidlib.runner", "run", name, "--profile", profile]
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
        proc = subprocess.Popen(make(name), env=env, cwd=str(paths.home()), text=True,
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

