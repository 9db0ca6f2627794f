"""The SPAN + CPDM experiments (Chen et al., ECCV 2020): the masks of step 1, Table 1 (which losses
SPAN needs), Table 2 (how the part features are aggregated and compared) and the supplementary's
choice of the area cap ``a`` and the margin ``m``.

Each table's rows are :class:`reidlib.study.Variant` values in a dictionary below — the
experiment's design as data, which the notebooks print before anything is trained and run with
:meth:`reidlib.study.Study.run`.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from reidlib.study import Study, Variant

__all__ = ["SPAN_LOSS_SWITCHES", "SPAN_LOSS_VARIANTS", "SPAN_AGGREGATION_VARIANTS", "SPAN_HYPERPARAMS",
           "span_masks_table", "span_mask_ious", "iou_row", "foreground_net", "foreground_quality",
           "span_hyperparam_table", "hyperparam_design"]

#: SPAN step 1's loss combinations of Table 1 (eq. 6's terms switched on or off)
SPAN_LOSS_SWITCHES: dict[str, dict] = {
    "only_recon": {"span.use_recon": True, "span.use_area": False, "span.use_div": False},
    "wo_area": {"span.use_recon": True, "span.use_area": False, "span.use_div": True},
    "wo_div": {"span.use_recon": True, "span.use_area": True, "span.use_div": False},
    "full": {"span.use_recon": True, "span.use_area": True, "span.use_div": True},
}

#: Table 1: the strong baseline, then SPAN + CPDM (part features on SPAN's masks, triplet on CPDM
#: (eq. 7), ranking with CPDM (eqs. 4-5)) with SPAN trained on each loss combination
SPAN_LOSS_VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline, one global feature"),
    **{name: Variant("span", span=switches, note="SPAN + CPDM") for name, switches in SPAN_LOSS_SWITCHES.items()},
}


#: Table 2: with SPAN's masks fixed (all three losses), how the four features are combined and compared
SPAN_AGGREGATION_VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline"),
    "span_fc": Variant("span", {"model.kwargs": {"aggregation": "fc"}, "loss.triplet_on": "concat"},
                       note="w/ FC: one FC layer fuses the four features"),
    "span_cat": Variant("span", {"model.kwargs": {"distance": "euclidean"}, "loss.triplet_on": "concat"},
                        distance="euclidean", note="w/ Cat: concatenation, Euclidean distance"),
    "span_cpdm": Variant("span", distance="cpdm", note="w/ CPDM: triplet and ranking on CPDM (eq. 7)"),
    "span_cpdm_model_euclidean": Variant("span", distance="euclidean",
                                         note="the CPDM-trained model ranked by Euclidean distance: "
                                              "isolates the metric (not in the paper)"),
}

#: the supplementary's hyper-parameters of SPAN step 1: the area cap ``a`` of both visible views of
#: a two-view image (eq. 2, "paper" mode) and the tolerated overlap ``m`` of adjacent views (eq. 3);
#: each value with the other held at the paper's choice (a = 0.7, m = 0.04)
SPAN_HYPERPARAMS: dict[tuple, dict] = {
    **{("a", a): {"span.area_mode": "paper", "span.a": a} for a in (0.5, 0.7, 0.9)},
    **{("m", m): {"span.area_mode": "paper", "span.a": 0.7, "span.margin": m} for m in (0.0, 0.04)},
}


def hyperparam_design(settings: Mapping[tuple, dict] = SPAN_HYPERPARAMS) -> pd.DataFrame:
    """The design of the (a, m) sweep: one row per setting, the SPAN step-1 options it sets."""
    rows = {f"{p} = {v:g}": {"SPAN step 1": ", ".join(f"{k}={x}" for k, x in s.items())}
            for (p, v), s in settings.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


# ------------------------------------------------------------------------------------------------
# masks (step 1)
# ------------------------------------------------------------------------------------------------

def span_mask_ious(study: Study, span, split: str = "gallery", max_images: int = 400):
    """Per-image IoU ``[N, 3]`` (front, rear, side) of SPAN's thresholded masks against SynthVeRi's
    ground-truth part masks on test images (a quantitative version of the paper's Fig. 6), and the
    images' paths."""
    from reidlib.data.masks import MaskDataset
    from reidlib.metrics.masks import part_mask_ious
    from reidlib.utils.device import resolve_device

    recs = [r for r in getattr(study.dataset, split) if r.view is not None][:max_images]
    size = tuple(study.prof["input_size"])
    ds = MaskDataset(recs, fg_source="gt", size=size)
    dev = resolve_device(study.device)
    span = span.to(dev).eval()
    preds, gts = [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=0)
    with torch.inference_mode():
        for batch in loader:
            m = span(batch["img"].to(dev)).float().cpu()
            gt = batch["parts"]
            if m.shape[-2:] != gt.shape[-2:]:
                m = torch.nn.functional.interpolate(m, size=gt.shape[-2:], mode="bilinear", align_corners=False)
            preds.append(m)
            gts.append(gt)
    return part_mask_ious(torch.cat(preds), torch.cat(gts)), [r.path for r in recs]


def iou_row(ious: np.ndarray) -> dict:
    """A mask table's row (percent): per-part means over the images where the part is defined,
    and their mean (``mean IoU``; :func:`reidlib.metrics.masks.part_mask_iou`)."""
    with np.errstate(all="ignore"):
        parts = {p: float(np.nanmean(ious[:, k])) * 100 for k, p in enumerate(("front", "rear", "side"))}
    parts["mean IoU"] = float(np.nanmean(list(parts.values())))
    return parts


def _row_name(key) -> str:
    return f"{key[0]}={key[1]:g}" if isinstance(key, tuple) else str(key)


def _mask_results(study: Study, settings: Mapping[Any, dict]):
    from reidlib import per_query

    rows, ious, spans, units = {}, {}, {}, None
    for key, overrides in settings.items():
        span, _ = study.span_model(study.seed, **overrides)
        iou, units = span_mask_ious(study, span)
        spans[key], ious[key], rows[key] = span, [iou], iou_row(iou)
    arrays = per_query.from_mask_ious({_row_name(k): v for k, v in ious.items()}, units, [study.seed])
    return pd.DataFrame.from_dict(rows, orient="index"), spans, arrays


def span_masks_table(study: Study, variants: Sequence[str] = tuple(SPAN_LOSS_SWITCHES)):
    """Train SPAN step 1 once per loss combination (Table 1's rows) and measure its part masks
    against the ground truth. Returns (IoU table (%), {variant: trained SPAN}, per-image arrays)."""
    return _mask_results(study, {v: SPAN_LOSS_SWITCHES[v] for v in variants})


def foreground_net(study: Study, seed: Optional[int] = None):
    """The foreground network of SPAN's public code (ResNet encoder + light decoder) trained on the
    GrabCut masks of the training images; cached like every other run."""
    from reidlib.data.masks import view_balanced_subset
    from reidlib.engine.training import train_foreground

    seed = study.seed if seed is None else seed
    # the same view-balanced training subset as SPAN step 1 (its GrabCut masks are cached already)
    labelled = [r for r in study.dataset.train if r.view is not None]
    subset = view_balanced_subset(labelled, study.prof["span_per_view"], seed=seed)
    cfg = study._base("foreground", seed, study.prof["span_iters"])
    cfg.update({"model.backbone": study.prof["span_backbone"], "foreground.size": study.prof["input_size"][0],
                "data.batch_size": study.prof["span_batch"], "foreground.source": "grabcut",
                "optim.lr": 1e-3, "optim.milestones": []})
    return study.cached("foreground", cfg, lambda c, resume: train_foreground(c, records=subset, resume=resume),
                        extra=("view_balanced", study.prof["span_per_view"]))


def foreground_quality(study: Study, max_images: int = 200, train_net: bool = True) -> pd.DataFrame:
    """IoU against SynthVeRi's true foreground (test images) of the targets SPAN can learn from:
    GrabCut pseudo-masks and the foreground network trained on them (the authors' procedure)."""
    import cv2

    from reidlib.data.grabcut import grabcut_foreground
    from reidlib.data.masks import gt_mask_path
    from reidlib.engine.foreground import predict_foreground
    from reidlib.metrics.masks import foreground_iou

    recs = list(study.dataset.gallery)[:max_images]
    size = study.prof["input_size"][0]
    gts, grab = [], []
    for r in recs:
        img = cv2.cvtColor(cv2.imread(r.path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        gt = (cv2.imread(str(gt_mask_path(r.path)), cv2.IMREAD_GRAYSCALE) > 0).astype(np.float32)
        gts.append(cv2.resize(gt, (size, size), interpolation=cv2.INTER_NEAREST))
        grab.append(cv2.resize(grabcut_foreground(img).astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST))
    gt = np.stack(gts)
    rows = {"GrabCut (pad 32, 5 iterations, two passes)": foreground_iou(np.stack(grab), gt)}
    if train_net:
        net, _ = foreground_net(study)
        pred = predict_foreground(net, recs, size=size, device=study.device)
        rows["foreground network trained on GrabCut masks"] = foreground_iou(np.stack([pred[r.path] for r in recs]), gt)
    return pd.DataFrame({"IoU vs ground truth (%)": {k: v * 100 for k, v in rows.items()}, "test images": len(recs)})


# ------------------------------------------------------------------------------------------------
# the (a, m) sweep
# ------------------------------------------------------------------------------------------------

def span_hyperparam_table(study: Study, settings: Mapping[tuple, dict] = SPAN_HYPERPARAMS):
    """Mask IoU (%) of SPAN step 1 for each (a, m) setting of :data:`SPAN_HYPERPARAMS`; returns
    (table indexed by (parameter, value), per-image arrays with rows ``a=0.5``, ``m=0.04``, ...)."""
    table, _, arrays = _mask_results(study, settings)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["parameter", "value"])
    return table, arrays
