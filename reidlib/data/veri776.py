"""VeRi-776 loader (Liu et al., ICME 2016 / TMM 2018), with Wang et al.'s (ICCV 2017) viewpoint labels.

Layout under ``root`` (the official release, and SynthVeRi's output):

* ``image_train/``, ``image_query/``, ``image_test/`` (the gallery) and the lists
  ``name_train.txt``, ``name_query.txt``, ``name_test.txt``: one file name a line (an empty query
  or gallery list raises).
* File name ``VVVV_cCCC_TTTTTTTT_N.jpg`` (e.g. ``0002_c002_00030600_0.jpg``): 4-digit vehicle id,
  camera ``cCCC``, 8-digit timestamp, a trailing index that is not interpreted. Id and camera
  are parsed from the file name only, never from the folder.
* Optional ``keypoint_train.txt`` / ``keypoint_test.txt``: ``<relative path> x1 y1 ... x20 y20
  orientation`` (42 whitespace-separated integer fields), keyed by the basename of field 0 (its
  extension in any case: ``x.jpg`` labels an image listed as ``x.JPG``). A keypoint file that
  labels none of the listed images (or holds no line) raises instead of leaving every view
  unknown. Orientation 0-7 is mapped to SPAN's 5 view classes by
  :func:`reidlib.data.views.orientation_to_view5`. Exact duplicate lines (the official
  ``keypoint_test.txt`` holds 500) are tolerated, as are repeats with the same orientation;
  an image listed with *different* orientations is reported (a warning and
  :attr:`VeRi776.label_conflicts`) and its label is set to unknown. Images without a label
  get ``orientation=None, view=None``.
* Optional ``gt_index.txt`` / ``jk_index.txt``: one line per query of ``name_query.txt``,
  1-based indices into ``name_test.txt`` (true matches / junk = same id and same camera).
  They are loaded 0-based into :attr:`VeRi776.gt_index` / :attr:`VeRi776.jk_index`;
  :meth:`VeRi776.check_protocol` verifies them against the ids and cameras. The evaluator does
  not need them: it applies the same market-style rule (drop same id AND same camera).
* SynthVeRi folders (``manifest.json`` by SynthVeRi, :mod:`reidlib.data.synth`): each name list
  must hold the images and ids the manifest records for it (a cut list raises instead of
  silently training on part of the data); an unfinished one (``.incomplete``) is refused.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Optional

from reidlib.data._parsing import (DirListing, check_labels_match, check_synth_list, is_int, iter_lines, label_key,
                                   require_dir, require_file, require_records, summarize, synth_manifest,
                                   verify_readable)
from reidlib.data.records import Record
from reidlib.data.views import orientation_to_view5
from reidlib.errors import DataFormatError

NAME_FORM = "VVVV_cCCC_TTTTTTTT_N.jpg (e.g. 0002_c002_00030600_0.jpg)"
NAME_RE = re.compile(r"^(\d{4})_c(\d{3})_(\d{8})_([0-9A-Za-z]+)\.(?:jpg|jpeg)$", re.IGNORECASE)
KEYPOINT_FORM = ("42 whitespace-separated fields: <relative path> x1 y1 ... x20 y20 orientation "
                 "(integers; orientation 0-7)")
INDEX_FORM = "one line per query of name_query.txt: 1-based integer indices into name_test.txt"

#: split -> (image folder, list file)
SPLITS = {"train": ("image_train", "name_train.txt"),
          "query": ("image_query", "name_query.txt"),
          "gallery": ("image_test", "name_test.txt")}
KEYPOINT_FILES = ("keypoint_train.txt", "keypoint_test.txt")


def parse_veri_name(name: str) -> tuple[int, int]:
    """``(pid, camid)`` from a VeRi-776 file name (basename only); ValueError if it does not match."""
    m = NAME_RE.match(os.path.basename(name))
    if m is None:
        raise ValueError(f"{name!r} does not match {NAME_FORM}")
    return int(m.group(1)), int(m.group(2))


class VeRi776:
    """VeRi-776: ``train`` (576 ids / 37,778 images), ``query`` (1,678) and ``gallery``
    (``image_test``, 11,579), as lists of :class:`~reidlib.data.records.Record`.

    ``Record.path`` is ``<root>/<image folder>/<file name>`` (root made absolute); ``pid`` and
    ``camid`` are the integers of the file name (``c002`` -> 2). Every listed image must exist
    (checked by listing each folder once); ``verify_images=True`` also decodes every image.

    Attributes: ``root``, ``name`` (``"veri776"``), ``train``, ``query``, ``gallery``,
    ``label_conflicts`` (``{basename: [(keypoint file, line, orientation), ...]}``),
    ``gt_index`` / ``jk_index`` (``list[list[int]]``, 0-based gallery indices, or None),
    ``keypoint_files`` (the keypoint files that were read), ``manifest`` (SynthVeRi's manifest, or
    None for other data).
    """

    name = "veri776"

    def __init__(self, root: str | os.PathLike, verify_images: bool = False):
        self.root = Path(os.path.abspath(os.fspath(root)))
        require_dir(self.root, "the VeRi-776 root folder (image_train/, image_query/, image_test/, name_*.txt)")
        self.manifest = synth_manifest(self.root)
        self.label_conflicts: dict[str, list[tuple[str, int, int]]] = {}
        self.keypoint_files: list[str] = []
        orientations, labelled = self._read_keypoints()

        listing = DirListing()
        splits = {}
        for split, (folder, list_name) in SPLITS.items():
            splits[split] = self._read_split(folder, list_name, orientations, listing)
            if split != "train":
                require_records(splits[split], self.root / list_name, split, f"{NAME_FORM}, one a line")
            check_synth_list(self.root, self.manifest, self.root / list_name, splits[split])
        images = {label_key(r.path) for recs in splits.values() for r in recs}
        for kp_path, keys in labelled.items():
            check_labels_match(kp_path, keys, images, KEYPOINT_FORM)
        self.train: list[Record] = splits["train"]
        self.query: list[Record] = splits["query"]
        self.gallery: list[Record] = splits["gallery"]

        self.gt_index: Optional[list[list[int]]] = self._read_index("gt_index.txt")
        self.jk_index: Optional[list[list[int]]] = self._read_index("jk_index.txt")

        if verify_images:
            verify_readable(self.train + self.query + self.gallery)

    # ------------------------------------------------------------------ parsing
    def _read_split(self, folder: str, list_name: str, orientations: dict[str, Optional[int]],
                    listing: DirListing) -> list[Record]:
        img_dir = require_dir(self.root / folder, f"the image folder {folder}/ of VeRi-776")
        list_path = require_file(self.root / list_name, f"the list {list_name}: {NAME_FORM}, one a line")
        records: list[Record] = []
        seen: dict[str, int] = {}
        duplicates: list[str] = []
        for no, line in iter_lines(list_path):
            # a line may carry a folder prefix; id and camera come from the basename only
            fname = os.path.basename(line.replace("\\", "/"))
            m = NAME_RE.match(fname)
            if m is None:
                raise DataFormatError(list_path, f"bad file name {line!r}", line=no, expected=NAME_FORM)
            if not listing.contains(img_dir, fname):
                raise DataFormatError(list_path, f"listed image {fname} not found in {img_dir}", line=no,
                                      expected=f"every name in {list_name} to exist in {folder}/")
            if fname in seen:
                duplicates.append(f"{fname} (lines {seen[fname]} and {no})")
            seen.setdefault(fname, no)
            o = orientations.get(label_key(fname))
            records.append(Record(path=str(img_dir / fname), pid=int(m.group(1)), camid=int(m.group(2)),
                                  orientation=o, view=None if o is None else orientation_to_view5(o)))
        if duplicates:
            warnings.warn(f"{list_path}: {len(duplicates)} repeated file name(s), kept as listed, "
                          f"e.g. {', '.join(duplicates[:3])}", stacklevel=3)
        return records

    def _read_keypoints(self) -> tuple[dict[str, Optional[int]], dict[Path, set[str]]]:
        """``(label key -> orientation (0-7), or None for images with conflicting labels;
        keypoint file -> the label keys it holds)``; keys are :func:`label_key` of the basename."""
        first: dict[str, tuple[str, int, int]] = {}     # key -> (file, line, orientation)
        conflicts: dict[str, list[tuple[str, int, int]]] = {}
        labelled: dict[Path, set[str]] = {}
        for kp_name in KEYPOINT_FILES:
            kp_path = self.root / kp_name
            if not kp_path.is_file():
                continue
            self.keypoint_files.append(str(kp_path))
            keys = labelled.setdefault(kp_path, set())
            for no, line in iter_lines(kp_path):
                fields = line.split()
                if len(fields) != 42:
                    raise DataFormatError(kp_path, f"{len(fields)} fields", line=no, expected=KEYPOINT_FORM)
                try:
                    nums = [int(f) for f in fields[1:]]
                except ValueError:
                    bad = next(f for f in fields[1:] if not is_int(f))
                    raise DataFormatError(kp_path, f"non-integer field {bad!r}", line=no,
                                          expected=KEYPOINT_FORM) from None
                orient = nums[-1]
                if not 0 <= orient <= 7:
                    raise DataFormatError(kp_path, f"orientation {orient} out of range", line=no,
                                          expected=KEYPOINT_FORM)
                base = label_key(fields[0])
                keys.add(base)
                entry = (kp_name, no, orient)
                if base not in first:
                    first[base] = entry
                elif first[base][2] != orient:
                    lst = conflicts.setdefault(base, [first[base]])
                    lst.append(entry)
                elif base in conflicts:
                    conflicts[base].append(entry)
        out: dict[str, Optional[int]] = {b: e[2] for b, e in first.items()}
        for b in conflicts:
            out[b] = None
        self.label_conflicts = conflicts
        if conflicts:
            examples = "; ".join(
                f"{b}: " + ", ".join(f"{f}:{ln} -> {o}" for f, ln, o in v)
                for b, v in list(conflicts.items())[:3])
            warnings.warn(f"{len(conflicts)} image(s) have conflicting orientation labels in "
                          f"{'/'.join(KEYPOINT_FILES)}; their view is set to unknown (None). "
                          f"e.g. {examples}", stacklevel=3)
        return out, labelled

    def _read_index(self, fname: str) -> Optional[list[list[int]]]:
        path = self.root / fname
        if not path.is_file():
            return None
        n_gal = len(self.gallery)
        rows: list[list[int]] = []
        for no, line in iter_lines(path, skip_blank=False):
            row = []
            for tok in line.split():
                if not is_int(tok):
                    raise DataFormatError(path, f"non-integer index {tok!r}", line=no, expected=INDEX_FORM)
                v = int(tok)
                if not 1 <= v <= n_gal:
                    raise DataFormatError(path, f"index {v} outside 1..{n_gal} (name_test.txt has {n_gal} images)",
                                          line=no, expected=INDEX_FORM)
                row.append(v - 1)
            rows.append(row)
        if len(rows) != len(self.query):
            raise DataFormatError(path, f"{len(rows)} lines for {len(self.query)} queries", expected=INDEX_FORM)
        return rows

    # ------------------------------------------------------------------ protocol
    def check_protocol(self) -> list[int]:
        """Verify ``gt_index`` / ``jk_index`` against the ids and cameras of the file names.

        For query ``i`` the true matches must be exactly the gallery images with the same id and a
        different camera, and the junk exactly those with the same id and the same camera (the
        market-style rule our evaluator applies). Returns the 0-based indices of the queries whose
        lists disagree (empty list = the index files agree with the rule). Only the files that
        were found are checked; raises DataFormatError if neither is present.
        """
        if self.gt_index is None and self.jk_index is None:
            raise DataFormatError(self.root / "gt_index.txt", "neither gt_index.txt nor jk_index.txt found",
                                  expected="at least one of them to check the protocol")
        by_pid: dict[int, list[int]] = {}
        for j, g in enumerate(self.gallery):
            by_pid.setdefault(g.pid, []).append(j)
        bad = []
        for i, q in enumerate(self.query):
            same = by_pid.get(q.pid, [])
            gt = {j for j in same if self.gallery[j].camid != q.camid}
            jk = {j for j in same if self.gallery[j].camid == q.camid}
            ok = True
            if self.gt_index is not None and set(self.gt_index[i]) != gt:
                ok = False
            if self.jk_index is not None and set(self.jk_index[i]) != jk:
                ok = False
            if not ok:
                bad.append(i)
        return bad

    def summary(self):
        """pandas DataFrame of ids / images / cameras / images with a view label per split."""
        return summarize({"train": self.train, "query": self.query, "gallery": self.gallery})

    def __repr__(self) -> str:
        return (f"VeRi776(root={str(self.root)!r}, train={len(self.train)}, query={len(self.query)}, "
                f"gallery={len(self.gallery)})")
