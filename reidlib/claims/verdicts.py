"""Claims about the papers' tables, and what our measurements say about them (the machinery; each
claim lives on the record of the book page that tests it, :mod:`reidlib.ablations`).

A :class:`Claim` is a statement a paper makes with one of its tables ("SPAN with all three losses
beats the baseline", "n = 5 attentions is best"), written as one or more *comparisons*: linear
contrasts of the table's rows (``{"full": 1, "baseline": -1}``: full minus baseline) that must
exceed a threshold (0 for an ordering). :func:`evaluate_claims` estimates each comparison on the
per-query results of the experiment (:mod:`reidlib.claims.per_query`) with a paired *cluster*
bootstrap interval (:mod:`reidlib.claims.stats`: training seeds first when there are several,
then test identities, all their queries in every trial together) and gives one of four outcomes:

* **holds**: the 95% interval of the difference lies above 0 (in the claimed direction);
* **contradicted**: it lies below 0 (several comparisons: Holm's correction over them);
* **inconclusive**: it contains 0 — said with the design's power: the smallest difference it
  detects at 80% power, against the paper's own difference;
* **not tested here**: a precondition of the claim (:attr:`Claim.preconditions`) failed on the
  facts the page passes in (the mechanism did not form, a compared model did not converge, the
  data cannot separate trained from untrained models), with the reason.

With one training seed, "holds" and "contradicted" read "in this run". Every re-ID claim is checked
on mAP and on rank-1; its verdict is that of the metric the paper states. Claims are the paper's
own or our additional tests (:attr:`Claim.source`); claims on different pages that compare the
same models share one comparison (:attr:`Claim.shared`), computed once by the summary
(:func:`summary_table`) and counted once (:func:`outcome_counts`). :func:`rank_table` gives, per
table, Kendall's τ between our ordering of its rows and the paper's. The papers' published numbers
(:mod:`reidlib.claims.paper`) were measured on real data, other backbones and schedules.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from reidlib.claims import per_query
from reidlib.claims.stats import (DEFAULT_POWER, DEFAULT_RESAMPLES, Interval, bootstrap_interval, claim_verdict,
                                  contrast, mean_statistic, paired_bootstrap, rank_agreement, verdict)

__all__ = ["Claim", "beats", "reid_claim", "evaluate_claims", "separability_facts", "compare_with_paper",
           "paper_metrics", "summary_table", "rank_table", "outcome_counts", "summary_sentence", "verdict_display",
           "resampled_text",
           "VERDICT_RULE", "PRECONDITIONS", "SEPARABLE", "CONVERGED", "MECHANISM", "SOURCES", "OUTCOMES",
           "SEPARATION_MARGIN"]

VERDICT_RULE = ("holds: the 95% interval of the difference lies above 0; contradicted: below 0 (Holm over a "
                "claim's comparisons); inconclusive: it contains 0; not tested here: a precondition failed. "
                "Intervals: paired bootstrap over test identities (and training seeds, when there are several).")

#: the claim's precondition keys: what must be true for the table to test the claim, and how its
#: failure reads
SEPARABLE, CONVERGED, MECHANISM = "models_separable", "converged", "mechanism_formed"
PRECONDITIONS: dict[str, tuple[str, str]] = {
    SEPARABLE: ("models separable", "the data cannot separate the models"),
    CONVERGED: ("models converged", "a compared model did not converge"),
    MECHANISM: ("mechanism formed", "the mechanism did not form"),
}
#: who makes a claim: the paper, or we (an additional test of ours)
SOURCES = ("paper", "ours")
#: what the summary counts, in order
OUTCOMES = ("holds", "contradicted", "inconclusive", "not tested here", "not measured")
#: a trained row within this many points of the untrained network is not separated from it
SEPARATION_MARGIN = 3.0


@dataclass(frozen=True)
class Claim:
    """A statement of a paper about one of its tables, as comparisons of the table's rows. The
    page that tests it holds it (:attr:`reidlib.ablations.experiment.Experiment.claims`)."""

    text: str
    metric: str                                  #: the metric the paper states ("mAP", "R1", "mean IoU")
    comparisons: tuple = ()                      #: each ``{row: weight}``; all must exceed ``threshold``
    threshold: float = 0.0
    also: tuple = field(default=())              #: further metrics checked alongside (re-ID: the other one)
    source: str = "paper"                        #: "paper": the paper's own claim; "ours": our additional test
    preconditions: tuple = ()                    #: keys of :data:`PRECONDITIONS` the verdict needs
    shared: str = ""                             #: names the comparison when other pages' claims make it too

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"{self.text}: source must be one of {SOURCES}, got {self.source!r}")
        unknown = set(self.preconditions) - set(PRECONDITIONS)
        if unknown:
            raise ValueError(f"{self.text}: unknown preconditions {sorted(unknown)}; known: {sorted(PRECONDITIONS)}")

    def metrics(self) -> tuple:
        return (self.metric,) + tuple(m for m in self.also if m != self.metric)

    def rows(self) -> set:
        """The table rows the claim compares."""
        return {r for c in self.comparisons for r in c}


def beats(a, b) -> dict:
    """The comparison "row ``a`` minus row ``b``"."""
    return {a: 1.0, b: -1.0}


def reid_claim(text: str, metric: str, *comparisons, source: str = "paper",
               preconditions: tuple = (SEPARABLE, CONVERGED, MECHANISM), shared: str = "") -> Claim:
    """A re-ID claim: stated on ``metric``, checked on mAP and rank-1; by default it needs models the
    data can separate, that converged, and whose mechanism (SPAN's masks, MUSP's attentions) formed."""
    return Claim(text, metric, tuple(comparisons), also=("mAP", "R1"), source=source,
                 preconditions=tuple(preconditions), shared=shared)


# ------------------------------------------------------------------------------------------------
# preconditions
# ------------------------------------------------------------------------------------------------

def separability_facts(arrays: Mapping[str, np.ndarray], levels: Optional[pd.DataFrame],
                       margin: float = SEPARATION_MARGIN, floor: str = "untrained network") -> dict:
    """The fact :data:`SEPARABLE` from the page's reference levels (:meth:`reidlib.study.Study.reference_levels`):
    per row and metric, whether the row's value (from the re-ID ``arrays``) clears the ``floor``
    level by at least ``margin`` points — a row within a few points of an untrained network is one
    the data cannot tell from no training. ``{}`` when there are no levels or no re-ID rows."""
    if levels is None or floor not in getattr(levels, "index", ()) or not any(k.endswith("|ap") for k in arrays):
        return {}
    out = {}
    for metric in [m for m in ("mAP", "R1") if m in levels.columns]:
        ref = float(levels.loc[floor, metric])
        if not np.isfinite(ref):
            continue
        for row, value in per_query.means(arrays, metric).items():
            ok = bool(value - ref >= margin)
            out[f"{row}|{metric}"] = (ok, "" if ok else f"{row}'s {metric} ({value:.1f}) does not clear the "
                                                          f"{floor}'s ({ref:.1f}) by {margin:g} points")
    return {SEPARABLE: out} if out else {}


def _fact(value) -> Optional[tuple[bool, str]]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value), ""
    ok, reason = value
    return bool(ok), str(reason)


def _preconditions(claim: Claim, metric: str, facts: Optional[Mapping]) -> tuple[list, list, list]:
    """``(failed [(key, reason)], checked [key], not checked [key])`` of the claim's preconditions on
    ``facts``: ``{key: (ok, reason)}`` for the page, or ``{key: {"<row>|<metric>" or "<row>": (ok,
    reason)}}`` per row (failing when any of the claim's rows fails)."""
    failed, checked, unchecked = [], [], []
    for key in claim.preconditions:
        f = (facts or {}).get(key)
        if isinstance(f, Mapping):
            known = [(r, _fact(f.get(f"{r}|{metric}", f.get(r)))) for r in sorted(str(r) for r in claim.rows())]
            known = [(r, x) for r, x in known if x is not None]
            if not known:
                unchecked.append(key)
                continue
            bad = [x[1] or f"row {r}" for r, x in known if not x[0]]
            ok, reason = not bad, "; ".join(bad)
        else:
            x = _fact(f)
            if x is None:
                unchecked.append(key)
                continue
            ok, reason = x
        (checked.append(key) if ok else failed.append((key, reason)))
    return failed, checked, unchecked


def _preconditions_text(failed, checked, unchecked) -> str:
    name = lambda k: PRECONDITIONS[k][0]                      # noqa: E731
    parts = []
    if failed:
        parts.append("failed: " + ", ".join(name(k) for k, _ in failed))
    if checked:
        parts.append("checked: " + ", ".join(name(k) for k in checked))
    if unchecked:
        parts.append("not checked: " + ", ".join(name(k) for k in unchecked))
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------------
# one claim
# ------------------------------------------------------------------------------------------------

def _paper_difference(paper: Optional[Mapping], comparison: Mapping, metric: str) -> float:
    if not paper:
        return float("nan")
    try:
        return float(sum(w * paper[_row_key(r)][metric] for r, w in comparison.items()))
    except KeyError:
        return float("nan")


def _interval(arrays, comparison: Mapping, metric: str, resamples: int, seed: int, groups, unit: str) -> Interval:
    stat = per_query.mean_iou_statistic if metric == "mean IoU" else mean_statistic
    rows = list(comparison)
    vals = dict(zip(rows, per_query.common_seeds(*[per_query.values(arrays, r, metric) for r in rows])))
    weights = [comparison[r] for r in rows]
    kw = dict(statistic=stat, resamples=resamples, seed=seed, groups=groups, unit=unit)
    if len(rows) == 1 and weights[0] == 1.0:
        return bootstrap_interval(vals[rows[0]], **kw)
    if len(rows) == 2 and sorted(weights) == [-1.0, 1.0]:
        a, b = (rows[0], rows[1]) if weights[0] > 0 else (rows[1], rows[0])
        return paired_bootstrap(vals[a], vals[b], **kw)
    if stat is not mean_statistic:
        raise ValueError(f"{metric}: only single rows and pairs can be compared")
    return bootstrap_interval(contrast(vals, comparison), **kw)


def _describe(comparison: Mapping) -> str:
    pos = [str(r) for r, w in comparison.items() if w > 0]
    neg = [str(r) for r, w in comparison.items() if w < 0]
    if not neg:
        return pos[0]
    mean = (lambda xs: xs[0] if len(xs) == 1 else "mean(" + ", ".join(xs) + ")")
    return f"{mean(pos)} − {mean(neg)}"


def _power(outcome: str, claim: Claim, intervals, paper_diffs, mdes, single_verdicts) -> tuple:
    """``(powered, the comparison it is judged on)``: whether every comparison that decides the
    outcome (for an inconclusive claim, those that do not hold) has a paper difference at least our
    minimum detectable difference; judged on the one with the least margin. ``powered`` is None
    when the paper gives no difference."""
    cands = [i for i in range(len(intervals)) if outcome != "inconclusive" or single_verdicts[i] != "holds"]
    cands = [i for i in cands if np.isfinite(paper_diffs[i] - claim.threshold) and np.isfinite(mdes[i])]
    if not cands:
        return None, None
    i = min(cands, key=lambda j: paper_diffs[j] - claim.threshold - mdes[j])
    return bool(paper_diffs[i] - claim.threshold >= mdes[i]), i


def _reading(outcome: str, seeds: int, powered, judged, claim: Claim, paper_diffs, mdes, deciding: int,
             failed) -> str:
    if outcome == "not tested here":
        return "not tested here: " + "; ".join(f"{PRECONDITIONS[k][1]} ({r})" if r else PRECONDITIONS[k][1]
                                               for k, r in failed)
    if outcome in ("holds", "contradicted"):
        return outcome + (" in this run" if seeds == 1 else "")
    if powered is None:
        return f"inconclusive (the paper gives no difference; we would detect {mdes[deciding]:.1f})"
    which = f" ({_describe(claim.comparisons[judged])})" if len(claim.comparisons) > 1 else ""
    pd_ = paper_diffs[judged] - claim.threshold
    if powered:
        return (f"inconclusive (powered: we would have seen the paper's effect, its {pd_:+.1f}{which} "
                f"against our {mdes[judged]:.1f})")
    return f"inconclusive (underpowered: the paper's {pd_:+.1f}{which} is below our {mdes[judged]:.1f})"


def _not_measured(claim: Claim, metric: str, note: str) -> dict:
    return {"claim": claim.text, "metric": metric, "stated": metric == claim.metric, "source": claim.source,
            "shared": claim.shared, "verdict": "not measured", "reading": "not measured", "note": note}


def _evaluate_one(claim: Claim, metric: str, arrays, paper, facts, resamples, seed, power, clusters):
    groups, unit, group_note = clusters
    comps = [{str(r): w for r, w in comp.items()} for comp in claim.comparisons]
    ivs = [_interval(arrays, c, metric, resamples, seed, groups, unit) for c in comps]
    outcome, deciding, correction = claim_verdict(ivs, claim.threshold)
    singles = [verdict(iv, claim.threshold) for iv in ivs]
    paper_diffs = [_paper_difference(paper, c, metric) for c in comps]
    mdes = [iv.detectable(power) for iv in ivs]
    qivs = None
    if groups is not None:            # the query-level interval, as if queries were independent
        qivs = [_interval(arrays, c, metric, resamples, seed, None, "query") for c in comps]
    failed, checked, unchecked = _preconditions(claim, metric, facts)
    would = outcome
    if failed:
        outcome = "not tested here"
    powered, judged = _power(would, claim, ivs, paper_diffs, mdes, singles)
    iv, thr = ivs[deciding], claim.threshold
    notes = [n for n in (group_note, f"the interval alone would read: {would}" if failed else "") if n]
    if correction and would != "contradicted" and "contradicted" in singles:
        notes.append(f"uncorrected, {_describe(comps[singles.index('contradicted')])} would be contradicted; "
                     f"after {correction}, not")
    row = {"claim": claim.text, "metric": metric, "stated": metric == claim.metric, "source": claim.source,
           "shared": claim.shared, "verdict": outcome,
           "reading": _reading(outcome, iv.seeds, powered, judged, claim, paper_diffs, mdes, deciding, failed),
           "difference": iv.estimate - thr, "low": iv.low - thr, "high": iv.high - thr,
           "paper difference": paper_diffs[deciding] - thr, "detectable": mdes[deciding], "powered": powered,
           "correction": correction, "preconditions": _preconditions_text(failed, checked, unchecked),
           "unit": iv.unit, "clusters": iv.clusters, "seeds": iv.seeds, "units": iv.units,
           "resamples": iv.resamples, "bootstrap seed": iv.seed, "note": "; ".join(notes)}
    if qivs is not None:
        qv, _, _ = claim_verdict(qivs, thr)
        row.update({"query low": qivs[deciding].low - thr, "query high": qivs[deciding].high - thr,
                    "query verdict": qv})
    comparisons = []
    for k, (c, civ) in enumerate(zip(comps, ivs)):
        comparisons.append({"claim": claim.text, "metric": metric, "comparison": _describe(c),
                            "estimate": civ.estimate, "low": civ.low, "high": civ.high, "se": civ.se,
                            "detectable": mdes[k], "threshold": thr, "verdict": singles[k],
                            "paper difference": paper_diffs[k], "unit": civ.unit, "clusters": civ.clusters,
                            **({"query low": qivs[k].low, "query high": qivs[k].high} if qivs else {})})
    return row, comparisons


def evaluate_claims(claims: Sequence[Claim], arrays: Mapping[str, np.ndarray], *, paper: Optional[Mapping] = None,
                    facts: Optional[Mapping] = None, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    power: float = DEFAULT_POWER) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verdicts on ``claims`` from the per-query ``arrays`` of their table; ``paper``: the paper's
    numbers of that table (``{row: {metric: value}}``), for the paper's own difference; ``facts``:
    what the page knows about the claims' preconditions (``{key: (ok, reason)}``, or per row
    ``{key: {"<row>|<metric>": (ok, reason)}}``; :func:`separability_facts`); a precondition without
    a fact is "not checked", and says so.

    Returns ``(verdicts, comparisons)``: one row per (claim, metric) — ``claim``, ``metric``,
    ``stated`` (the paper's metric), ``source``, ``shared``, ``verdict`` (one of the four outcomes,
    or "not measured"), ``reading`` (the verdict as the page says it), ``difference`` and
    ``low``/``high`` (95%) of the deciding comparison (the first contradicted, else the one with
    the lowest lower bound; the claim's threshold subtracted, so above 0 means "as claimed"),
    ``paper difference``, ``detectable`` (the smallest difference the design detects at ``power``),
    ``powered``, ``correction``, ``preconditions``, ``unit`` and ``clusters`` (what was resampled),
    ``seeds``, ``resamples``, ``bootstrap seed``, ``note``, and, where identities are known, the
    query-level ``query low``/``query high``/``query verdict`` — and one row per comparison."""
    rows_v, rows_c = [], []
    have = set(per_query.row_names(arrays))
    clusters = per_query.clusters(arrays)
    for claim in claims:
        for metric in claim.metrics():
            missing = sorted({str(r) for r in claim.rows()} - have)
            if missing:
                rows_v.append(_not_measured(claim, metric, f"rows {missing} not run"))
                continue
            row, comps = _evaluate_one(claim, metric, arrays, paper, facts, resamples, seed, power, clusters)
            rows_v.append(row)
            rows_c.extend(comps)
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


# ------------------------------------------------------------------------------------------------
# the summary: every page's claims from one results folder
# ------------------------------------------------------------------------------------------------

def _page_facts(folder: Path, arrays) -> dict:
    """The facts a page recorded (the ``facts`` of its metrics: ``<page>/metrics.json`` as the page
    wrote it, or ``<page>.json`` as the runner keeps it) and, where it recorded its reference levels
    (``levels.csv``) but no separability fact, :func:`separability_facts` from them."""
    facts: dict = {}
    runner_record = folder.with_name(folder.name + ".json")
    if (folder / "metrics.json").is_file():
        facts.update(json.loads((folder / "metrics.json").read_text()).get("facts") or {})
    elif runner_record.is_file():
        facts.update((json.loads(runner_record.read_text()).get("metrics") or {}).get("facts") or {})
    levels = folder / "levels.csv"
    if SEPARABLE not in facts and arrays is not None and levels.is_file():
        facts.update(separability_facts(arrays, pd.read_csv(levels, index_col=0)))
    return facts


def _compared_values(claim: Claim, arrays) -> list:
    """The per-unit values of the rows a claim compares, in the order of its comparisons' weights
    (what must be equal for two claims to compare the same models)."""
    out = []
    for comp in claim.comparisons:
        for r, _ in sorted(comp.items(), key=lambda kv: -kv[1]):
            out.append(per_query.values(arrays, r, claim.metric))
    return out


def _same_values(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def summary_table(results: str | Path, experiments: Iterable[Any], *, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every claim of ``experiments`` (records with ``name``, ``title``, ``paper``, ``claims`` and
    ``paper_numbers``: :class:`reidlib.ablations.experiment.Experiment`) recomputed from the
    per-query files of one profile's results folder (``<results>/<name>/per_query.npz``, e.g.
    ``results/cpu``) with the facts each page recorded, and every ablation with published numbers
    side by side with the paper. A claim that shares its comparison with an earlier page's
    (:attr:`Claim.shared`, the same rows' per-query results) is not computed again: its rows repeat
    that verdict, name it in ``same as`` and have ``distinct`` False. Returns ``(verdicts,
    side_by_side)``; experiments without results are listed as "not measured"; experiments with
    neither claims nor published numbers are left out."""
    root = Path(results)
    frames, side = [], []
    done: dict[str, tuple] = {}                  # shared name -> (rows, where, compared values)
    for exp in experiments:
        if not exp.claims and not exp.paper_numbers:
            continue
        npz = root / exp.name / "per_query.npz"
        arrays = per_query.load(npz) if npz.is_file() else None
        facts = _page_facts(root / exp.name, arrays)
        rows = []
        for claim in exp.claims:
            if arrays is None:
                rows.append({**_not_measured(claim, claim.metric, "no per-query results for this profile"),
                             "same as": "", "distinct": True})
                continue
            prior = done.get(claim.shared) if claim.shared else None
            if prior is not None and all(str(r) in per_query.row_names(arrays) for r in claim.rows()):
                if _same_values(prior[2], _compared_values(claim, arrays)):
                    rows.extend({**r, "claim": claim.text, "source": claim.source, "same as": prior[1],
                                 "distinct": False} for r in prior[0])
                    continue
            v, _ = evaluate_claims([claim], arrays, paper=exp.paper_numbers, facts=facts, resamples=resamples,
                                   seed=seed)
            new = v.to_dict(orient="records")
            note = ""
            if prior is not None:
                note = f"compares the models of {prior[1]!r} by name, but their per-query results differ"
            rows.extend({**r, "same as": "", "distinct": True,
                         "note": "; ".join(n for n in (r.get("note") or "", note) if n)} for r in new)
            if claim.shared and prior is None and all(r["verdict"] != "not measured" for r in new):
                done[claim.shared] = (new, f"{exp.title}: {claim.text}", _compared_values(claim, arrays))
        v = pd.DataFrame(rows)
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


def _rank_metric(exp) -> str:
    stated = [c.metric for c in exp.claims]
    for m in stated + ["mAP", "R1"]:
        if sum(m in v for v in exp.paper_numbers.values()) >= 2:
            return m
    return "mAP"


def rank_table(results: str | Path, experiments: Iterable[Any], *, resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0) -> pd.DataFrame:
    """Per table with published numbers, Kendall's τ between our ordering of its rows and the
    paper's (on the metric its claims state), with the bootstrap interval over the same draws of
    seeds and identities as the verdicts (:func:`reidlib.claims.stats.rank_agreement`): 1 is the
    paper's order, -1 its reverse. One row per table: experiment, table, metric, rows, τ, low,
    high, unit, clusters, note."""
    root = Path(results)
    out = []
    for exp in experiments:
        if not exp.paper_numbers:
            continue
        metric = _rank_metric(exp)
        row = {"experiment": exp.title, "table": exp.source, "metric": metric, "rows": 0, "τ": float("nan"),
               "low": float("nan"), "high": float("nan"), "unit": "", "clusters": 0, "note": ""}
        npz = root / exp.name / "per_query.npz"
        if not npz.is_file():
            out.append({**row, "note": "not measured"})
            continue
        arrays = per_query.load(npz)
        names = [r for r, v in exp.paper_numbers.items() if metric in v and str(r) in per_query.row_names(arrays)]
        if len(names) < 2:
            out.append({**row, "rows": len(names), "note": "fewer than two rows with the paper's numbers"})
            continue
        groups, unit, note = per_query.clusters(arrays)
        iv = rank_agreement(per_query.common_seeds(*[per_query.values(arrays, r, metric) for r in names]),
                            [exp.paper_numbers[r][metric] for r in names], groups=groups, unit=unit,
                            resamples=resamples, seed=seed)
        ties = len({exp.paper_numbers[r][metric] for r in names}) < len(names)
        out.append({**row, "rows": len(names), "τ": iv.estimate, "low": iv.low, "high": iv.high, "unit": iv.unit,
                    "clusters": iv.clusters,
                    "note": "; ".join(n for n in (note, "the paper ties some rows (τ-b)" if ties else "") if n)})
    return pd.DataFrame(out)


def _distinct(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The stated-metric rows, each comparison once (shared comparisons counted once)."""
    v = verdicts[verdicts["stated"].astype(bool)]
    if "distinct" in v:
        v = v[v["distinct"].fillna(True).astype(bool)]
    return v


def outcome_counts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """How many distinct comparisons (stated metric; a comparison several pages make counted once)
    had each outcome, the paper's claims and our additional tests separately."""
    v = _distinct(verdicts)
    source = v["source"] if "source" in v else pd.Series(["paper"] * len(v), index=v.index)
    cols = {"paper's claims": "paper", "our tests": "ours"}
    return pd.DataFrame({name: [int(((v["verdict"] == o) & (source == s)).sum()) for o in OUTCOMES]
                         for name, s in cols.items()}, index=list(OUTCOMES))


def summary_sentence(verdicts: pd.DataFrame, label: str = "") -> str:
    """One paragraph (Markdown) counting the outcomes over distinct comparisons on the stated
    metrics, the paper's claims and ours separately, naming each claim."""
    v = _distinct(verdicts)
    n_shared = int(len(verdicts[verdicts["stated"].astype(bool)]) - len(v))
    source = v["source"] if "source" in v else pd.Series(["paper"] * len(v), index=v.index)
    out = []
    for s, who in (("paper", "the papers' claims"), ("ours", "our additional tests")):
        sel = v[source == s]
        if not len(sel):
            continue
        parts = [f"**{o}** ({int((sel['verdict'] == o).sum())}): " + "; ".join(sel[sel["verdict"] == o]["claim"])
                 for o in OUTCOMES if (sel["verdict"] == o).any()]
        out.append(f"Of {who}, {len(sel)} distinct comparisons: " + ". ".join(parts) + ".")
    head = f"On the **{label}** results, " if label else ""
    out = [o[0].lower() + o[1:] if head and k == 0 else o for k, o in enumerate(out)]
    tail = (f" ({n_shared} claim{'s' if n_shared != 1 else ''} repeat{'s' if n_shared == 1 else ''} a comparison "
            "made on an earlier page and {} counted once.)".format("is" if n_shared == 1 else "are")
            if n_shared else "")
    return (head + " ".join(out) + tail).strip()


_PLURAL = {"query": "queries", "vehicle identity": "vehicle identities", "image": "images", "cluster": "clusters"}


def resampled_text(clusters, unit) -> str:
    """What a bootstrap resampled, in words: "100 vehicle identities" ("" when unknown)."""
    if not (isinstance(clusters, (int, float, np.integer, np.floating)) and np.isfinite(clusters)
            and isinstance(unit, str) and unit):
        return ""
    return f"{int(clusters)} {_PLURAL.get(unit, unit) if int(clusters) != 1 else unit}"


def verdict_display(verdicts: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The verdict table as a reader wants it: claim, whose claim, metric, the verdict as said
    (with power, or the failed precondition), difference with its interval (as text), the smallest
    difference the design detects, the paper's difference, seeds, what was resampled; the
    query-level interval only where it would change a verdict, and ``same as`` only where a
    comparison is shared. Full claim text, no index column (render with :func:`reidlib.viz.show_table`)."""
    def num(x) -> bool:
        return isinstance(x, (float, int, np.floating)) and np.isfinite(x)

    def fmt(r, lo="low", hi="high"):
        if not (num(r.get(lo)) and num(r.get(hi))):
            return ""
        return f"{r['difference']:+.{digits}f} [{r[lo]:+.{digits}f}, {r[hi]:+.{digits}f}]"

    recs = verdicts.to_dict(orient="records")
    col = lambda name: [r.get(name) for r in recs]                      # noqa: E731
    reading = [r.get("reading") if isinstance(r.get("reading"), str) else r["verdict"] for r in recs]
    out = pd.DataFrame({
        "claim": verdicts["claim"],
        "source": [s if isinstance(s, str) else "paper" for s in col("source")],
        "metric": verdicts["metric"] + np.where(verdicts["stated"].astype(bool), " (stated)", ""),
        "verdict": reading,
        "ours: difference [95% interval]": [fmt(r) for r in recs],
        "detectable": [f"{x:.{digits}f}" if num(x) else "" for x in col("detectable")],
        "paper": [f"{p:+.{digits}f}" if num(p) else "" for p in col("paper difference")],
        "seeds": [int(s) if num(s) else "" for s in col("seeds")],
        "resampled": [resampled_text(c, u) for c, u in zip(col("clusters"), col("unit"))],
    })
    if any(isinstance(q, str) and q != v for q, v in zip(col("query verdict"), col("verdict"))
           if v not in ("not measured", "not tested here")):
        out["query-level interval (as if independent)"] = [fmt(r, "query low", "query high") for r in recs]
    if any(isinstance(s, str) and s for s in col("same as")):
        out["same as"] = [s if isinstance(s, str) else "" for s in col("same as")]
    if "experiment" in verdicts:
        out.insert(0, "experiment", verdicts["experiment"])
    return out
