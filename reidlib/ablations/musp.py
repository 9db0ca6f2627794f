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


# ------------------------------------------------------------------------------------------------
# the pilot: what makes MUSP's attentions form within the budget?
# ------------------------------------------------------------------------------------------------

#: MUSP's formation pilot: n = 5 (the paper's choice) at the first training seed, the profile's run,
#: then one factor changed at a time, all at the profile's resolution. Each value: run-configuration
#: overrides of the row (dotted keys, ``model.kwargs`` merged), and the pseudo-key ``schedule``: the
#: profile's schedule stretched by that factor (length, warm-up, decays and validation points,
#: :func:`stretched_schedule`). Not tried: a higher input resolution (the attention maps are
#: 8 x 8 at the cpu profile's 128 px; 256 px has four times the pixels per image, not timed here).
MUSP_PILOT_SETTINGS: dict[str, dict] = {
    "profile's": {},
    "diversity x10": {"model.kwargs": {"div_weight": 10.0}},      # eq. (14)'s weight in eq. (11)
    "attention lr x10": {"optim.lr_mult": {"attn": 10.0}},       # the attention conv of eq. (3)
    "schedule x2": {"schedule": 2.0},
}


def stretched_schedule(cfg, factor: float) -> dict:
    """Overrides (dotted keys) that stretch run configuration ``cfg``'s schedule by ``factor`` in its
    own unit (iterations or epochs): its length, its decay milestones, its warm-up and the interval
    of its kept checkpoints (the validation curve's points, so the curve still spans the run)."""
    if not factor > 0:
        raise ValueError(f"schedule factor must be > 0, got {factor!r}")
    o = cfg.optim
    whole = (lambda x: int(round(x * factor))) if o.unit == "iter" else (lambda x: x * factor)
    return {"optim.max_iters": whole(o.max_iters), "optim.milestones": [whole(m) for m in o.milestones],
            "optim.warmup_iters": whole(o.warmup_iters),
            "train.checkpoint_every": max(1, int(round(cfg.train.checkpoint_every * factor)))}


def musp_pilot_variants(study: Study, settings: Mapping[str, dict] = MUSP_PILOT_SETTINGS,
                        num_attentions: int = 5) -> dict[str, Variant]:
    """The pilot's rows as :class:`reidlib.study.Variant` values (first training seed each): MUSP
    with ``num_attentions`` and each setting's overrides. The profile's row is the same run as
    Table 5's ``n = num_attentions`` first seed (one cache entry)."""
    out = {}
    for name, s in settings.items():
        s = dict(s)
        factor = s.pop("schedule", None)
        kwargs = {"num_attentions": num_attentions, **s.pop("model.kwargs", {})}
        config = {"model.kwargs": kwargs, **s}
        if factor is not None:
            config.update(stretched_schedule(study.reid_config("musp", study.seeds[0], **config), float(factor)))
        out[name] = Variant("musp", config, note=name, seeds=1)
    return out


def musp_pilot_table(study: Study, results, variants: Mapping[str, Variant],
                     margin: float = FORMATION_MARGIN) -> pd.DataFrame:
    """One row per pilot setting: did its attentions form (:func:`musp_mechanism_facts`: mean
    best-matching and position-prior soft IoU with the true faces, their gap, ``formed`` at
    ``margin``), the variation of its kept maps around the prior, its final validation mAP and
    last-quarter change (``results.plateau()``), its test mAP and training minutes."""
    _, formation = musp_mechanism_facts(study, variants, margin=margin)
    plateau = results.plateau()
    test = results.table()
    table = formation.join(plateau[["final val mAP", "last-quarter change"]], how="left")
    table["test mAP"] = test["mAP"].reindex(table.index)
    table["training minutes"] = [_training_minutes(results, name) for name in table.index]
    return table


def _training_minutes(results, name: str) -> float:
    """The first seed's wall time of training (its log's iteration times), in minutes."""
    import numpy as np

    logs = results.logs().get(name) if hasattr(results, "logs") else None
    if logs is None or len(logs) == 0 or "time" not in logs:
        return float("nan")
    its = logs["iter"].to_numpy(float)
    steps = np.diff(np.concatenate([[0.0], its]))
    return float((logs["time"].to_numpy(float) * steps).sum() / 60)


def musp_pilot_figure(study: Study, variants: Mapping[str, Variant], n_images: int = 2):
    """The attention maps of each pilot setting's model (first seed) on the same ``n_images`` test
    images, one figure row per image and setting, titled by the setting."""
    import numpy as np

    from reidlib.viz import attention_maps

    images, _ = study.example_batch(n=n_images)
    maps, titles, n = [], [], None
    for name, v in variants.items():
        model = study.variant_models(v)[0].eval()
        maps.append(model.attention(images).detach().float().cpu().numpy())     # [N, n, h, w]
        n = maps[-1].shape[1]
        titles += [name] * len(images)
    names = [f"part {i + 1}" for i in range(n - 1)] + ["background"]
    return attention_maps(np.concatenate([images.numpy()] * len(maps)), np.concatenate(maps), names=names,
                          titles=titles)


def musp_pilot_reading(table: pd.DataFrame, reference: str = "profile's", margin: float = FORMATION_MARGIN) -> list[str]:
    """Sentences from :func:`musp_pilot_table`'s numbers: per setting its formation gap against the
    position-only prior and the change from the ``reference`` setting's gap and test mAP; then what
    follows for the pages of Tables 5-7, which train with the reference setting."""
    ref = table.loc[reference] if reference in table.index else None
    out = []
    for name, r in table.iterrows():
        words = (f"{name}: best-matching soft IoU {r['best soft IoU']:.1f} against the prior's {r['prior soft IoU']:.1f} "
                 f"(gap {r['gap']:+.1f}; formed at {margin:g}: {'yes' if r['formed'] else 'no'}), test mAP {r['test mAP']:.1f}")
        if ref is not None and name != reference:
            words += f" ({r['gap'] - ref['gap']:+.1f} gap and {r['test mAP'] - ref['test mAP']:+.1f} mAP against {reference})"
        out.append(words + ".")
    formed = [str(n) for n, r in table.iterrows() if r["formed"]]
    if ref is not None and bool(ref["formed"]):
        out.append(f"The attentions form with the {reference} setting, the one Tables 5-7 train with.")
    elif formed:
        out.append(f"Formed only under {', '.join(formed)}: Tables 5-7 still train with the {reference} setting, so "
                   "their claims about n and the activation stay 'not tested here' until the profile adopts it "
                   "(a choice made on validation and formation, before their test verdicts are read).")
    else:
        out.append("No setting tried made the attentions form within the budget: the claims of Tables 5 and 7 stay "
                   "'not tested here'.")
    return out


MUSP_PILOT = Experiment(
    "musp_pilot", "MUSP: do the attentions form?", "musp", "MUSP", rows=tuple(MUSP_PILOT_SETTINGS),
    figures={"attention_maps": FigureText(
        "MUSP (n = 5, first seed) under each pilot setting (the title over each image): the four kept "
        "part attentions and the discarded background map, on the same two test images for every setting.",
        "For each pilot setting, test images followed by MUSP's four part attention maps and its background map")})

__all__ += ["MUSP_PILOT_SETTINGS", "MUSP_PILOT", "stretched_schedule", "musp_pilot_variants", "musp_pilot_table",
            "musp_pilot_figure", "musp_pilot_reading"]
