"""Shared helpers for the real-data loaders: checked file access, line reading, split summaries.

Every problem with the input raises :class:`reidlib.errors.DataFormatError` naming the file,
the 1-based line number where there is one, and the expected form.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

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
    """Read a UTF-8 (or ASCII) text file, stripping a BOM; undecodable bytes -> DataFormatError."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                              expected="a plain-text list file") from None


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


def verify_readable(records: Iterable[Record]) -> None:
    """Decode every image (reduced size, so it is quick); raise DataFormatError for the first
    one that cannot be read."""
    import cv2

    for r in records:
        img = cv2.imread(r.path, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if img is None:
            raise DataFormatError(r.path, "image cannot be decoded", expected="a readable JPEG image")


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
