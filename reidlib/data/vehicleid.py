"""VehicleID loader (Liu et al., CVPR 2016) with a seeded, automatic version of its test protocol.

Layout under ``root``: ``image/<imgid>.jpg``; ``train_test_split/train_list.txt`` and
``train_test_split/test_list_{800,1600,2400}.txt`` (small / medium / large), lines
``<imgid> <vid>``.

Protocol (the one the literature reports): for each id of the chosen test list, one randomly
chosen image is the gallery and all its other images are queries; this is repeated over 10
trials and the mean (and spread) reported. Peers draw the trials unseeded and by hand; here
trial ``t`` draws with ``numpy.random.default_rng([seed, t])`` so every trial is reproducible,
and :func:`vehicleid_all_trials` runs them all.

Cameras: VehicleID has none. Every image gets a *distinct* ``camid`` (its 0-based line index in
its list file: ``train_list.txt`` for train, the test list for query and gallery), so the
evaluator's same-id-and-same-camera filter never removes a gallery image. Do not use these
camids for camera-aware models (they are not cameras).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from reidlib.data._parsing import DirListing, iter_lines, require_dir, require_file, summarize, verify_readable
from reidlib.data.records import Record
from reidlib.errors import ConfigError, DataFormatError

TEST_SIZES = (800, 1600, 2400)
LINE_FORM = "<imgid> <vid> (two whitespace-separated fields, vid an integer; image/<imgid>.jpg must exist)"


class VehicleID:
    """VehicleID with test set ``test_size`` (800 small / 1600 medium / 2400 large) and the
    query/gallery split of trial ``trial`` (any integer >= 0; the protocol uses 0..9).

    Attributes: ``root``, ``name`` (``"vehicleid"``), ``test_size``, ``trial``, ``seed``,
    ``train``, ``query``, ``gallery`` (lists of :class:`~reidlib.data.records.Record`; path
    ``<root>/image/<imgid>.jpg``, pid = vid as written, camid = distinct per image, see module doc).
    ``gallery`` holds exactly one image per test id; ``query`` all the others, in list order.
    """

    name = "vehicleid"

    def __init__(self, root: str | os.PathLike, test_size: int = 800, trial: int = 0, seed: int = 0,
                 verify_images: bool = False):
        if int(test_size) not in TEST_SIZES:
            raise ConfigError(f"VehicleID test_size must be one of {TEST_SIZES}, got {test_size!r}")
        _check_trial(trial)
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.test_size = int(test_size)
        self.seed = int(seed)
        require_dir(self.root, "the VehicleID root folder (image/, train_test_split/)")
        img_dir = require_dir(self.root / "image", "the VehicleID image folder image/<imgid>.jpg")
        split_dir = require_dir(self.root / "train_test_split",
                                "the VehicleID list folder train_test_split/ (train_list.txt, test_list_*.txt)")
        listing = DirListing()
        self.train: list[Record] = _read_list(split_dir / "train_list.txt", img_dir, listing)
        self._test: list[Record] = _read_list(split_dir / f"test_list_{self.test_size}.txt", img_dir, listing)
        if verify_images:
            verify_readable(self.train + self._test)
        self._apply_trial(int(trial))

    # ------------------------------------------------------------------ trials
    def _apply_trial(self, trial: int) -> None:
        self.trial = trial
        rng = np.random.default_rng([self.seed, trial])
        by_pid: dict[int, list[int]] = {}
        for i, r in enumerate(self._test):
            by_pid.setdefault(r.pid, []).append(i)
        chosen = set()
        for pid in sorted(by_pid):          # fixed order, so the draw only depends on (seed, trial)
            idx = by_pid[pid]
            chosen.add(idx[int(rng.integers(len(idx)))])
        self.gallery: list[Record] = [r for i, r in enumerate(self._test) if i in chosen]
        self.query: list[Record] = [r for i, r in enumerate(self._test) if i not in chosen]

    def with_trial(self, trial: int) -> "VehicleID":
        """The same dataset (lists already parsed) with the query/gallery split of ``trial``."""
        _check_trial(trial)
        other = copy.copy(self)
        other._apply_trial(int(trial))
        return other

    def summary(self):
        """pandas DataFrame of ids / images / cameras per split (cameras = images: one per image)."""
        return summarize({"train": self.train, "query": self.query, "gallery": self.gallery})

    def __repr__(self) -> str:
        return (f"VehicleID(root={str(self.root)!r}, test_size={self.test_size}, trial={self.trial}, "
                f"seed={self.seed}, train={len(self.train)}, query={len(self.query)}, gallery={len(self.gallery)})")


def _check_trial(trial: Any) -> None:
    if isinstance(trial, bool) or not isinstance(trial, (int, np.integer)) or int(trial) < 0:
        raise ConfigError(f"VehicleID trial must be an integer >= 0, got {trial!r}")


def _read_list(path: Path, img_dir: Path, listing: DirListing) -> list[Record]:
    require_file(path, f"the VehicleID list {path.name}: lines {LINE_FORM}")
    out: list[Record] = []
    for no, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise DataFormatError(path, f"{len(fields)} fields in {line!r}", line=no, expected=LINE_FORM)
        imgid, vid = fields
        try:
            pid = int(vid)
        except ValueError:
            raise DataFormatError(path, f"vehicle id {vid!r} is not an integer", line=no, expected=LINE_FORM) from None
        fname = f"{imgid}.jpg"
        if "/" in imgid or "\\" in imgid or not listing.contains(img_dir, fname):
            raise DataFormatError(path, f"listed image {fname} not found in {img_dir}", line=no, expected=LINE_FORM)
        # camid: the running line index -> distinct for every image of this list (no cameras)
        out.append(Record(path=str(img_dir / fname), pid=pid, camid=len(out)))
    return out


def vehicleid_all_trials(root: str | os.PathLike, test_size: int,
                         evaluate_fn: Callable[[VehicleID], Mapping[str, Any]],
                         seed: int = 0, num_trials: int = 10) -> dict:
    """Run the VehicleID protocol: ``evaluate_fn(dataset)`` on trials ``0..num_trials-1``.

    The lists are parsed once; each trial is :meth:`VehicleID.with_trial`. ``evaluate_fn`` returns
    a dict of metrics. Returns ``{"per_trial": [metrics of trial 0, ...], "mean": {...},
    "std": {...}, "trials": [0, ...], "seed": seed}`` where mean/std cover every key whose value
    is a number (or an equal-shape array / list of numbers, reduced element-wise) in all trials;
    ``std`` is the sample standard deviation (ddof=1; 0.0 for a single trial).
    """
    if int(num_trials) < 1:
        raise ConfigError(f"num_trials must be >= 1, got {num_trials!r}")
    base = VehicleID(root, test_size=test_size, trial=0, seed=seed)
    per_trial = []
    for t in range(int(num_trials)):
        ds = base if t == 0 else base.with_trial(t)
        metrics = evaluate_fn(ds)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"evaluate_fn must return a dict of metrics, got {type(metrics).__name__}")
        per_trial.append(dict(metrics))
    mean, std = _aggregate(per_trial)
    return {"per_trial": per_trial, "mean": mean, "std": std,
            "trials": list(range(int(num_trials))), "seed": int(seed)}


def _aggregate(per_trial: list[dict]) -> tuple[dict, dict]:
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    keys = [k for k in per_trial[0] if all(k in m for m in per_trial)]
    for k in keys:
        vals = [m[k] for m in per_trial]
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals):
            arr = np.asarray(vals, dtype=np.float64)
            mean[k] = float(arr.mean())
            std[k] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
            continue
        try:
            arr = np.asarray([np.asarray(v, dtype=np.float64) for v in vals])
        except (TypeError, ValueError):
            continue                       # non-numeric or ragged: not aggregated
        if arr.dtype != np.float64 or arr.ndim < 2:
            continue
        mean[k] = arr.mean(axis=0).tolist()
        std[k] = (arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1:])).tolist()
    return mean, std
