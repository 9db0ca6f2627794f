"""Across both papers: how each model copes with viewpoint change. Both papers motivate their part
features with it (SPAN Sec. 1: "the same vehicle ... from different viewpoints"; MUSP Sec. 1), so
the metrics are split by the relation of the query's and the gallery image's orientation
(``same`` / ``adjacent`` / ``opposite``, :func:`reidlib.data.views.view_relation`).
"""
from __future__ import annotations

import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText
from reidlib.ablations.span import SPAN_LOSS_SWITCHES
from reidlib.study import Study, Variant

__all__ = ["VIEWPOINT_MODELS", "viewpoint_evaluations", "viewpoint_table", "hardest_queries_figure"]

#: the compared models: each paper's method at its default setting, and the baseline
VIEWPOINT_MODELS: dict[str, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline"),
    "SPAN + CPDM": Variant("span", span=SPAN_LOSS_SWITCHES["full"], note="SPAN trained with all three losses"),
    "MUSP (n=5)": Variant("musp", {"model.kwargs": {"num_attentions": 5}}, note="softmax, ESE"),
}


def viewpoint_evaluations(study: Study, models: dict[str, Variant] = VIEWPOINT_MODELS) -> dict[str, dict]:
    """Each model (first seed) evaluated once, with its features and ranked distance matrix."""
    return {name: study.evaluate(study.variant_models(v)[0], distance=v.distance, distmat=True)
            for name, v in models.items()}


def viewpoint_table(study: Study, evaluations: dict[str, dict]) -> pd.DataFrame:
    """R1 / mAP by the view relation of query and gallery for each evaluated model (long format:
    model, relation, R1, R5, mAP, mINP, valid and skipped queries)."""
    from reidlib.metrics.views import evaluate_by_view_relation

    ds = study.data
    q_or = [r.orientation for r in ds.query]
    g_or = [r.orientation for r in ds.gallery]
    frames = []
    for name, res in evaluations.items():
        q, g = res["query"], res["gallery"]
        df = evaluate_by_view_relation(res["distmat"], q["pids"], g["pids"], q["camids"], g["camids"], q_or, g_or)
        df.insert(0, "model", name)
        frames.append(df.rename_axis("relation").reset_index())
    return pd.concat(frames, ignore_index=True)


def hardest_queries_figure(evaluation: dict, n: int = 4, topk: int = 8, title: str = ""):
    """The ``n`` queries with the lowest AP of one evaluation, each followed by its ``topk`` nearest
    gallery images (``reidlib.viz.ranked_list``: green = same vehicle, red = another vehicle,
    grey = junk, i.e. same vehicle and camera), read off the evaluation's own distance matrix."""
    from matplotlib.figure import Figure

    from reidlib.viz.ranked import ranked_list, worst_queries

    q, g, dist = evaluation["query"], evaluation["gallery"], evaluation["distmat"]
    worst = worst_queries(evaluation["rank_result"], n=n)
    fig = Figure(figsize=(1.3 * (topk + 1.5), 2.2 * len(worst)))
    axes = fig.subplots(len(worst), 1, squeeze=False)[:, 0]
    for ax, (qi, ap) in zip(axes, worst):
        ranked_list(q["paths"][qi], g["paths"], dist[qi], int(q["pids"][qi]), g["pids"], int(q["camids"][qi]),
                    g["camids"], topk=topk, ax=ax, tile_size=(64, 64), title=f"{title}query {qi}: AP {ap * 100:.1f}%")
    return fig


#: the view relations of the table (``all``: the whole gallery)
RELATIONS = ("all", "same", "adjacent", "opposite")

VIEWPOINTS = Experiment(
    "viewpoints", "Results by viewpoint relation", "across", variants=VIEWPOINT_MODELS,
    rows=tuple(f"{m}={r}" for m in VIEWPOINT_MODELS for r in RELATIONS),
    figures={"hardest_queries": FigureText(
        "Hardest queries under SPAN + CPDM. Borders: green = same vehicle, red = another vehicle, grey = junk "
        "(same vehicle and camera, ignored by the protocol).",
        "The four queries with the lowest AP under SPAN + CPDM, each followed by its eight nearest gallery "
        "images with green, red or grey borders")})

__all__ += ["RELATIONS", "VIEWPOINTS"]
