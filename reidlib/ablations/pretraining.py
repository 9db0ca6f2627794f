"""The stand-in for ImageNet: what the backbone every model starts from was trained on, how it
learned, and the check that it saw none of the vehicles the experiments are evaluated on.

Both papers fine-tune ImageNet-initialised ResNets (SPAN Sec. 4.2, MUSP Sec. 5.2). ImageNet is not
available here (nothing is downloaded), and from random initialisation our small CPU models barely
learn in the time the book can afford. So a profile with ``init = "standin"`` first trains its
backbone as the strong baseline (ID + triplet) on a SynthVeRi folder generated for it alone —
another seed, every vehicle different from the evaluation data (:mod:`reidlib.data.synth.disjoint`)
— and every model of the book starts from that backbone (:meth:`reidlib.study.Study.pretrained_backbone`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText
from reidlib.study import Study

__all__ = ["pretraining_design", "leakage_table", "learning_curve", "transfer_table"]


def pretraining_design(study: Study) -> pd.DataFrame:
    """What the stand-in is trained on and how (one row per setting)."""
    ds = study.pretraining_dataset()
    rows = {
        "data": f"SynthVeRi {study.prof.synth_preset} at {study.prof.image_size} px, seed "
                f"{study.pretrain_seed} (the evaluation data: seed {study.data_seed})",
        "images (train + query + gallery of that folder)": len(ds.train),
        "identities": len({r.pid for r in ds.train}),
        "model": f"strong baseline, {study.prof.reid_backbone}, last stride 1",
        "iterations": study.prof.pretrain_iters,
        "batch": f"P x K = {study.prof.batch_p} x {study.prof.batch_k}",
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
                                                "stickers, decals, stripes, roof, wheels)",
             "count": shared["detail combinations"]},
            {"shared with the evaluation data": "licence plates", "count": shared["plates"]},
            {"shared with the evaluation data": "image files (identical content)", "count": len(pre & ev_hashes)}]
    return pd.DataFrame(rows)


def learning_curve(study: Study) -> pd.DataFrame:
    """The stand-in's training log (iteration, losses, ID accuracy)."""
    from reidlib.engine.logging import read_log

    _, info = study.pretrained_backbone(study.prof.reid_backbone)
    return read_log(Path(info["out_dir"]) / "log.jsonl")


def transfer_table(study: Study) -> pd.DataFrame:
    """How far the stand-in alone gets on the evaluation data (its features, no fine-tuning),
    against an untrained network of the same architecture: the levels every fine-tuned model of
    the book starts from (:meth:`reidlib.study.Study.reference_levels`)."""
    return study.reference_levels()


PRETRAINING = Experiment(
    "pretraining", "A stand-in for ImageNet", "benchmark",
    figures={"learning_curve": FigureText("The stand-in's learning curve.",
                                          "Training loss and ID accuracy of the stand-in backbone against iterations")})

__all__ += ["PRETRAINING"]
