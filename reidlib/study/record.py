"""What a notebook records from inside its run: metrics, tables, figures and per-query arrays, written
into the ``results_dir`` the runner (:mod:`reidlib.runner`) gave it. All writes are atomic. This is
the only part of the notebook contract a notebook imports; the runner reads what it wrote."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from reidlib.utils.io import atomic_path, atomic_write_json, atomic_write_text, jsonable

__all__ = ["record", "record_results", "METRICS_FILE"]

METRICS_FILE = "metrics.json"


def record(results_dir: str | os.PathLike, metrics: Mapping[str, Any], tables: Optional[Mapping[str, Any]] = None,
           figures: Optional[Mapping[str, Any]] = None) -> Path:
    """Store a notebook's results in ``results_dir``: ``metrics.json`` (merged with what earlier
    calls recorded), ``<table>.csv`` for each pandas DataFrame in ``tables`` and ``<figure>.png`` for
    each matplotlib Figure in ``figures``. All writes are atomic. Returns ``results_dir``."""
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    merged.update(jsonable(dict(metrics)))
    for name, df in (tables or {}).items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=True))
        merged.setdefault("tables", [])
        if name not in merged["tables"]:
            merged["tables"].append(name)
    for name, fig in (figures or {}).items():
        with atomic_path(out / f"{name}.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    atomic_write_json(path, merged)
    return out


def record_results(results_dir: str | os.PathLike, table, *, arrays: Optional[Mapping[str, Any]] = None,
                   verdicts=None, comparisons=None, tables: Optional[Mapping[str, Any]] = None,
                   figures: Optional[Mapping[str, Any]] = None, **metrics: Any) -> Path:
    """:func:`record` for an ablation page: ``table`` as ``table.csv`` and, in the metrics, its
    numeric columns by row (a multi-level row key ``("a", 0.5)`` becomes ``"a=0.5"``); the
    per-query ``arrays`` as ``per_query.npz`` (:mod:`reidlib.claims.per_query`); the claims' ``verdicts``
    (and their ``comparisons``) as ``claims.csv`` (``comparisons.csv``) and, in the metrics, as
    records; further ``tables``, ``figures`` and ``metrics`` as given."""
    from reidlib.claims import per_query

    numeric = table.select_dtypes("number")
    rows = {("=".join(f"{x:g}" if isinstance(x, float) else str(x) for x in k) if isinstance(k, tuple) else k): v
            for k, v in numeric.to_dict(orient="index").items()}
    out = {"table": rows, **metrics}
    extra = {"table": table, **(tables or {})}
    if verdicts is not None:
        out["claims"] = verdicts.to_dict(orient="records")
        extra["claims"] = verdicts
    if comparisons is not None:
        extra["comparisons"] = comparisons
    if arrays is not None:
        per_query.save(Path(results_dir) / "per_query.npz", arrays)
        out["per_query"] = "per_query.npz"
    return record(results_dir, out, tables=extra, figures=figures)

