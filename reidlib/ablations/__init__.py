"""The experiments behind the book, one module per part of it; each module's tables are built
from *variants* (:class:`reidlib.study.Variant`): its design, as data the notebooks print.

* :mod:`~reidlib.ablations.benchmark`: how hard SynthVeRi is (training-free baselines);
* :mod:`~reidlib.ablations.span`: SPAN's masks, Tables 1 and 2, the (a, m) sweep;
* :mod:`~reidlib.ablations.multidigit`: SPAN's Fig. 4 (weakly supervised digit localisation);
* :mod:`~reidlib.ablations.musp`: MUSP's Tables 5, 6 and 7;
* :mod:`~reidlib.ablations.viewpoints`: every model split by the view relation of query and gallery.

The claims each table tests, and their verdicts, are in :mod:`reidlib.claims.verdicts`.
"""
