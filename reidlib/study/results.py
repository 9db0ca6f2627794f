"""The evaluations of one experiment and the tables made from them.

:meth:`Results.table`: one row per variant with R1 / R5 / mAP / mINP in percent, the mean over
seeds, the standard deviation over seeds when there are several, and the bootstrap 95% interval of
mAP and R1 (test identities resampled with all their queries, and seeds first when there are
several). The per-query arrays behind them (:meth:`Results.arrays`, each query with its vehicle
identity) are what claims are checked on (:mod:`reidlib.claims.verdicts`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

__all__ = ["Results", "METRICS", "VAL_CURVE_FILE", "strip"]

METRICS = ("R1", "R5", "mAP", "mINP")
#: a re-ID run's validation curve (:meth:`reidlib.study.Study.validation_curve`), beside its model
VAL_CURVE_FILE = "val_curve.csv"


@dataclass
class Results:
    """The evaluations of one experiment: ``runs[row]`` holds one
    :func:`reidlib.engine.evaluation.evaluate_reid` result per training seed (``seeds``);
    ``query_pids``: the queries' vehicle identities in unit order (trials one after another), where
    the evaluations do not carry them (a protocol with several trials)."""

    runs: dict
    seeds: list
    query_pids: Optional[Sequence] = None
    _arrays: Optional[dict] = field(default=None, repr=False)

    def arrays(self) -> dict:
        """The per-query arrays of every row and seed, with each query's identity
        (:mod:`reidlib.claims.per_query`; computed once)."""
        from reidlib.claims import per_query

        if self._arrays is None:
            self._arrays = per_query.from_evaluations(self.runs, self.seeds, pids=self.query_pids)
        return self._arrays

    def logs(self) -> dict:
        """``{row: training log}`` (pandas, one row per logged iteration) of each row's first seed."""
        from reidlib.engine.logging import read_log

        return {row: read_log(Path(per_seed[0]["run_dir"]) / "log.jsonl")
                for row, per_seed in self.runs.items() if per_seed and per_seed[0].get("run_dir")}

    def validation(self) -> dict:
        """``{row: [validation curve per seed]}`` (:meth:`reidlib.study.Study.validation_curve`'s
        ``val_curve.csv`` beside each run; None for a run without one)."""
        out = {}
        for row, per_seed in self.runs.items():
            curves = []
            for r in per_seed:
                path = Path(r["run_dir"]) / VAL_CURVE_FILE if r.get("run_dir") else None
                curves.append(pd.read_csv(path) if path is not None and path.is_file() else None)
            out[row] = curves
        return out

    def plateau(self):
        """:func:`reidlib.claims.plateau.plateau_table` of :meth:`validation`."""
        from reidlib.claims.plateau import plateau_table

        return plateau_table(self.validation())

    def table(self, resamples: int = 2000, bootstrap_seed: int = 0) -> pd.DataFrame:
        """One row per variant: R1 / R5 / mAP / mINP in percent (mean over seeds; with several
        seeds also their standard deviation ``<metric>_std``), and the 95% bootstrap interval of
        mAP and R1 (``mAP_low`` / ``mAP_high`` ...: identities resampled, queries where the
        identities are unknown, and seeds first when there are several;
        :func:`reidlib.claims.stats.bootstrap_interval`)."""
        from reidlib.claims import per_query
        from reidlib.claims.stats import bootstrap_interval

        arrays = self.arrays()
        groups, unit, _ = per_query.clusters(arrays)
        rows = {}
        for name, per_seed in self.runs.items():
            row: dict[str, Any] = {}
            for m in METRICS:
                vals = np.array([r[m] for r in per_seed], dtype=float)
                row[m] = vals.mean()
                if len(vals) > 1:
                    row[f"{m}_std"] = vals.std(ddof=1)
            for m in ("mAP", "R1"):
                iv = bootstrap_interval(per_query.values(arrays, name, m), resamples=resamples, seed=bootstrap_seed,
                                        groups=groups, unit=unit)
                row[f"{m}_low"], row[f"{m}_high"] = iv.low, iv.high
            row["seeds"] = len(per_seed)
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")


def strip(result: dict) -> dict:
    """An evaluate() result without its arrays (for JSON)."""
    return {k: v for k, v in result.items() if k not in ("rank_result", "rank_results", "query", "gallery", "distmat")}
