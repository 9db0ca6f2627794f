"""The MUSP experiments (Lee, Woo, Lee): Table 5 (the number of attentions n), Table 6 (the ESE
channel attention) and Table 7 (softmax vs sigmoid attention).

Each table's rows are :class:`reidlib.study.Variant` values in a dictionary below — the
experiment's design as data, which the notebooks print before anything is trained and run with
:meth:`reidlib.study.Study.run`.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText, intervals_caption
from reidlib.claims import paper
from reidlib.claims.verdicts import beats, reid_claim
from reidlib.study import Study, Variant

__all__ = ["MUSP_ATTENTION_VARIANTS", "MUSP_ESE_VARIANTS", "MUSP_ACTIVATION_VARIANTS", "musp_variant",
           "musp_attention_figure", "ese_table"]


def musp_variant(note: str = "", seeds: Optional[int] = None, **options) -> Variant:
    """MUSP with the given model options (``num_attentions``, ``ese``, ``attention``, ...), trained
    with every training seed or the first ``seeds``."""
    return Variant("musp", {"model.kwargs": dict(options)}, note=note, seeds=seeds)


#: Table 5: n attentions (softmax, ESE, n - 1 kept parts), plus the baseline for orientation
MUSP_ATTENTION_VARIANTS: dict[Any, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline"),
    # the headline rows n = 5 (the paper's choice) and n = 2 get every training seed; n = 3, 4, 6 the first
    **{n: musp_variant(f"{n - 1} kept part(s) + background", seeds=None if n in (2, 5) else 1, num_attentions=n)
       for n in (2, 3, 4, 5, 6)},
}

#: Table 6: n = 5 with and without the extended squeeze-and-excitation (eqs. 6-8)
MUSP_ESE_VARIANTS: dict[str, Variant] = {
    "with_ese": musp_variant("ESE over the 4 kept parts", seeds=1, num_attentions=5),
    "without_ese": musp_variant("no channel attention", seeds=1, num_attentions=5, ese=False),
}

#: Table 7: softmax over n = 5 maps (background discarded) vs 4 sigmoid maps (all kept)
MUSP_ACTIVATION_VARIANTS: dict[str, Variant] = {
    "softmax": musp_variant("softmax over 5 maps, background discarded", num_attentions=5),
    "sigmoid": musp_variant("4 independent sigmoid maps, all kept", num_attentions=5, attention="sigmoid"),
}


def musp_attention_figure(study: Study, num_attentions: int = 5, n_images: int = 4):
    """MUSP's attention maps on test images (the paper's Figs. 1 and 5): the n - 1 kept parts and the
    discarded background map, of the first seed's model with ``num_attentions`` attentions."""
    from reidlib.viz import attention_maps

    images, _ = study.example_batch(n=n_images)
    model = study.variant_models(musp_variant(num_attentions=num_attentions))[0].eval()
    names = [f"part {i + 1}" for i in range(num_attentions - 1)] + ["background"]
    return attention_maps(images, model.attention(images).detach(), names=names)


# ------------------------------------------------------------------------------------------------
# the book's pages (:class:`reidlib.ablations.experiment.Experiment`)
# ------------------------------------------------------------------------------------------------

MUSP_ATTENTIONS = Experiment(
    "musp_attentions", "MUSP Table 5: the number of attentions", "musp", "MUSP", "Table 5", MUSP_ATTENTION_VARIANTS,
    paper_numbers=paper.MUSP_TABLE5, mechanism=lambda study, variants: musp_mechanism_facts(study, variants),
    claims=(reid_claim("n = 5 attentions gives the best mAP", "mAP", *[beats(5, n) for n in (2, 3, 4, 6)]),
            reid_claim("four or more attentions beat fewer than four (mean over n)", "mAP",
                       {4: 1 / 3, 5: 1 / 3, 6: 1 / 3, 2: -1 / 2, 3: -1 / 2})),
    figures={"intervals": intervals_caption(
        "MUSP Table 5's rows (n attentions, and the baseline) on SynthVeRi.",
        "mAP and rank-1 for n = 2 to 6 attentions and the baseline, with 95% intervals, and the paper's numbers"),
        "attention_maps": FigureText(
        "MUSP with n = 5 attentions (first seed): on each test image, the four kept part attentions and the "
        "discarded background map (the paper's Figs. 1 and 5).",
        "Test images followed by MUSP's four part attention maps and its background attention map")})

def ese_table(table: pd.DataFrame, levels: pd.DataFrame) -> pd.DataFrame:
    """Table 6's rows followed by the reference levels they are read against
    (:meth:`reidlib.study.Study.reference_levels`: the untrained network, the stand-in before
    fine-tuning), the levels' metrics in the table's columns (no intervals); ``kind`` says which a
    row is. On a small test set an untrained network already ranks well, so a row is only
    informative by how far it lies above these."""
    rows = table.copy()
    lv = levels.reindex(columns=[c for c in table.columns if c in levels.columns])
    rows.insert(0, "kind", "model")
    lv.insert(0, "kind", "reference level")
    return pd.concat([rows, lv])


MUSP_ESE = Experiment(
    "musp_ese", "MUSP Table 6: ESE channel attention", "musp", "MUSP", "Table 6", MUSP_ESE_VARIANTS,
    paper_numbers=paper.MUSP_TABLE6,
    claims=(reid_claim("ESE improves rank-1", "R1", beats("with_ese", "without_ese")),),
    figures={"intervals": intervals_caption(
        "MUSP with and without ESE on SynthVeRi in VehicleID's layout and protocol (the paper reports "
        "rank-1 only, on VehicleID small).", "mAP and rank-1 with and without ESE, with 95% intervals, and the paper's rank-1")})

MUSP_ACTIVATION = Experiment(
    "musp_activation", "MUSP Table 7: softmax or sigmoid", "musp", "MUSP", "Table 7", MUSP_ACTIVATION_VARIANTS,
    paper_numbers=paper.MUSP_TABLE7, mechanism=lambda study, variants: musp_mechanism_facts(study, variants),
    claims=(reid_claim("softmax attention beats sigmoid attention", "mAP", beats("softmax", "sigmoid")),),
    figures={"intervals": intervals_caption(
        "MUSP Table 7's rows (softmax or sigmoid attention) on SynthVeRi.",
        "mAP and rank-1 of softmax and sigmoid attention with 95% intervals, and the paper's")})

__all__ += ["MUSP_ATTENTIONS", "MUSP_ESE", "MUSP_ACTIVATION"]


# ------------------------------------------------------------------------------------------------
# did the attentions form? (reidlib.metrics.attention, on SynthVeRi's true faces)
# ------------------------------------------------------------------------------------------------

def musp_formation(study: Study, num_attentions: int = 5, split: str = "gallery", max_images: int = 400,
                   batch_size: int = 64, variant: Optional[Variant] = None):
    """Whether MUSP's attentions (first seed's model with ``num_attentions``) follow the car or sit
    at fixed positions, on ``max_images`` test images (:func:`reidlib.ablations.span.mask_eval_records`,
    spread over identities and view classes).

    Returns ``(maps, faces)``, two tables:

    * ``maps``, one row per attention map (``part 1`` ... ``background``): ``variation`` (mean
      total-variation distance of each image's map to the mean map, the position-only prior; 0 =
      pure position prior), ``between views`` (mean distance between the per-view mean maps) and
      ``within view`` (distance to the image's own view's mean map)
      (:func:`reidlib.metrics.attention.attention_variation`, :func:`~reidlib.metrics.attention.view_dependence`);
    * ``faces``, one row per true face (front, rear, side): the soft IoU (%) of the best-matching
      kept map and of the position-only prior, which map matches best, and the images with the face
      (:func:`reidlib.metrics.attention.best_face_iou`; faces = SynthVeRi's label maps resized to
      the maps' size, nearest neighbour)."""
    import numpy as np
    import pandas as pd
    import torch

    from reidlib.ablations.span import mask_eval_records
    from reidlib.data.masks import MaskDataset, label_map_for
    from reidlib.data.views import PART_LABELS, PARTS
    from reidlib.metrics.attention import attention_variation, best_face_iou, view_dependence
    from reidlib.utils.device import resolve_device

    recs = mask_eval_records(study, split, max_images)
    ds = MaskDataset(recs, fg_source="gt", size=tuple(study.prof.input_size))
    dev = resolve_device(study.device)
    variant = musp_variant(num_attentions=num_attentions) if variant is None else variant
    num_attentions = int(variant.config.get("model.kwargs", {}).get("num_attentions", num_attentions))
    model = study.variant_models(variant)[0].to(dev).eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(ds), batch_size):
            imgs = torch.stack([ds[i]["img"] for i in range(start, min(start + batch_size, len(ds)))])
            chunks.append(model.attention(imgs.to(dev)).float().cpu())
    maps = torch.cat(chunks).numpy()                                             # [N, n, h, w]
    kept = maps[:, :num_attentions - 1] if maps.shape[1] == num_attentions else maps
    labels = np.stack([label_map_for(r.path, maps.shape[-2:]) for r in recs])    # [N, h, w]
    faces = np.stack([labels == PART_LABELS[p] for p in PARTS], axis=1)          # [N, 3, h, w]
    views = [int(r.view) for r in recs]
    names = [f"part {i + 1}" for i in range(kept.shape[1])] + ["background"] * (maps.shape[1] - kept.shape[1])
    dep = view_dependence(maps, views)
    map_table = pd.DataFrame({"variation": attention_variation(maps), "between views": dep["between"],
                              "within view": dep["within"]}, index=names)
    best = best_face_iou(kept, faces)
    named = (lambda idx: [names[i] if i >= 0 else None for i in idx])
    face_table = pd.DataFrame({"best map soft IoU": best["iou"] * 100, "best map": named(best["map"]),
                               "prior soft IoU": best["prior"] * 100, "prior map": named(best["prior map"]),
                               "images": best["n"]}, index=list(PARTS))
    return map_table, face_table


__all__ += ["musp_formation"]


#: formation: the best-matching kept attention must beat the position-only prior (the mean map) by
#: at least this many points of soft IoU with SynthVeRi's true faces, averaged over the three faces
FORMATION_MARGIN = 5.0


def musp_mechanism_facts(study: Study, variants: Mapping[Any, Variant],
                         margin: float = FORMATION_MARGIN) -> tuple[dict, pd.DataFrame]:
    """The fact :data:`reidlib.claims.verdicts.MECHANISM` for each MUSP row of ``variants`` (its
    first seed's model, :func:`musp_formation`): formed when its best-matching attentions beat the
    position-only prior by ``margin`` points of soft IoU on average over the faces. Returns
    ``({MECHANISM: {row: (ok, reason)}}, table: per row the mean best / prior soft IoU, their gap,
    the mean variation of the kept maps around the prior, formed)``."""
    from reidlib.claims.verdicts import MECHANISM

    facts, rows = {}, {}
    for name, v in variants.items():
        if v.model != "musp":
            continue
        maps, faces = musp_formation(study, variant=v)
        best, prior = float(faces["best map soft IoU"].mean()), float(faces["prior soft IoU"].mean())
        kept = maps.loc[[i for i in maps.index if i != "background"], "variation"]
        ok = bool(best - prior >= margin)
        facts[str(name)] = (ok, "" if ok else f"{name}'s attentions did not form (best-matching soft IoU {best:.1f} vs "
                                               f"the position-only prior's {prior:.1f}: a gap under {margin:g})")
        rows[str(name)] = {"best soft IoU": best, "prior soft IoU": prior, "gap": best - prior,
                           "variation of kept maps": float(kept.mean()), "formed": ok}
    return ({MECHANISM: facts} if facts else {}), pd.DataFrame.from_dict(rows, orient="index")


__all__ += ["FORMATION_MARGIN", "musp_mechanism_facts"]
