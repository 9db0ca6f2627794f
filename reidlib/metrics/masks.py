"""Mask quality metrics for SPAN's part masks (Sec. 3.1) and the foreground target ``V``.

The papers report no mask metric (they show masks qualitatively, Figs. 4, 6, 7); these are ours,
for SynthVeRi whose renderer gives ground-truth part masks.

Two ground truths:

* **SPAN's target** (:func:`span_target_ious`, :func:`span_target_iou`; the headline metric):
  the masks a perfect SPAN produces from the view label (:func:`reidlib.data.masks.span_target`):
  absent parts empty, the present part of a single-view image the whole foreground, the two
  present parts of a two-view image their faces, with the roof and the absent part's faces "don't
  care". Ignored pixels are removed from both the prediction and the target before the IoU.
* **the geometric faces** (:func:`part_mask_iou`, :func:`part_mask_ious`): each part against the
  renderer's face of that name. SPAN cannot reach 100% on it: eqs. (1)-(2) force the masks of
  parts absent from the label to zero and the present part of a single-view image to the whole
  car, while the faces of a side image include the hood and windshield ("front").

Reference levels on the target metric (masks built from the label maps, scored like SPAN's).
The ceiling and "labelled masks take the car" **use the true view** (oracles: SPAN never sees
it at test time); "side takes the car" and :func:`foreground_reference_masks` use the image only,
:func:`view_classifier_reference_masks` a predicted view (:data:`REFERENCE_USES_TRUE_VIEW`):

* :func:`ceiling_masks`: the masks closest to the target that drive every SPAN loss (eq. 6) to
  zero: single view, the present part = the foreground; two-view, the target split with the
  "don't care" pixels given to a part with room, and pixels moved from a part whose area exceeds
  its cap ``a_{l,i} |V|`` (eq. 2, :func:`reidlib.losses.span.max_area_table`) to the other present
  part; the parts never overlap (eq. 3 zero);
* :func:`side_takes_car_masks`: side = the foreground, front = rear = 0, in every image;
* :func:`labelled_take_car_masks`: every part present in the label = the foreground.

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
from typing import Callable, Optional, Sequence

import numpy as np

PARTS = ("front", "rear", "side")
#: the reference levels' names, in table order
REFERENCES = ("ceiling", "side takes the car", "labelled masks take the car")


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


# ------------------------------------------------------------------------------------------------
# SPAN's target (reidlib.data.masks.span_target)
# ------------------------------------------------------------------------------------------------

def _ignore_3d(ignore: np.ndarray, n: int, hw: tuple) -> np.ndarray:
    """``ignore`` ``[N, 1, h, w]`` / ``[N, h, w]`` -> bool ``[N, 1, h, w]``."""
    ig = _np(ignore)
    if ig.ndim == 3:
        ig = ig[:, None]
    if ig.ndim != 4 or ig.shape[0] != n or ig.shape[1] != 1 or tuple(ig.shape[-2:]) != tuple(hw):
        raise ValueError(f"ignore must be [N, 1, h, w] or [N, h, w] with N={n}, (h, w)={tuple(hw)}, got {ig.shape}")
    return ig >= 0.5


def span_target_ious(pred_masks, target, ignore, threshold: float = 0.5) -> np.ndarray:
    """Per-image IoU ``[N, 3]`` (front, rear, side) of predicted masks ``[N, 3, h, w]`` in [0, 1]
    (binarised at ``threshold``) against SPAN's target ``[N, 3, h, w]`` (binary, or float
    binarised at 0.5), with the ``ignore [N, 1, h, w]`` (or ``[N, h, w]``) pixels removed from both.
    ``nan`` where both are empty after the removal (see the module docstring)."""
    pred = _np(pred_masks)
    tgt = _np(target)
    if pred.shape != tgt.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred_masks and target must both be [N, 3, h, w], got {pred.shape} / {tgt.shape}")
    keep = ~_ignore_3d(ignore, pred.shape[0], pred.shape[-2:])               # [N, 1, h, w]
    pb = (pred >= threshold) & keep                                          # [N, 3, h, w]
    tb = (tgt >= 0.5) & keep                                                 # [N, 3, h, w]
    return np.stack([_ious(pb[:, k], tb[:, k])[0] for k in range(3)], axis=1)


def iou_summary(ious: np.ndarray) -> dict:
    """``{"front", "rear", "side", "mean"}`` (fractions) and ``{"n_front", "n_rear", "n_side"}`` of
    per-image IoUs ``[N, 3]``: per part the mean over the images where it is defined, ``mean`` the
    mean of the defined per-part means (``nan`` when none is), as :func:`part_mask_iou`."""
    ious = np.asarray(ious, np.float64)
    out: dict = {}
    means = []
    for k, name in enumerate(PARTS):
        valid = ~np.isnan(ious[:, k])
        n = int(valid.sum())
        out[name] = float(ious[valid, k].mean()) if n else math.nan
        out[f"n_{name}"] = n
        if n:
            means.append(out[name])
    out["mean"] = float(np.mean(means)) if means else math.nan
    return out


def span_target_iou(pred_masks, target, ignore, threshold: float = 0.5) -> dict:
    """:func:`iou_summary` of :func:`span_target_ious`: per-part mean IoU and their mean."""
    return iou_summary(span_target_ious(pred_masks, target, ignore, threshold))


# ------------------------------------------------------------------------------------------------
# reference levels
# ------------------------------------------------------------------------------------------------

def _present(view: int) -> list[int]:
    from reidlib.data.views import VIEW5_LABEL

    return [k for k in range(3) if VIEW5_LABEL[int(view)][k]]


def _distance_to(region: np.ndarray) -> np.ndarray:
    """Euclidean distance ``float32 [H, W]`` of every pixel to ``region`` (zeros if it is empty)."""
    import cv2

    if not region.any():
        return np.zeros(region.shape, np.float32)
    return cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _nearest_first(candidates: np.ndarray, toward: np.ndarray, count: int) -> np.ndarray:
    """bool ``[H, W]``: the ``count`` pixels of ``candidates`` nearest to ``toward`` (raster order
    among equal distances)."""
    idx = np.flatnonzero(candidates)
    d = _distance_to(toward).ravel()[idx]
    out = np.zeros(candidates.size, bool)
    out[idx[np.argsort(d, kind="stable")[:count]]] = True
    return out.reshape(candidates.shape)


def ceiling_masks(label_map: np.ndarray, view: int, a: float = 0.7,
                  caps: Optional[Sequence[float]] = None) -> np.ndarray:
    """The ceiling's masks ``bool [3, H, W]`` for one image: as close to SPAN's target as masks that
    make every term of eq. (6) zero (with ``V`` = the label map's foreground) can be.

    Single view: the present part = the foreground. Two-view image with present parts ``i, j``,
    target faces ``T_i, T_j``, foreground ``V`` (``n`` pixels) and pixel caps
    ``c_k = floor(a_{l,k} n)``: if ``|T_i| > c_i``, the ``|T_i| - c_i`` pixels of ``T_i`` nearest
    to ``T_j`` and every "don't care" pixel go to ``j``;
    otherwise (and symmetrically) the faces stay, and the "don't care" pixels go to the part they
    are nearer to as far as its cap allows. The two masks partition ``V``, so eq. (1) and eq. (3)
    are zero and both areas are within their caps (eq. 2). Binary masks make eq. (1) zero only by
    partitioning ``V``; among those that also meet the caps none scores higher on either part:
    the IoU of the capped part is at most ``c_i / |T_i|``, reached here together with the other
    part's best. (Soft masks at exactly 0.5 on both parts could count a pixel for both after
    thresholding, an artifact of the threshold that the ceiling does not exploit.)

    Caps ``a_{l,k}``: ``caps`` (three ratios, front / rear / side, e.g. a row of
    :func:`reidlib.losses.span.max_area_table` in ``"code"`` mode: [0.7, 0, 0.4] for FS), else
    eq. (2)'s "paper" rule: ``a`` for each visible view of a two-view image (a single view's part
    always has cap 1). Raises ``ValueError`` when the caps cannot hold ``V`` (``c_i + c_j < n``,
    e.g. ``a < 0.5`` in paper mode).
    """
    from reidlib.data.masks import span_target

    lab = np.asarray(label_map)
    target, ignore = span_target(lab, view)                                  # [3, H, W], [H, W]
    fg = lab > 0
    present = _present(view)
    out = np.zeros_like(target)
    if len(present) == 1:
        out[present[0]] = fg
        return out
    caps_ratio = [float(a) * (k in present) for k in range(3)] if caps is None else [float(c) for c in caps]
    if len(caps_ratio) != 3:
        raise ValueError(f"caps must be three ratios (front, rear, side), got {caps!r}")
    n = int(fg.sum())
    i, j = present
    cap = {k: math.floor(caps_ratio[k] * n + 1e-9) for k in present}
    if cap[i] + cap[j] < n:
        raise ValueError(f"area caps {caps_ratio[i]:g} + {caps_ratio[j]:g} of view {view} cannot cover the "
                         "foreground: no masks make eqs. (1) and (2) both zero")
    ti, tj = target[i], target[j]
    for over, other in ((i, j), (j, i)):
        excess = int(target[over].sum()) - cap[over]
        if excess > 0:
            moved = _nearest_first(target[over], target[other], excess)
            out[over] = target[over] & ~moved
            out[other] = target[other] | moved | ignore
            return out
    room_i, room_j = cap[i] - int(ti.sum()), cap[j] - int(tj.sum())        # free pixels under each cap
    d = (_distance_to(ti) - _distance_to(tj)).ravel()                        # < 0: nearer to T_i
    idx = np.flatnonzero(ignore)
    n_i = min(room_i, max(int((d[idx] <= 0).sum()), len(idx) - room_j))     # "don't care" pixels to i
    to_i = np.zeros(lab.size, bool)
    to_i[idx[np.argsort(d[idx], kind="stable")[:n_i]]] = True
    to_i = to_i.reshape(lab.shape)
    out[i] = ti | to_i
    out[j] = tj | (ignore & ~to_i)
    return out


def side_takes_car_masks(label_map: np.ndarray, view: int = 0) -> np.ndarray:
    """Degenerate baseline ``bool [3, H, W]``: side = the foreground, front = rear = empty, whatever
    the view (``view`` unused, for a common signature)."""
    fg = np.asarray(label_map) > 0
    out = np.zeros((3,) + fg.shape, bool)
    out[2] = fg
    return out


def labelled_take_car_masks(label_map: np.ndarray, view: int) -> np.ndarray:
    """Degenerate baseline ``bool [3, H, W]``: every part present in the view label = the
    foreground (a two-view image gets two identical, fully overlapping masks)."""
    fg = np.asarray(label_map) > 0
    out = np.zeros((3,) + fg.shape, bool)
    for k in _present(view):
        out[k] = fg
    return out


#: name -> ``(label_map [H, W], view) -> masks bool [3, H, W]``, in :data:`REFERENCES` order
REFERENCE_MASKS: dict[str, Callable[..., np.ndarray]] = {
    "ceiling": ceiling_masks,
    "side takes the car": side_takes_car_masks,
    "labelled masks take the car": labelled_take_car_masks,
}


def reference_ious(label_maps: Sequence[np.ndarray], views: Sequence[int], *, a: float = 0.7,
                   caps: Optional[np.ndarray] = None,
                   references: Sequence[str] = REFERENCES) -> dict[str, np.ndarray]:
    """Per-image IoU ``[N, 3]`` of each reference's masks against SPAN's target, through
    :func:`span_target_ious` (label maps ``uint8 [H, W]``, possibly of different sizes). The
    ceiling's caps: ``caps [N, 3]`` (e.g. :func:`reidlib.losses.span.max_area_table`), else the
    paper rule with ``a`` (see :func:`ceiling_masks`)."""
    from reidlib.data.masks import span_target

    if len(label_maps) != len(views):
        raise ValueError(f"{len(label_maps)} label maps but {len(views)} views")
    if caps is not None and np.asarray(caps).shape != (len(views), 3):
        raise ValueError(f"caps must be [N, 3] = ({len(views)}, 3), got {np.asarray(caps).shape}")
    unknown = [r for r in references if r not in REFERENCE_MASKS]
    if unknown:
        raise ValueError(f"unknown reference(s) {unknown}; expected some of {list(REFERENCE_MASKS)}")
    out = {r: np.full((len(views), 3), np.nan) for r in references}
    for n, (lab, view) in enumerate(zip(label_maps, views)):
        target, ignore = span_target(lab, view)                               # [3, H, W], [H, W]
        for r in references:
            if r == "ceiling":
                masks = ceiling_masks(lab, view, a=a, caps=None if caps is None else np.asarray(caps)[n])
            else:
                masks = REFERENCE_MASKS[r](lab, view)                         # [3, H, W]
            out[r][n] = span_target_ious(masks[None], target[None], ignore[None, None])[0]
    return out


# ------------------------------------------------------------------------------------------------
# which references use the true view; image-only references; splits and failure modes
# ------------------------------------------------------------------------------------------------
#
# The references above are *oracles*: "ceiling" and "labelled masks take the car" build their masks
# from the true view label (they use the true view); "side takes the car" uses only the image's
# foreground. :func:`foreground_reference_masks` is image-only; :func:`view_classifier_reference_masks`
# uses a *predicted* view (a classifier's), not the true one.

#: reference name -> whether its masks use the image's true view label (True: an oracle)
REFERENCE_USES_TRUE_VIEW: dict[str, bool] = {
    "ceiling": True,
    "side takes the car": False,
    "labelled masks take the car": True,
    "foreground takes every mask": False,
    "view classifier's target": False,
}

#: the view classes (indices into :data:`reidlib.data.views.VIEW5`) with one / two visible parts
SINGLE_VIEWS = (0, 1, 2)  # F, R, S
TWO_VIEWS = (3, 4)        # FS, RS


def _fg_3d(fg) -> np.ndarray:
    """``fg`` ``[N, h, w]`` / ``[N, 1, h, w]`` (binary or soft) -> bool ``[N, h, w]`` (>= 0.5)."""
    f = _np(fg)
    if f.ndim == 4 and f.shape[1] == 1:
        f = f[:, 0]
    if f.ndim != 3:
        raise ValueError(f"fg must be [N, h, w] or [N, 1, h, w], got {f.shape}")
    return f >= 0.5


def foreground_reference_masks(fg) -> np.ndarray:
    """Image-only reference (uses no view label): all three masks = the foreground, ``bool
    [N, 3, h, w]`` from ``fg [N, h, w]`` (or ``[N, 1, h, w]``). Against SPAN's target it scores 1
    on the present part of a single-view image, 0 on every absent part predicted but empty in the
    target, and ``|face| / |V \\ ignore|`` on each present part of a two-view image."""
    f = _fg_3d(fg)
    return np.repeat(f[:, None], 3, axis=1)


def view_classifier_reference_masks(label_maps, predicted_views: Sequence[int]) -> np.ndarray:
    """The masks a perfect SPAN would give if it knew the view a classifier *predicted* (not the
    true view): :func:`reidlib.data.masks.span_target` of each label map with the predicted view,
    its "don't care" pixels left empty. ``bool [N, 3, h, w]``. Scored against the true view's
    target it reaches 1 on the images whose view was predicted right, so its IoU is bounded by the
    classifier's accuracy, which the caller reports with it.

    ``label_maps``: ``[N, h, w]`` SynthVeRi label maps (0 bg, 1 front, 2 rear, 3 side, 4 roof; the
    faces split a two-view image, the foreground is label > 0); the brief's ``fg`` is not enough,
    since a two-view prediction needs the faces. Uses the predicted view only, not the true one
    (but the true faces, as a perfect SPAN would find them)."""
    from reidlib.data.masks import span_target

    labs = [np.asarray(_np(m)) for m in label_maps]
    if len(labs) != len(predicted_views):
        raise ValueError(f"{len(labs)} label maps but {len(predicted_views)} predicted views")
    if not labs:
        return np.zeros((0, 3, 0, 0), bool)
    return np.stack([span_target(lab, int(v))[0] for lab, v in zip(labs, predicted_views)])


def split_by_views(ious, views: Sequence[int]) -> dict:
    """Per-image IoU ``[N, 3]`` summarised separately on single-view images (F, R, S) and two-view
    images (FS, RS) (view classes: indices into :data:`reidlib.data.views.VIEW5`).

    Returns ``{"single view", "two view"}``: the mean of the per-part means (as
    :func:`iou_summary`'s ``mean``; ``nan`` when the group is empty), ``"single view front"`` ...
    ``"two view side"``: the per-part means, and ``"n single view"``, ``"n two view"``: images."""
    ious = np.asarray(ious, np.float64)
    v = np.asarray([int(x) for x in views])
    if ious.ndim != 2 or ious.shape[1] != 3 or len(v) != ious.shape[0]:
        raise ValueError(f"ious must be [N, 3] with N = len(views) = {len(v)}, got {ious.shape}")
    out: dict = {}
    for name, group in (("single view", SINGLE_VIEWS), ("two view", TWO_VIEWS)):
        sel = np.isin(v, group)
        s = iou_summary(ious[sel]) if sel.any() else {p: math.nan for p in PARTS + ("mean",)}
        out[name] = s["mean"]
        for p in PARTS:
            out[f"{name} {p}"] = s[p]
        out[f"n {name}"] = int(sel.sum())
    return out


#: the keys of :func:`failure_modes`
FAILURE_MODES = ("one mask takes the car", "both masks near 0.5")


def failure_modes(masks, fg, views: Sequence[int], threshold: float = 0.5, *, takes: float = 0.9,
                  leaves: float = 0.1, half: tuple[float, float] = (0.35, 0.65)) -> dict:
    """The paper's Fig. 6 failure modes of SPAN's masks ``[N, 3, h, w]`` (in [0, 1]) on the
    two-view images (FS, RS) among ``views``, with foreground ``fg [N, h, w]``:

    * ``"one mask takes the car"``: share of two-view images where one of the two present parts
      covers (``mask >= threshold``) at least ``takes`` (90%) of the foreground and the other less
      than ``leaves`` (10%);
    * ``"both masks near 0.5"``: share where both present masks' mean values over the foreground
      lie in ``half`` ([0.35, 0.65]) — the two masks split every pixel half and half;
    * ``"two-view images"``: how many images the shares are over (shares ``nan`` when none;
      images with an empty foreground are skipped).

    Uses the true view (to know which two parts are present)."""
    from reidlib.data.views import VIEW5_LABEL

    m = _np(masks).astype(np.float64)
    f = _fg_3d(fg)
    v = [int(x) for x in views]
    if m.ndim != 4 or m.shape[1] != 3 or m.shape[0] != len(v) or f.shape != (m.shape[0],) + m.shape[2:]:
        raise ValueError(f"masks must be [N, 3, h, w] with fg [N, h, w] and N views, got {m.shape}, "
                         f"{f.shape}, {len(v)}")
    takes_car = near_half = counted = 0
    for n, view in enumerate(v):
        if view not in TWO_VIEWS or not f[n].any():
            continue
        i, j = [k for k in range(3) if VIEW5_LABEL[view][k]]
        area = f[n].sum()
        cov = [float(((m[n, k] >= threshold) & f[n]).sum() / area) for k in (i, j)]
        mean = [float(m[n, k][f[n]].mean()) for k in (i, j)]
        counted += 1
        takes_car += (cov[0] >= takes and cov[1] < leaves) or (cov[1] >= takes and cov[0] < leaves)
        near_half += all(half[0] <= x <= half[1] for x in mean)
    share = (lambda c: c / counted if counted else math.nan)
    return {FAILURE_MODES[0]: share(takes_car), FAILURE_MODES[1]: share(near_half), "two-view images": counted}


def image_only_reference_ious(label_maps: Sequence[np.ndarray], views: Sequence[int],
                              predicted_views: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
    """Per-image IoU ``[N, 3]`` against SPAN's target (built from the true ``views``, as every
    reference is scored) of the references that do not use the true view:
    ``"foreground takes every mask"`` (:func:`foreground_reference_masks`) and, when
    ``predicted_views`` is given, ``"view classifier's target"``
    (:func:`view_classifier_reference_masks`; report the classifier's accuracy with it)."""
    from reidlib.data.masks import span_target

    if len(label_maps) != len(views) or (predicted_views is not None and len(predicted_views) != len(views)):
        raise ValueError("label_maps, views and predicted_views must have the same length")
    names = ["foreground takes every mask"] + ([] if predicted_views is None else ["view classifier's target"])
    out = {r: np.full((len(views), 3), np.nan) for r in names}
    for n, (lab, view) in enumerate(zip(label_maps, views)):
        lab = np.asarray(lab)
        target, ignore = span_target(lab, view)
        masks = {"foreground takes every mask": foreground_reference_masks((lab > 0)[None])}
        if predicted_views is not None:
            masks["view classifier's target"] = view_classifier_reference_masks([lab], [predicted_views[n]])
        for r in names:
            out[r][n] = span_target_ious(masks[r], target[None], ignore[None, None])[0]
    return out
