"""The experiments behind the book, one module per part of it; each module's tables are built
from *variants* (:class:`reidlib.study.Variant`): its design, as data the notebooks print, and
each book page is one record (:class:`~reidlib.ablations.experiment.Experiment`: its title, rows,
the paper's numbers, its claims, its figures' captions) in the module of its part.

* :mod:`~reidlib.ablations.experiment`: :class:`Experiment` (one page) and :class:`Page` (its template);
* :mod:`~reidlib.ablations.benchmark`: how hard SynthVeRi is (training-free baselines);
* :mod:`~reidlib.ablations.pretraining`: the stand-in for ImageNet, and each model's gain from it;
* :mod:`~reidlib.ablations.span`: SPAN's masks, Tables 1 and 2, the (a, m) sweep;
* :mod:`~reidlib.ablations.multidigit`: SPAN's Fig. 4 (weakly supervised digit localisation);
* :mod:`~reidlib.ablations.musp`: whether MUSP's attentions form (a pilot), its Tables 5, 6 and 7;
* :mod:`~reidlib.ablations.schedule`: each headline model at the profile's schedule and four times it;
* :mod:`~reidlib.ablations.viewpoints`: every model split by the view relation of query and gallery;
* :mod:`~reidlib.ablations.summary`: every claim's verdict.

:data:`EXPERIMENTS` lists every page in book order: the table of contents, ``notebooks/order.json``
(:func:`reidlib.runner.book.write_toc`) and the summary are built from it.
"""
from __future__ import annotations

from reidlib.ablations.benchmark import SYNTHVERI
from reidlib.ablations.experiment import Experiment, Page
from reidlib.ablations.multidigit import MULTIDIGIT
from reidlib.ablations.musp import MUSP_ACTIVATION, MUSP_ATTENTIONS, MUSP_ESE, MUSP_PILOT
from reidlib.ablations.pretraining import PRETRAINING, STANDIN_GAIN
from reidlib.ablations.schedule import SCHEDULE
from reidlib.ablations.span import SPAN_AGGREGATION, SPAN_HYPERPARAMS_PAGE, SPAN_LOSSES, SPAN_MASKS, SPAN_PILOT
from reidlib.ablations.summary import SUMMARY
from reidlib.ablations.viewpoints import VIEWPOINTS

__all__ = ["EXPERIMENTS", "CLAIMS", "experiment", "Experiment", "Page"]

#: every page of the book, in book order
EXPERIMENTS: tuple[Experiment, ...] = (
    SYNTHVERI, PRETRAINING,
    SPAN_PILOT, SPAN_MASKS, SPAN_LOSSES, SPAN_AGGREGATION, SPAN_HYPERPARAMS_PAGE, MULTIDIGIT,
    MUSP_PILOT, MUSP_ATTENTIONS, MUSP_ESE, MUSP_ACTIVATION,
    STANDIN_GAIN, SCHEDULE, VIEWPOINTS, SUMMARY,
)

#: every claim of the book, in book order
CLAIMS = tuple(c for e in EXPERIMENTS for c in e.claims)

_BY_NAME = {e.name: e for e in EXPERIMENTS}


def experiment(name: str) -> Experiment:
    """The record of page ``name`` (its notebook's name)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no experiment {name!r}; the book's pages: {', '.join(_BY_NAME)}") from None
