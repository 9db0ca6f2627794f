"""The SPAN + CPDM experiments (Chen et al., ECCV 2020): the masks of step 1, Table 1 (which losses
SPAN needs), Table 2 (how the part features are aggregated and compared) and the supplementary's
choice of the area cap ``a`` and the margin ``m``.

Each table's rows are :class:`reidlib.study.Variant` values in a dictionary below — the
experiment's design as data, which the notebooks print before anything is trained and run with
:meth:`reidlib.study.Study.run`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from reidlib.ablations.experiment import Experiment, FigureText, intervals_caption
from reidlib.claims import paper
from reidlib.claims.verdicts import CONVERGED, Claim, beats, reid_claim
from reidlib.study import Study, Variant
from reidlib.utils.io import atomic_path

__all__ = ["SPAN_LOSS_SWITCHES", "SPAN_LOSS_VARIANTS", "SPAN_AGGREGATION_VARIANTS", "SPAN_HYPERPARAMS",
           "span_masks_table", "span_mask_ious", "iou_row", "foreground_net", "foreground_quality",
           "span_hyperparam_table", "hyperparam_design", "MASK_EVAL_IMAGES", "mask_eval_records",
           "mask_reference_ious", "mask_reference_levels", "SPAN_PILOT_SETTINGS", "span_pilot"]

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

#: the mask tables' evaluation images: this many test images per study, stratified by identity and
#: view (:func:`reidlib.data.masks.stratified_records`)
MASK_EVAL_IMAGES = 400


def mask_eval_records(study: Study, split: str = "gallery", max_images: int = MASK_EVAL_IMAGES,
                      seed: Optional[int] = None) -> list:
    """The images every mask table of a study is measured on: ``max_images`` records of ``split``
    with a view label, round-robin over (identity, view class) groups
    (:func:`reidlib.data.masks.stratified_records`, seed ``study.eval_seed`` unless given)."""
    from reidlib.data.masks import stratified_records

    recs = [r for r in getattr(study.data, split) if r.view is not None]
    return stratified_records(recs, max_images, seed=study.eval_seed if seed is None else seed)


def _eval_size(study: Study, eval_size: Optional[tuple[int, int]]) -> tuple[int, int]:
    size = tuple(study.prof.input_size) if eval_size is None else eval_size
    return int(size[0]), int(size[1])


def _span_mask_eval(study: Study, span, recs: Sequence, eval_size: Optional[tuple[int, int]] = None,
                    span_size: Optional[int] = None) -> dict[str, np.ndarray]:
    """SPAN's masks on ``recs`` scored both ways: ``{"target": [N, 3], "faces": [N, 3]}`` per-image
    IoU against SPAN's target (:func:`reidlib.metrics.masks.span_target_ious`) and against the
    geometric faces (:func:`reidlib.metrics.masks.part_mask_ious`), at ``eval_size`` (default the
    profile's input size; the masks are resized bilinearly before thresholding)."""
    from reidlib.data.masks import MaskDataset
    from reidlib.metrics.masks import part_mask_ious, span_target_ious
    from reidlib.utils.device import resolve_device

    size = (span_size or study.prof.span_size,) * 2    # the images at SPAN's input size
    ds = MaskDataset(recs, fg_source="gt", size=size, mask_size=_eval_size(study, eval_size))
    dev = resolve_device(study.device)
    span = span.to(dev).eval()
    preds, faces, targets, ignores = [], [], [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=0)
    with torch.inference_mode():
        for batch in loader:
            m = span(batch["img"].to(dev)).float().cpu()                                  # [B, 3, h, w]
            if m.shape[-2:] != batch["target"].shape[-2:]:
                m = torch.nn.functional.interpolate(m, size=batch["target"].shape[-2:], mode="bilinear",
                                                    align_corners=False)                  # [B, 3, h', w']
            preds.append(m)
            faces.append(batch["parts"])
            targets.append(batch["target"])
            ignores.append(batch["ignore"])
    pred = torch.cat(preds)
    return {"target": span_target_ious(pred, torch.cat(targets), torch.cat(ignores)),
            "faces": part_mask_ious(pred, torch.cat(faces))}


def span_mask_ious(study: Study, span, split: str = "gallery", max_images: int = MASK_EVAL_IMAGES,
                   metric: str = "target", eval_size: Optional[tuple[int, int]] = None):
    """Per-image IoU ``[N, 3]`` (front, rear, side) of SPAN's thresholded masks on test images (a
    quantitative version of the paper's Fig. 6), and the images' paths.

    ``metric``: ``"target"`` (default): against the masks a perfect SPAN would produce from the
    view label (:func:`reidlib.data.masks.span_target`, "don't care" pixels removed); ``"faces"``:
    against SynthVeRi's geometric faces. Images: :func:`mask_eval_records`."""
    if metric not in ("target", "faces"):
        raise ValueError(f"metric must be 'target' or 'faces', got {metric!r}")
    recs = mask_eval_records(study, split, max_images)
    return _span_mask_eval(study, span, recs, eval_size)[metric], [r.path for r in recs]


def mask_reference_ious(study: Study, split: str = "gallery", max_images: int = MASK_EVAL_IMAGES,
                        eval_size: Optional[tuple[int, int]] = None, mode: str = "paper", a: float = 0.7):
    """Per-image IoU ``[N, 3]`` of the reference levels (:data:`reidlib.metrics.masks.REFERENCES`:
    the ceiling with the caps of eq. (2) (:func:`reidlib.losses.span.max_area_table` with ``mode``
    and ``a``), and the two degenerate baselines) against SPAN's target, on the same images and at
    the same size as :func:`span_mask_ious`. Returns ``({reference: ious}, paths)``."""
    from reidlib.data.masks import label_map_for
    from reidlib.losses.span import max_area_table
    from reidlib.metrics.masks import reference_ious

    recs = mask_eval_records(study, split, max_images)
    size = _eval_size(study, eval_size)
    labels = [label_map_for(r.path, size) for r in recs]
    views = [int(r.view) for r in recs]
    caps = max_area_table(torch.tensor(views, dtype=torch.long), mode=mode, a=a).numpy() if views else None
    return reference_ious(labels, views, a=a, caps=caps), [r.path for r in recs]


def mask_reference_levels(study: Study, split: str = "gallery", max_images: int = MASK_EVAL_IMAGES,
                          eval_size: Optional[tuple[int, int]] = None, mode: str = "paper",
                          a: float = 0.7) -> pd.DataFrame:
    """The reference levels of the mask tables (%), rows ``ceiling``, ``side takes the car``,
    ``labelled masks take the car``, columns front / rear / side / mean IoU (:func:`iou_row` of
    :func:`mask_reference_ious`), and ``images``: what a SPAN that zeroes its losses reaches, and
    what two degenerate solutions reach, on the images the SPAN rows are measured on."""
    ious, paths = mask_reference_ious(study, split, max_images, eval_size, mode, a)
    table = pd.DataFrame.from_dict({name: iou_row(v) for name, v in ious.items()}, orient="index")
    table["images"] = len(paths)
    return table


def iou_row(ious: np.ndarray) -> dict:
    """A mask table's row (percent): per-part means over the images where the part is defined,
    and their mean (``mean IoU``; :func:`reidlib.metrics.masks.part_mask_iou`)."""
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # a part defined on no image: nan
        parts = {p: float(np.nanmean(ious[:, k])) * 100 for k, p in enumerate(("front", "rear", "side"))}
        parts["mean IoU"] = float(np.nanmean(list(parts.values())))
    return parts


def _row_name(key) -> str:
    return f"{key[0]}={key[1]:g}" if isinstance(key, tuple) else str(key)


def _mask_results(study: Study, settings: Mapping[Any, dict], max_images: int = MASK_EVAL_IMAGES):
    """Train SPAN step 1 per setting; rows: :func:`iou_row` of the target metric plus ``faces mean
    IoU`` (the geometric-face metric's mean); per-image arrays of the target metric."""
    from reidlib.claims import per_query

    recs = mask_eval_records(study, max_images=max_images)
    units = [r.path for r in recs]
    rows, ious, spans = {}, {}, {}
    for key, overrides in settings.items():
        span, _ = study.span_model(study.seeds[0], **overrides)
        both = _span_mask_eval(study, span, recs)
        spans[key], ious[key] = span, [both["target"]]
        rows[key] = {**iou_row(both["target"]), "faces mean IoU": iou_row(both["faces"])["mean IoU"]}
    arrays = per_query.from_mask_ious({_row_name(k): v for k, v in ious.items()}, units, study.seeds[:1],
                                      groups=[r.pid for r in recs])
    return pd.DataFrame.from_dict(rows, orient="index"), spans, arrays


def span_masks_table(study: Study, variants: Sequence[str] = tuple(SPAN_LOSS_SWITCHES),
                     max_images: int = MASK_EVAL_IMAGES):
    """Train SPAN step 1 once per loss combination (Table 1's rows) and measure its part masks
    against SPAN's target (front / rear / side / mean IoU) and the geometric faces (``faces mean
    IoU``) on :func:`mask_eval_records`; compare with :func:`mask_reference_levels`. Returns (IoU
    table (%), {variant: trained SPAN}, per-image arrays of the target metric)."""
    return _mask_results(study, {v: SPAN_LOSS_SWITCHES[v] for v in variants}, max_images)


def foreground_net(study: Study, seed: Optional[int] = None):
    """The foreground network of SPAN's public code (ResNet encoder + light decoder) trained on the
    GrabCut masks of the training images; cached like every other run."""
    from reidlib.data.masks import view_balanced_subset
    from reidlib.engine.training import train_foreground

    seed = study.seeds[0] if seed is None else seed
    # the same view-balanced training subset as SPAN step 1 (its GrabCut masks are cached already)
    labelled = [r for r in study.data.train if r.view is not None]
    subset = view_balanced_subset(labelled, study.prof.span_per_view, seed=seed)
    cfg = study.foreground_config(seed)
    return study.cached("foreground", cfg, lambda c, resume: train_foreground(c, records=subset, resume=resume),
                        extra=("view_balanced", study.prof.span_per_view))


def foreground_quality(study: Study, max_images: Optional[int] = None, train_net: bool = True) -> pd.DataFrame:
    """IoU against SynthVeRi's true foreground (test images; ``max_images``, default the profile's
    ``foreground_eval_images``) of the targets SPAN can learn from: GrabCut pseudo-masks and the
    foreground network trained on them (the authors' procedure)."""
    import cv2

    from reidlib.data.grabcut import grabcut_foreground
    from reidlib.data.masks import gt_mask_path
    from reidlib.engine.foreground import predict_foreground
    from reidlib.metrics.masks import foreground_iou

    max_images = study.prof.foreground_eval_images if max_images is None else max_images
    recs = list(study.data.gallery)[:max_images]
    size = study.prof.input_size[0]
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

def span_hyperparam_table(study: Study, settings: Mapping[tuple, dict] = SPAN_HYPERPARAMS,
                          max_images: int = MASK_EVAL_IMAGES):
    """Mask IoU (%) of SPAN step 1 for each (a, m) setting of :data:`SPAN_HYPERPARAMS` (columns as
    :func:`span_masks_table`'s); returns (table indexed by (parameter, value), per-image arrays of
    the target metric with rows ``a=0.5``, ``m=0.04``, ...)."""
    table, _, arrays = _mask_results(study, settings, max_images)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["parameter", "value"])
    return table, arrays


# ------------------------------------------------------------------------------------------------
# the pilot: why the profile's SPAN step 1 is what it is
# ------------------------------------------------------------------------------------------------

#: the settings of SPAN step 1 tried before choosing the ``cpu`` profile's (its mask network options,
#: input size and how its trunk starts); the first is the profile's choice
SPAN_PILOT_SETTINGS: dict[str, dict] = {
    "stride 16 + bilinear, 128 px, stand-in init": {"options": {"stride": 16, "decoder": "bilinear"},
                                                    "size": 128, "init": "standin"},
    "stride 8 + transposed, 64 px, stand-in init": {"options": {"stride": 8, "decoder": "transposed"},
                                                    "size": 64, "init": "standin"},
    "stride 8 + transposed, 64 px, random init": {"options": {"stride": 8, "decoder": "transposed"},
                                                  "size": 64, "init": "random"},
}


def _seconds_per_iteration(log: Path) -> float:
    """Mean wall time of one training iteration, from a run's log (``time`` per logged window)."""
    from reidlib.engine.logging import read_jsonl

    rows = read_jsonl(log)
    return float(np.mean([r["time"] for r in rows])) if rows else float("nan")


def span_pilot(study: Study, settings: Mapping[str, dict] = SPAN_PILOT_SETTINGS, points: int = 4,
               max_images: int = MASK_EVAL_IMAGES) -> pd.DataFrame:
    """SPAN step 1 (all three losses) under each setting, its masks scored (the target metric, at
    the profile's input size) at ``points`` evenly spaced iterations of the profile's schedule.
    Long format: setting, iteration, training minutes (iterations x the run's mean time per
    iteration), front, rear, side, mean IoU. Runs are cached; the run with the profile's own
    setting is the one the other pages use."""

    from reidlib.engine.artifacts import load_model
    from reidlib.engine.checkpoint import checkpoints_newest_first
    from reidlib.engine.training import train_span

    iters = study.prof.span_iters
    every = max(1, iters // points)
    recs = mask_eval_records(study, max_images=max_images)
    rows = []
    keep = study.keep_state
    study.keep_state = True                        # the intermediate checkpoints are this page's data
    try:
        for name, s in settings.items():
            weights = None if s["init"] == "random" else study.backbone_weights(study.prof.span_backbone)
            cfg = study.span_config(study.seeds[0], **SPAN_LOSS_SWITCHES["full"],
                                    **{"model.kwargs": dict(s["options"]), "model.weights": weights,
                                       "span.size": s["size"], "train.checkpoint_every": every,
                                       "train.keep_last": points})
            span, info = study.cached("span-masks", cfg, lambda c, resume: train_span(c, resume=resume))
            # The curve is kept beside the run: once the intermediate checkpoints are deleted, a
            # later call reads it instead of scoring the finished model alone.
            curve_file = Path(info["out_dir"]) / f"mask_curve-{len(recs)}images-{points}points.csv"
            files = [p for p in checkpoints_newest_first(info["out_dir"]) if p.name.startswith("iter_")]
            if curve_file.exists():
                curve = pd.read_csv(curve_file)
            else:
                models = [(int(p.stem.split("_")[1]), load_model(p)[0]) for p in sorted(files)]
                if not any(it == iters for it, _ in models):
                    models.append((iters, span))       # the finished run
                per_iter = _seconds_per_iteration(Path(info["out_dir"]) / "log.jsonl")
                curve = pd.DataFrame([{"iteration": it, "training minutes": it * per_iter / 60,
                                       **iou_row(_span_mask_eval(study, model, recs, span_size=s["size"])["target"])}
                                      for it, model in models])
                if len(curve) > 1:                     # a complete curve (not one re-scored end point)
                    with atomic_path(curve_file) as tmp:
                        curve.to_csv(tmp, index=False)
            rows.extend({"setting": name, **r} for r in curve.to_dict(orient="records"))
            if not keep:                          # the training state is not needed any more
                for p in files:
                    Path(p).unlink(missing_ok=True)
                Path(info["out_dir"], "last.pt").unlink(missing_ok=True)
    finally:
        study.keep_state = keep
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# the book's pages (:class:`reidlib.ablations.experiment.Experiment`)
# ------------------------------------------------------------------------------------------------

def loss_design(switches: Mapping[str, dict] = SPAN_LOSS_SWITCHES) -> pd.DataFrame:
    """The design of the masks page: one row per loss combination, the terms of eq. 6 it switches."""
    return pd.DataFrame(switches).T


def pilot_design(settings: Mapping[str, dict] = SPAN_PILOT_SETTINGS) -> pd.DataFrame:
    """The design of the pilot: one row per setting, its mask-network options and initialisation."""
    return pd.DataFrame([{"setting": k, **s["options"], "init": s["init"]} for k, s in settings.items()])


def span_masks_figure(study: Study, span, n_images: int = 5):
    """SPAN's front, rear and side masks on ``n_images`` test images of different views, at SPAN's
    input size (:meth:`reidlib.study.Study.example_batch`)."""
    from reidlib.viz import attention_maps

    images, _ = study.example_batch(n=n_images, size=study.prof.span_size)
    masks = span.eval()(images).detach()
    return attention_maps(images, masks, names=["front", "rear", "side"])


_PAPER = "SPAN + CPDM"
#: Table 1's "full" and Table 2's "span_cpdm" are the same model (all three losses, CPDM), and both
#: tables' baseline is the same run: one comparison, made on two pages
_SPAN_VS_BASELINE = "SPAN + CPDM (all three losses) vs the baseline"

SPAN_PILOT = Experiment(
    "span_pilot", "SPAN step 1: choosing the settings", "span", _PAPER, rows=tuple(SPAN_PILOT_SETTINGS),
    figures={"curves": FigureText(
        "SPAN step 1 under each setting: mean IoU of its masks against iterations.",
        "Mean mask IoU against training iterations for each SPAN step-1 setting, with the ceiling and "
        "degenerate levels")})

SPAN_MASKS = Experiment(
    "span_masks", "SPAN Fig. 6 (part masks; mask IoU)", "span", _PAPER, "Fig. 6", rows=tuple(SPAN_LOSS_SWITCHES),
    figures={"masks": FigureText(
        "SPAN trained with all three losses: front, rear and side masks on test images of different views.",
        "Test images followed by SPAN's predicted front, rear and side masks")})

SPAN_LOSSES = Experiment(
    "span_losses", "SPAN Table 1: the three losses", "span", _PAPER, "Table 1", SPAN_LOSS_VARIANTS,
    paper_numbers=paper.SPAN_TABLE1,
    claims=(reid_claim("SPAN trained with all three losses beats the baseline", "mAP", beats("full", "baseline"),
                       shared=_SPAN_VS_BASELINE),
            reid_claim("all three losses beat every partial combination", "mAP",
                       beats("full", "only_recon"), beats("full", "wo_area"), beats("full", "wo_div"))),
    figures={"intervals": intervals_caption(
        "SPAN Table 1's rows (loss combinations) on SynthVeRi.", "mAP and rank-1 of every row of SPAN Table 1 with 95% intervals, and the paper's numbers")})

SPAN_AGGREGATION = Experiment(
    "span_aggregation", "SPAN Table 2: global and part features", "span", _PAPER, "Table 2", SPAN_AGGREGATION_VARIANTS,
    paper_numbers=paper.SPAN_TABLE2,
    claims=(reid_claim("concatenated part features beat an FC aggregation", "mAP", beats("span_cat", "span_fc")),
            reid_claim("CPDM beats Euclidean distance on the same concatenated features", "mAP",
                       beats("span_cpdm", "span_cat")),
            reid_claim("SPAN w/ CPDM beats the baseline", "mAP", beats("span_cpdm", "baseline"),
                       shared=_SPAN_VS_BASELINE),
            reid_claim("ranking the CPDM-trained model by CPDM beats ranking it by Euclidean distance", "mAP",
                       beats("span_cpdm", "span_cpdm_model_euclidean"), source="ours")),
    figures={"intervals": intervals_caption(
        "SPAN Table 2's rows (aggregations and distances) on SynthVeRi.",
        "mAP and rank-1 of every row of SPAN Table 2 with 95% intervals, and the paper's numbers")})

#: the (a, m) sweep's page (the paper publishes no numbers: the supplementary's choice of a and m)
SPAN_HYPERPARAMS_PAGE = Experiment(
    "span_hyperparams", "SPAN supplementary (a, m; mask IoU)", "span", _PAPER, "supplementary",
    rows=tuple(_row_name(k) for k in SPAN_HYPERPARAMS),
    claims=(Claim("a = 0.7 (the paper's choice) gives the best mask IoU among a = 0.5, 0.7, 0.9", "mean IoU",
                  (beats("a=0.7", "a=0.5"), beats("a=0.7", "a=0.9")), preconditions=(CONVERGED,)),
            Claim("m = 0.04 (the paper's choice) gives a better mask IoU than m = 0", "mean IoU",
                  (beats("m=0.04", "m=0"),), preconditions=(CONVERGED,))))

__all__ += ["SPAN_PILOT", "SPAN_MASKS", "SPAN_LOSSES", "SPAN_AGGREGATION", "SPAN_HYPERPARAMS_PAGE", "loss_design",
            "pilot_design", "span_masks_figure"]


# ------------------------------------------------------------------------------------------------
# did the masks form? image-only references, single- vs two-view images, Fig. 6's failure modes
# ------------------------------------------------------------------------------------------------

def _by_views_row(ious: np.ndarray, views: Sequence[int]) -> dict:
    from reidlib.metrics.masks import split_by_views

    split = split_by_views(ious, views)
    return {"single-view mean IoU": split["single view"] * 100, "two-view mean IoU": split["two view"] * 100}


def mask_reference_table(study: Study, split: str = "gallery", max_images: int = MASK_EVAL_IMAGES,
                         eval_size: Optional[tuple[int, int]] = None, mode: str = "paper", a: float = 0.7,
                         predicted_views: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Every reference level of the mask tables (%), with whether it ``uses the true view`` (an
    oracle) or the image only: :func:`mask_reference_levels`' rows, then ``foreground takes every
    mask`` (image only) and, given ``predicted_views`` (a view classifier's predictions for
    :func:`mask_eval_records`' images, in that order), ``view classifier's target`` with the
    classifier's ``view accuracy``. Columns: front / rear / side / mean IoU (:func:`iou_row`),
    ``single-view mean IoU`` and ``two-view mean IoU``
    (:func:`reidlib.metrics.masks.split_by_views`), ``images``."""
    from reidlib.data.masks import label_map_for
    from reidlib.metrics.masks import REFERENCE_USES_TRUE_VIEW, image_only_reference_ious

    oracles, paths = mask_reference_ious(study, split, max_images, eval_size, mode, a)
    recs = mask_eval_records(study, split, max_images)
    views = [int(r.view) for r in recs]
    if predicted_views is not None and len(predicted_views) != len(views):
        raise ValueError(f"predicted_views must have one view per evaluation image ({len(views)}), "
                         f"got {len(predicted_views)}")
    size = _eval_size(study, eval_size)
    labels = [label_map_for(r.path, size) for r in recs]
    ious = {**oracles, **image_only_reference_ious(labels, views, predicted_views)}
    table = pd.DataFrame.from_dict({name: {**iou_row(v), **_by_views_row(v, views)} for name, v in ious.items()},
                                   orient="index")
    table["images"] = len(paths)
    table["uses the true view"] = [REFERENCE_USES_TRUE_VIEW[name] for name in table.index]
    if predicted_views is not None:
        acc = float(np.mean(np.asarray(predicted_views, int) == np.asarray(views, int))) * 100 if views else np.nan
        table["view accuracy"] = [acc if name == "view classifier's target" else np.nan for name in table.index]
    return table


def span_mask_diagnostics(study: Study, span, split: str = "gallery", max_images: int = MASK_EVAL_IMAGES,
                          eval_size: Optional[tuple[int, int]] = None) -> dict:
    """SPAN's masks on :func:`mask_eval_records` (at ``eval_size``, default the profile's input
    size): the target metric's mean IoU on single-view and two-view images (%, with their image
    counts; :func:`reidlib.metrics.masks.split_by_views`) and the shares (%) of two-view images in
    each of Fig. 6's failure modes (:func:`reidlib.metrics.masks.failure_modes`)."""
    from reidlib.data.masks import MaskDataset
    from reidlib.metrics.masks import FAILURE_MODES, failure_modes, span_target_ious, split_by_views
    from reidlib.utils.device import resolve_device

    recs = mask_eval_records(study, split, max_images)
    ds = MaskDataset(recs, fg_source="gt", size=(study.prof.span_size,) * 2, mask_size=_eval_size(study, eval_size))
    dev = resolve_device(study.device)
    span = span.to(dev).eval()
    masks, fgs, targets, ignores = [], [], [], []
    with torch.inference_mode():
        for start in range(0, len(ds), 64):
            items = [ds[i] for i in range(start, min(start + 64, len(ds)))]
            out = span(torch.stack([it["img"] for it in items]).to(dev)).float().cpu()
            tgt = torch.stack([it["target"] for it in items])
            masks.append(torch.nn.functional.interpolate(out, size=tgt.shape[-2:], mode="bilinear", align_corners=False)
                         if out.shape[-2:] != tgt.shape[-2:] else out)
            fgs.append(torch.stack([it["fg"][0] for it in items]))
            targets.append(tgt)
            ignores.append(torch.stack([it["ignore"] for it in items]))
    views = [int(r.view) for r in recs]
    pred = torch.cat(masks)
    split_ious = split_by_views(span_target_ious(pred, torch.cat(targets), torch.cat(ignores)), views)
    modes = failure_modes(pred, torch.cat(fgs), views)
    return {"single-view mean IoU": split_ious["single view"] * 100, "single-view images": split_ious["n single view"],
            "two-view mean IoU": split_ious["two view"] * 100, "two-view images": split_ious["n two view"],
            **{f"{m} (% of two-view)": modes[m] * 100 for m in FAILURE_MODES}}


__all__ += ["mask_reference_table", "span_mask_diagnostics"]
