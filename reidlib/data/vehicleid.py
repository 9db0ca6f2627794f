"""VehicleID loader (Liu et al., CVPR 2016) with a seeded, automatic version of its test protocol.

Layout under ``root``: ``image/<imgid>.jpg``; ``train_test_split/train_list.txt`` and
``train_test_split/test_list_{800,1600,2400}.txt`` (small / medium / large), lines
``<imgid> <vid>``.

Protocol (the one the literature reports): for each id of the chosen test list, one randomly
chosen image is the gallery and all its other images are queries; this is repeated over 10
trials and the mean (and spread) reported. Peers draw the trials unseeded and by hand; here
trial ``t`` draws with ``numpy.random.default_rng([seed, t])`` so every trial is reproducible
(:meth:`VehicleID.with_trial`); :func:`reidlib.engine.evaluation.evaluate_reid` evaluates all of
them, extracting each image's features once.

Cameras: VehicleID has none. Every image gets a *distinct* ``camid`` (its 0-based line index in
its list file: ``train_list.txt`` for train, the test list for query and gallery), so the
evaluator's same-id-and-same-camera filter never removes a gallery image. Do not use these
camids for camera-aware models (they are not cameras).

SynthVeRi folders in this layout (``python -m reidlib.data.synth OUT --layout vehicleid``, see
:mod:`reidlib.data.synth.layouts`): ``test_size`` takes the list names the folder's
``manifest.json`` offers in ``test_sizes`` (800 / 1600 / 2400, holding as many ids as the preset
has: tiny 3 / 6 / 10); every list must hold the images and ids the manifest records (a cut list
raises); views come from ``synthveri_meta.csv`` (``Record.orientation`` / ``view``; None otherwise;
a ``synthveri_meta.csv`` that labels none of the listed images raises).

A test list that leaves the query set or the gallery empty (no line, or every id with a single
image) raises, naming the list.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from reidlib.data._parsing import (DirListing, check_synth_list, check_synth_orientations, check_test_size,
                                   iter_lines, require_dir, require_file, require_records, summarize,
                                   synth_manifest, synth_orientations, verify_readable)
from reidlib.data.records import Record
from reidlib.data.views import orientation_to_view5
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
    ``manifest``: SynthVeRi's manifest, or None for other data. ``test_size`` must be one of
    :data:`TEST_SIZES`, or of the SynthVeRi folder's ``test_sizes``.
    """

    name = "vehicleid"

    def __init__(self, root: str | os.PathLike, test_size: int = 800, trial: int = 0, seed: int = 0,
                 verify_images: bool = False):
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.manifest = synth_manifest(self.root) if self.root.is_dir() else None
        self.test_size = check_test_size("VehicleID", self.root, self.manifest, test_size, TEST_SIZES)
        _check_trial(trial)
        self.seed = int(seed)
        require_dir(self.root, "the VehicleID root folder (image/, train_test_split/)")
        img_dir = require_dir(self.root / "image", "the VehicleID image folder image/<imgid>.jpg")
        split_dir = require_dir(self.root / "train_test_split",
                                "the VehicleID list folder train_test_split/ (train_list.txt, test_list_*.txt)")
        listing = DirListing()
        orient = synth_orientations(self.root, self.manifest)
        self.train: list[Record] = _read_list(split_dir / "train_list.txt", img_dir, listing, orient)
        check_synth_list(self.root, self.manifest, split_dir / "train_list.txt", self.train)
        test_list = split_dir / f"test_list_{self.test_size}.txt"
        self._test: list[Record] = _read_list(test_list, img_dir, listing, orient)
        require_records(self._test, test_list, "gallery", f"lines {LINE_FORM}")
        if len({r.pid for r in self._test}) == len(self._test):    # the protocol keeps one per id for the gallery
            raise DataFormatError(test_list, f"an empty query: each of its {len(self._test)} ids has a single "
                                  "image, which the gallery takes", expected="some ids with two or more images")
        check_synth_list(self.root, self.manifest, test_list, self._test)
        check_synth_orientations(self.root, self.manifest, orient, self.train + self._test)
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


def _read_list(path: Path, img_dir: Path, listing: DirListing,
               orientations: Mapping[str, int] | None = None) -> list[Record]:
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
        o = orientations.get(str(img_dir / fname)) if orientations else None
        out.append(Record(path=str(img_dir / fname), pid=pid, camid=len(out), orientation=o,
                          view=None if o is None else orientation_to_view5(o)))
    return out
