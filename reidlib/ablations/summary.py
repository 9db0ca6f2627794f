"""The summary page: every claim of the book's pages re-checked from one profile's results folder,
and every ablation side by side with the paper (:func:`reidlib.claims.verdicts.summary_table` of
:data:`reidlib.ablations.EXPERIMENTS`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from reidlib.ablations.experiment import Experiment, FigureText

__all__ = ["SUMMARY", "results_folder"]

SUMMARY = Experiment(
    "summary", "Summary: which claims held", "across",
    figures={"forest": FigureText(
        "Every claim: our difference and 95% interval (colour = verdict), the paper's difference (diamond).",
        "Forest plot: one row per claim of both papers, our difference with its 95% interval coloured by verdict, "
        "and the paper's difference")})


def results_folder(profile: str, root: Optional[str | os.PathLike] = None) -> Path:
    """``<root>/<profile>``: one profile's results (``root``: default the project's ``results/``)."""
    from reidlib.utils import paths

    return Path(root or paths.results_dir(profile).parent) / profile
