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

#: our ground-truth row (not in the paper): SPAN step 1 trained on SynthVeRi's true part masks
#: (:func:`reidlib.losses.span.true_part_mask_loss`) instead of eq. 6, then the same part features +
#: CPDM: what the design reaches when the masks are right, separating "the idea fails" from "our
#: step 1 failed"
TRUE_MASKS = {"span.supervision": "true_parts"}
TRUE_MASKS_NOTE = "ours, not the paper's: SPAN + CPDM on masks learnt from SynthVeRi's true part masks"

#: Table 1: the strong baseline, then SPAN + CPDM (part features on SPAN's masks, triplet on CPDM
#: (eq. 7), ranking with CPDM (eqs. 4-5)) with SPAN trained on each loss combination. The headline
#: rows (baseline, all three losses, the true-mask row) get every training seed; the other loss
#: combinations the first only (a secondary row, labelled).
SPAN_LOSS_VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline, one global feature"),
    **{name: Variant("span", span=switches, note="SPAN + CPDM", seeds=None if name == "full" else 1)
       for name, switches in SPAN_LOSS_SWITCHES.items()},
    "true_masks": Variant("span", span=TRUE_MASKS, note=TRUE_MASKS_NOTE),
}

#: how the "w/ Cat" row ranks (the paper does not say): each of the four blocks (global, front,
#: rear, side) L2-normalised, then concatenated, Euclidean distance; its triplet loss sees the same
#: vector (:class:`reidlib.models.part_features.SPANReID`, ``cat_norm="block"``)
CAT_RANKED = {"distance": "euclidean", "cat_norm": "block"}

#: Table 2: with SPAN's masks fixed (all three losses), how the four features are combined and
#: compared. ``span_cpdm`` and the rows after it are the *same* trained models ranked four ways
#: (CPDM; Euclidean on the per-block-normalised concatenation; the global block alone; the part
#: blocks alone): no training between them, so their differences are the metric's and the features'.
SPAN_AGGREGATION_VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline"),
    "span_fc": Variant("span", {"model.kwargs": {"aggregation": "fc"}, "loss.triplet_on": "concat"},
                       note="w/ FC: one FC layer fuses the four features", seeds=1),
    "span_cat": Variant("span", {"model.kwargs": CAT_RANKED, "loss.triplet_on": "concat"},
                        distance="euclidean", note="w/ Cat: per-block L2-normalised concatenation, Euclidean "
                                                   "distance; triplet on that vector", seeds=1),
    "span_cpdm": Variant("span", distance="cpdm", note="w/ CPDM: triplet and ranking on CPDM (eq. 7)"),
    "span_cpdm_model_euclidean": Variant("span", distance="euclidean:blocks",
                                         note="the CPDM-trained model, Euclidean on its per-block-normalised "
                                              "concatenation: the same features, another metric (not in the paper)"),
    "span_cpdm_model_global": Variant("span", distance="euclidean:global",
                                      note="the CPDM-trained model, its global feature alone (not in the paper)"),
    "span_cpdm_model_parts": Variant("span", distance="euclidean:parts",
                                     note="the CPDM-trained model, its three part features alone, each "
                                          "L2-normalised (not in the paper)"),
    "true_masks": Variant("span", span=TRUE_MASKS, distance="cpdm", note=TRUE_MASKS_NOTE),
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


def _mask_results(study: Study, settings: Mapping[Any, dict], max_images: int = MASK_EVAL_IMAGES,
                  all_seeds: Sequence = ()):
    """Train SPAN step 1 per setting (the rows in ``all_seeds`` once per training seed, the others
    with the first); rows: :func:`iou_row` of the target metric plus ``faces mean IoU`` (the
    geometric-face metric's mean), means over the row's seeds, with ``seeds`` and, over several,
    ``mean IoU sd`` (the seed-to-seed standard deviation); per-image arrays of the target metric
    (``[seeds, images, 3]`` per row). Returns (table, {row: first seed's SPAN}, arrays)."""
    from reidlib.claims import per_query

    recs = mask_eval_records(study, max_images=max_images)
    units = [r.path for r in recs]
    rows, ious, spans = {}, {}, {}
    for key, overrides in settings.items():
        seeds = study.seeds if key in all_seeds else study.seeds[:1]
        per_seed, faces = [], []
        for seed in seeds:
            span, _ = study.span_model(seed, **overrides)
            both = _span_mask_eval(study, span, recs)
            spans.setdefault(key, span)
            per_seed.append(both["target"])
            faces.append(iou_row(both["faces"])["mean IoU"])
        ious[key] = per_seed
        rows[key] = {**iou_row(np.concatenate(per_seed)), "faces mean IoU": float(np.mean(faces)), "seeds": len(seeds)}
        if len(seeds) > 1:
            rows[key]["mean IoU sd"] = float(np.std([iou_row(v)["mean IoU"] for v in per_seed], ddof=1))
    arrays = per_query.from_mask_ious({_row_name(k): v for k, v in ious.items()}, units, study.seeds,
                                      groups=[r.pid for r in recs])
    return pd.DataFrame.from_dict(rows, orient="index"), spans, arrays


def span_masks_table(study: Study, variants: Optional[Sequence[str]] = None,
                     max_images: int = MASK_EVAL_IMAGES):
    """Train SPAN step 1 once per row of :data:`MASK_ROWS` (Table 1's loss combinations and our
    true-mask row; or ``variants`` of them; the headline rows :data:`MASK_ALL_SEEDS` once per
    training seed, as Tables 1 and 2 use them) and measure its part masks
    against SPAN's target (front / rear / side / mean IoU) and the geometric faces (``faces mean
    IoU``) on :func:`mask_eval_records`; compare with :func:`mask_reference_levels`. Returns (IoU
    table (%), {variant: trained SPAN}, per-image arrays of the target metric)."""
    rows = MASK_ROWS if variants is None else {v: MASK_ROWS[v] for v in variants}
    return _mask_results(study, rows, max_images, all_seeds=MASK_ALL_SEEDS)


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

#: SPAN step 1's pilot: the profile's setting, then one factor changed at a time, all at the
#: profile's resolution (``span_size``) and schedule length: the public code's optimiser (Adam 1e-4,
#: no warm-up) and no stand-in (random initialisation). (The public code's stride-8 mask network
#: costs several times more per iteration than the cpu budget allows.) Each value: SPAN step-1
#: configuration overrides; ``"model.weights": None`` = random.
SPAN_PILOT_SETTINGS: dict[str, dict] = {
    "profile's choice (stride 16 + bilinear, Adam 1e-3 with warm-up, stand-in)": {},
    "public code's optimiser (Adam 1e-4, no warm-up)": {"optim.lr": 1e-4, "optim.warmup_iters": 0},
    "random initialisation": {"model.weights": None},
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
            cfg = study.span_config(study.seeds[0], **SPAN_LOSS_SWITCHES["full"],
                                    **{**s, "train.checkpoint_every": every, "train.keep_last": points})
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
                                       **iou_row(_span_mask_eval(study, model, recs)["target"])}
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


def pilot_design(settings: Mapping[str, dict] = SPAN_PILOT_SETTINGS, study: Optional[Study] = None) -> pd.DataFrame:
    """The design of the pilot: one row per setting, what it changes from the profile's SPAN step 1
    (with ``study``, the resulting learning rate, warm-up, mask network and initialisation)."""
    rows = []
    for k, s in settings.items():
        row = {"setting": k, "changes": ", ".join(f"{a}={b}" for a, b in s.items()) or "(the profile's)"}
        if study is not None:
            c = study.span_config(study.seeds[0], **s)
            row.update({"lr": c.optim.lr, "warm-up": c.optim.warmup_iters, "stride": c.model.kwargs.get("stride"),
                        "decoder": c.model.kwargs.get("decoder"), "size": c.span.size,
                        "init": "random" if not c.model.weights else "stand-in or file"})
        rows.append(row)
    return pd.DataFrame(rows)


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
    "span_masks", "SPAN Fig. 6 (part masks; mask IoU)", "span", _PAPER, "Fig. 6", rows=(*SPAN_LOSS_SWITCHES, "true_masks"),
    figures={"masks": FigureText(
        "SPAN trained with all three losses: front, rear and side masks on test images of different views.",
        "Test images followed by SPAN's predicted front, rear and side masks"),
        "panel": FigureText(
        "The paper's Fig. 6 on SynthVeRi: one test image per view class (rows); the masks a perfect SPAN "
        "would output, then the thresholded masks of SPAN trained with each loss combination and of our "
        "true-mask row (columns), blended over the image: front red, rear blue, side green.",
        "A grid of test images with the target masks and each loss combination's predicted masks overlaid")})

SPAN_LOSSES = Experiment(
    "span_losses", "SPAN Table 1: the three losses", "span", _PAPER, "Table 1", SPAN_LOSS_VARIANTS,
    paper_numbers=paper.SPAN_TABLE1, mechanism=lambda study, variants: span_mechanism(study, variants),
    claims=(reid_claim("SPAN trained with all three losses beats the baseline", "mAP", beats("full", "baseline"),
                       shared=_SPAN_VS_BASELINE),
            reid_claim("all three losses beat every partial combination", "mAP",
                       beats("full", "only_recon"), beats("full", "wo_area"), beats("full", "wo_div")),
            reid_claim("with the true part masks, SPAN + CPDM beats the baseline (the design's upper bound)", "mAP",
                       beats("true_masks", "baseline"), source="ours"),
            reid_claim("the true part masks beat SPAN's learnt masks (better masks, better re-ID)", "mAP",
                       beats("true_masks", "full"), source="ours")),
    figures={"intervals": intervals_caption(
        "SPAN Table 1's rows (loss combinations) on SynthVeRi.", "mAP and rank-1 of every row of SPAN Table 1 with 95% intervals, and the paper's numbers")})

SPAN_AGGREGATION = Experiment(
    "span_aggregation", "SPAN Table 2: global and part features", "span", _PAPER, "Table 2", SPAN_AGGREGATION_VARIANTS,
    paper_numbers=paper.SPAN_TABLE2, mechanism=lambda study, variants: span_mechanism(study, variants),
    claims=(reid_claim("concatenated part features beat an FC aggregation", "mAP", beats("span_cat", "span_fc")),
            reid_claim("w/ CPDM beats w/ Cat (the table's two models)", "mAP", beats("span_cpdm", "span_cat")),
            reid_claim("CPDM beats Euclidean distance on the same concatenated features (one model, ranked both "
                       "ways)", "mAP", beats("span_cpdm", "span_cpdm_model_euclidean")),
            reid_claim("SPAN w/ CPDM beats the baseline", "mAP", beats("span_cpdm", "baseline"),
                       shared=_SPAN_VS_BASELINE),
            reid_claim("the part features add to the global one: CPDM over all four beats the global feature "
                       "alone (one model)", "mAP", beats("span_cpdm", "span_cpdm_model_global"), source="ours")),
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


# ------------------------------------------------------------------------------------------------
# the precondition "mechanism formed" of the claims about SPAN's masks
# ------------------------------------------------------------------------------------------------

#: what a SPAN's masks must beat to count as formed (rows of :func:`mask_reference_table`): on the
#: two-view images, giving both present parts the whole car (an oracle on the view, the trivial
#: split); overall, every image-only reference (all masks = the foreground; a view classifier's
#: target, when given)
FORMATION_REFERENCES = {"two-view mean IoU": ("labelled masks take the car",),
                        "mean IoU": ("foreground takes every mask", "view classifier's target")}


def mask_formation(study: Study, span, references: pd.DataFrame) -> tuple[bool, str, dict]:
    """Whether ``span``'s masks formed: ``(ok, reason, its numbers)`` against
    :data:`FORMATION_REFERENCES` (``references``: :func:`mask_reference_table` on the same images).
    Its numbers: mean IoU and two-view mean IoU (%) of its masks."""
    recs = mask_eval_records(study)
    ious = _span_mask_eval(study, span, recs)["target"]
    mine = {"mean IoU": iou_row(ious)["mean IoU"], **_by_views_row(ious, [int(r.view) for r in recs])}
    short = []
    for column, refs in FORMATION_REFERENCES.items():
        for ref in refs:
            if ref in references.index and not mine[column] > float(references.loc[ref, column]):
                short.append(f"{column} {mine[column]:.1f} ≤ '{ref}' {float(references.loc[ref, column]):.1f}")
    return not short, "; ".join(short), mine


def mask_mechanism_facts(study: Study, variants: Mapping[Any, Variant], references: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """The fact :data:`reidlib.claims.verdicts.MECHANISM` for each row of ``variants`` that ranks
    with SPAN's masks (its first seed's SPAN step 1, :func:`mask_formation`): ``({MECHANISM: {row:
    (ok, reason)}}, table of the rows' numbers)``. Rows without masks (the baseline) are left out."""
    from reidlib.claims.verdicts import MECHANISM
    from reidlib.models.registry import MODELS

    facts, rows, done = {}, {}, {}
    for name, v in variants.items():
        if not MODELS[v.model].needs_span:
            continue
        key = tuple(sorted(v.span.items()))
        if key not in done:
            span, _ = study.span_model(study.seeds[0], **v.span)
            done[key] = mask_formation(study, span, references)
        ok, reason, mine = done[key]
        facts[str(name)] = (ok, "" if ok else f"{name}'s masks did not form ({reason})")
        rows[str(name)] = {**mine, "formed": ok}
    return ({MECHANISM: facts} if facts else {}), pd.DataFrame.from_dict(rows, orient="index")


__all__ += ["FORMATION_REFERENCES", "mask_formation", "mask_mechanism_facts", "TRUE_MASKS", "CAT_RANKED"]


def standin_view_predictions(study: Study, records: Sequence) -> Optional[list[int]]:
    """A view classifier's predictions for ``records`` (image only): the view head of the stand-in
    (:meth:`reidlib.study.Study.standin_model`: trained on the pretraining folder's identities,
    none of the evaluation's). None when the study has no stand-in."""
    from reidlib.data.masks import MaskDataset
    from reidlib.utils.device import resolve_device

    if "standin" not in (study.init, study.span_init):
        return None
    model = study.standin_model()
    if "view" not in getattr(model, "heads", {}):
        return None
    dev = resolve_device(study.device)
    model = model.to(dev).eval()
    ds = MaskDataset(list(records), fg_source="gt", size=tuple(study.prof.input_size))
    preds: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(ds), 64):
            imgs = torch.stack([ds[i]["img"] for i in range(start, min(start + 64, len(ds)))]).to(dev)
            preds += model.split(model(imgs).float())["view"].argmax(1).cpu().tolist()
    return preds


def span_mechanism(study: Study, variants: Mapping[Any, Variant]) -> tuple[dict, pd.DataFrame]:
    """The mechanism measure of the SPAN re-ID pages (:attr:`reidlib.ablations.experiment.Experiment.mechanism`):
    the references of :func:`mask_reference_table` (with the stand-in's view classifier,
    :func:`standin_view_predictions`), then :func:`mask_mechanism_facts`; the table lists the rows'
    numbers, then the references they are held against."""
    recs = mask_eval_records(study)
    refs = mask_reference_table(study, predicted_views=standin_view_predictions(study, recs))
    facts, rows = mask_mechanism_facts(study, variants, refs)
    shown = refs.loc[[r for refs_ in FORMATION_REFERENCES.values() for r in refs_ if r in refs.index],
                     [c for c in ("mean IoU", "two-view mean IoU", "view accuracy") if c in refs.columns]]
    shown = shown[~shown.index.duplicated()]
    rows.insert(0, "kind", "model (first seed's SPAN)")
    shown.insert(0, "kind", "reference")
    return facts, pd.concat([rows, shown])


__all__ += ["standin_view_predictions", "span_mechanism"]


# ------------------------------------------------------------------------------------------------
# the Fig. 6 panel: every loss combination's masks beside the true ones
# ------------------------------------------------------------------------------------------------

#: the masks page's rows: Table 1's loss combinations, then our ground-truth row (SPAN step 1 trained
#: on the true part masks: what a mask network of this size reaches when told the answer)
MASK_ROWS: dict[str, dict] = {**SPAN_LOSS_SWITCHES, "true_masks": TRUE_MASKS}
#: the masks page's rows trained once per training seed (the headline rows of Tables 1 and 2, whose
#: re-ID models are built on each seed's SPAN): their seed-to-seed spread is on the page
MASK_ALL_SEEDS = ("full", "true_masks")


def span_masks_panel(study: Study, spans: Mapping[str, Any], n_images: int = 5, alpha: float = 0.6):
    """SPAN's Fig. 6 as a grid: one row per test image of a different view class
    (:meth:`reidlib.study.Study.example_batch`), columns: the image, the masks a perfect SPAN would
    output (:func:`reidlib.data.masks.span_target`), then each of ``spans``' masks (thresholded at
    0.5), all blended over the image, front red, rear blue, side green
    (:func:`reidlib.viz.attention.mask_overlay`)."""
    from matplotlib.figure import Figure

    from reidlib.data.masks import label_map_for, span_target
    from reidlib.data.views import VIEW5
    from reidlib.viz.attention import mask_overlay, to_uint8_image

    images, recs = study.example_batch(n=n_images, size=study.prof.span_size)
    names = ["front", "rear", "side"]
    size = tuple(images.shape[-2:])
    truth = [span_target(label_map_for(r.path, size), int(r.view))[0].astype(np.float32) for r in recs]
    preds = {k: (s.eval()(images).detach().float() > 0.5).float().numpy() for k, s in spans.items()}
    cols = ["image", "target (true)", *preds]
    fig = Figure(figsize=(1.45 * len(cols), 1.5 * len(recs) + 0.3), layout="constrained")
    axes = fig.subplots(len(recs), len(cols), squeeze=False)
    for i, r in enumerate(recs):
        panels = [to_uint8_image(images[i]), mask_overlay(images[i], truth[i], names, alpha=alpha),
                  *(mask_overlay(images[i], p[i], names, alpha=alpha) for p in preds.values())]
        for j, (ax, im) in enumerate(zip(axes[i], panels)):
            ax.imshow(im)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j].replace("_", " "), fontsize=8)
        axes[i][0].set_ylabel(VIEW5[int(r.view)], fontsize=8)
    return fig


__all__ += ["MASK_ROWS", "MASK_ALL_SEEDS", "span_masks_panel"]
