"""The experiment runner: papermill notebooks in, executed notebooks + metrics with provenance out.

``python -m reidlib.experiments run NAME --profile P [-p key=value ...]`` executes
``notebooks/NAME.ipynb`` into ``results/P/NAME.ipynb`` and writes ``results/P/NAME.json`` holding
the metrics the notebook recorded (through :func:`record`) and the provenance of the run: git commit
and dirty flag, reidlib/torch/torchvision versions, device, profile, seeds, parameters, start, end,
duration. Tables the notebook records are written as CSV next to it (``results/P/NAME/``).

Every file is written atomically. A failed run keeps the executed notebook as
``results/P/NAME.failed.ipynb`` for inspection, leaves earlier results untouched, and exits non-zero.

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
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from reidlib.utils.io import atomic_path, atomic_write_json, atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
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


def synthveri_root(profile: str, data_root: Optional[str] = None, seed: int = 0,
                   cache_dir: Optional[str | os.PathLike] = None) -> Path:
    """The dataset folder a notebook should use: ``data_root`` when the user points at their own
    data (VeRi-776 layout), else SynthVeRi generated for ``profile`` into ``data/`` (idempotent:
    an existing complete folder with the same manifest is reused)."""
    if data_root:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data_root {root} does not exist (expected a VeRi-776-layout folder)")
        return root
    from reidlib.data.synth import generate
    from reidlib.profiles import get_profile

    prof = get_profile(profile)
    base = Path(cache_dir) if cache_dir else REPO_ROOT / "data"
    out = base / f"synthveri-{prof['synth_preset']}-{prof['image_size']}px-seed{seed}"
    return Path(generate(out, preset=prof["synth_preset"], image_size=prof["image_size"], seed=seed))


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
    from reidlib.utils.device import device_name

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


def run(name: str, profile: str = "smoke", parameters: Optional[Mapping[str, Any]] = None, *,
        results_root: Optional[str | os.PathLike] = None, notebooks_dir: Optional[str | os.PathLike] = None,
        kernel_name: Optional[str] = None, progress_bar: bool = False, timeout: Optional[int] = None) -> dict[str, Any]:
    """Execute ``notebooks/<name>.ipynb`` for ``profile``; return the JSON record written next to it."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from reidlib.profiles import PROFILES

    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    src = notebook_path(name, Path(notebooks_dir) if notebooks_dir else None)
    declared = declared_parameters(src)
    params = dict(parameters or {})
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ExperimentError(f"{src.name} does not declare parameter(s) {unknown}; declared: {sorted(declared)}")

    out_dir = Path(results_root) if results_root else REPO_ROOT / "results"
    out_dir = out_dir / profile
    work_dir = out_dir / name  # tables, figures, metrics.json
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    params.update(profile=profile, results_dir=str(work_dir.resolve()))
    merged = {**declared, **params}
    device = merged.get("device") or "auto"

    prov = provenance(profile, merged, device)  # the code as it is when the run starts
    start = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    out_nb = out_dir / f"{name}.ipynb"
    failed_nb = out_dir / f"{name}.failed.ipynb"
    with atomic_path(out_nb, suffix=".ipynb") as tmp_nb:
        try:
            papermill.execute_notebook(str(src), str(tmp_nb), parameters=params, kernel_name=kernel_name,
                                       progress_bar=progress_bar, cwd=str(src.parent),
                                       execution_timeout=timeout)
        except PapermillExecutionError as err:
            shutil.copyfile(tmp_nb, failed_nb)
            raise ExperimentError(f"{src.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue}. "
                                  f"Executed notebook kept at {failed_nb}") from None
    end = _dt.datetime.now(_dt.timezone.utc)
    if failed_nb.exists():
        failed_nb.unlink()

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
    atomic_write_json(out_dir / f"{name}.json", rec)
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
    p_run.add_argument("--kernel", default=None)
    p_run.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p_list = sub.add_parser("list", help="list notebooks and the results available for each")
    p_list.add_argument("--results-root", default=None)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "run":
            rec = run(args.name, args.profile, parse_overrides(args.parameter), results_root=args.results_root,
                      kernel_name=args.kernel, progress_bar=sys.stderr.isatty(), timeout=args.timeout)
            shown = {k: v for k, v in rec["metrics"].items() if not isinstance(v, (dict, list))}
            print(f"{args.name} [{args.profile}] done in {rec['duration_s']} s on {rec['device']}: "
                  f"{json.dumps(shown)[:400]}")
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
