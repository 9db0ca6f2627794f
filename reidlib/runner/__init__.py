"""The runner: papermill notebooks in, executed notebooks + metrics with provenance out.

* :mod:`.notebooks`: the notebook contract (the ``parameters`` cell, ``-p key=value`` parsing and
  checks, ``notebooks/order.json``);
* :mod:`.transaction`: one notebook run as a transaction (temporary folder, lock, commit);
* :mod:`.scheduler`: every notebook of a profile, several at a time, the summary last;
* :mod:`.provenance`: what produced a result (:func:`reidlib.runner.provenance.provenance`);
* :mod:`.book`: the Jupyter Book's pages from the executed notebooks;
* :mod:`.cli`: ``python -m reidlib.runner {run,reproduce,list}``.

Notebooks never import the runner: what they record goes through :mod:`reidlib.study.record`.
"""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "ExperimentError": "notebooks", "declared_parameters": "notebooks", "check_parameters": "notebooks",
    "parse_overrides": "notebooks", "notebook_path": "notebooks", "notebook_order": "notebooks",
    "REQUIRED_PARAMETERS": "notebooks", "PROFILE_ORDER": "notebooks", "SUMMARY": "notebooks",
    "run": "transaction", "best_result": "transaction", "reproduce": "scheduler", "job_slots": "scheduler",
    "visible_gpus": "scheduler", "main": "cli",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
