"""Shared helpers for the real-data loaders: checked file access, line reading, image
verification, SynthVeRi manifests, split summaries.

Every problem with the input raises :class:`reidlib.errors.DataFormatError` naming the file,
the 1-based line number where there is one, and the expected form.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from reidlib.data.records import Record
from reidlib.errors import DataFormatError


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path if it is a folder, else raise DataFormatError naming it."""
    p = Path(path)
    if not p.is_dir():
        raise DataFormatError(p, "folder not found", expected=what)
    return p


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path if it is a file, else raise DataFormatError naming it."""
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "file not found", expected=what)
    return p


def first_existing(candidates: Sequence[str | os.PathLike], what: str) -> Path:
    """The first of ``candidates`` that is a file; else DataFormatError listing all of them."""
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    names = " or ".join(str(c) for c in candidates)
    raise DataFormatError(candidates[0], f"file not found (looked for {names})", expected=what)


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 (or ASCII) text file, stripping a BOM; undecodable bytes, or a file that cannot be
    read (permissions, a folder) -> DataFormatError."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                              expected="a plain-text list file") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise DataFormatError(path, f"cannot be read ({exc.strerror})",
                              expected="a readable plain-text file") from None


def iter_lines(path: str | os.PathLike, skip_blank: bool = True) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_line)`` (1-based) for each line of a text file.

    Blank lines are skipped when ``skip_blank`` (the default); with ``skip_blank=False`` only
    trailing blank lines at the end of the file are dropped (a blank line in the middle of an
    index file is an empty entry).
    """
    lines = read_text(path).splitlines()
    if not skip_blank:
        while lines and not lines[-1].strip():
            lines.pop()
    for no, raw in enumerate(lines, start=1):
        s = raw.strip()
        if skip_blank and not s:
            continue
        yield no, s


def require_records(records: Sequence[Record], list_path: str | os.PathLike, split: str,
                    form: str) -> Sequence[Record]:
    """``records`` if there is at least one, else DataFormatError naming ``list_path``: an empty
    query set or gallery would only fail later, deep in the evaluation."""
    if not records:
        raise DataFormatError(list_path, f"an empty {split}", expected=f"{form}: at least one {split} image")
    return records


def label_key(name: str) -> str:
    """The key that matches a label file's image name to a listed image: the basename with its
    extension in lower case (VeRi-776's keypoint files say ``.jpg`` for images that a copy may name
    ``.JPG``)."""
    stem, ext = os.path.splitext(os.path.basename(name.replace("\\", "/")))
    return stem + ext.lower()


def check_labels_match(label_file: str | os.PathLike, labelled: Iterable[str], images: Iterable[str],
                       form: str) -> None:
    """A label file must label at least one of the dataset's ``images`` (keys as in ``labelled``):
    one that names none of them (another copy's paths, another dataset) would leave every view
    unknown in silence, so it raises DataFormatError naming it."""
    labelled = set(labelled)
    if not labelled:
        raise DataFormatError(label_file, "no label line", expected=form)
    if labelled.isdisjoint(images):
        raise DataFormatError(label_file, f"none of its {len(labelled)} labelled images is an image of the dataset "
                              f"(e.g. {min(labelled)})", expected=f"{form}, naming the dataset's images")


class DirListing:
    """Cached ``os.listdir`` sets, so checking that 50k listed images exist costs one listdir
    per folder instead of one stat per image."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[str]] = {}

    def contains(self, folder: str | os.PathLike, name: str) -> bool:
        key = str(folder)
        entries = self._cache.get(key)
        if entries is None:
            try:
                entries = frozenset(os.listdir(key))
            except (FileNotFoundError, NotADirectoryError):
                entries = frozenset()
            self._cache[key] = entries
        return name in entries


@contextlib.contextmanager
def _truncated_not_tolerated() -> Iterator[None]:
    from PIL import ImageFile

    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _decode(path: str | os.PathLike) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except FileNotFoundError:
        raise DataFormatError(path, "image file not found", expected="a readable image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFormatError(path, f"image cannot be fully decoded ({exc})",
                              expected="a complete, readable image (JPEG) file") from None


def verify_image(path: str | os.PathLike) -> None:
    """Decode all of an image's data with Pillow (truncated files *not* tolerated, whatever
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says elsewhere); raise DataFormatError naming the file
    if it is unreadable, truncated or corrupt. JPEGs are decoded at 1/8 scale (``draft``), which
    still reads every entropy-coded byte, so a missing end is caught (OpenCV's ``imread`` only
    warns "Premature end of JPEG file" and returns the grey-filled image)."""
    with _truncated_not_tolerated():
        _decode(path)


def verify_readable(records: Iterable[Record], num_threads: Optional[int] = None) -> None:
    """Fully decode every image (as :func:`verify_image`, on ``num_threads`` threads: Pillow
    decodes without the GIL; default: CPU cores, at most 8); raise DataFormatError for the first
    listed one that is unreadable, truncated or corrupt."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [r.path for r in records]
    n = num_threads or min(8, os.cpu_count() or 1)
    with _truncated_not_tolerated():
        if n <= 1 or len(paths) < 64:
            for p in paths:
                _decode(p)
            return
        ex = ThreadPoolExecutor(n)
        try:
            for _ in ex.map(_decode, paths):         # raises the first error in list order
                pass
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------ SynthVeRi
SYNTH_MANIFEST = "manifest.json"
SYNTH_MARKER = ".incomplete"
SYNTH_META = "synthveri_meta.csv"
#: list file -> manifest count of SynthVeRi 1.0.0 manifests, which predate ``lists``
_LEGACY_LISTS = {"name_train.txt": "train_images", "name_query.txt": "query_images", "name_test.txt": "test_images"}


def synth_manifest(root: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The manifest of a SynthVeRi folder (``manifest.json`` with ``"generator": "SynthVeRi"``),
    or None for any other folder. A folder SynthVeRi has not finished (its ``.incomplete`` marker)
    raises DataFormatError: its lists may be partial."""
    root = Path(root)
    marker = root / SYNTH_MARKER
    if marker.is_file() and '"SynthVeRi"' in _peek(marker):
        raise DataFormatError(marker, "an unfinished SynthVeRi run (interrupted, or still being generated)",
                              expected="a finished folder: re-run the same generate(...) / python -m "
                                       "reidlib.data.synth command, which resumes it")
    path = root / SYNTH_MANIFEST
    if not path.is_file():
        return None
    try:
        man = json.loads(read_text(path))
    except ValueError as exc:
        if '"SynthVeRi"' in _peek(path):
            raise DataFormatError(path, f"not valid JSON ({exc})", expected="SynthVeRi's manifest") from None
        return None
    return man if isinstance(man, dict) and man.get("generator") == "SynthVeRi" else None


def _peek(path: Path) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read(4096)
    except OSError:
        return ""


def synth_list_counts(manifest: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """list file (relative to the root, ``/``-separated) -> ``{"images": n, "ids": k}`` (``ids``
    absent for 1.0.0 manifests, whose VeRi-776 counts are used)."""
    lists = manifest.get("lists")
    if isinstance(lists, dict):
        return {k: v for k, v in lists.items() if isinstance(v, dict)}
    counts = manifest.get("counts") or {}
    return {f: {"images": counts[c]} for f, c in _LEGACY_LISTS.items() if c in counts}


def check_synth_list(root: Path, manifest: Optional[Mapping[str, Any]], list_path: Path,
                     records: Sequence[Record]) -> None:
    """For a SynthVeRi folder: the images (and ids) read from ``list_path`` must be what
    ``manifest.json`` recorded for it; a cut or edited list raises DataFormatError naming it."""
    if manifest is None:
        return
    try:
        rel = Path(list_path).relative_to(root).as_posix()
    except ValueError:
        return
    want = synth_list_counts(manifest).get(rel)
    if want is None:
        return
    found = {"images": len(records), "ids": len({r.pid for r in records})}
    for key in ("images", "ids"):
        if key in want and found[key] != want[key]:
            raise DataFormatError(
                list_path, f"{found[key]} {key} listed, but {root / SYNTH_MANIFEST} records {want[key]} for "
                f"{rel} (the list was cut or edited)",
                expected=f"SynthVeRi's list as generated ({want['images']} images"
                         + (f" of {want['ids']} ids" if "ids" in want else "")
                         + "): regenerate the folder or restore the list")


SYNTH_META_FORM = ("a CSV header with 'path' and 'orientation', then one row per image (path relative to the "
                   "root, orientation 0-7)")


def check_synth_orientations(root: Path, manifest: Optional[Mapping[str, Any]], orientations: Mapping[str, int],
                             records: Iterable[Record]) -> None:
    """For a SynthVeRi folder with ``synthveri_meta.csv``: its rows (``orientations``, from
    :func:`synth_orientations`) must label some of ``records``, else DataFormatError naming it."""
    if manifest is not None and (root / SYNTH_META).is_file():
        check_labels_match(root / SYNTH_META, orientations, (r.path for r in records), SYNTH_META_FORM)


def synth_orientations(root: Path, manifest: Optional[Mapping[str, Any]]) -> dict[str, int]:
    """Absolute image path -> 8-way orientation from a SynthVeRi folder's ``synthveri_meta.csv``
    (VehicleID / VERI-Wild layouts); empty for other folders."""
    if manifest is None or not (root / SYNTH_META).is_file():
        return {}
    path = root / SYNTH_META
    out: dict[str, int] = {}
    form = SYNTH_META_FORM
    rows = csv.reader(read_text(path).splitlines())
    header = next(rows, [])
    if "path" not in header or "orientation" not in header:
        raise DataFormatError(path, f"header {header!r}", line=1, expected=form)
    ip, io_ = header.index("path"), header.index("orientation")
    for no, row in enumerate(rows, start=2):
        if not row:
            continue
        try:
            o, rel = int(row[io_]), row[ip]
            if not 0 <= o <= 7:
                raise ValueError
        except (IndexError, ValueError):
            raise DataFormatError(path, f"bad row {row!r}", line=no, expected=form) from None
        out[str(root / rel)] = o
    return out


def summarize(splits: Mapping[str, Sequence[Record]]):
    """Counts per split as a pandas DataFrame: index = split name, columns ``ids``, ``images``,
    ``cameras`` and ``with_view`` (images whose view label is known)."""
    import pandas as pd

    rows = {}
    for name, recs in splits.items():
        rows[name] = {
            "ids": len({r.pid for r in recs}),
            "images": len(recs),
            "cameras": len({r.camid for r in recs}),
            "with_view": sum(r.view is not None for r in recs),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["ids", "images", "cameras", "with_view"])


def is_int(tok: str) -> bool:
    """Whether ``tok`` reads as an integer."""
    try:
        int(tok)
    except ValueError:
        return False
    return True


def check_test_size(dataset: str, root: Path, manifest: Optional[dict], test_size: Any,
                    official: Sequence[int]) -> int:
    """``test_size`` as an int, or ConfigError: one of the dataset's ``official`` sizes, or, for a
    SynthVeRi folder, one of the test lists its manifest records (``test_sizes``)."""
    from reidlib.errors import ConfigError

    sizes = tuple(official)
    if manifest is not None and isinstance(manifest.get("test_sizes"), dict):
        sizes = tuple(sorted(int(k) for k in manifest["test_sizes"]))
    if int(test_size) not in sizes:
        where = f" (the test lists of the SynthVeRi folder {root})" if sizes != tuple(official) else ""
        raise ConfigError(f"{dataset} test_size must be one of {sizes}{where}, got {test_size!r}")
    return int(test_size)
