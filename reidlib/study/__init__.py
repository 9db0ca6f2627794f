"""A study: the models one book page trains and evaluates, and what the page records.

* :mod:`.profiles`: the run profiles (smoke, cpu, gpu, paper): how big data, models and schedules are;
* :mod:`.study`: :class:`Study` (trains and evaluates variants, cached), :class:`Variant`, :class:`Results`;
* :mod:`.record`: what a notebook records into its results folder.
"""
from reidlib.study.study import METRICS, Results, Study, Variant, dataset_root, design_table

__all__ = ["Study", "Variant", "Results", "design_table", "dataset_root", "METRICS"]
