"""Did a model train to a plateau? Its validation curve's last quarter, read as a precondition.

A verdict that model A beats model B is about the two models *as trained*; if either was still
improving when its schedule ended, the comparison says as much about the schedule as about the
idea. Every re-ID run of a study with a validation split (:mod:`reidlib.data.validation`) records
its validation mAP at evenly spaced points of its schedule (:meth:`reidlib.study.Study.validation_curve`).
A row is called *converged* when the last quarter of its schedule moved its validation mAP (the
mean over its training seeds) up by less than :data:`PLATEAU_TOLERANCE` points; the fact
:data:`reidlib.claims.verdicts.CONVERGED` of the claims that compare it follows
(:func:`convergence_facts`), so a comparison with a model still improving reads "not tested here".
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

__all__ = ["PLATEAU_TOLERANCE", "last_quarter_change", "plateau_table", "convergence_facts"]

#: the largest rise of validation mAP (points) over the last quarter of a schedule that still
#: counts as a plateau
PLATEAU_TOLERANCE = 1.0


def last_quarter_change(curve: pd.DataFrame, metric: str = "val mAP") -> float:
    """``metric`` at the end of ``curve`` (columns ``iteration`` and ``metric``) minus its value at
    75% of the schedule (linearly interpolated between the recorded points); NaN with fewer than
    two points."""
    c = curve.sort_values("iteration")
    its, vals = c["iteration"].to_numpy(float), c[metric].to_numpy(float)
    if len(its) < 2:
        return float("nan")
    return float(vals[-1] - np.interp(0.75 * its[-1], its, vals))


def plateau_table(curves: Mapping[str, Sequence[Optional[pd.DataFrame]]], tolerance: float = PLATEAU_TOLERANCE,
                  metric: str = "val mAP") -> pd.DataFrame:
    """One row per table row: ``points`` (recorded points per seed), ``seeds`` (with a curve), the
    final validation mAP and the last-quarter change (means over seeds; ``change min`` / ``max``:
    their range), and ``converged`` (the mean change below ``tolerance``; None without a curve)."""
    rows = {}
    for name, per_seed in curves.items():
        have = [c for c in per_seed if c is not None and len(c)]
        if not have:
            rows[str(name)] = {"points": 0, "seeds": 0, "final val mAP": np.nan, "last-quarter change": np.nan,
                               "change min": np.nan, "change max": np.nan, "converged": None}
            continue
        changes = np.array([last_quarter_change(c, metric) for c in have])
        change = float(np.nanmean(changes)) if np.isfinite(changes).any() else float("nan")
        rows[str(name)] = {"points": int(min(len(c) for c in have)), "seeds": len(have),
                           "final val mAP": float(np.mean([c.sort_values("iteration")[metric].iloc[-1] for c in have])),
                           "last-quarter change": change, "change min": float(np.nanmin(changes)),
                           "change max": float(np.nanmax(changes)),
                           "converged": None if not np.isfinite(change) else bool(change < tolerance)}
    return pd.DataFrame.from_dict(rows, orient="index")


def convergence_facts(table: pd.DataFrame, tolerance: float = PLATEAU_TOLERANCE) -> dict:
    """The fact :data:`reidlib.claims.verdicts.CONVERGED` per row of a :func:`plateau_table`
    (``{CONVERGED: {row: (ok, reason)}}``); rows without a curve are left out (not checked)."""
    from reidlib.claims.verdicts import CONVERGED

    out = {}
    for row, r in table.iterrows():
        if r["converged"] is None or (isinstance(r["converged"], float) and np.isnan(r["converged"])):
            continue
        ok = bool(r["converged"])
        out[str(row)] = (ok, "" if ok else f"{row} was still improving: +{r['last-quarter change']:.1f} validation "
                                            f"mAP over the last quarter of its schedule (a plateau: < {tolerance:g})")
    return {CONVERGED: out} if out else {}
