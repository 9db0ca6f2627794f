"""reidlib: a reproducible companion to two part-aware vehicle re-ID papers.

* SPAN + CPDM (Chen et al., ECCV 2020): :mod:`reidlib.models.span`, :mod:`reidlib.metrics.cpdm`.
* MUSP (Lee, Woo, Lee): :mod:`reidlib.models.musp`.

Sub-packages follow torchreid's split: ``data`` (datasets, SynthVeRi, samplers), ``models``,
``losses``, ``metrics`` (the evaluator), ``engine`` (training loop, checkpoints), ``viz``.
Importing ``reidlib`` itself is cheap: heavy modules load on first use.
"""

__version__ = "0.1.0"
