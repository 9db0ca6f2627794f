"""Where reidlib keeps what it generates, when the caller does not say.

* ``data_dir()``: generated datasets (SynthVeRi) and the image cache, ``<home>/data`` (or ``$REIDLIB_DATA_DIR``);
* ``runs_dir(profile)``: the cache of trained models, ``<home>/runs/<profile>``;
* ``results_dir(profile)``: executed notebooks and their metrics, ``<home>/results/<profile>``.

``<home>`` is ``$REIDLIB_HOME`` when set, else the source checkout the package was imported from
(the folder holding ``pyproject.toml`` next to ``reidlib/``: an editable install), else the
current directory. Every function that writes there also takes an explicit folder.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home", "data_dir", "runs_dir", "results_dir"]


def home() -> Path:
    env = os.environ.get("REIDLIB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]   # <checkout>/reidlib/utils/paths.py
    if (checkout / "pyproject.toml").is_file() and (checkout / "reidlib").is_dir():
        return checkout
    return Path.cwd()


def data_dir() -> Path:
    """``$REIDLIB_DATA_DIR`` when set (e.g. the test suite's temporary folder), else ``<home>/data``."""
    env = os.environ.get("REIDLIB_DATA_DIR")
    return Path(env).expanduser().resolve() if env else home() / "data"


def runs_dir(profile: str) -> Path:
    return home() / "runs" / profile


def results_dir(profile: str) -> Path:
    return home() / "results" / profile
