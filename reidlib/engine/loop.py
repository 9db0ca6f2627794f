"""The bookkeeping of the training loop (:meth:`reidlib.engine.trainer.Trainer.fit`): what it
keeps between two log lines (:class:`LogWindow`) and when it writes a log line or a checkpoint
(:class:`Cadence`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

__all__ = ["LogWindow", "Cadence"]


class LogWindow:
    """The iterations since the last log line: the sums of the loss and of each logged term (0-d
    tensors stay on their device, so an iteration costs no host sync), how many iterations, and
    their time (all of it, and the part spent waiting for data). Saved in every checkpoint
    (:meth:`state_dict`), so the first log line after a resume averages the same iterations as
    an uninterrupted run."""

    def __init__(self, n: int = 0, seconds: float = 0.0, data_seconds: float = 0.0,
                 sums: Optional[dict] = None):
        self.n, self.time, self.data_time = n, seconds, data_seconds
        self.sums: dict = {} if sums is None else sums

    def add(self, loss: torch.Tensor, logs: Mapping[str, Any], t0: float, t1: float) -> None:
        """One iteration that started at ``t0`` and had its batch at ``t1`` (``time.perf_counter``)."""
        sums = self.sums
        sums["loss"] = sums.get("loss", 0.0) + loss.float()
        for k, v in logs.items():
            if k == "loss":  # the total is the returned loss
                continue
            v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
            sums[k] = sums.get(k, 0.0) + v
        self.n += 1
        self.data_time += t1 - t0
        self.time += time.perf_counter() - t0

    def record(self, iteration: int, epoch: int, lr: float,
               mean: Optional[Callable[[Sequence[float]], Sequence[float]]] = None) -> dict:
        """The log line of the window: the means per iteration; ``mean`` turns this rank's means
        into the ones to report (under DDP the mean over the ranks)."""
        n = self.n
        keys = list(self.sums)
        means = [float(self.sums[k]) / n for k in keys]
        if mean is not None:
            means = mean(means)
        return {"iter": iteration, "epoch": epoch, "lr": lr, **dict(zip(keys, means)),
                "time": round(self.time / n, 5), "data_time": round(self.data_time / n, 5)}

    def state_dict(self) -> dict:
        return {"n": self.n, "time": self.time, "data_time": self.data_time,
                "sums": {k: float(v) for k, v in self.sums.items()}}

    @classmethod
    def from_state(cls, state: Optional[Mapping[str, Any]]) -> "LogWindow":
        """The window saved by :meth:`state_dict`; an empty one for None (an older checkpoint)."""
        if not state:
            return cls()
        return cls(int(state["n"]), float(state["time"]), float(state["data_time"]), dict(state["sums"]))


@dataclass(frozen=True)
class Cadence:
    """When the loop writes: a log line every ``log_every`` iterations and at the last one; a
    checkpoint every ``checkpoint_every`` iterations (0: none) before the last, whose checkpoint
    the loop always writes once it has finished."""

    max_iters: int
    log_every: int
    checkpoint_every: int

    def log_due(self, iteration: int) -> bool:
        return iteration % self.log_every == 0 or iteration == self.max_iters

    def checkpoint_due(self, iteration: int) -> bool:
        return bool(self.checkpoint_every) and iteration % self.checkpoint_every == 0 and iteration < self.max_iters
