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
        self.mean_hwc = torch.tensor(mean, dtype=torch.float32) * 255.0          # [3]: NHWC broadcast
        self.std_hwc = torch.tensor(std, dtype=torch.float32) * 255.0
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
        B, H, W, _ = images.shape
        draw = _Draws(generator, B, slots)
        x = images.contiguous()                                           # NHWC uint8
        if self.train and (self.flip_p > 0 or self.pad > 0):
            flip = (draw.rand() < self.flip_p).tolist() if self.flip_p > 0 else [False] * B
            p = self.pad
            if p > 0:
                oy, ox = draw.randint(2 * p + 1).tolist(), draw.randint(2 * p + 1).tolist()
                padded = torch.nn.functional.pad(x, (0, 0, p, p, p, p))   # zeros, as Pad(fill=0)
            else:
                oy, ox, padded = [0] * B, [0] * B, x
            out = torch.empty_like(x)
            for b in range(B):                     # per-image slices: cheaper than gathers at this size
                crop = padded[b, oy[b]:oy[b] + H, ox[b]:ox[b] + W]
                out[b] = crop.flip(1) if flip[b] else crop
            x = out
        x = (x.float() - self.mean_hwc) / self.std_hwc                    # [B, H, W, 3] float32
        if self.train and self.erasing_p > 0:
            for b, box in enumerate(self._erasing_boxes(B, H, W, draw)):
                if box is not None:
                    y0, x0, h, w = box
                    x[b, y0:y0 + h, x0:x0 + w] = 0.0                      # 0 after normalisation: the mean colour
        return x.permute(0, 3, 1, 2)                                      # [B, 3, H, W], channels-last memory

    def _erasing_boxes(self, B: int, H: int, W: int, draw: "_Draws") -> list:
        """Per image ``(y0, x0, h, w)`` of random erasing, or None: torchvision's rule (area and
        log-aspect uniform, the first of ``tries`` boxes that fits)."""
        apply = draw.rand() < self.erasing_p
        t = self.tries
        target = H * W * (self.scale[0] + (self.scale[1] - self.scale[0]) * draw.rand(t))
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        ratio = torch.exp(lo + (hi - lo) * draw.rand(t))
        h = torch.round(torch.sqrt(target * ratio)).long()
        w = torch.round(torch.sqrt(target / ratio)).long()
        u_y, u_x = draw.rand(t), draw.rand(t)
        ok = (h < H) & (w < W)
        boxes = []
        for b in range(B):
            fits = ok[b].nonzero()
            if not bool(apply[b]) or len(fits) == 0:
                boxes.append(None)
                continue
            k = int(fits[0])
            hb, wb = int(h[b, k]), int(w[b, k])
            boxes.append((int(u_y[b, k] * (H - hb + 1)), int(u_x[b, k] * (W - wb + 1)), hb, wb))
        return boxes


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
