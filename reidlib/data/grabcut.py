"""GrabCut foreground masks: the "preliminary results by GrabCut" of SPAN Sec. 3.1.

Follows the procedure of SPAN's public code (its GrabCut preprocessing):

1. pad the image by ``pad = 32`` px on every side;
2. run ``cv2.grabCut`` initialised with the rectangle = the original image area (everything in it
   "probably foreground", the padding "definitely background"), ``iterations = 5``;
3. run it a second time on the 180-degree-rotated image, rotate that mask back, and multiply the
   two masks (``two_pass=True``): a pixel is foreground only if both runs agree.

Assumption (not stated in the reference): the padding replicates the border pixels
(``cv2.BORDER_REPLICATE``), so the background colour model is learned from the image border;
``border="constant"`` pads with black instead. OpenCV's RNG is re-seeded before every call so
masks are deterministic. These masks are the training targets of
:class:`reidlib.models.foreground.ForegroundNet`, whose output is SPAN's target ``V``.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

from reidlib.utils.io import atomic_path

_BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


def _grabcut_once(padded: np.ndarray, rect: tuple[int, int, int, int], iterations: int, seed: int) -> np.ndarray:
    mask = np.zeros(padded.shape[:2], np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    cv2.grabCut(padded, mask, rect, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_RECT)
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)


def grabcut_foreground(image_rgb: np.ndarray, pad: int = 32, iterations: int = 5, two_pass: bool = True,
                       border: str = "replicate", seed: int = 0) -> np.ndarray:
    """Foreground mask of a vehicle crop by GrabCut, the authors' way (module docstring).

    Args:
        image_rgb: ``uint8 [H, W, 3]`` (channel order does not matter to GrabCut's colour GMMs).
        pad: padding in pixels (32 in the public code); must be >= 1 so the rectangle leaves a
            background region.
        iterations: GrabCut iterations per pass (5).
        two_pass: also segment the 180-degree-rotated image and multiply the two masks.
        border: padding mode, ``"replicate"`` (default), ``"constant"`` (black) or ``"reflect"``.
        seed: OpenCV RNG seed (k-means initialisation of the GMMs).

    Returns:
        ``uint8 [H, W]`` mask with values 0 (background) / 1 (foreground).
    """
    img = np.ascontiguousarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image_rgb must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
    if pad < 1:
        raise ValueError("pad must be >= 1: the GrabCut rectangle needs a background margin")
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    H, W = img.shape[:2]
    rect = (pad, pad, W, H)                                               # x, y, w, h = the original image

    def run(im: np.ndarray) -> np.ndarray:
        padded = cv2.copyMakeBorder(im, pad, pad, pad, pad, _BORDERS[border], value=(0, 0, 0))
        return _grabcut_once(padded, rect, iterations, seed)[pad:pad + H, pad:pad + W]

    mask = run(img)
    if two_pass:
        rotated = np.ascontiguousarray(img[::-1, ::-1])                   # 180-degree rotation
        mask = mask * np.ascontiguousarray(run(rotated)[::-1, ::-1])
    return mask.astype(np.uint8)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB (raises ``FileNotFoundError`` if unreadable)."""
    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class GrabCutCache:
    """GrabCut masks cached on disk as PNG files (0/255), one per image.

    The file name is the SHA-1 of the image's absolute path plus the GrabCut parameters, so
    different settings never collide: ``<cache_dir>/<hash[:2]>/<hash>.png``. Writes are atomic.
    ``get(path)`` returns the ``uint8 [H, W]`` 0/1 mask, computing and storing it on a miss.
    """

    def __init__(self, cache_dir: str | os.PathLike, pad: int = 32, iterations: int = 5, two_pass: bool = True,
                 border: str = "replicate"):
        self.cache_dir = Path(cache_dir)
        self.params = {"pad": int(pad), "iterations": int(iterations), "two_pass": bool(two_pass), "border": border}

    def key(self, image_path: str | os.PathLike) -> str:
        p = self.params
        tag = f"{os.path.abspath(os.fspath(image_path))}|pad={p['pad']}|it={p['iterations']}|two={int(p['two_pass'])}|{p['border']}"
        return hashlib.sha1(tag.encode("utf-8")).hexdigest()

    def mask_path(self, image_path: str | os.PathLike) -> Path:
        k = self.key(image_path)
        return self.cache_dir / k[:2] / f"{k}.png"

    def __contains__(self, image_path) -> bool:
        return self.mask_path(_as_path(image_path)).is_file()

    def compute(self, image_path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Compute (unless cached) and store the mask of one image; returns the PNG path."""
        image_path = _as_path(image_path)
        out = self.mask_path(image_path)
        if out.is_file() and not overwrite:
            return out
        mask = grabcut_foreground(read_rgb(image_path), **self.params)
        ok, buf = cv2.imencode(".png", mask * 255)
        if not ok:  # pragma: no cover
            raise RuntimeError(f"PNG encoding failed for {image_path}")
        with atomic_path(out, suffix=".png") as tmp:
            tmp.write_bytes(buf.tobytes())
        return out

    def get(self, image_path) -> np.ndarray:
        """The cached ``uint8 [H, W]`` 0/1 mask of an image path or :class:`Record`."""
        out = self.compute(_as_path(image_path))
        mask = cv2.imread(os.fspath(out), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise FileNotFoundError(f"unreadable cached mask {out}; delete it to recompute")
        return (mask > 127).astype(np.uint8)

    __call__ = get


def _as_path(x) -> str:
    return os.fspath(getattr(x, "path", x))


def _worker(args: tuple) -> str:
    cache_dir, params, path = args
    cv2.setNumThreads(1)
    return os.fspath(GrabCutCache(cache_dir, **params).compute(path))


def compute_masks(records: Iterable, cache_dir: str | os.PathLike, workers: Optional[int] = None,
                  progress: bool = True, **params) -> list[Path]:
    """Compute the GrabCut masks of ``records`` (``Record`` objects or image paths) into ``cache_dir``.

    Already cached masks are skipped (so an interrupted run resumes). ``workers``: processes
    (``None`` -> ``os.cpu_count()``; ``<= 1`` -> in this process). ``params`` go to
    :class:`GrabCutCache`. Returns the mask paths in the order of ``records``.
    """
    from tqdm.auto import tqdm

    paths: Sequence[str] = [_as_path(r) for r in records]
    cache = GrabCutCache(cache_dir, **params)
    todo = [p for p in dict.fromkeys(paths) if p not in cache]
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if todo:
        if workers <= 1 or len(todo) == 1:
            for p in tqdm(todo, desc="GrabCut", disable=not progress):
                cache.compute(p)
        else:
            jobs = [(os.fspath(cache.cache_dir), cache.params, p) for p in todo]
            # forkserver, not fork: forking a process whose OpenCV / torch thread pools are running
            # can deadlock the children (seen here: a pool that never started its jobs)
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                              else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for _ in tqdm(pool.map(_worker, jobs, chunksize=8), total=len(jobs), desc="GrabCut",
                              disable=not progress):
                    pass
    return [cache.mask_path(p) for p in paths]
