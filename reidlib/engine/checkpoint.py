"""Checkpoints: everything a run needs to continue *exactly* where it stopped.

A checkpoint is a plain dict saved with ``torch.save``, written atomically (temporary file in the
same folder, renamed into place: an interrupted save never leaves a partial ``last.pt``). It holds
only tensors, numbers, strings, lists and dicts, so ``torch.load(..., weights_only=True)`` reads it.

Keys: ``format``, ``version``, ``iteration``, ``model``, ``optimizer``, ``scheduler``, ``scaler``,
``data`` (epoch, batches consumed in that epoch, the batch sampler's own state), ``rng`` (python,
numpy, torch CPU and every CUDA device), ``config``, ``meta`` (how to rebuild the model) and
``history`` (the log records so far).
"""
from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from reidlib.errors import CheckpointError
from reidlib.utils.io import atomic_write_bytes, jsonable, safe_torch_load

FORMAT = "reidlib-checkpoint"
VERSION = 1
LAST = "last.pt"
_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")


# ------------------------------------------------------------------------------------------------
# RNG state
# ------------------------------------------------------------------------------------------------

def capture_rng_state() -> dict:
    """Python, numpy, torch CPU and (when present) all CUDA generators, in a weights_only-safe form."""
    py = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
                         "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    torch.set_rng_state(state["torch"].cpu() if isinstance(state["torch"], torch.Tensor) else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:  # a different machine: restore what fits
            for i, s in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s.cpu(), i)


# ------------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------------

def to_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """``torch.save(state)`` to ``path`` atomically (temp file + fsync + rename)."""
    state = {"format": FORMAT, "version": VERSION, **state}
    return atomic_write_bytes(path, to_bytes(state))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a reidlib checkpoint (``weights_only=True``: no code is unpickled). A folder means its
    newest intact checkpoint (:func:`load_latest`). Errors name the file
    (:class:`reidlib.errors.CheckpointError`)."""
    path = Path(path)
    if path.is_dir():
        return load_latest(path, map_location=map_location)
    state = safe_torch_load(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a reidlib checkpoint (expected a dict with format={FORMAT!r})")
    state["path"] = str(path)
    return state


def checkpoints_newest_first(directory: str | os.PathLike) -> list[Path]:
    """``last.pt``, then the ``iter_*.pt`` files from the highest iteration down."""
    d = Path(directory)
    its = sorted(((int(m.group(1)), p) for p in d.glob("iter_*.pt") if (m := _ITER_RE.match(p.name))), reverse=True)
    return ([d / LAST] if (d / LAST).is_file() else []) + [p for _, p in its]


def load_latest(directory: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """The newest checkpoint of ``directory`` that loads. A damaged ``last.pt`` (truncated, corrupt)
    is reported with a warning naming it, and the newest intact ``iter_*.pt`` is used instead."""
    import warnings

    candidates = checkpoints_newest_first(directory)
    if not candidates:
        raise FileNotFoundError(f"no checkpoint ({LAST} or iter_*.pt) in {directory}")
    errors = []
    for p in candidates:
        try:
            state = load_checkpoint(p, map_location=map_location)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        if errors:
            warnings.warn(f"skipped damaged checkpoint(s): {'; '.join(errors)}; resuming from {p} "
                          f"(iteration {state.get('iteration')})", stacklevel=2)
        return state
    raise CheckpointError(f"no intact checkpoint in {directory}: " + "; ".join(errors))


def latest_checkpoint(directory: str | os.PathLike) -> Optional[Path]:
    """``last.pt`` if present, else the ``iter_*.pt`` with the highest iteration, else None."""
    d = Path(directory)
    if (d / LAST).is_file():
        return d / LAST
    its = sorted((int(m.group(1)), p) for p in d.glob("iter_*.pt") if (m := _ITER_RE.match(p.name)))
    return its[-1][1] if its else None


class CheckpointManager:
    """Writes ``last.pt`` (always) and ``iter_XXXXXXX.pt`` (the ``keep_last`` most recent; 0 = none)
    into ``directory``. The state is serialised once and written to ``last.pt`` atomically; the
    ``iter_*.pt`` file is a hard link to that same file (no second copy on disk; ``last.pt`` is
    later *replaced* by rename, never rewritten in place, so the link keeps its content), or an
    atomic copy where the file system has no hard links."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 1):
        self.directory = Path(directory)
        self.keep_last = int(keep_last)

    @property
    def last(self) -> Path:
        return self.directory / LAST

    def iter_path(self, iteration: int) -> Path:
        return self.directory / f"iter_{iteration:07d}.pt"

    def clean_temporaries(self) -> list[Path]:
        """Remove temporary files of saves that a kill interrupted (``.last.pt.*.tmp``,
        ``.iter_*.pt.link.tmp``); returns what was removed."""
        gone = [p for p in self.directory.glob(".*.tmp")
                if p.name.startswith((f".{LAST}.", ".iter_")) and p.is_file()]
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    def save(self, state: dict, iteration: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clean_temporaries()
        data = to_bytes({"format": FORMAT, "version": VERSION, **state})
        last = atomic_write_bytes(self.last, data)
        if self.keep_last > 0:
            target = self.iter_path(iteration)
            tmp = target.with_name(f".{target.name}.link.tmp")
            try:
                tmp.unlink(missing_ok=True)
                os.link(last, tmp)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)
                atomic_write_bytes(target, data)
            self._prune()
        return last

    def _prune(self) -> None:
        its = sorted((int(m.group(1)), p) for p in self.directory.glob("iter_*.pt")
                     if (m := _ITER_RE.match(p.name)))
        for _, p in its[: max(len(its) - self.keep_last, 0)]:
            p.unlink(missing_ok=True)

    def latest(self) -> Optional[Path]:
        return latest_checkpoint(self.directory)


def jsonable_config(cfg: Any) -> Any:
    """A config (dataclass, dict, Path...) as plain data that ``weights_only`` loading accepts:
    :func:`reidlib.utils.io.jsonable`, with every other leaf as its ``str``."""
    return jsonable(cfg, default=str)
