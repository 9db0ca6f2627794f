"""reidlib: a reproducible companion to two part-aware vehicle re-ID papers.

* SPAN + CPDM (Chen et al., ECCV 2020): :mod:`reidlib.models.span`, :mod:`reidlib.metrics.cpdm`.
* MUSP (Lee, Woo, Lee): :mod:`reidlib.models.musp`.

The folders read as the book: ``ablations`` (one ``Experiment`` record per page), ``study``
(profiles, the trained-and-evaluated models of a page), ``claims`` (verdicts on the papers' claims),
``runner`` (papermill, provenance, the book's pages); below them torchreid's split: ``engine``
(training loop, checkpoints), ``models``, ``losses``, ``metrics`` (the evaluator, CPDM), ``data``
(datasets, SynthVeRi, samplers), ``viz``, ``utils``. Importing ``reidlib`` itself is cheap: heavy
modules load on first use.
"""

__version__ = "0.1.0"
