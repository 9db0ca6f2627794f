"""Data for SPAN step 1 (Sec. 3.1, 3.4, 4.2): images with foreground target ``V``, semantic label
vector ``l`` and, on SynthVeRi, ground-truth part masks for evaluating the learned masks.

* :class:`MaskDataset` yields ``{"img", "fg", "view_vec", "view", "parts", "target", "ignore",
  "has_parts", "path"}``.
* :func:`view_balanced_subset`: "This network is trained in advance on a subset of VeRi-776
  dataset with balanced images in each viewpoint" (Sec. 4.2).
* :func:`span_target`: the masks a perfect SPAN would produce from an image's view label (the
  ground truth of :func:`reidlib.metrics.masks.span_target_ious`).
* :func:`stratified_records`: evaluation images spread over identities and view classes.

SynthVeRi ground truth: ``<root>/masks/<split folder>/<stem>.png`` for the image
``<root>/<split folder>/<stem>.<ext>``, a label map with 0 background, 1 front, 2 rear, 3 side,
4 roof (:data:`reidlib.data.views.PART_LABELS`); foreground = label > 0 (the roof counts as
foreground but belongs to none of SPAN's three parts). These labels are *geometric faces*: the
hood and windshield are "front" and are visible in nearly every side image.

**SPAN's target.** SPAN never sees the faces: eq. (1) asks the masks of the parts present in the
view label ``l`` to add up to the foreground ``V``, and eq. (2) caps the masks of absent parts at
area 0. So the masks a perfect SPAN produces are (:func:`span_target`):

* parts absent from ``l``: empty;
* a single-view image (F, R, S): the present part is the whole foreground (label > 0: roof, and
  for a side image the hood and windshield, included), as eqs. (1)-(2) with cap 1 demand;
* a two-view image (FS, RS): a foreground pixel whose face label is one of the two present parts
  belongs to that part; the other foreground pixels (the roof, and faces of the absent part) must
  go to *one* of the two present parts (eq. 1) but nothing says which, so they are "don't care"
  (``ignore``) and left out of that image's IoU. The background is negative for every part.
"""
from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from reidlib.errors import ConfigError
from .records import Record
from .views import PART_LABELS, PARTS, VIEW5, VIEW5_LABEL

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FgSource = Union[str, Callable[[Record], np.ndarray]]  #: "gt" or a callable


def gt_mask_path(image_path: str | os.PathLike) -> Path:
    """SynthVeRi label-map path of an image, in any of its layouts (``<root>/masks/<image path
    relative to root>.png``; :func:`reidlib.data.synth.layouts.mask_path`)."""
    from .synth.layouts import mask_path

    return mask_path(image_path)


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """A SynthVeRi part label map as ``uint8 [H, W]`` (0 bg, 1 front, 2 rear, 3 side, 4 roof)."""
    lab = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise FileNotFoundError(f"cannot read label map {path}")
    if lab.ndim == 3:
        lab = lab[..., 0]
    return lab


def label_map_for(image_path: str | os.PathLike, size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """The SynthVeRi label map of an image (:func:`gt_mask_path`), ``uint8 [H, W]``, resized to
    ``size = (h, w)`` with nearest-neighbour interpolation when given."""
    lab = read_label_map(gt_mask_path(image_path))
    if size is not None and tuple(lab.shape) != (int(size[0]), int(size[1])):
        lab = cv2.resize(lab, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    return lab


def span_target(label_map: np.ndarray, view: int) -> tuple[np.ndarray, np.ndarray]:
    """The part masks a perfect SPAN produces for an image (see the module docstring).

    Args:
        label_map: SynthVeRi label map ``uint8 [H, W]`` (0 bg, 1 front, 2 rear, 3 side, 4 roof).
        view: SPAN view class, an index into ``VIEW5 = (F, R, S, FS, RS)``.

    Returns ``(parts, ignore)``: ``parts`` ``bool [3, H, W]`` (front, rear, side) and ``ignore``
    ``bool [H, W]``, the "don't care" pixels (two-view images only: foreground pixels labelled with
    the absent part or the roof; all False for a single-view image). ``parts`` and ``ignore`` are
    disjoint, and ``parts.any(0) | ignore`` is the foreground.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 2:
        raise ValueError(f"label_map must be [H, W], got shape {lab.shape}")
    if not 0 <= int(view) < len(VIEW5_LABEL):
        raise ValueError(f"view must be a SPAN view class index 0..{len(VIEW5_LABEL) - 1}, got {view!r}")
    l = VIEW5_LABEL[int(view)]                                       # [front, rear, side] in {0, 1}
    fg = lab > 0                                                     # [H, W]
    present = [k for k in range(3) if l[k]]
    parts = np.zeros((3,) + lab.shape, bool)                         # [3, H, W]
    if len(present) == 1:
        parts[present[0]] = fg
        return parts, np.zeros_like(fg)
    for k in present:
        parts[k] = lab == PART_LABELS[PARTS[k]]
    return parts, fg & ~parts.any(0)


def stratified_records(records: Sequence[Record], max_images: Optional[int] = None, seed: int = 0) -> list[Record]:
    """Up to ``max_images`` records spread over identities and view classes.

    Records are grouped by ``(pid, view)``; each group's records are shuffled. Groups are ordered
    so that every identity gets one group before any gets a second, each identity taking the
    view class with the fewest groups ordered so far (ties broken at random); identities come in
    a random order. The selection is then round-robin over that group order: the first record of
    every group, then the second of every group that has one, and so on, cut at ``max_images``.
    So every (identity, view) group is covered before any is repeated, and a shorter selection
    is a prefix of a longer one (same ``seed``). ``None`` views form their own class. Returns
    the records in selection order; draws with ``random.Random(seed)``.
    """
    rng = random.Random(seed)
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.pid, r.view)].append(r)
    keys = sorted(groups, key=lambda k: (str(k[0]), -1 if k[1] is None else int(k[1])))
    for k in keys:
        rng.shuffle(groups[k])
    tiebreak = {k: rng.random() for k in keys}
    by_id: dict = defaultdict(list)
    for k in keys:
        by_id[k[0]].append(k)
    ids = list(by_id)
    rng.shuffle(ids)
    taken: dict = defaultdict(int)                                   # view class -> groups ordered so far
    order: list[tuple] = []
    while len(order) < len(keys):
        for pid in ids:
            if by_id[pid]:
                k = min(by_id[pid], key=lambda g: (taken[g[1]], tiebreak[g]))
                by_id[pid].remove(k)
                taken[k[1]] += 1
                order.append(k)
    limit = len(records) if max_images is None else max(0, int(max_images))
    out: list[Record] = []
    depth = 0
    while len(out) < limit and any(len(groups[k]) > depth for k in order):
        for k in order:
            if len(groups[k]) > depth:
                out.append(groups[k][depth])
                if len(out) == limit:
                    break
        depth += 1
    return out


def _to_float_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0] if m.shape[-1] in (1, 3) else m[0]
    m = m.astype(np.float32)
    if m.size and m.max() > 1.0:
        m = m / 255.0
    return np.clip(m, 0.0, 1.0)


def view_balanced_subset(records: Sequence[Record], per_view: int, seed: int = 0) -> list[Record]:
    """At most ``per_view`` records of each SPAN view class (records with ``view=None`` dropped),
    drawn with ``random.Random(seed)``; returned in their original order."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.view is not None:
            groups[int(r.view)].append(i)
    rng = random.Random(seed)
    keep: list[int] = []
    for v in sorted(groups):
        idx = groups[v]
        keep.extend(idx if len(idx) <= per_view else rng.sample(idx, per_view))
    return [records[i] for i in sorted(keep)]


#: SPAN's view class "side" (an index into ``VIEW5``)
SIDE_VIEW = 2


def _oblique_side(img: np.ndarray, fg: np.ndarray, parts: np.ndarray, target: np.ndarray, ignore: np.ndarray):
    """SPAN's public-code augmentation of side images (the reference describes it as: squeezed
    horizontally, shifted and rotated by 30-45 degrees, to imitate an oblique view): one random
    affine map, applied to the image ``[H, W, 3]`` (bilinear), the foreground ``[h, w]`` (bilinear)
    and the part masks ``[K, h, w]`` (nearest) alike, in coordinates relative to each size."""
    squeeze = random.uniform(0.6, 0.9)
    angle = random.uniform(30.0, 45.0) * random.choice((-1.0, 1.0))
    shift = (random.uniform(-0.1, 0.1), random.uniform(-0.05, 0.05))

    def warp(a: np.ndarray, interp: int) -> np.ndarray:
        h, w = a.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[0, :2] *= squeeze                                           # squeeze x after the rotation
        m[0, 2] = m[0, 2] * squeeze + (1 - squeeze) * w / 2 + shift[0] * w
        m[1, 2] += shift[1] * h
        return cv2.warpAffine(np.ascontiguousarray(a), m, (w, h), flags=interp, borderValue=0)

    img = warp(img, cv2.INTER_LINEAR)
    fg = warp(fg, cv2.INTER_LINEAR)
    planes = lambda x: np.stack([warp(c, cv2.INTER_NEAREST) for c in x])       # noqa: E731
    return img, fg, planes(parts), planes(target), planes(ignore)


class MaskDataset(Dataset):
    """SPAN step-1 dataset.

    Args:
        records: records with a known ``view`` (SPAN 5-way class); a record with ``view=None``
            raises :class:`~reidlib.errors.ConfigError` (filter first, e.g. with
            :func:`view_balanced_subset`).
        fg_source: the foreground target ``V``: ``"gt"`` (SynthVeRi label maps, label > 0) or a
            callable ``Record -> np.ndarray [H, W]`` (0/1, 0/255 or soft), e.g. a
            :class:`reidlib.data.grabcut.GrabCutCache`. Specs such as ``"grabcut:<dir>"`` are parsed
            once, by :func:`reidlib.engine.foreground.resolve_foreground`.
        size: image size ``(H, W)``; mask_size: ``(h', w')`` of ``fg``/``parts`` (default ``size``/4,
            SPAN's native output).
        flip: random horizontal flip with probability ``flip_prob``, applied to image, ``fg`` and
            ``parts`` together (the view label is unchanged: left and right are both "side").
        side_aug: probability that a side image (view class S) is warped to imitate an oblique
            view, as SPAN's public code does (:func:`_oblique_side`: squeezed horizontally,
            shifted, rotated by 30-45 degrees; masks warped with it, the label unchanged).
        mean/std: normalisation.

    Item: ``img [3,H,W]`` normalised float, ``fg [1,h',w']`` float in [0,1] (bilinear resize;
    nearest for ``"gt"``), ``view_vec [3]`` float ``l = [front, rear, side]``, ``view`` int,
    ``parts [3,h',w']`` binary GT part masks (the geometric faces front, rear, side; nearest
    resize), ``target [3,h',w']`` and ``ignore [1,h',w']`` (float 0/1) SPAN's target and its
    "don't care" pixels (:func:`span_target` of the nearest-resized label map) when a SynthVeRi
    label map exists for the image; else ``parts`` and ``target`` are zeros and ``ignore`` is all
    ones (nothing can be scored), with ``has_parts`` (bool) telling which; ``path``.
    """

    def __init__(self, records: Sequence[Record], fg_source: FgSource = "gt", size: tuple[int, int] = (192, 192),
                 mask_size: Optional[tuple[int, int]] = None, flip: bool = False, flip_prob: float = 0.5,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 side_aug: float = 0.0):
        self.records = list(records)
        bad = [r.path for r in self.records if r.view is None]
        if bad:
            raise ConfigError(f"MaskDataset needs records with a known view; {len(bad)} have view=None "
                              f"(e.g. {bad[0]}); filter them out first (view_balanced_subset drops them)")
        for r in self.records:
            if not 0 <= int(r.view) < len(VIEW5):
                raise ConfigError(f"{r.path}: view {r.view!r} is not a SPAN view class index 0..{len(VIEW5) - 1}")
        self.size = (int(size[0]), int(size[1]))
        self.mask_size = (self.size[0] // 4, self.size[1] // 4) if mask_size is None else (int(mask_size[0]), int(mask_size[1]))
        self.flip = bool(flip)
        self.flip_prob = float(flip_prob)
        if not 0.0 <= float(side_aug) <= 1.0:
            raise ConfigError(f"side_aug={side_aug!r}: expected a probability in [0, 1]")
        self.side_aug = float(side_aug)
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.fg_kind, self._fg = self._resolve_source(fg_source)

    @staticmethod
    def _resolve_source(src: FgSource):
        if isinstance(src, str) and src == "gt":
            return "gt", None
        if callable(src):
            return "callable", src
        raise ConfigError(f"fg_source must be 'gt' or a callable Record -> mask (e.g. a "
                          f"reidlib.data.grabcut.GrabCutCache, or what reidlib.engine.foreground."
                          f"resolve_foreground returns), got {src!r}")

    def __len__(self) -> int:
        return len(self.records)

    def _load_image(self, path: str) -> np.ndarray:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image: {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = self.size
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        img = self._load_image(rec.path)                                             # uint8 [H, W, 3]
        mh, mw = self.mask_size
        label_path = gt_mask_path(rec.path)
        labels = None
        if label_path.is_file():
            labels = cv2.resize(read_label_map(label_path), (mw, mh), interpolation=cv2.INTER_NEAREST)  # [h', w']
        if self.fg_kind == "gt":
            if labels is None:
                raise FileNotFoundError(f"fg_source='gt' but no SynthVeRi label map at {label_path}")
            fg = (labels > 0).astype(np.float32)
        else:
            raw = self._fg(rec)
            fg = cv2.resize(_to_float_mask(raw), (mw, mh), interpolation=cv2.INTER_LINEAR)
        view = int(rec.view)
        if labels is not None:
            parts = np.stack([labels == PART_LABELS[k] for k in PARTS]).astype(np.float32)   # [3, h', w']
            target, ignore = span_target(labels, view)                                        # [3, h', w'], [h', w']
            target, ignore = target.astype(np.float32), ignore[None].astype(np.float32)       # ignore [1, h', w']
        else:
            parts = np.zeros((3, mh, mw), np.float32)
            target, ignore = np.zeros((3, mh, mw), np.float32), np.ones((1, mh, mw), np.float32)
        if view == SIDE_VIEW and self.side_aug and random.random() < self.side_aug:
            img, fg, parts, target, ignore = _oblique_side(img, fg, parts, target, ignore)
        if self.flip and random.random() < self.flip_prob:
            img, fg = img[:, ::-1], fg[:, ::-1]
            parts, target, ignore = parts[:, :, ::-1], target[:, :, ::-1], ignore[:, :, ::-1]
        x = (np.ascontiguousarray(img).transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        return {
            "img": torch.from_numpy(np.ascontiguousarray(x)),                        # [3, H, W]
            "fg": torch.from_numpy(np.ascontiguousarray(fg, dtype=np.float32))[None],  # [1, h', w']
            "view_vec": torch.tensor(VIEW5_LABEL[view], dtype=torch.float32),       # [3]
            "view": view,
            "parts": torch.from_numpy(np.ascontiguousarray(parts)),                   # [3, h', w']
            "target": torch.from_numpy(np.ascontiguousarray(target)),                 # [3, h', w']
            "ignore": torch.from_numpy(np.ascontiguousarray(ignore)),                 # [1, h', w']
            "has_parts": labels is not None,
            "path": rec.path,
        }
