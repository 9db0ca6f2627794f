"""The stand-in for ImageNet: what the backbone every model starts from was trained on, how it
learned, and the check that it saw none of the vehicles the experiments are evaluated on.

Both papers fine-tune ImageNet-initialised ResNets (SPAN Sec. 4.2, MUSP Sec. 5.2). ImageNet is not
available here (nothing is downloaded), and from random initialisation our small CPU models barely
learn in the time the book can afford. So a profile with ``init = "standin"`` first trains its
backbone on a *generic* task, none of the compared models' (they all learn identities): classifying
SynthVeRi images by their attributes — body type, colour, grille, head- and tail-lights and the
view — on a SynthVeRi folder generated for it alone (another seed, every vehicle different from the
evaluation data, :mod:`reidlib.data.synth.disjoint`), as ImageNet classification is generic. Every
model of the book starts from that backbone (:meth:`reidlib.study.Study.pretrained_backbone`); the
page shows how far its features get on re-ID without fine-tuning (far below any fine-tuned model:
it gives none of them a head start on its own task).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText, interval_cell
from reidlib.study import Study

__all__ = ["pretraining_design", "leakage_table", "near_duplicates_table", "learning_curve", "transfer_table"]


def pretraining_design(study: Study) -> pd.DataFrame:
    """What the stand-in is trained on and how (one row per setting)."""
    ds = study.pretraining_dataset()
    from reidlib.data.attributes import ATTRIBUTES

    rows = {
        "data": f"SynthVeRi {study.prof.synth_preset} at {study.prof.image_size} px, seed "
                f"{study.pretrain_seed} (the evaluation data: seed {study.data_seed})",
        "images (train + query + gallery of that folder)": len(ds.train),
        "identities (their labels are not used)": len({r.pid for r in ds.train}),
        "task": "attribute classification: " + ", ".join(f"{a} ({len(c)} classes)" for a, c in ATTRIBUTES.items()),
        "model": f"{study.prof.reid_backbone} (last stride 1), global average pooling, one linear classifier "
                 "per attribute; mean cross-entropy over attributes",
        "iterations": study.prof.pretrain_iters,
        "batch": f"{study.prof.batch_p * study.prof.batch_k} shuffled images",
        "input": f"{study.prof.input_size[0]} x {study.prof.input_size[1]}",
    }
    return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]})


def leakage_table(study: Study) -> pd.DataFrame:
    """Vehicles the pretraining data share with the evaluation data, by three definitions (all 0
    for a fair stand-in), and image files shared (by content hash)."""
    import hashlib

    from reidlib.data.synth.disjoint import shared_vehicles

    preset = study.prof.synth_preset
    shared = shared_vehicles(preset, study.pretrain_seed, preset, study.data_seed)

    def hashes(recs):
        return {hashlib.sha1(Path(r.path).read_bytes()).hexdigest() for r in recs}

    pre = hashes(study.pretraining_dataset().train)
    ev = study.data
    ev_hashes = hashes(list(ev.train) + list(ev.query) + list(ev.gallery))
    rows = [{"shared with the evaluation data": "identities (every appearance attribute)", "count": shared["identities"]},
            {"shared with the evaluation data": "identity-detail combinations (type, colour, grille, lights, "
                                                "stickers, decals, stripes, roof, wheels and plate)",
             "count": shared["detail combinations"]},
            {"shared with the evaluation data": "licence plates", "count": shared["plates"]},
            {"shared with the evaluation data": "image files (identical content)", "count": len(pre & ev_hashes)}]
    return pd.DataFrame(rows)


def near_duplicates_table(study: Study) -> pd.DataFrame:
    """How close the evaluation vehicles come to the pretraining ones: for each evaluation vehicle
    the fewest discrete attributes (body type, colour, grille, lights, and each identity detail;
    the plate left out) in which its nearest pretraining vehicle differs
    (:func:`reidlib.data.synth.disjoint.nearest_identity_distances`), as a histogram. A
    near-duplicate (0 or 1 differing attributes) would let the stand-in recognise a test vehicle."""
    from reidlib.data.synth.disjoint import nearest_identity_distances

    preset = study.prof.synth_preset
    near = nearest_identity_distances(preset, study.pretrain_seed, preset, study.data_seed)
    hist = near["histogram"]
    top = max(max(hist, default=0), 3)
    return pd.DataFrame({"differing attributes (of %d)" % len(near["fields"]): list(range(top + 1)),
                         "evaluation vehicles": [hist.get(d, 0) for d in range(top + 1)]})


def _median(hist: dict) -> float:
    values = [d for d, n in sorted(hist.items()) for _ in range(n)]
    return float(pd.Series(values).median()) if values else float("nan")


def learning_curve(study: Study) -> pd.DataFrame:
    """The stand-in's training log (iteration, loss, attribute accuracies)."""
    from reidlib.engine.logging import read_log

    _, info = study.pretrained_backbone(study.prof.reid_backbone)
    log = read_log(Path(info["out_dir"]) / "log.jsonl")
    accs = [c for c in log.columns if c.startswith("acc_")]
    if accs and "acc" not in log:             # one accuracy line: the mean over the attributes
        log["acc"] = log[accs].mean(axis=1)
    return log


def transfer_table(study: Study) -> pd.DataFrame:
    """How far the stand-in alone gets on the evaluation data (its features, no fine-tuning),
    against an untrained network of the same architecture: the levels every fine-tuned model of
    the book starts from (:meth:`reidlib.study.Study.reference_levels`)."""
    return study.reference_levels()


PRETRAINING = Experiment(
    "pretraining", "A stand-in for ImageNet", "benchmark",
    figures={"learning_curve": FigureText("The stand-in's learning curve.",
                                          "Training loss and attribute accuracy of the stand-in against iterations")})

__all__ += ["PRETRAINING"]


# ------------------------------------------------------------------------------------------------
# does the stand-in favour a model? each model's gain from it (first training seed)
# ------------------------------------------------------------------------------------------------

#: what "random initialisation" changes in a row: the re-ID trunk, and for SPAN also its mask
#: network's trunk (SPAN step 1, the SPAN pilot's "random initialisation" run)
RANDOM_INIT = {"model.weights": None}


def _standin_gain_variants() -> dict:
    from dataclasses import replace

    from reidlib.ablations.musp import MUSP_ATTENTION_VARIANTS
    from reidlib.ablations.span import SPAN_LOSS_VARIANTS

    models = {"baseline": SPAN_LOSS_VARIANTS["baseline"], "SPAN + CPDM": SPAN_LOSS_VARIANTS["full"],
              "MUSP (n = 5)": MUSP_ATTENTION_VARIANTS[5]}
    out = {}
    for name, v in models.items():
        out[f"{name}, stand-in"] = replace(v, seeds=1, note=f"{v.note}; the stand-in backbone (every page's start)")
        out[f"{name}, random init"] = replace(
            v, seeds=1, config={**v.config, **RANDOM_INIT},
            span={**v.span, **RANDOM_INIT} if v.model == "span" else v.span,
            note=f"{v.note}; random initialisation" + (" (re-ID trunk and mask network)" if v.model == "span" else ""))
    return out


#: the page's rows: each headline model at its first training seed, from the stand-in (the same runs
#: as its own page's first seed) and from random initialisation
STANDIN_GAIN_VARIANTS: dict = _standin_gain_variants()
#: the models of :data:`STANDIN_GAIN_VARIANTS`, in order
STANDIN_GAIN_MODELS = ("baseline", "SPAN + CPDM", "MUSP (n = 5)")


def standin_gain_table(results, metrics=("mAP", "R1")) -> pd.DataFrame:
    """Per model (:data:`STANDIN_GAIN_MODELS`): its metric from random initialisation and from the
    stand-in, the gain (stand-in minus random) with its 95% paired cluster-bootstrap interval
    (test identities resampled, :mod:`reidlib.claims.stats`), and for the models after the first
    the gain minus the baseline's gain with its interval: how much more (or less) the stand-in
    helps it than the baseline. A stand-in that favours no model gives gain differences near 0
    relative to their intervals."""
    import numpy as np

    from reidlib.claims import per_query
    from reidlib.claims.stats import paired_bootstrap

    arrays = results.arrays()
    groups, unit, _ = per_query.clusters(arrays)
    rows = []
    base = STANDIN_GAIN_MODELS[0]
    for model in STANDIN_GAIN_MODELS:
        row = {"model": model}
        for m in metrics:
            st, rd = per_query.common_seeds(per_query.values(arrays, f"{model}, stand-in", m),
                                            per_query.values(arrays, f"{model}, random init", m))
            gain = paired_bootstrap(st, rd, groups=groups, unit=unit)
            row.update({f"{m} random init": float(np.nanmean(rd)), f"{m} stand-in": float(np.nanmean(st)),
                        f"{m} gain": gain.estimate, f"{m} gain low": gain.low, f"{m} gain high": gain.high})
            if model != base:
                bs, br = per_query.common_seeds(per_query.values(arrays, f"{base}, stand-in", m),
                                                per_query.values(arrays, f"{base}, random init", m))
                d = paired_bootstrap(st - rd, bs - br, groups=groups, unit=unit)
                row.update({f"{m} gain - baseline's": d.estimate, f"{m} gain - baseline's low": d.low,
                            f"{m} gain - baseline's high": d.high})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def standin_gain_display(table: pd.DataFrame, metrics=("mAP", "R1")) -> pd.DataFrame:
    """:func:`standin_gain_table` as the page shows it: per metric the two levels, then each
    difference with its 95% interval in one cell ("+5.8 [-2.5, +13.9]")."""
    rows = []
    for model, r in table.iterrows():
        row = {"model": model}
        for m in metrics:
            row.update({f"{m} random init": f"{r[f'{m} random init']:.1f}", f"{m} stand-in": f"{r[f'{m} stand-in']:.1f}",
                        f"{m} gain": interval_cell(r, f"{m} gain"),
                        f"{m} gain - baseline's": interval_cell(r, f"{m} gain - baseline's")})
        rows.append(row)
    return pd.DataFrame(rows)


def standin_gain_reading(table: pd.DataFrame, metric: str = "mAP") -> list[str]:
    """Sentences from :func:`standin_gain_table`: each model's gain, then per model after the first
    whether its gain differs from the baseline's (the interval of the difference excludes 0)."""
    out = []
    for model, r in table.iterrows():
        out.append(f"{model}: {r[f'{metric} random init']:.1f} from random initialisation, "
                   f"{r[f'{metric} stand-in']:.1f} from the stand-in, a gain of {r[f'{metric} gain']:+.1f} "
                   f"[{r[f'{metric} gain low']:+.1f}, {r[f'{metric} gain high']:+.1f}] {metric}.")
    key = f"{metric} gain - baseline's"
    for model, r in table.iterrows():
        if key not in r or pd.isna(r[key]):
            continue
        lo, hi = r[f"{key} low"], r[f"{key} high"]
        if lo > 0:
            how = "more than it helps the baseline: it favours"
        elif hi < 0:
            how = "less than it helps the baseline: it favours the baseline over"
        else:
            how = "as much as the baseline within the interval: no measurable favour for or against"
        out.append(f"The stand-in helps {model} {how} {model} ({r[key]:+.1f} [{lo:+.1f}, {hi:+.1f}] {metric}).")
    return out


STANDIN_GAIN = Experiment(
    "standin_gain", "Does the stand-in favour a model?", "across", variants=STANDIN_GAIN_VARIANTS,
    figures={"intervals": FigureText(
        "Each headline model (first training seed) from random initialisation and from the stand-in, with "
        "95% intervals. Dotted and dashed lines: an untrained network and the stand-in before fine-tuning.",
        "mAP and rank-1 of the baseline, SPAN + CPDM and MUSP, each from random initialisation and from "
        "the stand-in, with 95% intervals")})

__all__ += ["RANDOM_INIT", "STANDIN_GAIN_VARIANTS", "STANDIN_GAIN_MODELS", "standin_gain_table", "standin_gain_display",
            "standin_gain_reading", "STANDIN_GAIN"]
