"""The claims each ablation is cited for, and what our measurements say about them.

A :class:`Claim` is a statement a paper makes with one of its tables ("SPAN with all three losses
beats the baseline", "n = 5 attentions is best"), written as one or more *comparisons*: linear
contrasts of the table's rows (``{"full": 1, "baseline": -1}``: full minus baseline) that must
exceed a threshold (0 for an ordering). :func:`evaluate_claims` estimates each comparison on the
per-query results of the experiment (:mod:`reidlib.claims.per_query`) with a paired bootstrap interval
(:mod:`reidlib.claims.stats`: queries resampled, and training seeds first when there are several) and
gives the three-valued verdict of :func:`reidlib.claims.stats.verdict`:

* **holds**: the 95% interval of the difference lies above 0 (in the claimed direction);
* **contradicted**: it lies below 0;
* **inconclusive**: it contains 0 — the data cannot tell.

A claim with several comparisons holds when all hold and is contradicted when any is. Every
re-ID claim is checked on mAP and on rank-1; its verdict is that of the metric the paper states.
The papers' published numbers (:mod:`reidlib.claims.paper`) give the paper's own difference for
orientation only: real data, other backbones and schedules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from reidlib.claims import per_query
from reidlib.claims.stats import (DEFAULT_RESAMPLES, Interval, bootstrap_interval, combine_verdicts, contrast,
                           mean_statistic, paired_bootstrap, verdict)

__all__ = ["Claim", "CLAIMS", "EXPERIMENT_TITLES", "claims_for", "evaluate_claims", "compare_with_paper",
           "summary_table", "summary_sentence", "verdict_display", "VERDICT_RULE"]

VERDICT_RULE = ("holds: the 95% interval of the difference lies above 0; contradicted: below 0; "
                "inconclusive: it contains 0. Intervals: paired bootstrap over test queries (and training "
                "seeds, when there are several).")


@dataclass(frozen=True)
class Claim:
    """A statement of a paper about one of its tables, as comparisons of the table's rows."""

    experiment: str
    text: str
    metric: str                                  #: the metric the paper states ("mAP", "R1", "mean IoU")
    comparisons: tuple = ()                      #: each ``{row: weight}``; all must exceed ``threshold``
    threshold: float = 0.0
    also: tuple = field(default=())              #: further metrics checked alongside (re-ID: the other one)

    def metrics(self) -> tuple:
        return (self.metric,) + tuple(m for m in self.also if m != self.metric)


def _beats(a, b) -> dict:
    return {a: 1.0, b: -1.0}


def _reid(experiment: str, text: str, metric: str, *comparisons) -> Claim:
    return Claim(experiment, text, metric, tuple(comparisons), also=("mAP", "R1"))


CLAIMS: list[Claim] = [
    _reid("span_losses", "SPAN trained with all three losses beats the baseline", "mAP", _beats("full", "baseline")),
    _reid("span_losses", "all three losses beat every partial combination", "mAP",
          _beats("full", "only_recon"), _beats("full", "wo_area"), _beats("full", "wo_div")),
    _reid("span_aggregation", "concatenated part features beat an FC aggregation", "mAP",
          _beats("span_cat", "span_fc")),
    _reid("span_aggregation", "CPDM beats Euclidean distance on the same concatenated features", "mAP",
          _beats("span_cpdm", "span_cat")),
    _reid("span_aggregation", "SPAN w/ CPDM beats the baseline", "mAP", _beats("span_cpdm", "baseline")),
    _reid("musp_attentions", "n = 5 attentions gives the best mAP", "mAP",
          *[_beats(5, n) for n in (2, 3, 4, 6)]),
    _reid("musp_attentions", "four or more attentions beat fewer than four (mean over n)", "mAP",
          {4: 1 / 3, 5: 1 / 3, 6: 1 / 3, 2: -1 / 2, 3: -1 / 2}),
    _reid("musp_ese", "ESE improves rank-1", "R1", _beats("with_ese", "without_ese")),
    _reid("musp_activation", "softmax attention beats sigmoid attention", "mAP", _beats("softmax", "sigmoid")),
    # mask quality: the papers publish no numbers; the SPAN supplementary's choice of a and m, and
    # Fig. 4's multi-digit localisation (qualitative in the paper; our proxy: mean mask IoU >= 50%)
    Claim("span_hyperparams", "a = 0.7 (the paper's choice) gives the best mask IoU among a = 0.5, 0.7, 0.9",
          "mean IoU", (_beats("a=0.7", "a=0.5"), _beats("a=0.7", "a=0.9"))),
    Claim("span_hyperparams", "m = 0.04 (the paper's choice) gives a better mask IoU than m = 0",
          "mean IoU", (_beats("m=0.04", "m=0"),)),
    Claim("multidigit", "SPAN localises each digit from image-level labels alone, with the paper's loss weights "
          "(Fig. 4; proxy: mean mask IoU above 50%)", "mean IoU", ({"paper weights": 1.0},), threshold=50.0),
    Claim("multidigit", "SPAN localises each digit from image-level labels alone, with our adjustment "
          "(reconstruction weight x10, larger digits; same proxy)", "mean IoU",
          ({"recon x10, larger digits": 1.0},), threshold=50.0),
]

EXPERIMENT_TITLES = {
    "span_losses": "SPAN Table 1 (VeRi-776)",
    "span_aggregation": "SPAN Table 2 (VeRi-776)",
    "span_hyperparams": "SPAN supplementary (a, m; mask IoU)",
    "multidigit": "SPAN Fig. 4 (multi-digit; mask IoU)",
    "musp_attentions": "MUSP Table 5 (VeRi-776)",
    "musp_ese": "MUSP Table 6 (VehicleID small)",
    "musp_activation": "MUSP Table 7 (VeRi-776)",
}
_PAPER = {"span": "SPAN + CPDM", "musp": "MUSP", "multidigit": "SPAN + CPDM"}


def claims_for(experiment: str) -> list[Claim]:
    return [c for c in CLAIMS if c.experiment == experiment]


def _paper_difference(claim: Claim, comparison: Mapping, metric: str) -> float:
    from reidlib.claims.paper import PAPER_TABLES

    if claim.experiment not in PAPER_TABLES:
        return float("nan")
    table = PAPER_TABLES[claim.experiment][1]
    try:
        return float(sum(w * table[r][metric] for r, w in comparison.items()))
    except KeyError:
        return float("nan")


def _interval(arrays, comparison: Mapping, metric: str, resamples: int, seed: int) -> Interval:
    stat = per_query.mean_iou_statistic if metric == "mean IoU" else mean_statistic
    rows = list(comparison)
    vals = {r: per_query.values(arrays, r, metric) for r in rows}
    weights = [comparison[r] for r in rows]
    if len(rows) == 1 and weights[0] == 1.0:
        return bootstrap_interval(vals[rows[0]], statistic=stat, resamples=resamples, seed=seed)
    if len(rows) == 2 and sorted(weights) == [-1.0, 1.0]:
        a, b = (rows[0], rows[1]) if weights[0] > 0 else (rows[1], rows[0])
        return paired_bootstrap(vals[a], vals[b], statistic=stat, resamples=resamples, seed=seed)
    if stat is not mean_statistic:
        raise ValueError(f"{metric}: only single rows and pairs can be compared")
    return bootstrap_interval(contrast(vals, comparison), resamples=resamples, seed=seed)


def _describe(comparison: Mapping) -> str:
    pos = [str(r) for r, w in comparison.items() if w > 0]
    neg = [str(r) for r, w in comparison.items() if w < 0]
    if not neg:
        return pos[0]
    mean = (lambda xs: xs[0] if len(xs) == 1 else "mean(" + ", ".join(xs) + ")")
    return f"{mean(pos)} − {mean(neg)}"


def evaluate_claims(experiment: str, arrays: Mapping[str, np.ndarray], *, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verdicts on the claims of ``experiment`` from its per-query arrays.

    Returns ``(verdicts, comparisons)``: one row per (claim, metric) — ``claim``, ``metric``,
    ``stated`` (the paper's metric), ``verdict``, ``difference`` and ``low``/``high`` (95%) of the
    deciding comparison (for several comparisons, the one with the lowest lower bound; the claim's
    threshold subtracted, so above 0 means "as claimed"), ``paper difference``, ``seeds``,
    ``resamples``, ``bootstrap seed`` — and one row per comparison."""
    rows_v, rows_c = [], []
    have = set(per_query.row_names(arrays))
    for claim in claims_for(experiment):
        for metric in claim.metrics():
            missing = sorted({str(r) for c in claim.comparisons for r in c} - have)
            if missing:
                rows_v.append({"claim": claim.text, "metric": metric, "stated": metric == claim.metric,
                               "verdict": "not measured", "note": f"rows {missing} not run"})
                continue
            results = []
            for comp in claim.comparisons:
                iv = _interval(arrays, {str(r): w for r, w in comp.items()}, metric, resamples, seed)
                v = verdict(iv, claim.threshold)
                paper = _paper_difference(claim, comp, metric)
                results.append((iv, v, paper))
                rows_c.append({"claim": claim.text, "metric": metric, "comparison": _describe(comp),
                               "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                               "threshold": claim.threshold, "verdict": v, "paper difference": paper})
            iv, _, paper = min(results, key=lambda t: t[0].low - claim.threshold)
            rows_v.append({"claim": claim.text, "metric": metric, "stated": metric == claim.metric,
                           "verdict": combine_verdicts([v for _, v, _ in results]),
                           "difference": iv.estimate - claim.threshold, "low": iv.low - claim.threshold,
                           "high": iv.high - claim.threshold, "paper difference": paper - claim.threshold,
                           "seeds": iv.seeds, "units": iv.units, "resamples": iv.resamples,
                           "bootstrap seed": iv.seed})
    return pd.DataFrame(rows_v), pd.DataFrame(rows_c)


def compare_with_paper(experiment: str, ours: pd.DataFrame, metrics: Sequence[str] = ("R1", "mAP")) -> pd.DataFrame:
    """Our table next to the paper's numbers for the same rows (paper: real data; ours: SynthVeRi)."""
    from reidlib.claims.paper import PAPER_TABLES

    _, paper = PAPER_TABLES[experiment]
    rows = {}
    for row in ours.index:
        key = int(row) if str(row).isdigit() else row
        rows[row] = {}
        for m in metrics:
            rows[row][f"paper {m}"] = paper.get(key, {}).get(m, float("nan"))
            rows[row][f"ours {m}"] = ours.loc[row, m] if m in ours.columns else float("nan")
    return pd.DataFrame.from_dict(rows, orient="index")


def summary_table(results: str | Path, *, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every claim's verdict recomputed from the per-query files of one profile's results folder
    (``<results>/<experiment>/per_query.npz``, e.g. ``results/cpu``), and every ablation side by
    side with the paper. Returns ``(verdicts, side_by_side)``; experiments without results are
    listed as "not measured"."""
    from reidlib.claims.paper import PAPER_TABLES

    root = Path(results)
    frames, side = [], []
    for exp, title in EXPERIMENT_TITLES.items():
        npz = root / exp / "per_query.npz"
        paper_name = _PAPER.get(exp.split("_")[0], "")
        if npz.is_file():
            v, _ = evaluate_claims(exp, per_query.load(npz), resamples=resamples, seed=seed)
        else:
            v = pd.DataFrame([{"claim": c.text, "metric": c.metric, "stated": True, "verdict": "not measured",
                               "note": "no per-query results for this profile"} for c in claims_for(exp)])
        v.insert(0, "experiment", title)
        v.insert(0, "paper", paper_name)
        frames.append(v)
        csv = root / exp / "table.csv"
        if exp in PAPER_TABLES and csv.is_file():
            ours = pd.read_csv(csv, index_col=0)
            ours.index = [int(i) if str(i).isdigit() else str(i) for i in ours.index]
            for row, vals in PAPER_TABLES[exp][1].items():
                for metric, pv in vals.items():
                    ov = ours.loc[row, metric] if row in ours.index and metric in ours.columns else float("nan")
                    side.append({"experiment": title, "row": str(row), "metric": metric, "paper": pv, "ours": ov})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(side)


def summary_sentence(verdicts: pd.DataFrame, label: str = "") -> str:
    """One sentence (Markdown) counting the verdicts on the stated metrics, naming each claim."""
    stated = verdicts[verdicts["stated"].astype(bool)]
    parts = []
    for v in ("holds", "contradicted", "inconclusive", "not measured"):
        sel = stated[stated["verdict"] == v]
        if len(sel):
            parts.append(f"**{v}** ({len(sel)}): " + "; ".join(sel["claim"]))
    head = f"On the **{label}** results, " if label else ""
    n_measured = int((stated["verdict"] != "not measured").sum())
    return (head + f"of {len(stated)} claims, {n_measured} were measured. " + ". ".join(parts) + ".").strip()


def verdict_display(verdicts: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The verdict table as a reader wants it: claim, metric, verdict, difference with its interval
    (as text), the paper's difference, seeds. Full claim text, no index column (render with
    :func:`reidlib.viz.show_table`)."""
    def fmt(r):
        if not isinstance(r.get("low"), float) or np.isnan(r.get("low", np.nan)):
            return ""
        return f"{r['difference']:+.{digits}f} [{r['low']:+.{digits}f}, {r['high']:+.{digits}f}]"

    out = pd.DataFrame({
        "claim": verdicts["claim"],
        "metric": verdicts["metric"] + np.where(verdicts["stated"].astype(bool), " (stated)", ""),
        "verdict": verdicts["verdict"],
        "ours: difference [95% interval]": [fmt(r) for r in verdicts.to_dict(orient="records")],
        "paper": [("" if pd.isna(p) else f"{p:+.{digits}f}") for p in verdicts.get("paper difference",
                                                                                  pd.Series([np.nan] * len(verdicts)))],
        "seeds": [("" if pd.isna(s) else int(s)) for s in verdicts.get("seeds", pd.Series([np.nan] * len(verdicts)))],
    })
    if "experiment" in verdicts:
        out.insert(0, "experiment", verdicts["experiment"])
    return out

