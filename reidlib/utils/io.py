"""Atomic writes: every output file of reidlib is written to a temporary file in the same
folder and renamed into place, so an interrupted run never leaves a half-written file."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Use for writers that want a file name (``torch.save``, ``cv2.imwrite``, ``nbformat.write``).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf) replaced by ``None``: JSON has no NaN, and a
    bare ``NaN`` token breaks strict readers (``jq``, JavaScript, ``json.loads(parse_constant=...)``)."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    try:
        import numpy as np

        if isinstance(obj, np.floating):
            return json_safe(float(obj))
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return json_safe(obj.tolist())
    except ImportError:  # pragma: no cover
        pass
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """``obj`` as JSON, atomically; non-finite floats are written as ``null`` (see :func:`json_safe`)."""
    text = json.dumps(json_safe(obj), indent=indent, default=_json_default, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file: a file holding
    Python objects other than tensors and plain data is refused (unpickling them could run code
    from the file), and a truncated or corrupt file says so. Raises
    :class:`reidlib.errors.CheckpointError` (FileNotFoundError for a missing file)."""
    import pickle

    import torch

    from reidlib.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused: the file holds Python objects that weights_only loading does "
                              f"not allow (unpickling them could run code from the file): "
                              f"{str(err).splitlines()[0][:200]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable (truncated or corrupt torch file): "
                              f"{str(err).splitlines()[0][:200]}") from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, blocking: bool = True) -> Iterator[Path]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block. The OS releases
    it when the process dies, so a killed holder never blocks the next one. ``blocking=False``
    raises ``BlockingIOError`` at once when another process holds it."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, pandas objects (``to_dict``), paths and tuples made
    plain JSON types; mapping keys become strings. The one JSON converter of the package."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return jsonable(obj.to_dict())
    if isinstance(obj, Path):
        return str(obj)
    return obj
