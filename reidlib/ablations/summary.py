"""The summary page: every claim of the book's pages re-checked from one profile's results folder,
counted over distinct comparisons (the paper's claims and our additional tests apart), the rank
agreement of each table with the paper's, every table with published numbers as one wide table
beside the paper's (:func:`wide_table`), and one line per distinct comparison saying why our
result may differ from the paper's (:func:`summarise` of :data:`reidlib.ablations.EXPERIMENTS`;
the machinery: :mod:`reidlib.claims.verdicts`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText
from reidlib.claims.stats import DEFAULT_POWER, DEFAULT_RESAMPLES

__all__ = ["SUMMARY", "Summary", "results_folder", "summarise", "wide_table", "show_wide", "why_ours_may_differ",
           "WIDE_METRICS", "DEPARTURES", "BUDGETS"]

SUMMARY = Experiment(
    "summary", "Summary: which claims held", "across",
    figures={"forest": FigureText(
        "Every distinct comparison: our difference and 95% interval over test identities (colour = outcome), "
        "the paper's difference (diamond).",
        "Forest plot: one row per distinct comparison of both papers and of our additional tests, our difference "
        "with its 95% interval coloured by outcome, and the paper's difference")})

#: the headline metrics of a wide table, in column order (those the paper's table reports)
WIDE_METRICS = ("mAP", "R1")

# the rows of book/departures.md (their first cell) that touch a page's claims; the budget rows
# (input size, backbones, schedules, seeds) are said from the profile and the verdicts instead
_ALL = ("data", "initialisation")
_SPAN_STEP1 = ("mask network", "step-1 data", "foreground V")
_SPAN_LOSSES = ("eq. 1 reduction", "eq. 2 reduction", "eq. 3 reduction", "area caps")
_SPAN_REID = ("re-ID ID loss", "optimiser (step 2)", "AP")
_MUSP = ("loss weights", "diversity loss", "value convolution", "global feature", "eq. 4", "test-time weighting",
         "ranked features", "AP")
#: page -> the departures (rows of ``book/departures.md``) that touch its claims; ``(page, claim)``
#: -> further ones for that claim alone
DEPARTURES: dict = {
    "span_losses": _ALL + _SPAN_STEP1 + _SPAN_LOSSES + _SPAN_REID,
    "span_aggregation": _ALL + _SPAN_STEP1 + _SPAN_REID,
    "span_hyperparams": _ALL + _SPAN_STEP1 + ("mask quality",),
    "multidigit": ("mask quality",),
    "musp_attentions": _ALL + _MUSP,
    "musp_ese": _ALL + _MUSP + ("ESE",),
    "musp_activation": _ALL + _MUSP,
    ("span_hyperparams", "a = 0.7 (the paper's choice) gives the best mask IoU among a = 0.5, 0.7, 0.9"):
        ("area caps", "eq. 2 reduction"),
    ("span_hyperparams", "m = 0.04 (the paper's choice) gives a better mask IoU than m = 0"): ("eq. 3 reduction",),
}
#: page -> which of its profile's budgets its compared models train with: "reid" (the re-ID
#: models), "span" (SPAN's step 1, the mask network); pages not named: by their claims' metric
BUDGETS: dict = {
    "span_losses": ("reid", "span"), "span_aggregation": ("reid", "span"),
    "span_hyperparams": ("span",), "multidigit": ("span",),
    "musp_attentions": ("reid",), "musp_ese": ("reid",), "musp_activation": ("reid",),
}
#: the profile whose budget stands for the papers' (:data:`reidlib.study.profiles.PROFILES`)
PAPER_PROFILE = "paper"


def results_folder(profile: str, root: Optional[str | os.PathLike] = None) -> Path:
    """``<root>/<profile>``: one profile's results (``root``: default the project's ``results/``)."""
    from reidlib.utils import paths

    return Path(root or paths.results_dir(profile).parent) / profile


def _num(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and bool(np.isfinite(x))


def _signed(x, digits: int = 1) -> str:
    return f"{x:+.{digits}f}" if _num(x) else ""


def _span(lo, hi, digits: int = 1, signed: bool = False) -> str:
    if not (_num(lo) and _num(hi)):
        return ""
    f = (lambda x: f"{x:+.{digits}f}") if signed else (lambda x: f"{x:.{digits}f}")   # noqa: E731
    return f"[{f(lo)}, {f(hi)}]"


# ------------------------------------------------------------------------------------------------
# one wide table per paper table
# ------------------------------------------------------------------------------------------------

def _row_key(row):
    return int(row) if str(row).isdigit() else str(row)


def _read_table(csv: Path) -> pd.DataFrame:
    ours = pd.read_csv(csv, index_col=0)
    ours.index = [_row_key(i) for i in ours.index]
    return ours


def _settings_of(root: Path, name: str) -> Any:
    """The profile settings a page's runner record kept (``profile_settings``), :data:`UNRECORDED`
    for a record from before they were kept, None without a record."""
    rec = root / f"{name}.json"
    if not rec.is_file():
        return None
    try:
        return json.loads(rec.read_text()).get("profile_settings") or UNRECORDED
    except (ValueError, OSError):
        return None


def _profile_of(root: Path, name: str, default: Optional[str]) -> Optional[str]:
    """The profile a page's results came from: its runner record's (``<root>/<name>.json``), else
    ``default`` (the folder's name when it names a profile)."""
    rec = root / f"{name}.json"
    if rec.is_file():
        try:
            prof = json.loads(rec.read_text()).get("profile")
        except (ValueError, OSError):
            prof = None
        if prof:
            return str(prof)
    return default


def wide_table(results: str | os.PathLike, exp: Experiment, *, metrics=WIDE_METRICS,
               resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Optional[pd.DataFrame]:
    """The page ``exp``'s table beside the paper's, one row per row of the record (the paper's
    order): ``row``, and per metric ``m`` of ``metrics`` the paper reports: ``paper m`` (real
    data), ``ours m`` with ``ours m low``/``ours m high`` (SynthVeRi, from ``<results>/<page>/table.csv``),
    our difference from the reference row ``ours Δm`` with its 95% paired interval ``ours Δm
    low``/``high`` (identities resampled, from ``per_query.npz``; NaN without it) and the paper's
    ``paper Δm``. The reference is :meth:`Experiment.reference_row` (``attrs["reference"]``). None
    when the record has no published numbers or the page no ``table.csv``."""
    from reidlib.claims import per_query
    from reidlib.claims.stats import paired_bootstrap
    from reidlib.claims.verdicts import paper_metrics

    paper = exp.paper_numbers
    csv = Path(results) / exp.name / "table.csv"
    if not paper or not csv.is_file():
        return None
    ours = _read_table(csv)
    metrics = paper_metrics(paper, metrics)
    reference = exp.reference_row()
    npz = Path(results) / exp.name / "per_query.npz"
    arrays = per_query.load(npz) if npz.is_file() else None
    groups, unit, _ = per_query.clusters(arrays) if arrays is not None else (None, "", "")
    have = set(per_query.row_names(arrays)) if arrays is not None else set()

    def mine(row, col):
        return float(ours.loc[row, col]) if row in ours.index and col in ours.columns else float("nan")

    out = []
    for row in exp.rows:
        key, rec = _row_key(row), {"row": str(row)}
        for m in metrics:
            pv = paper.get(key, {}).get(m, float("nan"))
            pref = paper.get(_row_key(reference), {}).get(m, float("nan")) if reference is not None else float("nan")
            diff, lo, hi = float("nan"), float("nan"), float("nan")
            if reference is not None and key != _row_key(reference):
                diff = mine(key, m) - mine(_row_key(reference), m)
                if {str(row), str(reference)} <= have:
                    iv = paired_bootstrap(*per_query.common_seeds(per_query.values(arrays, row, m),
                                                                  per_query.values(arrays, reference, m)),
                                          groups=groups, unit=unit, resamples=resamples, seed=seed)
                    lo, hi = iv.low, iv.high
            rec.update({f"paper {m}": pv, f"ours {m}": mine(key, m), f"ours {m} low": mine(key, f"{m}_low"),
                        f"ours {m} high": mine(key, f"{m}_high"), f"ours Δ{m}": diff, f"ours Δ{m} low": lo,
                        f"ours Δ{m} high": hi,
                        f"paper Δ{m}": pv - pref if key != _row_key(reference) else float("nan")})
        out.append(rec)
    table = pd.DataFrame(out)
    table.attrs.update({"experiment": exp.title, "paper": exp.paper, "source": exp.source, "metrics": metrics,
                        "reference": None if reference is None else str(reference), "unit": unit,
                        "per_query": arrays is not None})
    return table


def show_wide(table: pd.DataFrame, profile: Optional[str] = None, digits: int = 1, metric: Optional[str] = None):
    """A wide table (:func:`wide_table`) as a reader wants it: per metric, the paper's value (real
    data), ours (SynthVeRi) with its 95% interval, and the differences from the reference row, ours
    with its paired interval beside the paper's; no index column, a caption saying whose data is whose.
    ``metric``: the one shown (default the table's first: mAP where the paper has it)."""
    from reidlib.viz import show_table

    metrics, ref = table.attrs.get("metrics", ()), table.attrs.get("reference")
    metrics = (metric,) if metric else tuple(metrics)[:1]    # one metric a table: it fits the page
    ours_label = "ours (SynthVeRi" + (f", {profile} profile)" if profile else ")")
    cols: dict = {("", "row"): table["row"]}
    for m in metrics:
        is_ref = table["row"] == ref
        cols[(m, "paper (real data)")] = [f"{x:.{digits}f}" if _num(x) else "" for x in table[f"paper {m}"]]
        cols[(m, ours_label)] = [f"{x:.{digits}f}" if _num(x) else "" for x in table[f"ours {m}"]]
        cols[(m, "ours: 95% interval")] = [_span(lo, hi, digits) for lo, hi in
                                           zip(table[f"ours {m} low"], table[f"ours {m} high"])]
        cols[(m, f"Δ from {ref}: ours [95%]")] = [
            "reference" if r else " ".join(p for p in (_signed(d, digits), _span(lo, hi, digits, True)) if p)
            for r, d, lo, hi in zip(is_ref, table[f"ours Δ{m}"], table[f"ours Δ{m} low"], table[f"ours Δ{m} high"])]
        cols[(m, f"Δ from {ref}: paper")] = ["reference" if r else _signed(d, digits)
                                             for r, d in zip(is_ref, table[f"paper Δ{m}"])]
    shown = pd.DataFrame(cols)
    shown.columns = pd.MultiIndex.from_tuples(shown.columns)
    if table.attrs.get("per_query"):
        unit = table.attrs.get("unit")
        intervals = ("ours with 95% intervals; our differences with 95% paired intervals"
                     + (f" (resampled by {unit})" if unit else ""))
    else:
        intervals = "ours with 95% intervals (no per-query file: no paired intervals)"
    caption = (f"{table.attrs.get('paper', '')} {table.attrs.get('source', '')}: the paper's numbers are on real "
               f"data; ours on SynthVeRi (synthetic){f', {profile} profile' if profile else ''}; {intervals}.")
    return show_table(shown).set_caption(caption.strip())


# ------------------------------------------------------------------------------------------------
# why ours may differ
# ------------------------------------------------------------------------------------------------

def _backbone(name: str) -> str:
    """"resnet50" -> "ResNet-50"."""
    s = str(name)
    return "ResNet-" + s[len("resnet"):] if s.startswith("resnet") and s[len("resnet"):].isdigit() else s


#: ``settings`` of :func:`_budget_text` for a page whose record predates ``profile_settings``
UNRECORDED = "unrecorded"


def _budget_text(profile: Optional[str], kinds: Iterable[str], settings: Any = None) -> str:
    """The budget for ``kinds`` ("reid", "span") beside the paper profile's: the profile's settings
    the page's record kept (``settings``: its ``profile_settings``), :data:`UNRECORDED` for an older
    record (then it says so rather than quote today's profile), None: ``profile`` as defined today
    (a results folder without records)."""
    from types import SimpleNamespace

    from reidlib.study.profiles import PROFILES

    if settings == UNRECORDED:
        return f"the budget of this {profile or ''} run is not in its older record".replace("  ", " ")
    prof = SimpleNamespace(**settings) if isinstance(settings, Mapping) else PROFILES.get(profile or "")
    paper = PROFILES.get(PAPER_PROFILE)
    if prof is None or paper is None:
        return ""

    def part(p, kind) -> str:
        if kind == "reid":
            h, w = p.input_size
            return f"re-ID {_backbone(p.reid_backbone)} at {h} × {w} px for {p.reid_iters:,} iterations"
        return f"SPAN step 1 {_backbone(p.span_backbone)} at {p.span_size} px for {p.span_iters:,} iterations"

    kinds = tuple(kinds)
    ours, theirs = ", ".join(part(prof, k) for k in kinds), ", ".join(part(paper, k) for k in kinds)
    if ours == theirs:
        return f"the {profile} profile trains at the paper profile's budget ({ours})"
    return f"the {profile} profile's budget: {ours} (the {PAPER_PROFILE} profile: {theirs})"


def _preconditions_words(text) -> str:
    """"checked: a; not checked: b, c" -> "checked (a), not checked (b, c)"."""
    if not isinstance(text, str) or not text:
        return ""
    parts = []
    for p in text.split("; "):
        head, _, body = p.partition(": ")
        parts.append(f"{head} ({body})" if body else head)
    return "preconditions " + ", ".join(parts)


def _departures(page: str, claim: str) -> tuple:
    return tuple(dict.fromkeys(DEPARTURES.get(page, ()) + DEPARTURES.get((page, claim), ())))


def why_ours_may_differ(row: Mapping, page: str = "", profile: Optional[str] = None,
                        power: float = DEFAULT_POWER, settings: Any = None) -> str:
    """Why our verdict row ``row`` (:func:`reidlib.claims.verdicts.summary_table`) may differ from
    the paper's, from recorded facts only: the training seeds, the preconditions (held, failed, not
    checked), the power of the design against the paper's difference, what was resampled, the
    budget of ``profile`` (as the page's record kept it, ``settings``: see :func:`_budget_text`)
    against the paper profile's and the departures (:data:`DEPARTURES`) that touch the page
    ``page``'s claim."""
    from reidlib.claims.per_query import IDENTITY
    from reidlib.claims.verdicts import resampled_text

    if row.get("verdict") == "not measured":
        return str(row.get("note") or "not measured")
    out = []
    seeds = row.get("seeds")
    if _num(seeds):
        out.append("one training seed (training noise is not inside the interval)" if int(seeds) == 1
                   else f"{int(seeds)} training seeds (resampled inside the interval)")
    pre = _preconditions_words(row.get("preconditions"))
    if pre:
        out.append(pre)
    det, pdiff = row.get("detectable"), row.get("paper difference")
    if _num(det) and det > 0:
        at = f"at {power:.0%} power we detect differences of {det:.1f} points"
        if _num(pdiff):
            out.append(f"{at}; the paper's {pdiff:+.1f} is " + ("within reach" if pdiff >= det else "below that"))
        else:
            out.append(f"{at}; the paper gives no difference to compare")
    elif _num(det):
        out.append("every resample gives the same difference (an interval of zero width)")
    unit = row.get("unit")
    if isinstance(unit, str) and unit and unit != IDENTITY:
        what = resampled_text(row.get("clusters"), unit) or unit
        out.append(f"{what} resampled one by one, not by {IDENTITY} (a narrower interval where they are related)")
    budget = _budget_text(profile, BUDGETS.get(page) or (("span",) if row.get("metric") == "mean IoU" else ("reid",)),
                          settings)
    if budget:
        out.append(budget)
    deps = _departures(page, str(row.get("claim", "")))
    if deps:
        out.append("departures: " + ", ".join(deps))
    return "; ".join(out)


def _comparison_lines(verdicts: pd.DataFrame, pages: Mapping[str, str], profiles: Mapping[str, Optional[str]],
                      digits: int = 1, settings: Optional[Mapping[str, Any]] = None) -> pd.DataFrame:
    """One row per distinct comparison (stated metric): the claim, its reading, our difference with
    its interval, the paper's, the claims of later pages that make the same comparison (``also``),
    the "why ours may differ" clause and the Markdown ``line``."""
    stated = verdicts[verdicts["stated"].astype(bool)]
    distinct = stated[stated["distinct"].fillna(True).astype(bool)] if "distinct" in stated else stated
    same = stated["same as"].fillna("") if "same as" in stated else pd.Series("", index=stated.index)
    out = []
    for r in distinct.to_dict(orient="records"):
        where = f"{r['experiment']}: {r['claim']}"
        also = [f"{o['experiment']}: {o['claim']}" for o, s in zip(stated.to_dict(orient="records"), same)
                if s == where]
        page = pages.get(r["experiment"], "")
        why = why_ours_may_differ(r, page, profiles.get(page), settings=(settings or {}).get(page))
        reading = r.get("reading") if isinstance(r.get("reading"), str) else r["verdict"]
        whose = "the paper's claim" if r.get("source", "paper") == "paper" else "our test"
        ours = " ".join(p for p in (_signed(r.get("difference"), digits),
                                    _span(r.get("low"), r.get("high"), digits, True)) if p)
        numbers = ". Ours " + ours if ours else ""
        if ours and _num(r.get("paper difference")):
            numbers += f"; the paper's {r['paper difference']:+.{digits}f} (real data)"
        line = (f"- **{r['experiment']}**: {r['claim']} ({whose}, {r['metric']}): **{reading}**{numbers}."
                + (f" The same comparison: {'; '.join(also)}." if also else "")
                + f"\n  - *Why ours may differ:* {why}.")
        out.append({"experiment": r["experiment"], "claim": r["claim"], "source": r.get("source", "paper"),
                    "metric": r["metric"], "reading": reading, "difference": r.get("difference"),
                    "low": r.get("low"), "high": r.get("high"), "paper difference": r.get("paper difference"),
                    "also": "; ".join(also), "why": why, "line": line})
    return pd.DataFrame(out, columns=["experiment", "claim", "source", "metric", "reading", "difference", "low",
                                      "high", "paper difference", "also", "why", "line"])


# ------------------------------------------------------------------------------------------------
# the summary
# ------------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """What the summary page shows: ``verdicts`` (one row per claim and metric,
    :func:`reidlib.claims.verdicts.summary_table`), ``side`` (our tables next to the papers', long
    format), ``counts`` (outcomes over distinct comparisons, :func:`reidlib.claims.verdicts.outcome_counts`),
    ``ranks`` (Kendall's τ per table, :func:`reidlib.claims.verdicts.rank_table`), ``wide`` (page
    name -> :func:`wide_table`, book order), ``comparisons`` (one row per distinct comparison with
    its "why ours may differ" clause) and ``profiles`` (page name -> the profile its results came from)."""

    verdicts: pd.DataFrame
    side: pd.DataFrame
    counts: pd.DataFrame
    ranks: pd.DataFrame
    wide: dict = field(default_factory=dict)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    profiles: dict = field(default_factory=dict)

    def sentence(self, label: str = "") -> str:
        """The outcomes in words (:func:`reidlib.claims.verdicts.summary_sentence`)."""
        from reidlib.claims.verdicts import summary_sentence

        return summary_sentence(self.verdicts, label)

    def verdict_lines(self) -> str:
        """One Markdown bullet per distinct comparison: the claim, its reading, our difference with
        its interval, the paper's, and why ours may differ."""
        return "\n".join(self.comparisons["line"]) if len(self.comparisons) else "No claims measured."

    def wide_tables(self) -> list:
        """``(title, table for display)`` of every wide table, in book order (:func:`show_wide`)."""
        return [(t.attrs.get("experiment", name), self.show_wide(name)) for name, t in self.wide.items()]

    def show_wide(self, name: str):
        """The wide table of page ``name`` for display (:func:`show_wide`)."""
        return show_wide(self.wide[name], self.profiles.get(name))

    def distinct(self) -> pd.DataFrame:
        """The verdict rows of distinct comparisons (a comparison two pages make, once)."""
        return self.verdicts[self.verdicts["distinct"].fillna(True).astype(bool)]

    def rank_lines(self, digits: int = 2) -> str:
        """One Markdown line per table: τ with its 95% interval, or why there is none."""
        from reidlib.claims.verdicts import resampled_text

        lines = []
        for r in self.ranks.to_dict(orient="records"):
            head = f"- **{r['experiment']}** ({r['metric']}, {r['rows']} rows): "
            if np.isfinite(r["τ"]):
                body = (f"τ = {r['τ']:+.{digits}f} [{r['low']:+.{digits}f}, {r['high']:+.{digits}f}] "
                        f"({resampled_text(r['clusters'], r['unit'])} resampled)")
            else:
                body = "no τ"
            lines.append(head + body + (f"; {r['note']}" if r["note"] else ""))
        return "\n".join(lines)

    def record_args(self) -> dict:
        """The page's :meth:`reidlib.ablations.experiment.Page.record` arguments: the verdicts and
        counts as metrics, every table as a CSV file (the wide tables as ``wide_<page>``)."""
        wide = {f"wide_{name}": t.set_index("row") for name, t in self.wide.items()}
        return {"claims": self.verdicts.to_dict(orient="records"),
                "outcomes": self.counts.to_dict(orient="index"), "rank_agreement": self.ranks.to_dict(orient="records"),
                "tables": {"side_by_side": self.side, "claims": self.verdicts, "outcomes": self.counts,
                           "rank_agreement": self.ranks, "comparisons": self.comparisons.drop(columns="line"),
                           **wide}}


def summarise(results: str | os.PathLike, experiments: Iterable[Experiment], *,
              resamples: int = DEFAULT_RESAMPLES, seed: int = 0, profile: Optional[str] = None) -> Summary:
    """Every claim of ``experiments`` recomputed from the results folder ``results`` (one profile's:
    :func:`results_folder`), shared comparisons once, with the outcome counts, the rank agreement
    and the wide table of every table with published numbers, and a "why ours may differ" line per
    distinct comparison. ``profile``: the profile the results came from (default: each page's runner
    record's, else the folder's name when it names one)."""
    from reidlib.claims.verdicts import outcome_counts, rank_table, summary_table
    from reidlib.study.profiles import PROFILES

    root = Path(results)
    experiments = tuple(experiments)
    default = profile or (root.name if root.name in PROFILES else None)
    profiles = {e.name: profile or _profile_of(root, e.name, default) for e in experiments}
    verdicts, side = summary_table(root, experiments, resamples=resamples, seed=seed)
    wide = {}
    for e in experiments:
        t = wide_table(root, e, resamples=resamples, seed=seed)
        if t is not None:
            wide[e.name] = t
    comparisons = _comparison_lines(verdicts, {e.title: e.name for e in experiments}, profiles,
                                    settings={e.name: _settings_of(root, e.name) for e in experiments})
    return Summary(verdicts, side, outcome_counts(verdicts), rank_table(root, experiments, resamples=resamples,
                                                                         seed=seed), wide, comparisons, profiles)
