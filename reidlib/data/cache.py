"""Decoded training images, kept on disk once: a uint8 tensor cache.

Decoding a JPEG and resizing it costs more than the forward pass of a small network on 2 CPU
cores. :class:`ImageCache` decodes a list of records once, at the training size, into a
``uint8 [N, H, W, 3]`` array stored as ``.npy`` and memory-mapped (NHWC: exactly the channels-last
layout the convolutions want). The resize is the per-image path's (torchvision's antialiased
``resize`` of the uint8 image), so a cached image equals what :func:`reidlib.data.dataset.build_transforms`
resizes. The file is named by a hash of the image paths, their sizes and modification times and
the target size (so two datasets, or a changed one, never share a file), written atomically and
guarded by a lock of its own, so concurrent runs (or ranks) build it once.

Where: ``data.cache_dir`` when set, else the project's data folder,
``<home>/data/image-cache/`` (:func:`default_cache_dir`); never the user's dataset folder, which
reidlib only reads (nor, through a symbolic link, the folder a linked image folder lives in).

:func:`fits` tells whether a split is small enough to cache (SynthVeRi ``small`` at 128 px is
~350 MB; real VERI-Wild at 256 px is ~80 GB and is read image by image).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from reidlib.data.records import Record
from reidlib.utils.io import file_lock

__all__ = ["ImageCache", "fits", "default_cache_dir", "DEFAULT_BUDGET_GB"]

VERSION = 1
DEFAULT_BUDGET_GB = 4.0


def nbytes(n: int, height: int, width: int) -> int:
    return int(n) * int(height) * int(width) * 3


def fits(records: Sequence[Record], height: int, width: int, budget_gb: float = DEFAULT_BUDGET_GB) -> bool:
    """Whether ``records`` at ``height`` x ``width`` take at most ``budget_gb`` as uint8."""
    return nbytes(len(records), height, width) <= float(budget_gb) * 2**30


def default_cache_dir() -> Path:
    """The project's ``data/image-cache`` (:func:`reidlib.utils.paths.data_dir`; ``$REIDLIB_HOME``
    moves it): where :class:`ImageCache` writes unless given a folder. Never beside the data."""
    from reidlib.utils import paths

    return paths.data_dir() / "image-cache"


def _key(records: Sequence[Record], height: int, width: int) -> str:
    h = hashlib.sha256(f"v{VERSION}|{height}x{width}".encode())
    for r in records:
        st = os.stat(r.path)
        h.update(f"|{os.path.abspath(r.path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _decode(path: str, height: int, width: int) -> np.ndarray:
    from torchvision.transforms.v2 import functional as F

    from reidlib.data.dataset import read_image_rgb

    img = torch.from_numpy(read_image_rgb(path)).permute(2, 0, 1)                   # uint8 [3, h, w]
    return F.resize(img, [height, width], antialias=True).permute(1, 2, 0).numpy()   # uint8 [H, W, 3]


class ImageCache:
    """``uint8 [N, H, W, 3]`` images of ``records``, memory-mapped (see the module docstring).

    ``cache.images`` is the array; ``cache.batch(indices)`` a ``uint8 [B, H, W, 3]`` tensor.
    """

    def __init__(self, records: Sequence[Record], height: int, width: int, cache_dir: Optional[str | os.PathLike] = None,
                 progress: bool = False):
        self.records = list(records)
        self.height, self.width = int(height), int(width)
        self.dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.path = self.dir / f"images-{self.height}x{self.width}-{_key(self.records, self.height, self.width)}.npy"
        if not self.path.is_file():
            self._build(progress)
        self.images = np.load(self.path, mmap_mode="r")
        if self.images.shape != (len(self.records), self.height, self.width, 3) or self.images.dtype != np.uint8:
            raise ValueError(f"{self.path}: holds {self.images.shape} {self.images.dtype}, expected "
                             f"{(len(self.records), self.height, self.width, 3)} uint8; delete it to rebuild")

    @property
    def megabytes(self) -> float:
        return nbytes(len(self.records), self.height, self.width) / 2**20

    def _build(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        with file_lock(self.dir / f".{self.path.stem}.lock"):   # another process may be building this one
            if self.path.is_file():
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                            shape=(len(self.records), self.height, self.width, 3))
            for i, r in enumerate(tqdm(self.records, desc="decoding images once", disable=not progress)):
                arr[i] = _decode(r.path, self.height, self.width)
            arr.flush()
            del arr
            os.replace(tmp, self.path)
            (self.path.with_suffix(".json")).write_text(json.dumps(
                {"version": VERSION, "images": len(self.records), "height": self.height, "width": self.width,
                 "first": self.records[0].path if self.records else None}))

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """``uint8 [B, H, W, 3]`` images of ``indices`` (a copy out of the memory map)."""
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.images[idx]))
