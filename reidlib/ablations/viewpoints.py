"""Across both papers: how each model copes with viewpoint change. Both papers motivate their part
features with it (SPAN Sec. 1: "the same vehicle ... from different viewpoints"; MUSP Sec. 1), so
the metrics are split by the relation of the query's and the gallery image's orientation
(``same`` / ``adjacent`` / ``opposite``, :func:`reidlib.data.views.view_relation`).

The evidence: per relation, each query is ranked against only the gallery images in that relation
to its own orientation (:func:`relation_per_query`, as :func:`reidlib.metrics.views.evaluate_by_view_relation`
does for the means), which gives per-query AP and first-hit ranks per model and relation, stored
as :mod:`reidlib.claims.per_query` arrays (rows ``<model>=<relation>``, clusters = the queries'
vehicle identities). Each model's difference from the baseline per relation then gets a paired
cluster-bootstrap interval (:func:`relation_differences`, identities resampled) and the page's
sentence is written from those numbers (:func:`relation_sentence`).
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText
from reidlib.ablations.span import SPAN_AGGREGATION_VARIANTS, SPAN_LOSS_SWITCHES
from reidlib.data.views import ORIENTATION8_TO_VIEW5, VIEW_RELATIONS, view_relation
from reidlib.study import Study, Variant

__all__ = ["VIEWPOINT_MODELS", "BASELINE", "viewpoint_evaluations", "viewpoint_table", "viewpoint_pivot",
           "relation_per_query", "relation_arrays", "relation_differences", "relation_sentence",
           "relation_sentences", "relation_differences_figure", "same_view_share", "study_same_view_share",
           "hardest_queries_figure"]

#: the compared models: each paper's method at its default setting, SPAN with concatenated
#: features and Euclidean distance (SPAN Table 2's "w/ Cat"), and the baseline
VIEWPOINT_MODELS: dict[str, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline"),
    "SPAN + CPDM": Variant("span", span=SPAN_LOSS_SWITCHES["full"], note="SPAN trained with all three losses"),
    "SPAN w/ Cat": SPAN_AGGREGATION_VARIANTS["span_cat"],
    "MUSP (n=5)": Variant("musp", {"model.kwargs": {"num_attentions": 5}}, note="softmax, ESE"),
}
#: the model every difference is taken against
BASELINE = "baseline"


def viewpoint_evaluations(study: Study, models: dict[str, Variant] = VIEWPOINT_MODELS) -> dict[str, dict]:
    """Each model (first seed) evaluated once, with its features and ranked distance matrix."""
    return {name: study.evaluate(study.variant_models(v)[0], distance=v.distance, distmat=True)
            for name, v in models.items()}


def _orientations(study: Study) -> tuple[list, list]:
    ds = study.data
    return [r.orientation for r in ds.query], [r.orientation for r in ds.gallery]


def viewpoint_table(study: Study, evaluations: dict[str, dict]) -> pd.DataFrame:
    """R1 / mAP by the view relation of query and gallery for each evaluated model (long format:
    model, relation, R1, R5, mAP, mINP, valid and skipped queries)."""
    from reidlib.metrics.views import evaluate_by_view_relation

    q_or, g_or = _orientations(study)
    frames = []
    for name, res in evaluations.items():
        q, g = res["query"], res["gallery"]
        df = evaluate_by_view_relation(res["distmat"], q["pids"], g["pids"], q["camids"], g["camids"], q_or, g_or)
        df.insert(0, "model", name)
        frames.append(df.rename_axis("relation").reset_index())
    return pd.concat(frames, ignore_index=True)


def viewpoint_pivot(table: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """``metric`` of :func:`viewpoint_table` with the relations as rows in :data:`RELATIONS`' order
    (all, same, adjacent, opposite) and the models as columns in the table's order."""
    models = list(dict.fromkeys(table["model"]))
    out = table.pivot(index="relation", columns="model", values=metric)
    return out.reindex(index=[r for r in RELATIONS if r in out.index], columns=models)


# ------------------------------------------------------------------------------ per-query evidence
def _array(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _codes(orient) -> np.ndarray:
    return np.array([-1 if o is None else int(o) for o in _array(orient).tolist()], dtype=np.int64)


def relation_per_query(distmat, q_pids, g_pids, q_camids, g_camids, q_orient, g_orient, *,
                       ap: str = "mean_precision") -> dict[str, dict[str, np.ndarray]]:
    """``{relation: {"ap", "first_rank"}}`` for every query, in query order, with each query ranked
    against the gallery images in that relation to its orientation (the gallery restriction of
    :func:`reidlib.metrics.views.evaluate_by_view_relation`, whose means these arrays give): AP as
    a fraction (NaN) and the 0-based rank of the first true match (-1) where the query has no true
    match in that gallery, or an unknown orientation."""
    from reidlib.metrics.rank import evaluate_rank

    dist = _array(distmat).astype(np.float64, copy=False)
    qp, gp, qc, gc = (_array(a) for a in (q_pids, g_pids, q_camids, g_camids))
    qo, go = _codes(q_orient), _codes(g_orient)
    rel_of = {(a, b): view_relation(a, b) for a in set(qo[qo >= 0].tolist()) for b in set(go[go >= 0].tolist())}
    out = {}
    for rel in VIEW_RELATIONS:
        aps, firsts = np.full(len(qo), np.nan), np.full(len(qo), -1, dtype=np.int64)
        for o in sorted(set(qo[qo >= 0].tolist())):
            qi = np.flatnonzero(qo == o)
            gi = np.flatnonzero([g >= 0 and rel_of[(o, g)] == rel for g in go.tolist()])
            if len(gi) == 0:
                continue
            with warnings.catch_warnings():            # a query without a true match here is normal
                warnings.simplefilter("ignore", RuntimeWarning)
                res = evaluate_rank(dist[np.ix_(qi, gi)], qp[qi], gp[gi], qc[qi], gc[gi], max_rank=5, ap=ap)
            aps[qi], firsts[qi] = res.query_ap, res.query_first_rank
        out[rel] = {"ap": aps, "first_rank": firsts}
    return out


def relation_arrays(study: Study, evaluations: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """The per-query results of every evaluated model per relation, as :mod:`reidlib.claims.per_query`
    arrays (one seed): rows ``<model>=<relation>`` for ``all`` (the whole gallery) and each of
    :data:`~reidlib.data.views.VIEW_RELATIONS`, the queries' vehicle identities as the clusters."""
    from reidlib.claims.per_query import IDENTITY

    q_or, g_or = _orientations(study)
    arrays: dict[str, np.ndarray] = {}
    rows, units, groups = [], None, None
    for name, res in evaluations.items():
        q, g = res["query"], res["gallery"]
        full = res["rank_result"]
        per = {"all": {"ap": full.query_ap, "first_rank": full.query_first_rank},
               **relation_per_query(res["distmat"], q["pids"], g["pids"], q["camids"], g["camids"], q_or, g_or)}
        for rel in RELATIONS:
            row = f"{name}={rel}"
            rows.append(row)
            arrays[f"{row}|ap"] = np.asarray(per[rel]["ap"], np.float32)[None]
            arrays[f"{row}|first_rank"] = np.asarray(per[rel]["first_rank"], np.int32)[None]
        if units is None:
            units = [str(p).rsplit("/", 1)[-1] for p in q.get("paths", range(len(q["pids"])))]
            groups = _array(q["pids"]).astype(np.int64)
    arrays.update(rows=np.array(rows), units=np.array(units or []), seeds=np.array([study.seeds[0]]),
                  groups=groups if groups is not None else np.zeros(0, np.int64), group_kind=np.array(IDENTITY))
    return arrays


def _models(arrays: Mapping[str, np.ndarray]) -> list[str]:
    from reidlib.claims.per_query import row_names

    return list(dict.fromkeys(r.rsplit("=", 1)[0] for r in row_names(arrays)))


def _clusters_with_queries(groups, valid: np.ndarray) -> int:
    """How many clusters (identities) hold at least one query of the relation (``valid [seeds,
    units]``), not every cluster of the test set."""
    have = np.asarray(valid).reshape(-1, np.asarray(valid).shape[-1]).any(axis=0)
    return int(have.sum()) if groups is None else int(len(np.unique(np.asarray(groups)[have])))


def relation_differences(arrays: Mapping[str, np.ndarray], baseline: str = BASELINE,
                         metrics: Sequence[str] = ("mAP", "R1"), relations: Sequence[str] = VIEW_RELATIONS,
                         *, resamples: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Per relation (in ``relations``' order: same, adjacent, opposite), model and metric: the
    model's and the baseline's value (%), the difference (points) and its 95% paired bootstrap
    interval (``low`` / ``high``; clusters resampled: the queries' vehicle identities,
    :func:`reidlib.claims.per_query.clusters`), the queries with a true match in that relation and
    the clusters resampled. ``arrays``: :func:`relation_arrays`."""
    from reidlib.claims import per_query
    from reidlib.claims.stats import DEFAULT_RESAMPLES, paired_bootstrap

    groups, unit, _ = per_query.clusters(arrays)
    out = []
    for rel in relations:
        for model in _models(arrays):
            if model == baseline:
                continue
            for m in metrics:
                a, b = per_query.common_seeds(per_query.values(arrays, f"{model}={rel}", m),
                                              per_query.values(arrays, f"{baseline}={rel}", m))
                valid = ~np.isnan(a) & ~np.isnan(b)
                if not valid.any():
                    iv = None
                else:
                    iv = paired_bootstrap(a, b, groups=groups, unit=unit, seed=seed,
                                          resamples=DEFAULT_RESAMPLES if resamples is None else resamples)
                nan = float("nan")
                out.append({"relation": rel, "model": model, "metric": m,
                            "value": float(np.nanmean(a)) if valid.any() else nan,
                            "baseline": float(np.nanmean(b)) if valid.any() else nan,
                            "difference": iv.estimate if iv else nan, "low": iv.low if iv else nan,
                            "high": iv.high if iv else nan, "queries": int(valid.sum()),
                            "clusters": _clusters_with_queries(groups, valid), "unit": unit})
    return pd.DataFrame(out, columns=["relation", "model", "metric", "value", "baseline", "difference", "low",
                                      "high", "queries", "clusters", "unit"])


def _fmt(d: float, lo: float, hi: float) -> str:
    return f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" if np.isfinite(d) else "undefined (no query with a true match)"


def relation_sentence(diffs: pd.DataFrame, model: str, metric: str = "mAP", baseline: str = BASELINE) -> str:
    """One sentence from :func:`relation_differences`' numbers for ``model`` and ``metric``: the
    difference and interval per relation, where it is largest, and which intervals exclude zero."""
    d = diffs[(diffs["model"] == model) & (diffs["metric"] == metric)]
    if d.empty:
        raise KeyError(f"no {metric} differences for {model!r}")
    parts = [f"{_fmt(r.difference, r.low, r.high)} on {r.relation}-view pairs" for r in d.itertuples()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    s = f"{model}'s {metric} difference from the {baseline} (points, 95% interval over query identities) is {listed}"
    fin = d[np.isfinite(d["difference"])]
    if len(fin) > 1:
        s += f"; it is largest on {fin.loc[fin['difference'].idxmax(), 'relation']}-view pairs"
    above = [r.relation for r in fin.itertuples() if r.low > 0]
    below = [r.relation for r in fin.itertuples() if r.high < 0]
    clear = ([f"above zero on {', '.join(above)}"] if above else []) + \
        ([f"below zero on {', '.join(below)}"] if below else [])
    s += "; the interval lies " + " and ".join(clear) if clear else "; every interval includes zero"
    return s + "."


def relation_sentences(diffs: pd.DataFrame, metric: str = "mAP", baseline: str = BASELINE) -> list[str]:
    """:func:`relation_sentence` for every model of ``diffs``, in its order."""
    return [relation_sentence(diffs, m, metric, baseline) for m in dict.fromkeys(diffs["model"])]


def relation_differences_figure(diffs: pd.DataFrame, metrics: Sequence[str] = ("mAP", "R1")):
    """Each model's difference from the baseline per view relation with its 95% interval (one panel
    per metric; relations in :func:`relation_differences`' order)."""
    from matplotlib.figure import Figure

    relations = list(dict.fromkeys(diffs["relation"]))
    models = list(dict.fromkeys(diffs["model"]))
    fig = Figure(figsize=(4.2 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    width = 0.7 / max(1, len(models))
    for ax, m in zip(axes, metrics):
        for k, model in enumerate(models):
            d = diffs[(diffs["model"] == model) & (diffs["metric"] == m)].set_index("relation").reindex(relations)
            x = np.arange(len(relations)) + (k - (len(models) - 1) / 2) * width
            ax.errorbar(x, d["difference"], yerr=[d["difference"] - d["low"], d["high"] - d["difference"]],
                        fmt="o", capsize=3, label=model)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(relations)), [f"{r} view" for r in relations])
        ax.set_ylabel(f"{m} difference from the baseline (points)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the data's views
def same_view_share(q_pids, g_pids, q_camids, g_camids, q_orient, g_orient, *, by: str = "orientation") -> np.ndarray:
    """Per query: the share of its true matches (gallery images of its identity from another camera,
    the protocol's; VehicleID's distinct per-image camids keep them all) whose view class is the
    query's (``by="orientation"``: the same 8-way orientation, the page's ``same`` relation;
    ``"view5"``: SPAN's five view classes). NaN for a query of unknown orientation or without a
    true match of known orientation. Works on any dataset with orientations (a user's own too)."""
    qp, gp, qc, gc = (_array(a) for a in (q_pids, g_pids, q_camids, g_camids))
    qo, go = _codes(q_orient), _codes(g_orient)
    if by == "view5":
        qo, go = (np.where(o >= 0, np.take(ORIENTATION8_TO_VIEW5, np.clip(o, 0, 7)), -1) for o in (qo, go))
    elif by != "orientation":
        raise ValueError(f"by={by!r}; expected 'orientation' or 'view5'")
    out = np.full(len(qp), np.nan)
    for i in range(len(qp)):
        match = (gp == qp[i]) & (gc != qc[i]) & (go >= 0)
        if qo[i] >= 0 and match.any():
            out[i] = float(np.mean(go[match] == qo[i]))
    return out


def study_same_view_share(study: Study, by: str = "orientation") -> dict:
    """:func:`same_view_share` on the study's test set, summarised: the mean share over queries (%),
    the share of all (query, true match) pairs (%) and the queries counted."""
    ds = study.data
    q, g = list(ds.query), list(ds.gallery)
    args = ([r.pid for r in q], [r.pid for r in g], [r.camid for r in q], [r.camid for r in g],
            [r.orientation for r in q], [r.orientation for r in g])
    share = same_view_share(*args, by=by)
    qp, gp, qc, gc, qo, go = (np.asarray([-1 if v is None else v for v in a]) for a in args)
    ok = ~np.isnan(share)
    pairs = sum(int(((gp == qp[i]) & (gc != qc[i]) & (go >= 0)).sum()) for i in np.flatnonzero(ok))
    same = sum(int(((gp == qp[i]) & (gc != qc[i]) & (go == qo[i])).sum()) for i in np.flatnonzero(ok))
    return {"by": by, "queries": int(ok.sum()), "mean share (%)": float(np.nanmean(share) * 100) if ok.any() else
            float("nan"), "pooled share (%)": 100.0 * same / pairs if pairs else float("nan")}


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
        "images with green, red or grey borders"),
        "differences": FigureText(
            "Each model's mAP and rank-1 difference from the baseline per view relation of query and gallery "
            "(points), with its 95% paired bootstrap interval over query identities; the grey line is no difference.",
            "Differences from the baseline with intervals for SPAN + CPDM, SPAN w/ Cat and MUSP on same-, "
            "adjacent- and opposite-view pairs, mAP left and rank-1 right")})

__all__ += ["RELATIONS", "VIEWPOINTS"]
