"""Claims about the papers' tables, and what our measurements say about them (the machinery; each
claim lives on the record of the book page that tests it, :mod:`reidlib.ablations`).

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
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from reidlib.claims import per_query
from reidlib.claims.stats import (DEFAULT_RESAMPLES, Interval, bootstrap_interval, combine_verdicts, contrast,
                           mean_statistic, paired_bootstrap, verdict)

__all__ = ["Claim", "beats", "reid_claim", "evaluate_claims", "compare_with_paper", "paper_metrics",
           "summary_table", "summary_sentence", "verdict_display", "VERDICT_RULE"]

VERDICT_RULE = ("holds: the 95% interval of the difference lies above 0; contradicted: below 0; "
                "inconclusive: it contains 0. Intervals: paired bootstrap over test queries (and training "
                "seeds, when there are several).")


@dataclass(frozen=True)
class Claim:
    """A statement of a paper about one of its tables, as comparisons of the table's rows. The
    page that tests it holds it (:attr:`reidlib.ablations.experiment.Experiment.claims`)."""

    text: str
    metric: str                                  #: the metric the paper states ("mAP", "R1", "mean IoU")
    comparisons: tuple = ()                      #: each ``{row: weight}``; all must exceed ``threshold``
    threshold: float = 0.0
    also: tuple = field(default=())              #: further metrics checked alongside (re-ID: the other one)

    def metrics(self) -> tuple:
        return (self.metric,) + tuple(m for m in self.also if m != self.metric)

    def rows(self) -> set:
        """The table rows the claim compares."""
        return {r for c in self.comparisons for r in c}


def beats(a, b) -> dict:
    """The comparison "row ``a`` minus row ``b``"."""
    return {a: 1.0, b: -1.0}


def reid_claim(text: str, metric: str, *comparisons) -> Claim:
    """A re-ID claim: stated on ``metric``, checked on mAP and rank-1."""
    return Claim(text, metric, tuple(comparisons), also=("mAP", "R1"))


def _paper_difference(paper: Optional[Mapping], comparison: Mapping, metric: str) -> float:
    if not paper:
        return float("nan")
    try:
        return float(sum(w * paper[r][metric] for r, w in comparison.items()))
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


def evaluate_claims(claims: Sequence[Claim], arrays: Mapping[str, np.ndarray], *, paper: Optional[Mapping] = None,
                    resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verdicts on ``claims`` from the per-query ``arrays`` of their table; ``paper``: the paper's
    numbers of that table (``{row: {metric: value}}``), for the paper's own difference.

    Returns ``(verdicts, comparisons)``: one row per (claim, metric) — ``claim``, ``metric``,
    ``stated`` (the paper's metric), ``verdict``, ``difference`` and ``low``/``high`` (95%) of the
    deciding comparison (for several comparisons, the one with the lowest lower bound; the claim's
    threshold subtracted, so above 0 means "as claimed"), ``paper difference``, ``seeds``,
    ``resamples``, ``bootstrap seed`` — and one row per comparison."""
    rows_v, rows_c = [], []
    have = set(per_query.row_names(arrays))
    for claim in claims:
        for metric in claim.metrics():
            missing = sorted({str(r) for r in claim.rows()} - have)
            if missing:
                rows_v.append({"claim": claim.text, "metric": metric, "stated": metric == claim.metric,
                               "verdict": "not measured", "note": f"rows {missing} not run"})
                continue
            results = []
            for comp in claim.comparisons:
                iv = _interval(arrays, {str(r): w for r, w in comp.items()}, metric, resamples, seed)
                v = verdict(iv, claim.threshold)
                paper_diff = _paper_difference(paper, comp, metric)
                results.append((iv, v, paper_diff))
                rows_c.append({"claim": claim.text, "metric": metric, "comparison": _describe(comp),
                               "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                               "threshold": claim.threshold, "verdict": v, "paper difference": paper_diff})
            iv, _, paper_diff = min(results, key=lambda t: t[0].low - claim.threshold)
            rows_v.append({"claim": claim.text, "metric": metric, "stated": metric == claim.metric,
                           "verdict": combine_verdicts([v for _, v, _ in results]),
                           "difference": iv.estimate - claim.threshold, "low": iv.low - claim.threshold,
                           "high": iv.high - claim.threshold, "paper difference": paper_diff - claim.threshold,
                           "seeds": iv.seeds, "units": iv.units, "resamples": iv.resamples,
                           "bootstrap seed": iv.seed})
    return pd.DataFrame(rows_v), pd.DataFrame(rows_c)


def _row_key(row):
    return int(row) if str(row).isdigit() else row


def paper_metrics(paper: Mapping, metrics: Sequence[str] = ("R1", "mAP")) -> tuple:
    """The ``metrics`` the paper's table reports for at least one row (MUSP Table 6: rank-1 only)."""
    return tuple(m for m in metrics if any(m in v for v in paper.values()))


def compare_with_paper(paper: Mapping, ours: pd.DataFrame, metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Our table next to the paper's numbers ``paper`` (``{row: {metric: value}}``) for the same
    rows (paper: real data; ours: SynthVeRi); ``metrics``: default those of ``("R1", "mAP")`` the
    paper reports."""
    metrics = paper_metrics(paper) if metrics is None else metrics
    rows = {}
    for row in ours.index:
        rows[row] = {}
        for m in metrics:
            rows[row][f"paper {m}"] = paper.get(_row_key(row), {}).get(m, float("nan"))
            rows[row][f"ours {m}"] = ours.loc[row, m] if m in ours.columns else float("nan")
    return pd.DataFrame.from_dict(rows, orient="index")


def summary_table(results: str | Path, experiments: Iterable[Any], *, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every claim of ``experiments`` (records with ``name``, ``title``, ``paper``, ``claims`` and
    ``paper_numbers``: :class:`reidlib.ablations.experiment.Experiment`) recomputed from the
    per-query files of one profile's results folder (``<results>/<name>/per_query.npz``, e.g.
    ``results/cpu``), and every ablation with published numbers side by side with the paper.
    Returns ``(verdicts, side_by_side)``; experiments without results are listed as "not measured";
    experiments with neither claims nor published numbers are left out."""
    root = Path(results)
    frames, side = [], []
    for exp in experiments:
        if not exp.claims and not exp.paper_numbers:
            continue
        npz = root / exp.name / "per_query.npz"
        if npz.is_file():
            v, _ = evaluate_claims(exp.claims, per_query.load(npz), paper=exp.paper_numbers, resamples=resamples,
                                   seed=seed)
        else:
            v = pd.DataFrame([{"claim": c.text, "metric": c.metric, "stated": True, "verdict": "not measured",
                               "note": "no per-query results for this profile"} for c in exp.claims])
        v.insert(0, "experiment", exp.title)
        v.insert(0, "paper", exp.paper)
        frames.append(v)
        csv = root / exp.name / "table.csv"
        if exp.paper_numbers and csv.is_file():
            ours = pd.read_csv(csv, index_col=0)
            ours.index = [int(i) if str(i).isdigit() else str(i) for i in ours.index]
            for row, vals in exp.paper_numbers.items():
                for metric, pv in vals.items():
                    ov = ours.loc[row, metric] if row in ours.index and metric in ours.columns else float("nan")
                    side.append({"experiment": exp.title, "row": str(row), "metric": metric, "paper": pv, "ours": ov})
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

