"""Invariants every book page checks on its own results before it is recorded, so that a notebook
run (``nbval`` in CI, ``make reproduce``) fails on a wrong table, not only on an exception.

Each check raises ``AssertionError`` with a message naming the page, the row and the value.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from reidlib.claims.stats import VERDICTS

__all__ = ["check_table", "check_verdicts", "check_recorded", "check_page"]

_PERCENT = ("R1", "R5", "R10", "mAP", "mINP", "front", "rear", "side", "mean IoU", "digit 0", "digit 1",
            "digit 2", "mean")


def _fail(page: str, msg: str) -> None:
    raise AssertionError(f"{page}: {msg}")


def check_table(table: pd.DataFrame, rows: Iterable[Any], page: str = "") -> None:
    """Every expected row present (no extra); percentages in [0, 100]; the orderings that hold for
    any ranking (R1 <= R5 <= R10; not mINP <= mAP, which a query whose first match comes late
    breaks: matches at ranks 5 and 6 give AP 0.27, INP 0.33); every interval ``[<m>_low, <m>_high]`` around
    its value; the headline metric defined for at least one row."""
    want = [str(r) for r in rows]
    have = ["=".join(f"{x:g}" if isinstance(x, float) else str(x) for x in r) if isinstance(r, tuple) else str(r)
            for r in table.index]
    if sorted(want) != sorted(have):
        _fail(page, f"table rows {have} differ from the design's {want}")
    for col in table.columns:
        base = col.rsplit("_", 1)[0] if col.endswith(("_low", "_high", "_std")) else col
        if base not in _PERCENT or col.endswith("_std"):
            continue
        vals = table[col].to_numpy(float)
        bad = [(have[i], v) for i, v in enumerate(vals) if not (math.isnan(v) or -1e-9 <= v <= 100 + 1e-9)]
        if bad:
            _fail(page, f"{col} outside [0, 100]: {bad}")
        if np.isnan(vals).all() and col in ("R1", "mAP", "mean IoU"):
            _fail(page, f"{col} is undefined (NaN) for every row: no query was valid / no mask was scored")
    for lo, hi in (("R1", "R5"), ("R5", "R10")):
        if lo in table and hi in table:
            a, b = table[lo].to_numpy(float), table[hi].to_numpy(float)
            bad = [have[i] for i in range(len(a)) if a[i] > b[i] + 1e-9]
            if bad:
                _fail(page, f"{lo} > {hi} for rows {bad}")
    for m in ("mAP", "R1"):
        if f"{m}_low" in table:
            v, lo, hi = (table[c].to_numpy(float) for c in (m, f"{m}_low", f"{m}_high"))
            bad = [have[i] for i in range(len(v)) if not (lo[i] - 1e-6 <= v[i] <= hi[i] + 1e-6)]
            if bad:
                _fail(page, f"{m} outside its own 95% interval for rows {bad}")


def check_verdicts(verdicts: pd.DataFrame, claims: Sequence, page: str = "") -> None:
    """One verdict per claim and metric, from the verdict vocabulary, each consistent with its
    interval (holds: low > 0; contradicted: high < 0), and "not tested here" with its reason."""
    allowed = set(VERDICTS) | {"not measured"}
    got = set(verdicts["verdict"])
    if not got <= allowed:
        _fail(page, f"verdicts {sorted(got - allowed)} are not in {sorted(allowed)}")
    texts = {c.text for c in claims}
    if set(verdicts["claim"]) != texts:
        _fail(page, f"verdicts for {sorted(set(verdicts['claim']))}, expected the claims {sorted(texts)}")
    for r in verdicts.to_dict(orient="records"):
        if r["verdict"] == "holds" and not r["low"] > 0:
            _fail(page, f"{r['claim']} ({r['metric']}): 'holds' with an interval reaching {r['low']}")
        if r["verdict"] == "contradicted" and not r["high"] < 0:
            _fail(page, f"{r['claim']} ({r['metric']}): 'contradicted' with an interval reaching {r['high']}")
        if r["verdict"] == "not tested here" and not str(r.get("reading", "")).startswith("not tested here: "):
            _fail(page, f"{r['claim']} ({r['metric']}): 'not tested here' without the failed precondition")


def check_recorded(results_dir: str | Path, page: str = "", tables: Sequence[str] = ("table",),
                   per_query: bool = False) -> None:
    """What :func:`reidlib.runner.record` wrote: ``metrics.json`` valid JSON (no NaN token),
    the tables' CSV files, and the per-query file when expected."""
    d = Path(results_dir)
    path = d / "metrics.json"
    if not path.is_file():
        _fail(page, f"nothing recorded in {d}")
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: _fail(page, f"metrics.json holds {c}"))
    for t in tables:
        if not (d / f"{t}.csv").is_file():
            _fail(page, f"table {t}.csv was not recorded")
    if per_query and not (d / "per_query.npz").is_file():
        _fail(page, "per_query.npz was not recorded")


def check_page(results_dir: str | Path, table: Optional[pd.DataFrame] = None, rows: Optional[Iterable] = None,
               verdicts: Optional[pd.DataFrame] = None, claims: Optional[Sequence] = None, page: str = "",
               tables: Sequence[str] = ("table",), per_query: bool = False) -> str:
    """All of the above for one page; returns a one-line summary for the test log."""
    if table is not None and rows is not None:
        check_table(table, rows, page)
    if verdicts is not None and claims is not None:
        check_verdicts(verdicts, claims, page)
    check_recorded(results_dir, page, tables, per_query)
    return f"{page}: checks passed"

