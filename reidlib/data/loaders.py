"""Training data loaders with deterministic, resumable order and augmentation.

:func:`build_loader` wraps a dataset and a resumable batch sampler (:class:`reidlib.data.PKSampler`,
:class:`reidlib.data.sampler.RandomBatchSampler`) in a ``DataLoader`` whose data order *and*
random augmentations depend only on the place of each sample in the training schedule:
:class:`SeededBatchSampler` gives every sample its own augmentation seed derived from
``(seed, epoch, batch, slot)`` and :class:`SeededDataset` applies it. A run is therefore the
same with any ``num_workers`` and bit-identical after a resume (see :mod:`reidlib.engine.trainer`).
"""
from __future__ import annotations

import os
import random
from typing import Optional

import numpy as np
import torch

__all__ = ["build_loader", "seed_worker", "sample_seed", "SeededBatchSampler", "SeededDataset"]


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
    When the sampler yields one rank's slice of a global batch
    (:meth:`reidlib.data.sampler.ResumableBatchSampler.set_batch_split`), the slot is the sample's
    slot in the global batch, so the augmentations are those of a single-process run.
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
            # a rank's slice of a global batch (set_batch_split): slots count in the global batch
            first = (getattr(inner, "last_slice", None) or (0, 0))[0]
            yield [(int(i), sample_seed(self.seed, epoch, pos, first + j)) for j, i in enumerate(batch)]
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
