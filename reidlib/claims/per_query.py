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

The unit of resampling is the *cluster* a unit belongs to (:mod:`reidlib.claims.stats`): ``groups``
holds one label per unit — the query's vehicle identity (for VehicleID's trials the same identity
in every trial; for mask tables the image's vehicle) — and ``group_kind`` says what a label is
("vehicle identity", or "image" where images are independent). Files saved before these keys
existed still load: :func:`clusters` then falls back to resampling units one by one, with a note.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from reidlib.claims.stats import mean_statistic, part_mean_statistic
from reidlib.utils.io import atomic_path

__all__ = ["FIELDS", "METRICS", "from_evaluations", "from_mask_ious", "save", "load", "row_names", "values",
           "clusters", "means", "mean_iou_statistic", "IDENTITY", "common_seeds"]

FIELDS = ("ap", "inp", "first_rank", "iou")
#: table metric -> (field, how a unit's value is read from it), in percent
METRICS = ("mAP", "R1", "R5", "mINP", "mean IoU")
#: what a cluster label of re-ID queries and vehicle images is
IDENTITY = "vehicle identity"


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


def _query_pids(evaluation: Mapping[str, Any], trials: int):
    """The evaluation's query identities in unit order, when it carries them (one trial: its
    ``query`` features; several: ``query_pids`` per trial, or each trial's ``query``); else None."""
    if trials == 1:
        pids = (evaluation.get("query") or {}).get("pids")
        return None if pids is None else np.asarray(pids).ravel()
    per_trial = evaluation.get("query_pids")
    if per_trial is None:
        per_trial = [(t.get("query") or {}).get("pids") for t in evaluation.get("per_trial") or []]
    if len(per_trial) != trials or any(p is None for p in per_trial):
        return None
    return np.concatenate([np.asarray(p).ravel() for p in per_trial])


def _group_array(groups: Sequence) -> np.ndarray:
    g = np.asarray(list(groups) if not isinstance(groups, np.ndarray) else groups).ravel()
    return g.astype(np.int64) if g.dtype.kind in "iub" else g.astype(str)


def from_evaluations(runs: Mapping[Any, Sequence[Mapping[str, Any]]], seeds: Sequence[int],
                     pids: Sequence | None = None) -> dict[str, np.ndarray]:
    """``{row: [evaluation per seed]}`` (results of :func:`reidlib.engine.evaluation.evaluate_reid`)
    -> the arrays described in the module docstring. The queries' identities (``groups``) are
    ``pids`` (one per unit, trials one after another) when given, else read from the evaluations
    (:func:`_query_pids`); without either, the arrays carry no ``groups``."""
    out: dict[str, np.ndarray] = {"rows": np.array([str(r) for r in runs], dtype=str),
                                  "seeds": np.asarray(list(seeds), np.int64)}
    units, found = None, None
    for row, per_seed in runs.items():
        if not 1 <= len(per_seed) <= len(seeds):
            raise ValueError(f"row {row!r}: {len(per_seed)} evaluations for {len(seeds)} seeds (a row has "
                             "the first 1 ... all of the seeds)")
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
            if found is None:
                found = _query_pids(ev, len(rrs))
        for f, arrs in fields.items():
            out[_key(row, f)] = np.stack(arrs)
    out["units"] = np.array(units or [], dtype=str)
    groups = pids if pids is not None else found
    if groups is not None:
        out.update(_groups(groups, len(out["units"]), IDENTITY))
    return out


def _groups(groups: Sequence, n_units: int, kind: str) -> dict[str, np.ndarray]:
    g = _group_array(groups)
    if len(g) != n_units:
        raise ValueError(f"{len(g)} cluster labels (identities) for {n_units} units")
    return {"groups": g, "group_kind": np.array(kind)}


def from_mask_ious(rows: Mapping[Any, Sequence[np.ndarray]], units: Sequence[str], seeds: Sequence[int],
                   groups: Sequence | None = None, group_kind: str = IDENTITY) -> dict[str, np.ndarray]:
    """``{row: [per-image IoU [N, 3] per seed]}`` (see :func:`reidlib.metrics.masks.part_mask_ious`);
    ``groups``: each image's cluster (its vehicle's identity; ``group_kind`` says what a label is)."""
    out: dict[str, np.ndarray] = {"rows": np.array([str(r) for r in rows], dtype=str),
                                  "seeds": np.asarray(list(seeds), np.int64),
                                  "units": np.array([os.path.basename(str(u)) for u in units], dtype=str)}
    for row, per_seed in rows.items():
        out[_key(row, "iou")] = np.stack([np.asarray(v, np.float32) for v in per_seed])
    if groups is not None:
        out.update(_groups(groups, len(out["units"]), group_kind))
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


def common_seeds(*vals: np.ndarray) -> list[np.ndarray]:
    """``vals`` (each ``[seeds, units, ...]``) cut to the seeds they all have: a row trained with
    fewer seeds (a secondary row, :attr:`reidlib.study.Variant.seeds`) holds the study's *first*
    seeds, so a comparison with it is paired on those."""
    n = min(np.asarray(v).shape[0] for v in vals)
    return [np.asarray(v)[:n] for v in vals]


def clusters(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray | None, str, str]:
    """``(groups, what a cluster is, note)`` of ``arrays``: the saved cluster labels, or for files
    saved without them ``None`` (units resampled one by one, as if independent) and a note saying so."""
    if "groups" in arrays:
        return arrays["groups"], str(arrays.get("group_kind", IDENTITY)), ""
    unit = "image" if any(k.endswith("|iou") for k in arrays) else "query"
    return None, unit, (f"no identities saved with these results: resampled by {unit}, as if "
                        f"{unit} results were independent (the interval is too narrow where they are not)")


def means(arrays: Mapping[str, np.ndarray], metric: str) -> dict[str, float]:
    """Every row's ``metric`` (%) over all its seeds and units (the table's value)."""
    stat = mean_iou_statistic if metric == "mean IoU" else mean_statistic
    out = {}
    for row in row_names(arrays):
        v = np.asarray(values(arrays, row, metric), np.float64)
        out[row] = stat(v, np.arange(v.shape[0]), np.arange(v.shape[1]))
    return out


#: the mask tables' "mean IoU" of drawn seeds and images: per part, the mean over the images where
#: the part is defined; then the mean over parts (:func:`reidlib.metrics.masks.part_mask_iou`)
mean_iou_statistic = part_mean_statistic
