"""One training loop for every model of both papers (strong baseline, SPAN step 1 and 2, MUSP,
the foreground network).

:class:`Trainer` runs ``max_iters`` optimiser steps of ``step_fn(model, batch) -> (loss, logs)``
over a data loader that it cycles through epoch after epoch (calling ``set_epoch`` on its batch
sampler), with

* mixed precision where the hardware has it (:func:`resolve_amp`): bf16 autocast on CPUs with
  native bf16 (AVX-512 BF16 / AMX) and on CUDA, fp16 autocast + ``GradScaler`` on older GPUs,
  channels-last memory format with it; losses are computed in float32 (autocast leaves
  reductions and the criterion's own ops in float32), and the precision is recorded in every
  checkpoint's ``meta["precision"]``;
* a JSON-lines log line every ``log_every`` iterations and a tqdm progress bar;
* a checkpoint every ``checkpoint_every`` iterations (model, optimiser, scheduler, AMP scaler,
  sampler position, every RNG state, config), written atomically;
* ``fit(resume=True)``: continues from ``last.pt`` *exactly* (bit-identical weights on CPU): the
  batch sampler restarts at the first unconsumed batch of the epoch and every RNG is restored
  (python, numpy, torch CPU and CUDA), so a killed run loses at most ``checkpoint_every``
  iterations and otherwise does not notice the interruption.

Determinism with worker processes: loaders from :func:`reidlib.data.loaders.build_loader` give every sample its own
augmentation seed derived from ``(seed, epoch, batch, slot)`` (:class:`reidlib.data.loaders.SeededBatchSampler`), so
the data order *and* the augmentations are the same with any ``num_workers`` and after a resume.
(With a loader of your own, a resume in the middle of an epoch with ``num_workers > 0`` keeps the
order but not the augmentation draws of the rest of that epoch.) Bit-identical weights also need
deterministic kernels (``seed_everything(deterministic=True)``; exact on CPU).

More than one process (``torchrun``; :mod:`reidlib.engine.distributed`): when a process group
with more than one rank is initialised, the trainer wraps the model in PyTorch's
``DistributedDataParallel`` (optionally with synchronised BatchNorm, ``sync_bn``), gives each rank
its slice of every global batch (the sampler's ``set_batch_split``), and a :class:`CriterionStep`
computes the loss on the outputs gathered from all ranks, so the gradient is that of the
single-process loss on the global batch. Rank 0 alone writes checkpoints and logs; the RNG states
of every rank are saved, so a resume on the same number of ranks is exact. Every rank checks for
a non-finite loss and they agree (an all-reduce) before any of them raises.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from reidlib.engine import distributed as ddp
from reidlib.engine.checkpoint import (CheckpointManager, capture_rng_state, jsonable_config,
                                       load_checkpoint, load_latest, restore_rng_state)
from reidlib.engine.logging import JSONLLogger
from reidlib.engine.loop import Cadence, LogWindow
from reidlib.engine.precision import autocast, float32_losses, precision_name, resolve_amp
from reidlib.engine.resume import check_resumable
from reidlib.engine.steps import CriterionStep, StepFn, criterion_step, move_to_device
from reidlib.utils.device import resolve_device

#: ``Trainer`` and ``TrainState`` live here; the other names are re-exported from the modules that
#: now hold them (steps, precision, resume), for the code that imports them from here
__all__ = ["Trainer", "TrainState", "criterion_step", "resolve_amp", "float32_losses", "check_resumable"]

# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

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
        a ``DataLoader`` (ideally from :func:`reidlib.data.loaders.build_loader`, with a batch sampler such as
        ``PKSampler``) or any re-iterable; it is cycled through as many epochs as needed.
    step_fn:
        ``step_fn(model, batch) -> (loss, logs)``, the one way the trainer gets its loss; ``batch``
        is already on the device. A re-ID ``criterion(out, pids)`` becomes one with
        :func:`criterion_step`. An ``nn.Module`` step (with the loss's own parameters or buffers)
        is moved to the training device.
    out_dir:
        checkpoints (``last.pt``, ``iter_*.pt``) and ``log.jsonl`` go here; ``None``: nothing is written.
    checkpoint_every, keep_last, log_every:
        in iterations; ``checkpoint_every=0`` saves only the final checkpoint.
    amp, channels_last:
        see :func:`resolve_amp`; channels-last is used on CUDA and with CPU autocast.
    config, meta:
        stored in every checkpoint (``meta`` tells :mod:`reidlib.engine.artifacts` how to rebuild the
        model; the training tasks of :mod:`reidlib.engine.training` fill it in).
    distributed, sync_bn, find_unused_parameters:
        ``distributed=None``: DDP when a process group with more than one rank is initialised
        (``False``: train this process alone even then). ``sync_bn``: ``auto`` | ``on`` | ``off``
        (:func:`reidlib.engine.distributed.resolve_sync_bn`). ``find_unused_parameters`` goes to
        ``DistributedDataParallel`` (for models with parameters that some steps do not use).
    """

    def __init__(self, model: torch.nn.Module, step_fn: StepFn, *, optimizer: torch.optim.Optimizer,
                 scheduler: Any = None, data_loader: Iterable, max_iters: int,
                 out_dir: Optional[str | os.PathLike] = None, checkpoint_every: int = 0, keep_last: int = 1,
                 log_every: int = 10, device: Any = "auto", amp: Any = "auto", channels_last: bool = True,
                 grad_clip: Optional[float] = None, seed: int = 0, config: Any = None,
                 meta: Optional[dict] = None, progress: bool = True, desc: str = "train",
                 check_finite: bool = True, distributed: Optional[bool] = None, sync_bn: Any = "auto",
                 find_unused_parameters: bool = False):
        if not callable(step_fn):
            raise TypeError(f"step_fn must be callable (model, batch) -> (loss, logs), got {type(step_fn).__name__}")
        if max_iters < 0:
            raise ValueError(f"max_iters must be >= 0, got {max_iters}")
        self.distributed = ddp.is_distributed() if distributed is None else bool(distributed)
        if self.distributed and not ddp.is_distributed():
            raise RuntimeError("distributed=True needs an initialised torch.distributed process group with more "
                               "than one rank (launch with torchrun; reidlib.engine.distributed.init_from_env)")
        self.rank = ddp.rank() if self.distributed else 0
        self.world_size = ddp.world_size() if self.distributed else 1
        device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.device = ddp.rank_device(device) if self.distributed else device
        self.amp_dtype = resolve_amp(amp, self.device)
        # channels-last: on CUDA, and on the CPU with bf16 autocast (oneDNN's fast path there)
        self.channels_last = bool(channels_last) and (self.device.type == "cuda" or self.amp_dtype is not None)
        self.precision = precision_name(self.amp_dtype, self.channels_last)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.sync_bn = self.distributed and ddp.resolve_sync_bn(sync_bn, self.device)
        self._train_model: torch.nn.Module = self.model
        if self.distributed:
            if self.sync_bn:
                self.model = ddp.convert_sync_batchnorm(self.model, self.device)
            # the model's own parameters are shared: the optimiser built on them keeps working
            self._train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(find_unused_parameters))
            self._split_data(data_loader)
            if self.rank > 0:  # random ops in the model (dropout) draw differently on each rank
                from reidlib.data.loaders import sample_seed

                torch.manual_seed(sample_seed(int(seed), self.rank))
        if isinstance(step_fn, CriterionStep):
            step_fn.gather = self.distributed
        self.step_fn = step_fn.to(self.device) if isinstance(step_fn, torch.nn.Module) else step_fn
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
        self.meta = {**dict(meta or {}), "precision": None}
        self.progress = progress
        self.desc = desc
        self.check_finite = check_finite
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.meta["precision"] = self.precision
        self.meta["world_size"] = self.world_size
        self.meta["sync_bn"] = bool(self.sync_bn)
        self.ckpt = CheckpointManager(self.out_dir, keep_last) if self.out_dir is not None else None
        self.state = TrainState()
        self._iter: Optional[Iterable] = None
        self._pending_sampler_state: Optional[dict] = None
        self._logger: Optional[JSONLLogger] = None
        self._window = LogWindow()
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

    @property
    def is_main(self) -> bool:
        """Rank 0 (or a single process): the rank that writes checkpoints and logs."""
        return self.rank == 0

    # -------------------------------------------------------------------------------- data
    def _sampler(self):
        return _loader_sampler(self.loader)

    def _split_data(self, loader) -> None:
        """Under DDP: this rank's slice of every global batch (the sampler's ``set_batch_split``)."""
        if not ddp.split_batches(_loader_sampler(loader), self.rank, self.world_size) and self.is_main:
            import warnings

            warnings.warn(f"{type(loader).__name__}: its batch sampler cannot be split across ranks; every one of "
                          f"the {self.world_size} ranks iterates the whole loader (shard it yourself, or use a "
                          "PKSampler / RandomBatchSampler)", stacklevel=3)

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
            "rng_ranks": self._rng_of_ranks(),
            "world_size": self.world_size,
            "config": jsonable_config(self.config),
            "meta": jsonable_config({**self.meta, "max_iters": self.max_iters}),
            "history": jsonable_config(self.state.history),
            "log_window": self._window.state_dict(),
        }

    def _rng_of_ranks(self) -> Optional[list]:
        """Under DDP the RNG states of every rank (a collective: every rank must call it)."""
        return ddp.all_gather_objects(capture_rng_state()) if self.distributed else None

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.state.iteration = int(state["iteration"])
        self.state.history = list(state.get("history") or [])
        self._window = LogWindow.from_state(state.get("log_window"))
        self._restore_data_position(state.get("data") or {})
        ranks = state.get("rng_ranks")
        if ranks and len(ranks) == self.world_size:  # the same number of ranks: each its own RNG
            restore_rng_state(ranks[self.rank])
        elif state.get("rng") is not None:            # rank 0's; the other ranks re-seeded from it
            restore_rng_state(state["rng"])
            if self.rank > 0:
                from reidlib.data.loaders import sample_seed

                torch.manual_seed(sample_seed(self.seed, self.rank, self.state.iteration))

    def save(self) -> Optional[Path]:
        """Write the checkpoint (``last.pt``, ``iter_*.pt``) atomically; under DDP every rank must
        call it (the RNG states of all ranks are gathered), rank 0 writes, and the ranks wait for
        the file before going on."""
        if self.ckpt is None:
            return None
        state = self.state_dict()
        path = self.ckpt.save(state, self.state.iteration) if self.is_main else self.ckpt.last
        if self.distributed:
            ddp.barrier()
        return path

    def resume(self, path: Optional[str | os.PathLike] = None) -> bool:
        """Load ``path`` (default: the newest intact checkpoint of ``out_dir``; a damaged
        ``last.pt`` falls back to the newest intact ``iter_*.pt``, with a warning). Returns False
        when there is nothing to resume. Refuses (:class:`reidlib.errors.ConfigError`) a checkpoint
        whose run configuration differs from this trainer's in anything that shapes training
        (see :data:`reidlib.engine.resume.RESUME_MAY_CHANGE`): resuming with another learning rate,
        say, would silently train with the checkpoint's optimiser state while recording the new value."""
        if path is None:
            if self.ckpt is None or self.ckpt.latest() is None:
                return False
            state = load_latest(self.out_dir, map_location="cpu")
        else:
            state = load_checkpoint(path, map_location="cpu")
        check_resumable(state, self.config)
        saved_world = int(state.get("world_size") or 1)
        if saved_world != self.world_size and self.is_main:
            import warnings

            warnings.warn(f"{state.get('path')} was written by a run on {saved_world} rank(s); continuing on "
                          f"{self.world_size}: the same global batches and schedule, but not bit-exact (other "
                          "summation orders, per-rank BatchNorm statistics without sync_bn)", stacklevel=2)
        self.load_state_dict(state)
        return True

    # -------------------------------------------------------------------------------- loop
    def train_step(self, batch) -> tuple[torch.Tensor, dict]:
        self._train_model.train()
        batch = move_to_device(batch, self.device, self.channels_last)
        with autocast(self.device, self.amp_dtype):
            loss, logs = self.step_fn(self._train_model, batch)
        if self.check_finite and self.amp_dtype != torch.float16:  # fp16: GradScaler skips bad steps
            if self.device.type == "cpu":
                bad = not bool(torch.isfinite(loss.detach()).all())
                if self.distributed:  # every rank learns it before the backward's collectives
                    bad = ddp.any_rank(bad)
                if bad:
                    self._raise_non_finite(loss, logs, self.state.iteration + 1, self.world_size)
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

    @staticmethod
    def _raise_non_finite(loss, logs, iteration, world_size: int = 1) -> None:
        terms = {k: float(v) for k, v in dict(logs or {}).items()}
        where = f" on at least one of the {world_size} ranks (this rank's loss" if world_size > 1 else " (loss"
        raise FloatingPointError(f"non-finite loss at iteration {iteration}{where} {float(loss.detach())}, terms: "
                                 f"{terms}); lower optim.lr, set optim.grad_clip, or resume from an earlier checkpoint")

    def _check_bad_step(self) -> None:
        bad = self._bad_step is not None and bool(self._bad_step)
        if self.distributed:
            bad = ddp.any_rank(bad)
        if bad:
            raise FloatingPointError(f"non-finite loss at or before iteration {self.state.iteration}"
                                     + (f" on at least one of the {self.world_size} ranks" if self.distributed else "")
                                     + "; lower optim.lr, set optim.grad_clip, or resume from an earlier checkpoint")

    def run_step(self) -> float:
        """One iteration: the next batch, one optimiser step (:meth:`train_step`), its loss and
        terms added to the log window. Returns the learning rate the step used."""
        t0 = time.perf_counter()
        batch = self._next_batch()
        t1 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        loss, logs = self.train_step(batch)
        self.state.iteration += 1
        self._window.add(loss, logs, t0, t1)
        return lr

    def _write_log(self, lr: float, bar) -> dict:
        """The log line of the iterations since the last one (under DDP the mean over the ranks,
        equal on every rank for a gathered loss): to ``log.jsonl``, the history and the progress
        bar; then a new window."""
        self._check_bad_step()
        rec = self._window.record(self.state.iteration, self.state.epoch, lr,
                                  mean=ddp.all_reduce_mean if self.distributed else None)
        if self._logger is not None:
            self._logger.log(rec)
        self.state.history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}")
        self._window = LogWindow()
        return rec

    def fit(self, resume: bool = False) -> list[dict]:
        """Run to ``max_iters``; returns the history of log records. ``resume=True`` first loads
        ``out_dir/last.pt`` when it exists (a finished run is then a no-op apart from re-saving)."""
        self._window = LogWindow()
        resumed = self.resume() if resume else False
        if not resume and self.is_main and self.ckpt is not None and self.ckpt.latest() is not None:
            import warnings

            warnings.warn(f"{self.ckpt.latest()} exists; starting a fresh run that will overwrite it "
                          "(pass resume=True / --resume to continue it)", stacklevel=2)
        if self.log_path is not None and self.is_main:
            self._logger = JSONLLogger(self.log_path, resume_from=self.state.iteration if resumed else None)
        from tqdm.auto import tqdm

        bar = tqdm(total=self.max_iters, initial=min(self.state.iteration, self.max_iters), desc=self.desc,
                   disable=not self.progress or not self.is_main, dynamic_ncols=True, leave=False)
        cadence = Cadence(self.max_iters, self.log_every, self.checkpoint_every)
        try:
            while self.state.iteration < self.max_iters:
                lr = self.run_step()
                it = self.state.iteration
                bar.update(1)
                if cadence.log_due(it):
                    self._write_log(lr, bar)
                if cadence.checkpoint_due(it):
                    self._check_bad_step()  # never checkpoint a diverged model
                    self.save()
            self._check_bad_step()
            self.save()  # the final state
        finally:
            bar.close()
            if self._logger is not None:
                self._logger.close()
        return self.state.history
