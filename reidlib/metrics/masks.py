"""Mask quality metrics for SPAN's part masks (Sec. 3.1) and the foreground target ``V``.

The papers report no mask metric (they show masks qualitatively, Figs. 4, 6, 7); these are ours,
for SynthVeRi whose renderer gives ground-truth part masks.

Convention: predictions are binarised at ``threshold`` (``pred >= threshold``), ground truth at
0.5. The IoU of one (image, part) pair is computed only when the part is present in the ground
truth **or** in the prediction (union non-empty): a part absent from both is a correct "nothing"
and is skipped rather than counted as 1 (which would inflate the mean with the many invisible
parts) or 0 (undefined). A part predicted but absent in the GT counts as IoU 0, and vice versa.
Per-part means are over the counted images; ``mean`` is the mean of the per-part means that have
at least one counted image (``nan`` when none has).
"""
from __future__ import annotations

import math

import numpy as np

PARTS = ("front", "rear", "side")


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _ious(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row IoU and validity for binary ``[N, ...]`` arrays."""
    n = pred.shape[0]
    p = pred.reshape(n, -1)
    g = gt.reshape(n, -1)
    inter = (p & g).sum(1).astype(np.float64)
    union = (p | g).sum(1).astype(np.float64)
    valid = union > 0
    iou = np.where(valid, inter / np.maximum(union, 1), np.nan)
    return iou, valid


def part_mask_iou(pred_masks, gt_parts, threshold: float = 0.5) -> dict:
    """Mean IoU per part between predicted masks ``[N, 3, h, w]`` in [0, 1] and binary GT parts.

    Returns ``{"front", "rear", "side", "mean"}`` (floats, ``nan`` where undefined) and
    ``{"n_front", "n_rear", "n_side"}`` (numbers of counted images). See the module docstring.
    """
    pred = _np(pred_masks)
    gt = _np(gt_parts)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred_masks and gt_parts must both be [N, 3, h, w], got {pred.shape} / {gt.shape}")
    pb = pred >= threshold
    gb = gt >= 0.5
    out: dict = {}
    means = []
    for k, name in enumerate(PARTS):
        iou, valid = _ious(pb[:, k], gb[:, k])
        n = int(valid.sum())
        val = float(np.nanmean(iou)) if n else math.nan
        out[name] = val
        out[f"n_{name}"] = n
        if n:
            means.append(val)
    out["mean"] = float(np.mean(means)) if means else math.nan
    return out


def foreground_iou(pred, gt, threshold: float = 0.5) -> float:
    """Mean per-image foreground IoU; ``pred`` ``[N, h, w]`` or ``[N, 1, h, w]`` probabilities,
    ``gt`` the same shape (binary or soft, binarised at 0.5). Images where both are empty are
    skipped; ``nan`` if all are."""
    p = _np(pred)
    g = _np(gt)
    if p.ndim == 4:
        p = p[:, 0]
    if g.ndim == 4:
        g = g[:, 0]
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    iou, valid = _ious(p >= threshold, g >= 0.5)
    return float(np.nanmean(iou)) if valid.any() else math.nan


def part_mask_ious(pred_masks, gt_parts, threshold: float = 0.5) -> np.ndarray:
    """Per-image IoU ``[N, 3]`` (front, rear, side) of predicted masks ``[N, 3, h, w]`` against
    binary GT parts, ``nan`` where neither has the part (the unit of :func:`part_mask_iou`'s
    means, kept for paired comparisons: ``part_mask_iou(...)[part] == nanmean(ious[:, k])``)."""
    pred = _np(pred_masks)
    gt = _np(gt_parts)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred_masks and gt_parts must both be [N, 3, h, w], got {pred.shape} / {gt.shape}")
    pb, gb = pred >= threshold, gt >= 0.5
    return np.stack([_ious(pb[:, k], gb[:, k])[0] for k in range(3)], axis=1)
