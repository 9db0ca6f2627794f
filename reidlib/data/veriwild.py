"""VERI-Wild loader (Lou et al., CVPR 2019).

Layout under ``root``: ``images/<vid>/<imgid>.jpg``; the lists ``train_list.txt``,
``test_{3000,5000,10000}.txt`` (the gallery of the small / medium / large test set) and
``test_{3000,5000,10000}_query.txt``, lines ``vid/imgid``; and ``vehicle_info.txt``: a header
line, then ``;``-separated fields, field 0 ``vid/imgid``, field 1 the camera id.
The official release keeps the lists and ``vehicle_info.txt`` in ``train_test_split/``; this
loader looks there first and then directly under ``root``. Line 1 of ``vehicle_info.txt`` is
taken as the header only if it does not read as data (field 0 ``vid/imgid`` with numeric ids, or
field 1 an integer camera): a copy saved without its header keeps its first vehicle, and a
malformed data line raises, naming the file and the line.

SynthVeRi folders in this layout (``--layout veriwild``, :mod:`reidlib.data.synth.layouts`):
``test_size`` takes the list names the manifest offers in ``test_sizes``; every list must hold
the images and ids the manifest records (a cut list raises); views come from
``synthveri_meta.csv`` (one that labels none of the listed images raises). An empty query or
gallery list raises, naming it.

Protocol: the official VERI-Wild protocol is the market-style one: for each query, gallery
images with the same id AND the same camera are removed before ranking (a query image that is
also listed in the gallery is removed by that rule too). This loader does not filter anything;
it gives every record its camera from ``vehicle_info.txt`` and the evaluator
(:mod:`reidlib.metrics`) applies the rule. A large-test distance matrix (10,000 x ~128,500) is
over 5 GB in float32: evaluate it in chunks.
"""
from __future__ import annotations

import os
from pathlib import Path

from reidlib.data._parsing import (DirListing, check_synth_list, check_synth_orientations, check_test_size,
                                   first_existing, is_int, iter_lines, require_dir, require_records, summarize,
                                   synth_manifest, synth_orientations, verify_readable)
from reidlib.data.records import Record
from reidlib.data.views import orientation_to_view5
from reidlib.errors import DataFormatError

TEST_SIZES = (3000, 5000, 10000)
LINE_FORM = "vid/imgid (e.g. 00001/000001; images/<vid>/<imgid>.jpg must exist)"
INFO_FORM = ("an optional header line, then 'vid/imgid;camera;...' (';'-separated, field 0 vid/imgid, "
             "field 1 an integer camera id)")
LIST_DIRS = ("train_test_split", ".")


class VERIWild:
    """VERI-Wild with test set ``test_size`` (3000 small / 5000 medium / 10000 large).

    Attributes: ``root``, ``name`` (``"veriwild"``), ``test_size``, ``train``, ``query``,
    ``gallery`` (lists of :class:`~reidlib.data.records.Record`: path ``<root>/images/<vid>/<imgid>.jpg``,
    pid = int(vid), camid from ``vehicle_info.txt``; view labels only for SynthVeRi), ``list_dir`` (where
    the lists were found), ``manifest`` (SynthVeRi's manifest, or None for other data).
    Any listed image missing on disk or missing from ``vehicle_info.txt`` raises DataFormatError.
    """

    name = "veriwild"

    def __init__(self, root: str | os.PathLike, test_size: int = 3000, verify_images: bool = False):
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.manifest = synth_manifest(self.root) if self.root.is_dir() else None
        self.test_size = check_test_size("VERI-Wild", self.root, self.manifest, test_size, TEST_SIZES)
        require_dir(self.root, "the VERI-Wild root folder (images/, train_test_split/)")
        img_dir = require_dir(self.root / "images", "the VERI-Wild image folder images/<vid>/<imgid>.jpg")

        def find(name: str) -> Path:
            return first_existing([self.root / d / name if d != "." else self.root / name for d in LIST_DIRS],
                                  f"the VERI-Wild file {name}")

        info_path = find("vehicle_info.txt")
        self.list_dir = info_path.parent
        cameras = _read_vehicle_info(info_path)
        listing = DirListing()
        orient = synth_orientations(self.root, self.manifest)

        def read(name: str, split: str = "") -> list[Record]:
            path = find(name)
            records = _read_list(path, img_dir, cameras, info_path, listing, orient)
            if split:
                require_records(records, path, split, LINE_FORM + ", one a line")
            check_synth_list(self.root, self.manifest, path, records)
            return records

        self.train: list[Record] = read("train_list.txt")
        self.query: list[Record] = read(f"test_{self.test_size}_query.txt", "query")
        self.gallery: list[Record] = read(f"test_{self.test_size}.txt", "gallery")
        check_synth_orientations(self.root, self.manifest, orient, self.train + self.query + self.gallery)
        if verify_images:
            verify_readable(self.train + self.query + self.gallery)

    def summary(self):
        """pandas DataFrame of ids / images / cameras per split."""
        return summarize({"train": self.train, "query": self.query, "gallery": self.gallery})

    def __repr__(self) -> str:
        return (f"VERIWild(root={str(self.root)!r}, test_size={self.test_size}, train={len(self.train)}, "
                f"query={len(self.query)}, gallery={len(self.gallery)})")


def _split_key(key: str) -> tuple[str, str] | None:
    parts = key.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1] or not parts[0].isdigit():
        return None
    return parts[0], parts[1]


def _is_header(line: str) -> bool:
    """Whether the first line of ``vehicle_info.txt`` is a header: neither field 0 reads as
    ``vid/imgid`` with numeric ids nor field 1 as an integer camera (the official header is
    ``id/image;Camera ID;Time;Model;Type;Color``)."""
    fields = line.split(";")
    key = _split_key(fields[0].strip())
    if key is not None and key[1].isdigit():
        return False
    return not (len(fields) > 1 and is_int(fields[1].strip()))


def _read_vehicle_info(path: Path) -> dict[str, int]:
    """``vid/imgid -> camera id``; line 1 is skipped when it is a header (:func:`_is_header`)."""
    cams: dict[str, int] = {}
    where: dict[str, int] = {}
    for no, line in iter_lines(path):
        if no == 1 and _is_header(line):
            continue                      # header (e.g. "id/image;Camera ID;Time;Model;Type;Color")
        fields = line.split(";")
        if len(fields) < 2:
            raise DataFormatError(path, f"{len(fields)} ';'-separated field(s) in {line!r}", line=no,
                                  expected=INFO_FORM)
        key = fields[0].strip()
        if _split_key(key) is None:
            raise DataFormatError(path, f"bad image key {key!r}", line=no, expected=INFO_FORM)
        try:
            cam = int(fields[1].strip())
        except ValueError:
            raise DataFormatError(path, f"camera {fields[1]!r} is not an integer", line=no,
                                  expected=INFO_FORM) from None
        if key in cams and cams[key] != cam:
            raise DataFormatError(path, f"{key} has camera {cam} here but {cams[key]} on line {where[key]}",
                                  line=no, expected="one camera per image")
        cams[key] = cam
        where.setdefault(key, no)
    return cams


def _read_list(path: Path, img_dir: Path, cameras: dict[str, int], info_path: Path,
               listing: DirListing, orientations: dict[str, int] | None = None) -> list[Record]:
    out: list[Record] = []
    for no, line in iter_lines(path):
        parts = _split_key(line)
        if parts is None:
            raise DataFormatError(path, f"bad entry {line!r}", line=no, expected=LINE_FORM)
        vid, imgid = parts
        fname = f"{imgid}.jpg"
        if not listing.contains(img_dir / vid, fname):
            raise DataFormatError(path, f"listed image {vid}/{fname} not found in {img_dir}", line=no,
                                  expected=LINE_FORM)
        cam = cameras.get(line)
        if cam is None:
            raise DataFormatError(path, f"{line} has no camera: not in {info_path}", line=no,
                                  expected=f"every listed image to have a line in {info_path.name}")
        o = orientations.get(str(img_dir / vid / fname)) if orientations else None
        out.append(Record(path=str(img_dir / vid / fname), pid=int(vid), camid=cam, orientation=o,
                          view=None if o is None else orientation_to_view5(o)))
    return out
