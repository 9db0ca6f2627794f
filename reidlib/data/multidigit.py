"""Multi-digit images for the general-purpose SPAN demo (SPAN paper Sec. 3.1 "Discussion", Fig. 4).

SPAN's authors built a multi-digit set from MNIST whose image-level semantic label says which digits
are visible; SPAN then learns to localise each digit from that label alone. We build the same kind of
data offline from scikit-learn's bundled 8x8 digits (``sklearn.datasets.load_digits``, no download):
each image holds 1..``max_per_image`` digits of distinct classes from ``digits``, upscaled, randomly
coloured and pasted at non-overlapping positions on a noisy background.

The ground truth needed by SPAN step 1 comes with it: the semantic label vector (which of the K
classes are present; the analogue of SPAN's [front, rear, side] vector), the foreground mask (the
analogue of the GrabCut vehicle mask) and, for evaluation only, the per-class part masks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["make_multidigit", "MultiDigitDataset", "MEAN", "STD"]

#: per-channel normalisation (ImageNet statistics, as for the re-ID images)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_DIGITS_CACHE: Optional[tuple[np.ndarray, np.ndarray]] = None


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images ``[1797, 8, 8]`` in 0..16 (float), targets ``[1797]``."""
    global _DIGITS_CACHE
    if _DIGITS_CACHE is None:
        from sklearn.datasets import load_digits
        d = load_digits()
        _DIGITS_CACHE = (d.images.astype(np.float32) / 16.0, d.target.astype(np.int64))
    return _DIGITS_CACHE


def _overlaps(box: tuple[int, int, int, int], boxes: list, gap: int) -> bool:
    y, x, s = box[0], box[1], box[2]
    for (y2, x2, s2, _) in boxes:
        if y < y2 + s2 + gap and y2 < y + s + gap and x < x2 + s2 + gap and x2 < x + s + gap:
            return True
    return False


def make_multidigit(n_images: int, image_size: int = 64, digits: Sequence[int] = (0, 1, 2),
                    max_per_image: int = 2, seed: int = 0, scale: tuple[float, float] = (0.3, 0.45),
                    noise: float = 12.0) -> dict:
    """Generate ``n_images`` multi-digit images (deterministic given ``seed``).

    Each image gets ``k ~ U{1..max_per_image}`` digits of ``k`` distinct classes drawn from ``digits``
    (so a class appears at most once and its part mask is one digit). A digit is a random sample of
    its class, upscaled (bilinear) to ``s x s`` pixels with ``s ~ U(scale) * image_size``, thresholded
    at 0.35 into a mask, painted in a random bright colour and pasted so that its box does not touch
    another digit's box. The background is a random dark colour plus Gaussian noise (std ``noise``)
    and a few faint random blobs.

    Returns a dict of numpy arrays (``K = len(digits)``):

    * ``"images"`` uint8 ``[N, H, W, 3]``
    * ``"labels"`` uint8 ``[N, K]``: 1 iff digit class ``digits[k]`` is present (the semantic label);
      derived from the masks, so ``labels[i, k] == parts[i, k].any()`` always holds
    * ``"fg"`` uint8 ``[N, H, W]``: foreground (union of the digit masks)
    * ``"parts"`` uint8 ``[N, K, H, W]``: ground-truth mask of each class's digit (zeros if absent)
    * ``"boxes"`` int64 ``[N, K, 4]``: ``(y, x, h, w)`` of each class's digit, ``-1`` if absent
    * ``"digits"``: the class tuple, ``"seed"``: the seed
    """
    import cv2

    digits = tuple(int(d) for d in digits)
    K = len(digits)
    if K < 1 or len(set(digits)) != K or not all(0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be distinct classes in 0..9, got {digits!r}")
    if not 1 <= int(max_per_image) <= K:
        raise ValueError(f"max_per_image must be in 1..{K} (len(digits)), got {max_per_image!r}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size!r}")
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale!r}")

    src_imgs, src_targets = _load_digits()
    by_class = {d: np.flatnonzero(src_targets == d) for d in digits}
    rng = np.random.default_rng(seed)
    H = W = int(image_size)
    N = int(n_images)
    images = np.zeros((N, H, W, 3), np.uint8)
    parts = np.zeros((N, K, H, W), np.uint8)
    boxes = np.full((N, K, 4), -1, np.int64)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)

    for i in range(N):
        # background: dark random colour + faint blobs + pixel noise        [H, W, 3] float
        bg = rng.uniform(10, 100, size=3).astype(np.float32)
        canvas = np.broadcast_to(bg, (H, W, 3)).copy()
        for _ in range(3):
            cy, cx = rng.uniform(0, H), rng.uniform(0, W)
            r = rng.uniform(0.1, 0.3) * H
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            canvas += blob * rng.uniform(-25, 25, size=3).astype(np.float32)
        canvas += rng.normal(0.0, noise, size=(H, W, 3)).astype(np.float32)

        k = int(rng.integers(1, int(max_per_image) + 1))
        classes = rng.choice(K, size=k, replace=False)
        placed: list = []
        for ci in classes:
            src = src_imgs[int(rng.choice(by_class[digits[int(ci)]]))]        # [8, 8] in 0..1
            for _attempt in range(200):
                s = int(round(rng.uniform(lo, hi) * H))
                s = max(8, min(s, H))
                y, x = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
                if not _overlaps((y, x, s), placed, gap=1):
                    break
            else:  # no room left: leave this class out (labels are derived from masks below)
                continue
            placed.append((y, x, s, int(ci)))
            up = cv2.resize(src, (s, s), interpolation=cv2.INTER_LINEAR)     # [s, s]
            mask = up > 0.35
            colour = rng.uniform(150, 255, size=3).astype(np.float32)
            shade = colour * (0.8 + 0.2 * up[..., None])                     # [s, s, 3]
            region = canvas[y:y + s, x:x + s]
            region[mask] = shade[mask] + rng.normal(0.0, noise / 2, size=(int(mask.sum()), 3))
            parts[i, int(ci), y:y + s, x:x + s] = mask
            boxes[i, int(ci)] = (y, x, s, s)
        images[i] = np.clip(canvas, 0, 255).astype(np.uint8)

    labels = parts.reshape(N, K, -1).any(axis=2).astype(np.uint8)
    fg = parts.any(axis=1).astype(np.uint8)
    return {"images": images, "labels": labels, "fg": fg, "parts": parts, "boxes": boxes,
            "digits": digits, "seed": int(seed)}


class MultiDigitDataset(Dataset):
    """Torch dataset over :func:`make_multidigit`'s dict, shaped for SPAN step 1 (eqs. 1-3 with K masks).

    ``ds[i]`` -> ``{"img": float [3, H, W] (ImageNet-normalised), "fg": float [1, H, W] in {0, 1},
    "view_vec": float [K] (the semantic label), "parts": float [K, H, W], "index": int}``.
    """

    def __init__(self, data: dict, mean: Sequence[float] = MEAN, std: Sequence[float] = STD):
        self.num_parts = int(data["labels"].shape[1])
        imgs = torch.from_numpy(np.ascontiguousarray(data["images"])).permute(0, 3, 1, 2).float() / 255.0
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.images = (imgs - m) / s                                          # [N, 3, H, W]
        self.fg = torch.from_numpy(data["fg"]).float().unsqueeze(1)           # [N, 1, H, W]
        self.labels = torch.from_numpy(data["labels"]).float()                # [N, K]
        self.parts = torch.from_numpy(data["parts"]).float()                  # [N, K, H, W]
        self.digits = tuple(data.get("digits", range(self.num_parts)))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"img": self.images[i], "fg": self.fg[i], "view_vec": self.labels[i],
                "parts": self.parts[i], "index": int(i)}
