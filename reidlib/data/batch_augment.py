"""The strong baseline's training augmentation, batched in torch, and the loader that feeds it
from an :class:`reidlib.data.cache.ImageCache`.

:class:`BatchAugment` applies to a whole ``uint8 [B, H, W, 3]`` batch what
:func:`reidlib.data.dataset.build_transforms` applies image by image (Luo et al., "Bag of
Tricks"): random horizontal flip, zero padding + random crop back to the size, ImageNet
normalisation, random erasing (Zhong et al.: area 2-40 %, aspect 0.3-3.3, erased pixels 0 after
normalisation, i.e. the mean colour; up to 10 tries per image as torchvision). Every random draw
comes from one ``torch.Generator`` per batch.

:class:`CachedBatchLoader` is what the training loop iterates instead of a ``DataLoader`` when
the split fits in the cache: batches of a resumable batch sampler (:class:`reidlib.data.PKSampler`),
gathered from the memory map and augmented in the main process (no worker processes competing
with torch's threads). Each batch's generator is seeded from ``(seed, epoch, position in the
epoch)`` (:func:`reidlib.data.loaders.sample_seed`), so the augmentation of a batch depends only on
its place in the schedule and a resumed run is bit-identical. A rank that trains on a slice of
each global batch (:mod:`reidlib.engine.distributed`) draws the random numbers of the whole global
batch and keeps its rows: its images are augmented exactly as in a single-process run.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from reidlib.data.loaders import sample_seed

__all__ = ["BatchAugment", "CachedBatchLoader"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BatchAugment:
    """``uint8 [B, H, W, 3]`` -> normalised ``float32 [B, 3, H, W]`` (channels-last memory)."""

    def __init__(self, train: bool = True, flip_p: float = 0.5, pad: int = 10, random_erasing_p: float = 0.5,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 erasing_scale=(0.02, 0.4), erasing_ratio=(0.3, 1 / 0.3), erasing_tries: int = 10):
        self.train = bool(train)
        self.flip_p, self.pad, self.erasing_p = float(flip_p), int(pad), float(random_erasing_p)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.scale, self.ratio, self.tries = erasing_scale, erasing_ratio, int(erasing_tries)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 slots: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Augment ``images``. ``slots=(first, total)``: ``images`` are rows ``first ..
        first + B - 1`` of a global batch of ``total`` images (one rank's slice under
        :meth:`reidlib.data.sampler.ResumableBatchSampler.set_batch_split`): every random draw is
        made for the whole global batch and these rows are taken, so the slice is augmented
        exactly as in the single-process batch."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, H, W, 3] images, got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2)                                    # [B, 3, H, W] (NHWC memory)
        B, _, H, W = x.shape
        draw = _Draws(generator, B, slots)
        if self.train and self.flip_p > 0:
            flip = draw.rand() < self.flip_p
            x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
        if self.train and self.pad > 0:
            p = self.pad
            padded = F.pad(x, (p, p, p, p))                               # zeros, as Pad(fill=0)
            oy = draw.randint(2 * p + 1)
            ox = draw.randint(2 * p + 1)
            rows = (oy[:, None] + torch.arange(H))[:, None, :, None]      # [B, 1, H, 1]
            cols = (ox[:, None] + torch.arange(W))[:, None, None, :]      # [B, 1, 1, W]
            b = torch.arange(B)[:, None, None, None]
            c = torch.arange(3)[None, :, None, None]
            x = padded[b, c, rows, cols]                                  # [B, 3, H, W]
        x = (x.float() - self.mean) / self.std
        x = x.contiguous(memory_format=torch.channels_last)
        if self.train and self.erasing_p > 0:
            x = self._erase(x, draw)
        return x

    def _erase(self, x: torch.Tensor, draw: "_Draws") -> torch.Tensor:
        B, _, H, W = x.shape
        apply = draw.rand() < self.erasing_p
        area = H * W
        t = self.tries
        target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * draw.rand(t))
        log_r = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * draw.rand(t)
        ratio = torch.exp(log_r)
        h = torch.round(torch.sqrt(target * ratio)).long()
        w = torch.round(torch.sqrt(target / ratio)).long()
        ok = (h < H) & (w < W)
        u_y = draw.rand(t)
        u_x = draw.rand(t)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(B, dtype=torch.long))
        pick = lambda a: a.gather(1, first[:, None])[:, 0]                    # noqa: E731
        h, w = pick(h), pick(w)
        y0 = (pick(u_y) * (H - h + 1).clamp_min(1)).long().clamp_max(H - 1)
        x0 = (pick(u_x) * (W - w + 1).clamp_min(1)).long().clamp_max(W - 1)
        use = apply & ok.any(1)
        ys = torch.arange(H)[None, :]
        xs = torch.arange(W)[None, :]
        in_y = (ys >= y0[:, None]) & (ys < (y0 + h)[:, None])               # [B, H]
        in_x = (xs >= x0[:, None]) & (xs < (x0 + w)[:, None])               # [B, W]
        mask = (in_y[:, :, None] & in_x[:, None, :]) & use[:, None, None]    # [B, H, W]
        return x.masked_fill(mask[:, None], 0.0)


class _Draws:
    """The random numbers of one batch: each draw is made for the global batch (``slots``:
    ``(first row, global size)``; default the batch itself) from ``generator``, in a fixed order,
    and this batch's rows are returned."""

    def __init__(self, generator: Optional[torch.Generator], rows: int, slots: Optional[tuple[int, int]] = None):
        first, total = (0, rows) if slots is None else (int(slots[0]), int(slots[1]))
        if first < 0 or first + rows > total:
            raise ValueError(f"slots {slots}: rows {first}..{first + rows - 1} outside a global batch of {total}")
        self.generator, self.total = generator, total
        self.rows = slice(first, first + rows)

    def rand(self, *tail: int) -> torch.Tensor:
        return torch.rand(self.total, *tail, generator=self.generator)[self.rows]

    def randint(self, high: int) -> torch.Tensor:
        return torch.randint(0, high, (self.total,), generator=self.generator)[self.rows]


class CachedBatchLoader:
    """Batches ``{"img", "pid", "camid", "view", "index"}`` of a resumable batch sampler, from an
    image cache, augmented in the main process (see the module docstring). Quacks like the
    ``DataLoader`` the trainer expects: ``batch_sampler``, ``len()``, iteration."""

    def __init__(self, cache, pids: Sequence[int], batch_sampler, augment: BatchAugment, seed: int = 0,
                 camids: Optional[Sequence[int]] = None, views: Optional[Sequence[int]] = None):
        self.cache = cache
        self.pids = torch.as_tensor(list(pids), dtype=torch.long)
        n = len(self.pids)
        self.camids = torch.as_tensor(list(camids) if camids is not None else [0] * n, dtype=torch.long)
        self.views = torch.as_tensor(list(views) if views is not None else [-1] * n, dtype=torch.long)
        self.batch_sampler = batch_sampler
        self.augment = augment
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        sampler = self.batch_sampler
        for batch in sampler:
            st = sampler.state_dict()
            epoch, pos = int(st["epoch"]), int(st["offset"]) - 1         # this batch's place in the schedule
            gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, pos))
            idx = torch.as_tensor(batch, dtype=torch.long)
            slots = getattr(sampler, "last_slice", None)   # this rank's rows of the global batch
            yield {"img": self.augment(self.cache.batch(batch), gen, slots=slots), "pid": self.pids[idx],
                   "camid": self.camids[idx], "view": self.views[idx], "index": idx}
