"""One book page as data (:class:`Experiment`) and the page's shared template as calls (:class:`Page`).

An :class:`Experiment` is the record of one page of the book: its notebook's name, its title, the
paper and the part of the book it belongs to, the table or figure of the paper it reproduces, its
rows (:class:`reidlib.study.Variant` values), the paper's numbers for them, the claims it tests and
the captions of its figures. Each ablations module holds the records of its pages;
:data:`reidlib.ablations.EXPERIMENTS` lists them in book order (the table of contents,
``notebooks/order.json`` and the summary are built from it).

A :class:`Page` renders a record in its notebook::

    page = Page(SPAN_AGGREGATION, study)
    page.design()                       # the rows and what each changes
    results = page.run()                # = study.run(SPAN_AGGREGATION.variants)
    table = results.table()
    page.intervals(table)               # the rows with their intervals, the paper's, reference levels
    page.learning_curves(results)       # did every model learn?
    page.against_paper(table)           # our table next to the paper's
    page.claims(results)                # the verdicts
    page.record(results_dir, table, arrays=results.arrays())     # hidden
    page.check(results_dir, table)                                # hidden, tagged ``test``

Each method returns what its cell shows. A figure is shown through :meth:`Page.figure`, which
takes its caption and alt text from the record (a name the record does not caption is refused) and
marks the cell's output with the figure's name, so the book gives it that caption
(:func:`reidlib.runner.book.prepare`); headings stay in the notebook's Markdown cells (the book
cannot render headings from outputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Sequence

from reidlib.claims.verdicts import Claim

__all__ = ["Experiment", "FigureText", "Page", "ShownFigure", "FIGURE_METADATA_KEY", "LEARNING_CURVES",
           "intervals_caption", "trial_query_pids"]

#: the key of a figure output's metadata naming the figure (read by the book's preparation)
FIGURE_METADATA_KEY = "reidlib"


@dataclass(frozen=True)
class FigureText:
    """A figure's caption and its alt text (for readers who cannot see it)."""

    caption: str
    alt: str


#: the learning curves every table of trained models shows
LEARNING_CURVES = FigureText(
    "Did every model train to a plateau? Left: validation mAP (held-out training identities) through the "
    "schedule, each seed of a row in the row's colour (the first seed darker), when the profile holds a "
    "validation split out. Then training loss and ID accuracy of each row's first seed.",
    "Validation mAP, training loss and ID accuracy against iterations, one line per row of the table")
_STANDARD_FIGURES = {"learning_curves": LEARNING_CURVES}
#: the reference lines of every ``intervals`` figure (:meth:`Page.intervals`)
_LEVEL_LINES = "Dotted and dashed lines: an untrained network and the stand-in before fine-tuning."
#: what the two lines of panels of an ``intervals`` figure with the paper's numbers are
_PANELS = ("Top: ours (dots, 95% interval). Bottom, on one scale in metric points: each row's difference "
           "from the first row the paper reports, ours (dots, 95% paired interval over identities) and "
           "the paper's (hollow diamonds; real data).")


def _paper_key(row: Any) -> Any:
    """A table row as the papers' tables key it (MUSP Table 5's rows are the integers n)."""
    return int(row) if str(row).isdigit() else row


def intervals_caption(rows: str, alt: str) -> FigureText:
    """The caption of a page's ``intervals`` figure: ``rows`` (what its rows are), then what its two
    lines of panels and reference lines show."""
    return FigureText(f"{rows} {_PANELS} {_LEVEL_LINES}", alt)


@dataclass(frozen=True)
class Experiment:
    """The record of one book page (see the module docstring)."""

    name: str                                    #: the notebook's name (``notebooks/<name>.ipynb``)
    title: str                                   #: how the summary and the verdict tables name the page
    chapter: str                                 #: the book's part: "benchmark", "span", "musp", "across"
    paper: str = ""                              #: "SPAN + CPDM", "MUSP", or "" for our own pages
    source: str = ""                             #: the paper's table or figure ("Table 2", "Fig. 4", ...)
    variants: Mapping[Any, Any] = field(default_factory=dict)        #: the rows as :class:`Variant` values
    rows: tuple = ()                             #: the table's rows (default: the variants' names)
    paper_numbers: Mapping[Any, Mapping[str, float]] = field(default_factory=dict)  #: ``{row: {metric: %}}``
    claims: tuple[Claim, ...] = ()               #: what the paper claims with the table
    figures: Mapping[str, FigureText] = field(default_factory=dict)  #: captions of the page's figures
    #: ``mechanism(study, variants) -> (facts, table)``: whether the mechanism the claims are about
    #: formed in each row (SPAN's masks, MUSP's attentions), as the fact
    #: :data:`reidlib.claims.verdicts.MECHANISM` and a table of the numbers (:meth:`Page.mechanism`)
    mechanism: Optional[Callable] = None

    def __post_init__(self):
        set_ = object.__setattr__                # frozen: read-only views of the mappings
        set_(self, "variants", MappingProxyType(dict(self.variants)))
        set_(self, "paper_numbers", MappingProxyType(dict(self.paper_numbers)))
        set_(self, "figures", MappingProxyType(dict(self.figures)))
        set_(self, "claims", tuple(self.claims))
        set_(self, "rows", tuple(self.rows) or tuple(self.variants))

    def reference_row(self):
        """The row the page's differences are taken from, so that their sign reads as its claims
        do: the baseline when the paper reports it, else the row the first claim's first comparison
        is against (MUSP Table 7: sigmoid; Table 6: without ESE), else the first row the paper
        reports (None without the paper's numbers)."""
        paper = self.paper_numbers
        if "baseline" in self.rows and "baseline" in paper:
            return "baseline"
        for claim in self.claims:
            for comp in claim.comparisons:
                neg = [r for r, w in comp.items() if w < 0 and _paper_key(r) in paper]
                if len(neg) == 1:
                    return next((r for r in self.rows if _paper_key(r) == _paper_key(neg[0])), None)
        return next((r for r in self.rows if _paper_key(r) in paper), None)

    def figure_text(self, name: str) -> FigureText:
        """The caption and alt text of figure ``name`` (the record's, else the standard one)."""
        text = self.figures.get(name) or _STANDARD_FIGURES.get(name)
        if text is None:
            known = sorted(set(self.figures) | set(_STANDARD_FIGURES))
            raise KeyError(f"{self.name}: no caption for figure {name!r}; the record captions {known}")
        return text


def interval_cell(row: Mapping[str, Any], key: str) -> str:
    """One table cell for the difference ``row[key]`` with its 95% interval (``row[key + " low"]``,
    ``row[key + " high"]``), e.g. ``"+5.8 [-2.5, +13.9]"``; empty where the difference is missing."""
    import pandas as pd

    value = row.get(key)
    if value is None or pd.isna(value):
        return ""
    return f"{value:+.1f} [{row[key + ' low']:+.1f}, {row[key + ' high']:+.1f}]"


def trial_query_pids(study, results) -> Optional[list]:
    """The queries' vehicle identities of every trial, trials one after another, for ``results``
    evaluated on a protocol with several trials (VehicleID: each trial draws its own gallery, so
    its own queries): read from the study's dataset (``with_trial``), as the evaluation drew them;
    None for one trial or a study without such a dataset."""
    first = next((per_seed[0] for per_seed in results.runs.values() if per_seed), None)
    trials = len(first.get("rank_results") or ()) if first else 0
    data = getattr(study, "data", None) if trials > 1 else None
    if data is None or not hasattr(data, "with_trial"):
        return None
    pids = [r.pid for t in range(trials) for r in data.with_trial(t).query]
    return pids if len(pids) == sum(len(r.query_ap) for r in first["rank_results"]) else None


class ShownFigure:
    """A matplotlib figure as a notebook cell shows it: the usual image, its output marked with the
    figure's name, caption and alt text (:data:`FIGURE_METADATA_KEY`)."""

    def __init__(self, figure, name: str, text: FigureText):
        self.figure, self.name, self.text = figure, name, text

    def _repr_mimebundle_(self, include=None, exclude=None):
        from IPython.core.interactiveshell import InteractiveShell

        if not InteractiveShell.initialized():
            return None
        data, metadata = InteractiveShell.instance().display_formatter.format(self.figure, include=include,
                                                                             exclude=exclude)
        metadata = dict(metadata)
        metadata[FIGURE_METADATA_KEY] = {"figure": self.name, "caption": self.text.caption, "alt": self.text.alt}
        return data, metadata

    def __repr__(self) -> str:
        return f"<figure {self.name!r}: {self.text.caption}>"


class Page:
    """The shared template of a book page, for one :class:`Experiment` and its
    :class:`reidlib.study.Study` (``None`` for pages that train nothing). The page remembers what it
    showed (figures, the reference levels, the verdicts) and records it with :meth:`record`."""

    def __init__(self, experiment: Experiment, study=None):
        self.experiment = experiment
        self.study = study
        self.figures: dict[str, Any] = {}        #: name -> matplotlib figure, as shown
        self.tables: dict[str, Any] = {}         #: further tables the page shows and records
        self.verdicts = None
        self.comparisons = None
        self.facts: dict = {}                    #: the precondition facts the verdicts were given
        self.results = None                      #: what :meth:`run` returned
        self._recorded: tuple[tuple, bool] = ((), False)

    # ------------------------------------------------------------------ what the page shows
    def design(self, table=None, *, index: Optional[str] = None, precision: int = 1):
        """The design: one row per variant and what it changes (or ``table``, its index as a column
        named ``index`` when given)."""
        from reidlib.study import design_table
        from reidlib.viz import show_table

        table = design_table(self.experiment.variants) if table is None else table
        if index is not None:
            table = table.reset_index(names=index)
        return show_table(table, precision=precision)

    def run(self, variants: Optional[Mapping[Any, Any]] = None):
        """Every variant (the record's, or ``variants`` for a page whose rows depend on the profile,
        such as a pilot's) trained (or loaded) and evaluated: :meth:`reidlib.study.Study.run`; for a
        protocol with several trials, the queries' identities of every trial attached
        (:attr:`reidlib.study.Results.query_pids`), the clusters of the claims' bootstrap."""
        results = self.study.run(self.experiment.variants if variants is None else variants)
        if getattr(results, "query_pids", None) is None:
            pids = trial_query_pids(self.study, results)
            if pids is not None:
                results.query_pids = pids
        self.results = results
        return results

    def figure(self, name: str, figure) -> ShownFigure:
        """``figure`` shown under the record's caption for ``name`` (and recorded as ``<name>.png``)."""
        text = self.experiment.figure_text(name)
        self.figures[name] = figure
        return ShownFigure(figure, name, text)

    def intervals(self, table) -> ShownFigure:
        """Figure ``intervals``: each row's mAP and rank-1 with its 95% interval, the paper's numbers
        and the reference levels (:meth:`reidlib.study.Study.reference_levels`, recorded as ``levels``)."""
        from reidlib.viz import intervals_figure

        levels = self.study.reference_levels()
        self.tables["levels"] = levels
        paper = self.experiment.paper_numbers or None
        reference = self.experiment.reference_row() if paper else None
        reference = reference if reference in table.index else None
        diffs = self.paired_differences(table, reference) if paper and reference is not None else None
        return self.figure("intervals", intervals_figure(table, paper=paper, levels=levels, reference=reference,
                                                         differences=diffs))

    def paired_differences(self, table, reference, metrics: Sequence[str] = ("mAP", "R1")) -> Optional[dict]:
        """``{row: {metric: (low, high)}}``: the 95% paired interval of each row's difference from
        ``reference`` (identities resampled, as the claims' intervals: :mod:`reidlib.claims.stats`),
        from the per-query results of :meth:`run` (None before it ran)."""
        from reidlib.claims import per_query
        from reidlib.claims.stats import paired_bootstrap

        if self.results is None:
            return None
        arrays = self.results.arrays()
        groups, unit, _ = per_query.clusters(arrays)
        out: dict = {}
        for row in table.index:
            if row == reference:
                continue
            for m in metrics:
                try:
                    a, b = per_query.common_seeds(per_query.values(arrays, row, m),
                                                  per_query.values(arrays, reference, m))
                except KeyError:
                    continue
                iv = paired_bootstrap(a, b, groups=groups, unit=unit)
                out.setdefault(row, {})[m] = (iv.low, iv.high)
        return out

    def learning_curves(self, results) -> ShownFigure:
        """Figure ``learning_curves``: each row's validation mAP through its schedule (every seed,
        when the profile holds a validation split out) beside the training loss and ID accuracy of
        its first seed."""
        from reidlib.viz import learning_curves_figure

        return self.figure("learning_curves", learning_curves_figure(results.logs(), validation=results.validation()))

    def mechanism(self):
        """Did the mechanism form? The record's ``mechanism`` measure on the study (recorded as
        table ``mechanism``); the claims' precondition ``mechanism formed`` is read from it
        (:meth:`claims`)."""
        from reidlib.viz import show_table

        if self.experiment.mechanism is None:
            raise ValueError(f"{self.experiment.name}: the record measures no mechanism")
        facts, table = self.experiment.mechanism(self.study, self.experiment.variants)
        self._mechanism_facts = facts
        self.tables["mechanism"] = table
        return show_table(table)

    def plateau(self, results):
        """Did every row train to a plateau? :func:`reidlib.claims.plateau.plateau_table` of the
        rows' validation curves (recorded as table ``plateau``; the claims' precondition
        ``converged`` is read from it, :meth:`claims`)."""
        from reidlib.viz import show_table

        table = results.plateau()
        self.tables["plateau"] = table
        return show_table(table)

    def against_paper(self, table, metrics: Optional[Sequence[str]] = None, digits: int = 1):
        """Our ``table`` next to the paper's numbers (:func:`reidlib.claims.verdicts.compare_with_paper`)."""
        from reidlib.claims.verdicts import compare_with_paper

        return compare_with_paper(self.experiment.paper_numbers, table, metrics).round(digits)

    def claims(self, results, facts: Optional[Mapping[str, Any]] = None):
        """The verdicts on the record's claims from ``results`` (a :class:`reidlib.study.Results` or
        its per-query arrays), shown as a table and kept for :meth:`record` and :meth:`check`.
        ``facts``: what the page knows about the claims' preconditions (``{key: (ok, reason)}``,
        :func:`reidlib.claims.verdicts.evaluate_claims`); the separability of the models is added from
        the reference levels (:meth:`intervals`' or the study's) when the claims need it."""
        from reidlib.claims.plateau import convergence_facts
        from reidlib.claims.verdicts import CONVERGED, SEPARABLE, evaluate_claims, separability_facts

        arrays = results.arrays() if hasattr(results, "arrays") else results
        facts = dict(facts or {})
        if SEPARABLE not in facts and any(SEPARABLE in c.preconditions for c in self.experiment.claims):
            facts.update(separability_facts(arrays, self._levels()))
        for key, value in getattr(self, "_mechanism_facts", {}).items():
            facts.setdefault(key, value)
        if CONVERGED not in facts and hasattr(results, "plateau") and \
                any(CONVERGED in c.preconditions for c in self.experiment.claims):
            facts.update(convergence_facts(self.tables.get("plateau", results.plateau())))
        self.facts = facts
        self.verdicts, self.comparisons = evaluate_claims(self.experiment.claims, arrays,
                                                          paper=self.experiment.paper_numbers, facts=facts)
        return self.show_verdicts(self.verdicts)

    def _levels(self):
        """The reference levels the page showed, else the study's (None without a study)."""
        if "levels" not in self.tables and hasattr(self.study, "reference_levels"):
            self.tables["levels"] = self.study.reference_levels()
        return self.tables.get("levels")

    @staticmethod
    def show_verdicts(verdicts, drop: Sequence[str] = ()):
        """A verdict table as the reader wants it (:func:`reidlib.claims.verdicts.verdict_display`),
        without the columns ``drop`` (e.g. what a page says elsewhere, so the table fits the page)."""
        from reidlib.claims.verdicts import verdict_display
        from reidlib.viz import show_table

        shown = verdict_display(verdicts)
        return show_table(shown.drop(columns=[c for c in drop if c in shown.columns]))

    # ------------------------------------------------------------------ hidden cells
    def record(self, results_dir, table=None, *, arrays=None, tables: Optional[Mapping[str, Any]] = None,
               **metrics: Any):
        """Store the page's results in ``results_dir``: with a ``table``,
        :func:`reidlib.study.record.record_results` (the table, the per-query ``arrays``, the
        verdicts of :meth:`claims`); without, :func:`reidlib.study.record.record` of ``metrics``.
        Both with the figures the page showed, the tables it showed (``levels``) and ``tables``."""
        from reidlib.study.record import record, record_results

        tables = {**self.tables, **(tables or {})}
        if self.facts:
            metrics = {"facts": self.facts, **metrics}
        if table is None:
            self._recorded = (tuple(tables), False)
            return record(results_dir, metrics, tables=tables, figures=self.figures)
        names = ("table", *tables) + (("claims",) if self.verdicts is not None else ()) \
            + (("comparisons",) if self.comparisons is not None else ())
        self._recorded = (names, arrays is not None)
        return record_results(results_dir, table, arrays=arrays, verdicts=self.verdicts,
                              comparisons=self.comparisons, tables=tables, figures=self.figures, **metrics)

    def check(self, results_dir, table=None, *, rows: Optional[Sequence] = None, verdicts=None,
              claims: Optional[Sequence[Claim]] = None, tables: Optional[Sequence[str]] = None,
              per_query: Optional[bool] = None) -> str:
        """:func:`reidlib.claims.checks.check_page` of what the page recorded: ``table`` has the
        record's rows (or ``rows``), the verdicts answer the record's claims (or ``claims``), and
        every table (default: those :meth:`record` wrote) and the per-query file (when recorded)
        are in ``results_dir``."""
        from reidlib.claims.checks import check_page

        exp = self.experiment
        recorded_tables, recorded_arrays = self._recorded
        return check_page(results_dir, table, exp.rows if rows is None else rows,
                          self.verdicts if verdicts is None else verdicts,
                          exp.claims if claims is None else claims, page=exp.name,
                          tables=tuple(tables if tables is not None else recorded_tables or ("table",)),
                          per_query=recorded_arrays if per_query is None else per_query)
