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



def notebook_order(notebooks: Optional[str | os.PathLike] = None) -> list[str]:
    """The notebooks of ``notebooks/order.json``, in the book's order."""
    return list(json.loads((notebooks_dir(notebooks) / "order.json").read_text()))
