"""Per-query results of an experiment, kept so that any comparison can be redone from committed
files without retraining (``results/<profile>/<experiment>/per_query.npz``).

For every row of a table and every training seed, the arrays of its evaluation: per-query AP,
INP and first-hit rank (re-ID tables), or per-image, per-part IoU (mask tables). Queries are in
the dataset's query order, named in ``units``; for protocols with several trials (VehicleID),
the trials' queries follow one another and ``units`` reads ``t<trial>/<image name>``.

Keys of the ``.npz`` file (plain arrays, no pickle): ``rows`` (the row names, in table order),
``units``, ``seeds`` and one array per row and field, ``<row>|<field>`` of shape ``[seeds, units]``
(``ap``, ``inp`` float32 with NaN for a query without a true match, ``first_rank`` int32 with -1
there) or ``[seeds, units, 3]`` (``iou``: front, rear, side; NaN where neither the mask nor the
ground truth has the part).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from reidlib.utils.io import atomic_path

__all__ = ["FIELDS", "METRICS", "from_evaluations", "from_mask_ious", "save", "load", "row_names", "values",
           "mean_iou_statistic"]

FIELDS = ("ap", "inp", "first_rank", "iou")
#: table metric -> (field, how a unit's value is read from it), in percent
METRICS = ("mAP", "R1", "R5", "mINP", "mean IoU")


def _key(row: Any, field: str) -> str:
    return f"{row}|{field}"


def _rank_results(evaluation: Mapping[str, Any]) -> list:
    return list(evaluation.get("rank_results") or [evaluation["rank_result"]])


def _query_names(evaluation: Mapping[str, Any], trials: int) -> list[str]:
    paths = (evaluation.get("query") or {}).get("paths")
    if trials == 1 and paths is not None:
        return [os.path.basename(p) for p in paths]
    sizes = [len(r.query_ap) for r in _rank_results(evaluation)]
    return [f"t{t}/{i}" for t, n in enumerate(sizes) for i in range(n)]


def from_evaluations(runs: Mapping[Any, Sequence[Mapping[str, Any]]], seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """``{row: [evaluation per seed]}`` (results of :func:`reidlib.engine.evaluation.evaluate_reid`)
    -> the arrays described in the module docstring."""
    out: dict[str, np.ndarray] = {"rows": np.array([str(r) for r in runs], dtype=str),
                                  "seeds": np.asarray(list(seeds), np.int64)}
    units = None
    for row, per_seed in runs.items():
        if len(per_seed) != len(seeds):
            raise ValueError(f"row {row!r}: {len(per_seed)} evaluations for {len(seeds)} seeds")
        fields: dict[str, list] = {"ap": [], "inp": [], "first_rank": []}
        for ev in per_seed:
            rrs = _rank_results(ev)
            fields["ap"].append(np.concatenate([r.query_ap for r in rrs]).astype(np.float32))
            fields["inp"].append(np.concatenate([r.query_inp for r in rrs]).astype(np.float32))
            fields["first_rank"].append(np.concatenate([r.query_first_rank for r in rrs]).astype(np.int32))
            names = _query_names(ev, len(rrs))
            if units is None:
                units = names
            elif names != units:
                raise ValueError(f"row {row!r} was evaluated on other queries than the first row: "
                                 "paired comparisons need the same queries")
        for f, arrs in fields.items():
            out[_key(row, f)] = np.stack(arrs)
    out["units"] = np.array(units or [], dtype=str)
    return out


def from_mask_ious(rows: Mapping[Any, Sequence[np.ndarray]], units: Sequence[str],
                   seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """``{row: [per-image IoU [N, 3] per seed]}`` (see :func:`reidlib.metrics.masks.part_mask_ious`)."""
    out: dict[str, np.ndarray] = {"rows": np.array([str(r) for r in rows], dtype=str),
                                  "seeds": np.asarray(list(seeds), np.int64),
                                  "units": np.array([os.path.basename(str(u)) for u in units], dtype=str)}
    for row, per_seed in rows.items():
        out[_key(row, "iou")] = np.stack([np.asarray(v, np.float32) for v in per_seed])
    return out


def save(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` compressed, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def row_names(arrays: Mapping[str, np.ndarray]) -> list[str]:
    return [str(r) for r in arrays["rows"]]


def values(arrays: Mapping[str, np.ndarray], row: Any, metric: str) -> np.ndarray:
    """Per-unit values of ``metric`` for ``row``, in percent: ``[seeds, units]`` (``mAP``: AP;
    ``R1`` / ``R5``: 100 if the first true match is within rank 1 / 5, else 0; ``mINP``: INP;
    NaN for queries without a true match), or ``[seeds, units, 3]`` per-part IoU (``mean IoU``)."""
    row = str(row)
    if metric == "mAP":
        return arrays[_key(row, "ap")].astype(np.float64) * 100.0
    if metric == "mINP":
        return arrays[_key(row, "inp")].astype(np.float64) * 100.0
    if metric in ("R1", "R5"):
        k = int(metric[1:])
        fr = arrays[_key(row, "first_rank")]
        return np.where(fr < 0, np.nan, (fr < k) * 100.0)
    if metric == "mean IoU":
        return arrays[_key(row, "iou")].astype(np.float64) * 100.0
    raise KeyError(f"unknown metric {metric!r}; expected one of {METRICS}")


def mean_iou_statistic(values: np.ndarray, seed_idx: np.ndarray, unit_idx: np.ndarray) -> float:
    """The mask tables' "mean IoU" of drawn seeds and images: per part, the mean over the images
    where the part is defined; then the mean over parts (:func:`reidlib.metrics.masks.part_mask_iou`)."""
    v = values[seed_idx][:, unit_idx]                        # [s, u, 3]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_part = np.nanmean(v.reshape(-1, v.shape[-1]), axis=0)
            return float(np.nanmean(per_part))
