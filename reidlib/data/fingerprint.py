"""Fingerprints of what a run reads besides its configuration: a dataset folder and a weights file.

A run configuration names its dataset by path (``data.root``) and its initial weights by path
(``model.weights``); a cache keyed on the configuration alone hands back old models after the
folder or the file changed under the same name. These fingerprints identify them by content,
cheaply enough to compute whenever a run is looked up:

* :func:`dataset_fingerprint`: the bytes of the list and metadata files (every file directly in
  the root, such as ``name_*.txt``, ``keypoint_*.txt``, ``gt_index.txt``, SynthVeRi's
  ``manifest.json`` and ``synthveri_meta.csv``, and the files of ``train_test_split/``:
  VehicleID's and VERI-Wild's lists, ``vehicle_info.txt``), and the relative path, size and
  modification time of every other file below the root (the images and masks: listed with
  :func:`os.scandir`, never opened). Entries whose name starts with ``.`` (locks, caches) are
  left out; symbolic links are followed. A VeRi-776-sized folder (~51,000 images) takes well
  under a second; the result is kept in-process per root and the ``stat`` of its list files
  and image folders, so asking again is free until one of them changes.
* :func:`weights_fingerprint`: the sha256 of a weights file's bytes (an ImageNet ResNet-50 is
  ~100 MB, a fraction of a second), kept in-process per path, size and modification time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["dataset_fingerprint", "weights_fingerprint", "LIST_DIRS", "MAX_LIST_BYTES"]

VERSION = 1
#: folders below the root whose files are lists (hashed by content, like the root's own files)
LIST_DIRS = ("train_test_split",)
#: list files above this size are identified by size and modification time only (a stray archive)
MAX_LIST_BYTES = 256 * 2**20
_CHUNK = 2**20

_datasets: dict[tuple, str] = {}
_weights: dict[tuple, str] = {}


def _visible(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _stat(entry: os.DirEntry) -> tuple[int, int]:
    try:
        st = entry.stat()
    except OSError:                    # a dangling link
        return -1, -1
    return st.st_size, st.st_mtime_ns


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _signature(root: str) -> tuple:
    """What :func:`dataset_fingerprint` is cached by: the ``stat`` of the list files and of the
    folders directly below the root (adding, removing or renaming an image changes its folder's)."""
    sig = []
    for folder in (root, *(os.path.join(root, d) for d in LIST_DIRS)):
        if not os.path.isdir(folder):
            continue
        for e in _visible(folder):
            st = e.stat() if e.is_dir() or e.is_file() else None
            sig.append((folder, e.name, e.is_dir(), st and st.st_size, st and st.st_mtime_ns, st and st.st_ino))
    return tuple(sig)


def _tree(folder: str, rel: str, seen: set) -> Iterator[str]:
    """``"path size mtime"`` of every visible file below ``folder`` (depth first, sorted)."""
    st = os.stat(folder)
    if (st.st_dev, st.st_ino) in seen:        # a link back up the tree
        return
    seen.add((st.st_dev, st.st_ino))
    for e in _visible(folder):
        path = f"{rel}/{e.name}" if rel else e.name
        if e.is_dir():
            yield from _tree(e.path, path, seen)
        else:
            size, mtime = _stat(e)
            yield f"{path} {size} {mtime}"


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """A 16-hex-digit fingerprint of the dataset folder ``root`` (see the module docstring):
    equal for the same lists and the same image files, different when a list is cut or edited or
    an image is added, removed, replaced or touched. FileNotFoundError if ``root`` is no folder."""
    root = os.path.abspath(os.fspath(Path(root).expanduser()))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    key = (root, _signature(root))
    if key in _datasets:
        return _datasets[key]
    h = hashlib.sha256(f"reidlib dataset fingerprint v{VERSION}".encode())
    lists = {os.path.join(root, d) for d in LIST_DIRS}
    seen: set = {(os.stat(root).st_dev, os.stat(root).st_ino)}
    for top in (root, *sorted(lists)):
        if not os.path.isdir(top):
            continue
        rel = "" if top == root else os.path.relpath(top, root).replace(os.sep, "/")
        for e in _visible(top):
            if e.is_dir():
                continue
            size, mtime = _stat(e)
            name = f"{rel}/{e.name}" if rel else e.name
            body = _sha256(e.path) if 0 <= size <= MAX_LIST_BYTES else f"{size} {mtime}"
            h.update(f"\nlist {name} {body}".encode())
    for e in _visible(root):
        if e.is_dir() and e.path not in lists:
            h.update("".join(f"\nfile {line}" for line in _tree(e.path, e.name, seen)).encode())
    _datasets[key] = h.hexdigest()[:16]
    return _datasets[key]


def weights_fingerprint(path: str | os.PathLike) -> str:
    """A 16-hex-digit fingerprint of the weights file ``path``: the sha256 of its bytes (so a
    copy or a touched file keeps it, and a file rewritten under the same name does not).
    FileNotFoundError if there is no such file."""
    path = os.path.abspath(os.fspath(Path(path).expanduser()))
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _weights:
        _weights[key] = _sha256(path)[:16]
    return _weights[key]
