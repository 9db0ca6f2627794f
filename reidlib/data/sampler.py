"""P x K identity batch sampler (Hermans et al., "In Defense of the Triplet Loss", 2017).

Every batch holds ``p`` distinct identities with ``k`` images each, id-major:
``batch[i*k:(i+1)*k]`` all belong to the i-th identity of the batch.

How an epoch is drawn (all from ``numpy.random.default_rng([seed, epoch])``, so the epoch's
batches depend only on ``(seed, epoch)`` and the pids):

* identities are taken from a random permutation of all ids, cycled (a fresh permutation when
  one runs out; ids already in the current batch are pushed to its end), so over an epoch every
  id is used about equally often;
* each id's images are drawn from its own shuffled queue, cycled the same way, so consecutive
  visits of an id see different images (without replacement until all were used);
* an id with fewer than ``k`` images contributes all of them plus ``k - n`` drawn with
  replacement.

Epoch length (single replica): ``batches_per_epoch``, default ``max(1, len(pids) // (p*k))``
(about one pass over the images, as in the strong baseline).

Distributed sharding (like ``DistributedSampler``, but over whole batches): with ``num_replicas``
R the epoch's global batch sequence is extended to ``R * ceil(L / R)`` batches (generation is
sequential, so the first L batches are exactly those of a single replica) and replica ``rank``
gets batches ``rank, rank + R, ...``: the shards are disjoint, together cover the single-replica
epoch, and every rank has the same length ``ceil(L / R)`` (each replica's batch has P x K
images; the global batch is R x P x K).

Splitting every batch across ranks (what :class:`reidlib.engine.trainer.Trainer` uses under
``torchrun``, :mod:`reidlib.engine.distributed`): ``set_batch_split(rank, world_size)`` keeps the
single-process batch sequence and gives rank ``rank`` the contiguous slice
``[rank * B / R, (rank + 1) * B / R)`` of every batch. P x K batches are id-major, so a rank gets
``P / R`` whole identities x K images (``p`` must be a multiple of R) and the global batch is the
single-process P x K batch with any R; the epoch length is unchanged. ``last_slice`` tells,
after each yielded batch, where it sits in the global batch (``(first slot, global batch
size)``), so per-sample augmentation seeds follow the global slot.

Resuming: iteration records how many of this replica's batches of the current epoch were
yielded (``offset``); ``state_dict()`` returns ``{"epoch", "offset"}`` and after
``load_state_dict`` iteration continues with the batches not yet yielded. When an epoch is
exhausted the sampler moves to the next epoch by itself; ``set_epoch(e)`` jumps to epoch ``e``
(and resets the offset only when ``e`` differs from the current epoch, so calling
``set_epoch`` with the resumed epoch keeps the position). A ``DataLoader`` with workers draws
batches ahead of the training loop; there pass the number of batches actually consumed in the
current epoch: ``state_dict(consumed=n)``.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import numpy as np

from reidlib.errors import ConfigError


class ResumableBatchSampler:
    """Epoch-deterministic batch sampler whose position can be saved and restored.

    Subclasses define ``__len__`` (batches per epoch) and ``batches(epoch)`` (that epoch's plan, a
    pure function of the seed and ``epoch``); this base yields the plan from ``self._offset`` on
    and holds ``{"epoch", "offset"}`` state, so a restored sampler continues with exactly the
    batches not yet used. Shared by :class:`PKSampler` and :class:`RandomBatchSampler`.
    """

    epoch: int = 0
    _offset: int = 0
    #: ``(rank, world_size)`` of :meth:`set_batch_split`; ``(0, 1)``: whole batches
    batch_split: tuple[int, int] = (0, 1)
    #: where the batch yielded last sits in its global batch: ``(first slot, global batch size)``
    last_slice: Optional[tuple[int, int]] = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self, epoch: Optional[int] = None) -> list[list[int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ iteration / state
    def __iter__(self) -> Iterator[list[int]]:
        if self._offset >= len(self):            # previous epoch fully yielded: move on
            self.epoch += 1
            self._offset = 0
        plan = self.batches(self.epoch)
        while self._offset < len(plan):
            b = plan[self._offset]
            self._offset += 1
            lo, hi = self._slice_bounds(len(b))
            self.last_slice = (lo, len(b))
            yield list(b[lo:hi])
        self.epoch += 1
        self._offset = 0

    # ------------------------------------------------------------------ splitting across ranks
    def set_batch_split(self, rank: int, world_size: int) -> None:
        """Yield only slice ``rank`` of ``world_size`` equal contiguous slices of every batch (see
        the module docstring). ``(0, 1)`` restores whole batches. Subclasses check that their
        batches divide (:class:`reidlib.errors.ConfigError` otherwise)."""
        rank, world_size = int(rank), int(world_size)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"batch split: rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
        self._check_split(world_size)
        self.batch_split = (rank, world_size)

    def _check_split(self, world_size: int) -> None:  # pragma: no cover - overridden
        pass

    def _slice_bounds(self, n: int) -> tuple[int, int]:
        r, w = self.batch_split
        return (n * r) // w, (n * (r + 1)) // w

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch``; the offset is reset only if ``epoch`` differs from the current one."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self._offset = 0

    def state_dict(self, consumed: Optional[int] = None, epoch: Optional[int] = None) -> dict:
        """``{"epoch": e, "offset": o}``: ``o`` batches of epoch ``e`` were used.

        By default the sampler's own position. For loaders that prefetch, pass ``consumed`` (the
        batches the training loop actually consumed in the epoch) and, if the sampler may
        already have run past the end of that epoch, ``epoch`` too."""
        off = self._offset if consumed is None else int(consumed)
        ep = self.epoch if epoch is None else int(epoch)
        if not 0 <= off <= len(self):
            raise ValueError(f"consumed must be in 0..{len(self)}, got {off}")
        return {"epoch": ep, "offset": off}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the next iteration yields this epoch's batches from ``offset`` on."""
        epoch, off = int(state["epoch"]), int(state["offset"])
        if not 0 <= off <= len(self):
            raise ValueError(f"offset {off} outside 0..{len(self)} for this sampler")
        self.epoch, self._offset = epoch, off


class PKSampler(ResumableBatchSampler):
    """Batch sampler yielding lists of ``p * k`` dataset indices; use as ``DataLoader(batch_sampler=...)``."""

    def __init__(self, pids: Sequence[int], p: int = 8, k: int = 4, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, batches_per_epoch: Optional[int] = None):
        self.pids = [int(x) for x in pids]
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        if self.p < 1 or self.k < 1:
            raise ConfigError(f"PKSampler needs p >= 1 and k >= 1, got p={p}, k={k}")
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ConfigError(f"PKSampler rank must be in 0..num_replicas-1, got rank={rank}, num_replicas={num_replicas}")
        groups: dict[int, list[int]] = {}
        for i, pid in enumerate(self.pids):
            groups.setdefault(pid, []).append(i)
        self._ids = sorted(groups)
        self._index_lists = [np.asarray(groups[pid], dtype=np.int64) for pid in self._ids]
        if len(self._ids) < self.p:
            raise ConfigError(f"PKSampler needs at least p={self.p} identities, the data has {len(self._ids)}")
        if batches_per_epoch is None:
            batches_per_epoch = max(1, len(self.pids) // (self.p * self.k))
        if int(batches_per_epoch) < 1:
            raise ConfigError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
        self.batches_per_epoch = int(batches_per_epoch)
        self.epoch = 0
        self._offset = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def _check_split(self, world_size: int) -> None:
        if world_size > 1 and self.num_replicas > 1:
            raise ConfigError("PKSampler: split batches across ranks (set_batch_split) or shard whole batches "
                              f"(num_replicas={self.num_replicas}), not both")
        if self.p % world_size:
            raise ConfigError(f"data.p={self.p} identities per batch cannot be split over {world_size} ranks: every "
                              f"rank trains on p / {world_size} identities x k={self.k} images of the global P x K "
                              f"batch; set data.p to a multiple of {world_size}")

    # ------------------------------------------------------------------ plan
    def __len__(self) -> int:
        """Batches per epoch for this replica: ``ceil(batches_per_epoch / num_replicas)``."""
        return math.ceil(self.batches_per_epoch / self.num_replicas)

    def remaining(self) -> int:
        """Batches of the current epoch not yet yielded."""
        return len(self) - self._offset

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All replicas' batches of ``epoch`` in generation order (length ``num_replicas * len(self)``)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_ids = len(self._ids)
        id_queue: list[int] = []
        img_queues: dict[int, list[int]] = {}
        out = []
        for _ in range(len(self) * self.num_replicas):
            chosen: list[int] = []
            while len(chosen) < self.p:
                if not id_queue:
                    perm = rng.permutation(n_ids).tolist()
                    taken = set(chosen)
                    id_queue = [i for i in perm if i not in taken] + [i for i in perm if i in taken]
                    id_queue.reverse()           # pop() from the end = take from the front
                chosen.append(id_queue.pop())
            batch: list[int] = []
            for c in chosen:
                batch.extend(self._draw(c, rng, img_queues))
            out.append(batch)
        return out

    def _draw(self, c: int, rng: np.random.Generator, queues: dict[int, list[int]]) -> list[int]:
        idx = self._index_lists[c]
        n, k = len(idx), self.k
        if n < k:
            extra = rng.integers(n, size=k - n)
            return idx.tolist() + idx[extra].tolist()
        q = queues.get(c)
        if q is None:
            q = queues[c] = []
        picked: list[int] = []
        while len(picked) < k:
            if not q:
                perm = rng.permutation(n).tolist()
                taken = set(picked)
                q.extend(reversed([i for i in perm if i not in taken] + [i for i in perm if i in taken]))
            picked.append(q.pop())
        return idx[picked].tolist()

    def batches(self, epoch: Optional[int] = None) -> list[list[int]]:
        """This replica's batches of ``epoch`` (default: the current one), without moving the offset
        (whole batches: under :meth:`set_batch_split` iteration yields this rank's slice of each)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        mine = self.global_batches(epoch)[self.rank::self.num_replicas]
        self._cache = (epoch, mine)
        return mine


class RandomBatchSampler(ResumableBatchSampler):
    """Shuffled fixed-size batches for the non-re-ID tasks (SPAN step 1, the foreground network),
    with the same resumable interface as :class:`reidlib.data.PKSampler`: the order of epoch ``e``
    comes from ``numpy.random.default_rng([seed, e])``; ``state_dict()`` / ``load_state_dict()``
    hold ``{"epoch", "offset"}`` and iteration resumes at the first batch not yet yielded.
    ``set_batch_split`` splits every batch across ranks (``batch_size`` a multiple of the ranks)."""

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

    def _check_split(self, world_size: int) -> None:
        if self.batch_size % world_size:
            raise ConfigError(f"data.batch_size={self.batch_size} cannot be split over {world_size} ranks; set it "
                              f"to a multiple of {world_size}")
        if min(self.n, self.batch_size) < world_size:
            raise ConfigError(f"a batch of {min(self.n, self.batch_size)} sample(s) cannot be split over "
                              f"{world_size} ranks")

    def batches(self, epoch: Optional[int] = None) -> list[list[int]]:
        epoch = self.epoch if epoch is None else epoch
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self.n).tolist()
        return [perm[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]
