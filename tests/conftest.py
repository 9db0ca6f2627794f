"""Fixtures shared by the test files. Plain helper functions live in ``tests/helpers.py``
(importable as ``helpers``: pyproject.toml's pytest section puts ``tests`` on the path)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_tiny_veri


@pytest.fixture(scope="module")
def tiny_veri(tmp_path_factory) -> Path:
    """The tiny VeRi-776-layout training set of :func:`helpers.make_tiny_veri` (32 x 32), one per module."""
    return make_tiny_veri(tmp_path_factory.mktemp("veri"))


@pytest.fixture
def interrupt_after(monkeypatch):
    """``done, resumed = interrupt_after(n)``: SynthVeRi's chunk renderer renders ``n`` chunks
    (their ids in ``done``), then raises ``KeyboardInterrupt`` once, as a killed generator would;
    every chunk rendered after that (a resumed run) is listed in ``resumed``."""
    from reidlib.data.synth import writer

    def cut(n: int) -> tuple[list, list]:
        real = writer._render_chunk
        done, resumed, interrupted = [], [], []

        def render(task):
            if len(done) < n:
                done.append(task[0])
            elif not interrupted:
                interrupted.append(task[0])
                raise KeyboardInterrupt("simulated interruption")
            else:
                resumed.append(task[0])
            return real(task)

        monkeypatch.setattr(writer, "_render_chunk", render)
        return done, resumed

    return cut


@pytest.fixture(autouse=True, scope="session")
def _data_dir_of_the_test_session(tmp_path_factory):
    """Generated data and the uint8 image cache of every test go to a temporary folder
    (``REIDLIB_DATA_DIR``), never into the checkout's ``data/``."""
    import os

    old = os.environ.get("REIDLIB_DATA_DIR")
    os.environ["REIDLIB_DATA_DIR"] = str(tmp_path_factory.mktemp("reidlib-data"))
    yield
    if old is None:
        os.environ.pop("REIDLIB_DATA_DIR", None)
    else:
        os.environ["REIDLIB_DATA_DIR"] = old
