"""A study: the models one book page trains and evaluates, and what the page records.

* :mod:`.profiles`: the run profiles (smoke, cpu, gpu, paper) as typed, frozen records;
* :mod:`.study`: :class:`Study` (profile -> run configurations -> trained, cached, evaluated models);
* :mod:`.variants`: :class:`Variant`, a row of an ablation table, and :func:`design_table`;
* :mod:`.results`: :class:`Results`, the evaluations of one experiment, and its tables;
* :mod:`.record`: what a notebook records into its results folder.
"""
from reidlib.study.results import METRICS, Results
from reidlib.study.study import Study, dataset_path, dataset_root
from reidlib.study.variants import Variant, design_table

__all__ = ["Study", "Variant", "Results", "design_table", "dataset_path", "dataset_root", "METRICS"]
