"""The notebook contract: where notebooks are, what their ``parameters`` cell must declare, how
``-p key=value`` parameters are parsed and checked before anything runs."""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from reidlib.utils import paths

REQUIRED_PARAMETERS = ("profile", "device", "data_root", "results_dir", "seed")
PROFILE_ORDER = ("paper", "gpu", "cpu", "smoke")  # the book shows the most complete run available
#: the notebook that collects the others' results: :func:`reidlib.runner.scheduler.reproduce` runs it last
SUMMARY = "summary"


class ExperimentError(RuntimeError):
    """A notebook could not be run as asked (unknown notebook or parameter, failed execution)."""


def notebooks_dir(notebooks: Optional[str | os.PathLike] = None) -> Path:
    """``notebooks`` or ``<home>/notebooks`` (:func:`reidlib.utils.paths.home`, read at each call)."""
    return Path(notebooks) if notebooks else paths.home() / "notebooks"


def results_root(root: Optional[str | os.PathLike] = None) -> Path:
    return Path(root) if root else paths.home() / "results"


def notebook_path(name: str, nb: Optional[str | os.PathLike] = None) -> Path:
    nb_dir = notebooks_dir(nb)
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
    """``["lr=0.1", "seeds=[0,1]"]`` -> ``{"lr": 0.1, "seeds": [0, 1]}`` (values parsed as YAML;
    pairs split by :func:`reidlib.utils.coerce.split_pairs`)."""
    from reidlib.errors import ConfigError
    from reidlib.utils.coerce import parse_yaml_value, split_pairs

    try:
        return {key: parse_yaml_value(value) for key, value in split_pairs(pairs, "-p seed=1")}
    except ConfigError as err:
        raise ExperimentError(f"parameter {err}") from None


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")



#: parameters that name a file or folder: read from the caller's working directory (the kernel's
#: is ``notebooks/``) and passed to the notebook as absolute paths; whether each is a folder, and
#: what it should hold
PATH_PARAMETERS = {"data_root": ("folder", "a dataset folder"),
                   "init": ("file", "'standin', 'random' or a local ImageNet state-dict file"),
                   "span_init": ("file", "'standin', 'random' or a local ImageNet state-dict file (SPAN's trunk)"),
                   "results_root": ("folder", "a results folder (holding <profile>/)")}
#: the values of ``init`` and ``span_init`` (:data:`INIT_PARAMETERS`) that are not paths
INIT_KEYWORDS = ("standin", "random")
INIT_PARAMETERS = ("init", "span_init")
#: parameters the runner sets itself, and the option that sets them
RUNNER_SET = {"profile": "--profile", "results_dir": "--results-root"}


def check_parameters(declared: Mapping[str, Any], params: Mapping[str, Any], notebook: str, *,
                     cwd: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """The door of a run: every parameter checked before anything is locked or written, each
    failure one :class:`ExperimentError` line naming the parameter and what was expected.

    * only parameters the notebook declares, none the runner sets (``profile``, ``results_dir``);
    * types as the declared defaults' (YAML gives ``seed=abc`` a str); ``seed`` >= 0;
    * paths (:data:`PATH_PARAMETERS`; ``init``, ``span_init`` unless ``standin`` / ``random``) read from ``cwd``
      (default: the working directory) and must exist;
    * ``device`` available on this machine (:func:`reidlib.utils.device.check_device`);
    * ``dataset`` known and ``test_size`` one of its test sets (declared defaults included:
      ``-p dataset=veri776`` on a VehicleID page needs ``-p test_size=null``);
    * ``results_profile`` a profile name.

    Returns ``params`` with the paths made absolute."""
    from reidlib.errors import ConfigError
    from reidlib.utils.device import check_device

    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ExperimentError(f"{notebook} does not declare parameter(s) {unknown}; declared: {sorted(declared)}")
    for key, option in RUNNER_SET.items():
        if key in params:
            raise ExperimentError(f"{notebook}: parameter {key}={params[key]!r} is set by the runner; use "
                                  f"{option} instead of -p {key}=...")
    for key, value in params.items():
        default = declared[key]
        if default is None or value is None or isinstance(default, str) and key in PATH_PARAMETERS:
            continue
        want = type(default)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ExperimentError(f"{notebook}: parameter {key}={value!r} is a {type(value).__name__}; expected a "
                                  f"{want.__name__} like its default {default!r}")
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ExperimentError(f"{notebook}: seed must be a non-negative integer, got {seed!r}")

    out = dict(params)
    base = Path(cwd) if cwd is not None else Path.cwd()
    for key, (kind, expected) in PATH_PARAMETERS.items():
        value = params.get(key)
        if value is None or value == "" or key in INIT_PARAMETERS and value in INIT_KEYWORDS:
            continue
        if not isinstance(value, str):
            raise ExperimentError(f"{notebook}: parameter {key}={value!r} is a {type(value).__name__}; expected "
                                  f"{expected}")
        given = Path(value).expanduser()
        path = Path(os.path.abspath(base / given))
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            where = "" if given.is_absolute() else f" (a relative path is read from the working directory {base})"
            raise ExperimentError(f"{notebook}: {key}={value!r}: no {kind} {path}{where}; expected {expected}")
        out[key] = str(path)

    merged = {**declared, **out}
    try:
        check_device(merged.get("device"))
    except ConfigError as err:
        raise ExperimentError(f"{notebook}: {err}") from None
    _check_dataset(merged, notebook)
    results_profile = merged.get("results_profile")
    if results_profile is not None:
        from reidlib.study.profiles import PROFILES

        if results_profile not in PROFILES:
            raise ExperimentError(f"{notebook}: results_profile={results_profile!r}; expected one of "
                                  f"{', '.join(sorted(PROFILES))} (or null: the run's profile)")
    return out


def _check_dataset(merged: Mapping[str, Any], notebook: str) -> None:
    """``dataset`` known, ``test_size`` one of its test sets; the fix named (which dataset the
    size belongs to, what to pass instead)."""
    if "dataset" not in merged:
        return
    from reidlib.data.registry import DATASETS, accepted_test_sizes

    dataset = merged["dataset"]
    if dataset not in DATASETS:
        raise ExperimentError(f"{notebook}: dataset={dataset!r}; expected one of {', '.join(DATASETS)}")
    size = merged.get("test_size")
    if size is None or size == "":
        return
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    sizes = accepted_test_sizes(dataset)
    if isinstance(size, int) and not isinstance(size, bool) and size in sizes:
        return
    owners = [name for name in DATASETS if isinstance(size, int) and size in accepted_test_sizes(name)]
    whose = f"test_size={size!r} is a {owners[0]} test size" if owners else f"test_size={size!r}"
    if not sizes:
        raise ExperimentError(f"{notebook}: {whose}; {dataset} has one test set: pass -p test_size=null")
    raise ExperimentError(f"{notebook}: {whose}; {dataset} accepts test_size {', '.join(map(str, sizes))}: pass "
                          f"-p test_size={sizes[0]} (or -p test_size=null for {sizes[0]})")


def notebook_order(notebooks: Optional[str | os.PathLike] = None) -> list[str]:
    """The notebooks of ``notebooks/order.json``, in the book's order."""
    return list(json.loads((notebooks_dir(notebooks) / "order.json").read_text()))
