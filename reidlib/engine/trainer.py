"""One training loop for every model of both papers (strong baseline, SPAN step 1 and 2, MUSP,
the foreground network).

:class:`Trainer` runs ``max_iters`` optimiser steps of ``step_fn(model, batch) -> (loss, logs)``
over a data loader that it cycles through epoch after epoch (calling ``set_epoch`` on its batch
sampler), with

* AMP (bf16 autocast, or fp16 autocast + ``GradScaler``) and ``channels_last`` only on CUDA;
* a JSON-lines log line every ``log_every`` iterations and a tqdm progress bar;
* a checkpoint every ``checkpoint_every`` iterations (model, optimiser, scheduler, AMP scaler,
  sampler position, every RNG state, config), written atomically;
* ``fit(resume=True)``: continues from ``last.pt`` *exactly* (bit-identical weights on CPU): the
  batch sampler restarts at the first unconsumed batch of the epoch and every RNG is restored
  (python, numpy, torch CPU and CUDA), so a killed run loses at most ``checkpoint_every``
  iterations and otherwise does not notice the interruption.

Determinism with worker processes: loaders from :func:`build_loader` give every sample its own
augmentation seed derived from ``(seed, epoch, batch, slot)`` (:class:`SeededBatchSampler`), so
the data order *and* the augmentations are the same with any ``num_workers`` and after a resume.
(With a loader of your own, a resume in the middle of an epoch with ``num_workers > 0`` keeps the
order but not the augmentation draws of the rest of that epoch.) Bit-identical weights also need
deterministic kernels (``seed_everything(deterministic=True)``; exact on CPU).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch

from reidlib.engine.checkpoint import (CheckpointManager, capture_rng_state, jsonable_config,
                                       load_checkpoint, restore_rng_state)
from reidlib.data.sampler import ResumableBatchSampler
from reidlib.engine.logging import JSONLLogger
from reidlib.utils.device import resolve_device

StepFn = Callable[[torch.nn.Module, Mapping[str, Any]], "tuple[torch.Tensor, Mapping[str, Any]]"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def resolve_amp(amp: Any, device: torch.device) -> Optional[torch.dtype]:
    """``"auto"``: bf16 on CUDA devices that support it, else fp16 on CUDA; never on CPU.
    ``"bf16"`` / ``"fp16"``: that dtype on CUDA, off on CPU. ``None``/``False``/``"off"``: off."""
    if device.type != "cuda" or str(amp).lower() in ("none", "false", "0", "off", "no", "fp32", ""):
        return None
    amp = str(amp).lower()
    if amp in ("auto", "true", "1", "yes", "on"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16", "half"):
        return torch.float16
    raise ValueError(f"unknown amp setting {amp!r}; expected auto|bf16|fp16|off")


def move_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors (in dicts / lists / tuples) to ``device``; 4-D float tensors to channels_last if asked."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, channels_last) for v in batch)
    return batch


def criterion_step(criterion: Callable, image_key: str = "img", target_key: str = "pid") -> StepFn:
    """The step of every re-ID model: ``out = model(batch[img]); criterion(out, batch[pid])``. The
    model's own regularisers (``out["aux_losses"]``, e.g. MUSP's eq. 14) are added unless the
    criterion already reports them in its logs (as :class:`reidlib.losses.ReIDCriterion` does,
    under their own key or ``aux_<key>``)."""

    def step(model: torch.nn.Module, batch: Mapping[str, Any]):
        out = model(batch[image_key])
        loss, logs = criterion(out, batch[target_key])
        logs = dict(logs or {})
        aux = out.get("aux_losses") if isinstance(out, Mapping) else None
        for name, value in (aux or {}).items():
            if name not in logs and f"aux_{name}" not in logs:
                loss = loss + value
                logs[name] = value.detach()
        return loss, logs

    return step


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed python/numpy in a worker from torch's per-worker seed (which the
    loader derives from its generator), so every library's augmentation RNG is deterministic."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


_MASK64 = (1 << 64) - 1


def sample_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 over the keys)."""
    x = 0x9E3779B97F4A7C15
    for k in keys:
        x = (x ^ (int(k) & _MASK64)) & _MASK64
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        x = z ^ (z >> 31)
    return x >> 1


class SeededBatchSampler:
    """Wraps a batch sampler so that every sample carries its own augmentation seed, derived from
    ``(seed, epoch, batch position in the epoch, slot in the batch)``: items become
    ``(index, sample_seed)`` pairs that :class:`SeededDataset` understands.

    The random augmentation of a sample then depends only on where it sits in the training
    schedule, not on which process loads it or on what was loaded before; so a run is the same
    with any ``num_workers``, and a resumed run is bit-identical even with worker processes.
    ``set_epoch`` / ``state_dict`` / ``load_state_dict`` / ``len`` are the wrapped sampler's."""

    def __init__(self, batch_sampler, seed: int = 0):
        self.batch_sampler = batch_sampler
        self.seed = int(seed)
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        inner = self.batch_sampler
        stateful = hasattr(inner, "state_dict")
        count = 0
        for batch in inner:
            count += 1
            if stateful:  # the sampler's own position: the batch just yielded is number offset - 1
                st = inner.state_dict()
                epoch, pos = int(st["epoch"]), int(st["offset"]) - 1
            else:
                epoch, pos = self._epoch, count - 1
            yield [(int(i), sample_seed(self.seed, epoch, pos, j)) for j, i in enumerate(batch)]
        self._epoch += 1

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def state_dict(self, *args, **kwargs) -> dict:
        return self.batch_sampler.state_dict(*args, **kwargs)

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)

    def __getattr__(self, name: str):
        if name == "batch_sampler":
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)


class SeededDataset(torch.utils.data.Dataset):
    """Dataset wrapper for :class:`SeededBatchSampler`: ``dataset[(index, seed)]`` seeds python's
    ``random``, numpy's global RNG and torch's CPU generator with ``seed`` (torchvision transforms
    and :class:`reidlib.data.masks.MaskDataset` draw from these) and returns ``dataset[index]``.
    In the main process (``num_workers=0``) the previous RNG states are restored afterwards, so
    the training loop's own randomness (dropout, ...) is not disturbed."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, seed = item
        in_worker = torch.utils.data.get_worker_info() is not None
        if not in_worker:
            saved = (random.getstate(), np.random.get_state(), torch.default_generator.get_state())
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            if not in_worker:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.default_generator.set_state(saved[2])

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_loader(dataset, batch_sampler=None, *, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, num_workers: int = 0, seed: int = 0, pin_memory: Optional[bool] = None,
                 collate_fn=None, per_sample_seeds: bool = True) -> torch.utils.data.DataLoader:
    """A DataLoader with a seeded generator and :func:`seed_worker` (deterministic data order and
    worker seeds). With a ``batch_sampler`` (e.g. :class:`reidlib.data.PKSampler`) batching is its
    job, and (``per_sample_seeds``) every sample's augmentation is seeded from its place in the
    schedule (:class:`SeededBatchSampler`), which makes resumption exact with any ``num_workers``.
    ``num_workers`` is capped at the number of CPU cores."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    num_workers = max(0, min(int(num_workers), os.cpu_count() or 1))
    kw = dict(num_workers=num_workers, worker_init_fn=seed_worker, generator=gen, pin_memory=pin_memory,
              collate_fn=collate_fn, persistent_workers=False)
    if num_workers > 0:
        kw["prefetch_factor"] = 2
    if batch_sampler is not None:
        if per_sample_seeds:
            dataset, batch_sampler = SeededDataset(dataset), SeededBatchSampler(batch_sampler, seed)
        return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, **kw)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kw)


class RandomBatchSampler(ResumableBatchSampler):
    """Shuffled fixed-size batches for the non-re-ID tasks (SPAN step 1, the foreground network),
    with the same resumable interface as :class:`reidlib.data.PKSampler`: the order of epoch ``e``
    comes from ``numpy.random.default_rng([seed, e])``; ``state_dict()`` / ``load_state_dict()``
    hold ``{"epoch", "offset"}`` and iteration resumes at the first batch not yet yielded."""

    def __init__(self, n: int, batch_size: int, drop_last: bool = True, seed: int = 0):
        if n < 1:
            raise ValueError("RandomBatchSampler needs a non-empty dataset")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        # a dataset smaller than one batch still yields one (smaller) batch per epoch
        self.drop_last = bool(drop_last) and self.n >= self.batch_size
        self.epoch = 0
        self._offset = 0

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def batches(self, epoch: Optional[int] = None) -> list[list[int]]:
        epoch = self.epoch if epoch is None else epoch
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self.n).tolist()
        return [perm[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]


def _loader_sampler(loader) -> Any:
    """The object that decides the data order: the loader's batch sampler, else its sampler."""
    bs = getattr(loader, "batch_sampler", None)
    inner = getattr(bs, "sampler", None)
    if bs is not None and (hasattr(bs, "set_epoch") or hasattr(bs, "state_dict") or inner is None):
        return bs
    return getattr(loader, "sampler", None) or bs


@dataclass
class TrainState:
    iteration: int = 0  # optimiser steps done
    epoch: int = 0  # current pass over the loader
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    history: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------

class Trainer:
    """Train ``model`` for ``max_iters`` iterations.

    Parameters
    ----------
    model, optimizer, scheduler:
        ``scheduler`` (optional) is stepped once per iteration (see :class:`WarmupMultiStepLR`).
    data_loader:
        a ``DataLoader`` (ideally from :func:`build_loader`, with a batch sampler such as
        ``PKSampler``) or any re-iterable; it is cycled through as many epochs as needed.
    step_fn / criterion:
        ``step_fn(model, batch) -> (loss, logs)``; or a re-ID ``criterion(out, pids)`` wrapped by
        :func:`criterion_step`. ``batch`` is already on the device.
    out_dir:
        checkpoints (``last.pt``, ``iter_*.pt``) and ``log.jsonl`` go here; ``None``: nothing is written.
    checkpoint_every, keep_last, log_every:
        in iterations; ``checkpoint_every=0`` saves only the final checkpoint.
    amp, channels_last:
        used only on CUDA (see :func:`resolve_amp`).
    config, meta:
        stored in every checkpoint (``meta`` tells :mod:`reidlib.engine.tasks` how to rebuild the model).
    """

    def __init__(self, model: torch.nn.Module, step_fn: Optional[StepFn] = None, *,
                 criterion: Optional[Callable] = None, optimizer: torch.optim.Optimizer,
                 scheduler: Any = None, data_loader: Iterable, max_iters: int,
                 out_dir: Optional[str | os.PathLike] = None, checkpoint_every: int = 0, keep_last: int = 1,
                 log_every: int = 10, device: Any = "auto", amp: Any = "auto", channels_last: bool = True,
                 grad_clip: Optional[float] = None, seed: int = 0, config: Any = None,
                 meta: Optional[dict] = None, progress: bool = True, desc: str = "train",
                 check_finite: bool = True):
        if (step_fn is None) == (criterion is None):
            raise ValueError("give exactly one of step_fn or criterion")
        if max_iters < 0:
            raise ValueError(f"max_iters must be >= 0, got {max_iters}")
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.amp_dtype = resolve_amp(amp, self.device)
        self.channels_last = bool(channels_last) and self.device.type == "cuda"
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_fn = step_fn if step_fn is not None else criterion_step(criterion)
        self.criterion = criterion
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loader = data_loader
        self.max_iters = int(max_iters)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_every = int(checkpoint_every or 0)
        self.log_every = max(int(log_every or 1), 1)
        self.grad_clip = grad_clip
        self.seed = int(seed)
        self.config = config
        self.meta = dict(meta or {})
        self.progress = progress
        self.desc = desc
        self.check_finite = check_finite
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ckpt = CheckpointManager(self.out_dir, keep_last) if self.out_dir is not None else None
        self.state = TrainState()
        self._iter: Optional[Iterable] = None
        self._pending_sampler_state: Optional[dict] = None
        self._logger: Optional[JSONLLogger] = None
        self._window: dict = {"sums": {}, "n": 0, "time": 0.0, "data_time": 0.0}
        self._bad_step: Optional[torch.Tensor] = None

    # -------------------------------------------------------------------------------- paths
    @property
    def log_path(self) -> Optional[Path]:
        return self.out_dir / "log.jsonl" if self.out_dir is not None else None

    @property
    def history(self) -> list:
        return self.state.history

    @property
    def iteration(self) -> int:
        return self.state.iteration

    # -------------------------------------------------------------------------------- data
    def _sampler(self):
        return _loader_sampler(self.loader)

    def _start_epoch(self) -> None:
        """Create the iterator of the current epoch (sampler epoch set, generator re-seeded)."""
        sampler = self._sampler()
        if self._pending_sampler_state is not None:
            # resuming: the sampler restarts at the first unconsumed batch of the saved epoch
            sampler.load_state_dict(self._pending_sampler_state)
            self._pending_sampler_state = None
        elif sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.state.epoch)
        gen = getattr(self.loader, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed((self.seed * 1_000_003 + self.state.epoch) % 2**63)
            self._iter = iter(self.loader)
        else:  # the loader would draw its worker base seed from the global RNG: keep that untouched
            with torch.random.fork_rng(devices=[]):
                self._iter = iter(self.loader)

    def _next_batch(self):
        if self._iter is None:
            self._start_epoch()
        try:
            batch = next(self._iter)
        except StopIteration:  # end of the epoch: start the next one
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self._start_epoch()
            try:
                batch = next(self._iter)
            except StopIteration:
                raise RuntimeError("the data loader yields no batch (empty dataset, or fewer identities/images "
                                   "than one P x K batch needs)") from None
        self.state.batch_in_epoch += 1
        return batch

    def _sampler_state(self) -> Optional[dict]:
        sampler = self._sampler()
        if sampler is None or not hasattr(sampler, "state_dict"):
            return None
        # the loader may have prefetched batches: the position that counts is what was consumed
        try:
            st = dict(sampler.state_dict(consumed=self.state.batch_in_epoch, epoch=self.state.epoch))
        except TypeError:
            st = dict(sampler.state_dict())
        st["epoch"] = self.state.epoch
        st["offset"] = self.state.batch_in_epoch
        return st

    def _restore_data_position(self, data: dict) -> None:
        self.state.epoch = int(data.get("epoch", 0))
        self.state.batch_in_epoch = int(data.get("batch_in_epoch", 0))
        saved = data.get("sampler")
        self._iter = None
        try:
            epoch_len = len(self.loader)
        except TypeError:
            epoch_len = None
        if epoch_len is not None and self.state.batch_in_epoch >= epoch_len:
            # saved right at the end of an epoch: the next batch is the first of the next epoch
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            if saved is not None:
                saved = {**saved, "epoch": self.state.epoch, "offset": 0}
        sampler = self._sampler()
        if saved is not None and sampler is not None and hasattr(sampler, "load_state_dict"):
            self._pending_sampler_state = dict(saved)
            return
        # generic fallback: replay the epoch up to the saved position without disturbing any RNG
        consumed = self.state.batch_in_epoch
        if consumed:
            rng = capture_rng_state()
            self._start_epoch()
            for _ in range(consumed):
                next(self._iter)
            restore_rng_state(rng)

    # -------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "iteration": self.state.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "data": {"epoch": self.state.epoch, "batch_in_epoch": self.state.batch_in_epoch,
                     "sampler": self._sampler_state()},
            "rng": capture_rng_state(),
            "config": jsonable_config(self.config),
            "meta": jsonable_config({**self.meta, "max_iters": self.max_iters}),
            "history": jsonable_config(self.state.history),
            "log_window": {"n": self._window["n"], "time": self._window["time"],
                           "data_time": self._window["data_time"],
                           "sums": {k: float(v) for k, v in self._window["sums"].items()}},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.state.iteration = int(state["iteration"])
        self.state.history = list(state.get("history") or [])
        win = state.get("log_window")
        self._window = ({"n": int(win["n"]), "time": float(win["time"]), "data_time": float(win["data_time"]),
                         "sums": dict(win["sums"])} if win else {"sums": {}, "n": 0, "time": 0.0, "data_time": 0.0})
        self._restore_data_position(state.get("data") or {})
        if state.get("rng") is not None:
            restore_rng_state(state["rng"])

    def save(self) -> Optional[Path]:
        if self.ckpt is None:
            return None
        return self.ckpt.save(self.state_dict(), self.state.iteration)

    def resume(self, path: Optional[str | os.PathLike] = None) -> bool:
        """Load ``path`` (or ``out_dir/last.pt``). Returns False when there is nothing to resume."""
        if path is None:
            path = self.ckpt.latest() if self.ckpt is not None else None
            if path is None:
                return False
        state = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(state)
        return True

    # -------------------------------------------------------------------------------- loop
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_step(self, batch) -> tuple[torch.Tensor, dict]:
        self.model.train()
        batch = move_to_device(batch, self.device, self.channels_last)
        with self._autocast():
            loss, logs = self.step_fn(self.model, batch)
        if self.check_finite and self.amp_dtype != torch.float16:  # fp16: GradScaler skips bad steps
            if self.device.type == "cpu":
                if not torch.isfinite(loss.detach()).all():
                    self._raise_non_finite(loss, logs, self.state.iteration + 1)
            else:  # no host sync per iteration: remembered, checked at log / checkpoint time
                bad = ~torch.isfinite(loss.detach()).all()
                self._bad_step = bad if self._bad_step is None else (self._bad_step | bad)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach(), dict(logs or {})

    def _new_window(self) -> None:
        self._window = {"sums": {}, "n": 0, "time": 0.0, "data_time": 0.0}

    @staticmethod
    def _raise_non_finite(loss, logs, iteration) -> None:
        terms = {k: float(v) for k, v in dict(logs or {}).items()}
        raise FloatingPointError(f"non-finite loss {float(loss.detach())} at iteration {iteration} (terms: {terms}); "
                                 "lower optim.lr, set optim.grad_clip, or resume from an earlier checkpoint")

    def _check_bad_step(self) -> None:
        if self._bad_step is not None and bool(self._bad_step):
            raise FloatingPointError(f"non-finite loss at or before iteration {self.state.iteration}; lower "
                                     "optim.lr, set optim.grad_clip, or resume from an earlier checkpoint")

    def fit(self, resume: bool = False) -> list[dict]:
        """Run to ``max_iters``; returns the history of log records. ``resume=True`` first loads
        ``out_dir/last.pt`` when it exists (a finished run is then a no-op apart from re-saving)."""
        self._new_window()
        resumed = self.resume() if resume else False
        if not resume and self.ckpt is not None and self.ckpt.latest() is not None:
            import warnings

            warnings.warn(f"{self.ckpt.latest()} exists; starting a fresh run that will overwrite it "
                          "(pass resume=True / --resume to continue it)", stacklevel=2)
        if self.log_path is not None:
            self._logger = JSONLLogger(self.log_path, resume_from=self.state.iteration if resumed else None)
        from tqdm.auto import tqdm

        bar = tqdm(total=self.max_iters, initial=min(self.state.iteration, self.max_iters), desc=self.desc,
                   disable=not self.progress, dynamic_ncols=True, leave=False)
        w = self._window
        try:
            while self.state.iteration < self.max_iters:
                t0 = time.perf_counter()
                batch = self._next_batch()
                t1 = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                loss, logs = self.train_step(batch)
                self.state.iteration += 1
                sums = w["sums"]
                sums["loss"] = sums.get("loss", 0.0) + loss.float()
                for k, v in logs.items():
                    if k == "loss":  # the total is the returned loss
                        continue
                    v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                    sums[k] = sums.get(k, 0.0) + v
                w["n"] += 1
                w["data_time"] += t1 - t0
                w["time"] += time.perf_counter() - t0
                it = self.state.iteration
                bar.update(1)
                if it % self.log_every == 0 or it == self.max_iters:
                    self._check_bad_step()
                    n = w["n"]
                    rec = {"iter": it, "epoch": self.state.epoch, "lr": lr,
                           **{k: float(v) / n for k, v in sums.items()},
                           "time": round(w["time"] / n, 5), "data_time": round(w["data_time"] / n, 5)}
                    if self._logger is not None:
                        self._logger.log(rec)
                    self.state.history.append(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}")
                    self._new_window()
                    w = self._window
                if self.checkpoint_every and it % self.checkpoint_every == 0 and it < self.max_iters:
                    self._check_bad_step()  # never checkpoint a diverged model
                    self.save()
            self._check_bad_step()
            self.save()  # the final state
        finally:
            bar.close()
            if self._logger is not None:
                self._logger.close()
        return self.state.history
