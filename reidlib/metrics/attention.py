"""Did MUSP's attentions form? Measures of soft spatial attention maps against a position-only prior.

MUSP (Lee, Woo, Lee) learns ``n`` soft attentions (softmax over the maps, the last = background,
discarded). A map that attends to the same pixels in every image (stripes fixed in position) is a
*position prior*, not a part detector. The prior used here is the **mean map over images**
(``maps.mean(0)``), the best image-independent map for each attention.

* :func:`attention_variation`: per map, the mean over images of the total-variation distance
  between the image's normalised map and the normalised mean map (0 = pure position prior; 1 =
  disjoint supports).
* :func:`best_face_iou`: per true face (front, rear, side), the **soft IoU** (Ruzicka:
  ``sum(min(a, b)) / sum(max(a, b))``, maps in [0, 1] against binary faces; or a thresholded IoU
  with ``threshold``) of the best-matching attention map, and the same for the prior.
* :func:`view_dependence`: how the mean map changes with the view class (mean pairwise
  total-variation distance between the per-view mean maps) and how much is left within a view.

Total-variation distance of two maps ``a, b >= 0``: ``0.5 * sum |a / sum(a) - b / sum(b)|`` (an
all-zero map is taken as uniform). Image-only: none of these uses a view label except
:func:`view_dependence` (the true view class, to group the images) and :func:`best_face_iou` (the
true faces, to score).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

FACES = ("front", "rear", "side")


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float64)


def _maps(maps) -> np.ndarray:
    m = _np(maps)
    if m.ndim != 4:
        raise ValueError(f"maps must be [N, K, h, w], got {m.shape}")
    if (m < 0).any():
        raise ValueError("attention maps must be non-negative")
    return m


def _normalise(m: np.ndarray) -> np.ndarray:
    """``[..., h, w]`` -> each map divided by its sum (all-zero maps -> uniform)."""
    s = m.sum(axis=(-2, -1), keepdims=True)
    uniform = np.full_like(m, 1.0 / (m.shape[-2] * m.shape[-1]))
    return np.where(s > 0, m / np.where(s > 0, s, 1.0), uniform)


def _tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance over the last two axes of normalised maps."""
    return 0.5 * np.abs(p - q).sum(axis=(-2, -1))


def attention_variation(maps) -> np.ndarray:
    """``[K]``: for each attention map, the mean over the ``N`` images of the total-variation
    distance between the image's normalised map and the normalised mean map over images (the
    position-only prior). 0 = the map is the same in every image (pure position prior); larger =
    the map moves with the image content. ``maps [N, K, h, w]`` non-negative."""
    m = _normalise(_maps(maps))                                  # [N, K, h, w]
    prior = _normalise(m.mean(0, keepdims=True))                 # [1, K, h, w]
    return _tv(m, prior).mean(0)                                 # [K]


def _face_ious(maps: np.ndarray, faces: np.ndarray, threshold: Optional[float]) -> np.ndarray:
    """``[N, K, 3]`` IoU of each map with each face (nan where both are empty)."""
    a = maps[:, :, None]                                         # [N, K, 1, h, w]
    b = faces[:, None]                                           # [N, 1, 3, h, w]
    if threshold is None:
        inter = np.minimum(a, b).sum(axis=(-2, -1))
        union = np.maximum(a, b).sum(axis=(-2, -1))
    else:
        ab, bb = a >= threshold, b >= 0.5
        inter = (ab & bb).sum(axis=(-2, -1)).astype(np.float64)
        union = (ab | bb).sum(axis=(-2, -1)).astype(np.float64)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def best_face_iou(maps, faces, threshold: Optional[float] = None) -> dict:
    """How well the attention maps match the true faces, against the position-only prior.

    ``maps [N, K, h, w]`` in [0, 1] (e.g. MUSP's kept softmax maps), ``faces [N, 3, h, w]`` binary
    (front, rear, side; SynthVeRi's geometric faces, at the maps' size). For each face the IoU of
    every map is averaged over the images where the face is present; the best-matching map is the
    one with the highest mean (one map per face, the same in every image). IoU: soft (Ruzicka,
    ``sum min / sum max``) when ``threshold`` is None, else maps binarised at ``threshold``.

    Returns ``{"iou": [3], "map": [3] (index of the best map), "prior": [3], "prior map": [3],
    "n": [3] (images with the face)}`` — ``"prior"`` the same measure with every image's maps
    replaced by the mean map over images; ``nan`` / -1 where a face is in no image."""
    m = _maps(maps)
    f = (_np(faces) >= 0.5).astype(np.float64)
    if f.ndim != 4 or f.shape[1] != 3 or f.shape[0] != m.shape[0] or f.shape[-2:] != m.shape[-2:]:
        raise ValueError(f"faces must be [N, 3, h, w] matching maps {m.shape}, got {f.shape}")
    present = f.reshape(f.shape[0], 3, -1).any(-1)               # [N, 3]
    prior = np.broadcast_to(m.mean(0, keepdims=True), m.shape)
    out: dict = {"n": present.sum(0).astype(int)}
    for key, mm in (("", m), ("prior", prior)):
        ious = _face_ious(mm, f, threshold)                      # [N, K, 3]
        best, idx = np.full(3, np.nan), np.full(3, -1)
        for k in range(3):
            if present[:, k].any():
                means = np.nanmean(ious[present[:, k], :, k], axis=0)   # [K]
                idx[k] = int(np.argmax(means))
                best[k] = float(means[idx[k]])
        out["iou" if not key else "prior"] = best
        out["map" if not key else "prior map"] = idx
    return out


def view_dependence(maps, views: Sequence[int]) -> dict:
    """How the attention maps depend on the view class.

    Returns ``{"between": [K]`` the mean total-variation distance between the normalised per-view
    mean maps over all pairs of view classes present (0 = the same map whatever the view),
    ``"within": [K]`` the mean over images of the distance between the image's normalised map and
    its own view's mean map (what is left once the view is known; compare with
    :func:`attention_variation`), ``"views": [V]`` the view classes present, ``"n": [V]`` their
    images, ``"means": [V, K, h, w]`` the per-view normalised mean maps}. ``between`` is ``nan``
    with fewer than two view classes."""
    m = _normalise(_maps(maps))                                  # [N, K, h, w]
    v = np.asarray([int(x) for x in views])
    if len(v) != m.shape[0]:
        raise ValueError(f"{m.shape[0]} images but {len(v)} views")
    classes = sorted(set(v.tolist()))
    means = np.stack([_normalise(m[v == c].mean(0)) for c in classes]) if classes else np.zeros((0,) + m.shape[1:])
    pairs = [(a, b) for a in range(len(classes)) for b in range(a + 1, len(classes))]
    between = (np.mean([_tv(means[a], means[b]) for a, b in pairs], axis=0) if pairs
               else np.full(m.shape[1], math.nan))
    own = means[np.searchsorted(classes, v)] if classes else m
    within = _tv(m, own).mean(0) if len(v) else np.full(m.shape[1], math.nan)
    return {"between": between, "within": within, "views": np.asarray(classes, int),
            "n": np.asarray([int((v == c).sum()) for c in classes], int), "means": means}
