"""Files: atomic writes (every output file of reidlib is written to a temporary file in the same
folder and renamed into place, so an interrupted run never leaves a half-written file), safe
checkpoint loading, the package's one inter-process lock (:func:`file_lock`) and its one JSON
converter (:func:`jsonable`)."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union


def _umask_at_import() -> int:
    """The umask when this module was imported (``os.umask`` can only be read by setting it: done
    once, here, before any thread of reidlib writes a file)."""
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = _umask_at_import()
_PROC_STATUS = "/proc/self/status"


def current_umask() -> int:
    """The process's umask, read without changing it: the ``Umask:`` line of ``/proc/self/status``
    (Linux 4.7+), else the umask this module saw at import."""
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split(":", 1)[1].strip(), 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Use for writers that want a file name (``torch.save``, ``cv2.imwrite``, ``nbformat.write``).
    On an exception the temporary file is removed and ``path`` is left untouched. The file gets
    the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask), not
    ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:  # mkstemp makes the file 0600; the file written is the user's, as open() would make it
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        tmp_path.unlink()
        raise
    finally:
        os.close(fd)
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
    """``torch.load(path, weights_only=True)`` with errors that name the file, as one line: a file
    holding Python objects other than tensors and plain data is refused (unpickling them could run
    code from the file); an empty file, a file that is no torch file at all (text, zeros) and a
    truncated or corrupt one each say so. Raises :class:`reidlib.errors.CheckpointError`
    (FileNotFoundError for a missing file)."""
    import pickle

    import torch

    from reidlib.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    expected = "expected a file written by torch.save"
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes); {expected}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:                      # noqa: BLE001 - whatever fails, the file is at fault
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln or "allowlisted" in ln),
                      lines[0] if lines else type(err).__name__)[:200].rstrip(".")
        refused = isinstance(err, pickle.UnpicklingError) and "Unsupported operand" not in detail
    # torch.save writes a zip archive (legacy: a pickle, whose protocol 2+ opcode is 0x80)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        text = head.decode("utf-8", errors="replace")
        begins = (f"text {text.splitlines()[0][:40]!r}" if all(c.isprintable() or c.isspace() for c in text)
                  else f"bytes {head[:8].hex(' ')}")
        raise CheckpointError(f"{path}: not a torch file (it begins with {begins}); {expected}")
    if refused:
        raise CheckpointError(f"{path}: refused: the file holds Python objects that weights_only loading does "
                              f"not allow (unpickling them could run code from the file): {detail}; {expected} "
                              "holding only tensors, numbers, strings, lists and dicts")
    raise CheckpointError(f"{path}: unreadable (truncated or corrupt torch file: {detail}); {expected}, complete")


class LockHeld(BlockingIOError):
    """:func:`file_lock` could not take the lock: another process holds it. ``holder`` is what
    that process noted in the lock file (``note_holder``), ``""`` when it noted nothing."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path, self.holder = path, holder


def _read_holder(fh) -> str:
    try:
        fh.seek(0)
        return fh.read().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, blocking: bool = True, timeout: Optional[float] = None,
              note_holder: Union[bool, str] = False, on_wait: Optional[Callable[[str], None]] = None,
              error: Optional[Callable[[str], BaseException]] = None) -> Iterator[Path]:
    """An exclusive ``flock`` on ``path`` (created, with its folder, if missing) for the ``with``
    block. The OS releases it when the process dies, so a killed holder never blocks the next one.

    * ``blocking=True`` and no ``timeout``: wait for the lock as long as it takes (one blocking
      ``flock``, unless ``on_wait`` asks to be told: then it polls every 0.1 s);
    * ``blocking=False``: one attempt; ``timeout`` (seconds): attempts every 0.1 s until that long
      has passed. Then it raises ``error(holder)`` (default :class:`LockHeld`), ``holder`` being
      what the process that holds it noted in the file;
    * ``on_wait(holder)``: called once, the first time the lock is found held (and not given up);
    * ``note_holder``: once the lock is taken the file is rewritten to say who holds it: ``True``
      writes ``pid N since <time>``, a string is written as it is.

    Without ``fcntl`` (not POSIX) there is no inter-process lock: the block runs unlocked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    with open(path, "a+") as fh:
        if blocking and timeout is None and on_wait is None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        else:
            t0, told = time.monotonic(), False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _read_holder(fh)
                    if not blocking or (timeout is not None and time.monotonic() - t0 >= timeout):
                        raise (error(holder) if error is not None else LockHeld(path, holder)) from None
                    if on_wait is not None and not told:
                        on_wait(holder)
                    told = True
                    time.sleep(0.1)
        try:
            if note_holder:
                fh.seek(0)
                fh.truncate()
                fh.write(note_holder if isinstance(note_holder, str) else
                         f"pid {os.getpid()} since {datetime.datetime.now().isoformat(timespec='seconds')}")
                fh.flush()
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_PLAIN = (str, int, float, bool, type(None))


def jsonable(obj: Any, *, nonfinite: Optional[Callable[[float], Any]] = None,
             default: Optional[Callable[[Any], Any]] = None) -> Any:
    """``obj`` as plain JSON types: dataclasses (``asdict``), mappings (keys become strings),
    lists and tuples, 0-d tensors and numpy scalars (``.item()``), numpy arrays, pandas objects
    (``to_dict``) and paths. The one JSON converter of the package.

    ``nonfinite``: what a NaN / infinite float becomes (None: left as it is; the JSON-lines logs
    pass ``str``). ``default``: what a leaf of any other type (not ``str``, ``int``, ``float``,
    ``bool``, ``None``) becomes (None: left as it is; checkpoint configs pass ``str``)."""
    import dataclasses
    import math

    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None

    def conv(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            o = dataclasses.asdict(o)
        if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", 0) == 0:
            o = o.item()  # torch / numpy scalars
        if isinstance(o, float) and nonfinite is not None and not math.isfinite(o):
            return nonfinite(o)
        if isinstance(o, Mapping):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if np is not None and isinstance(o, np.ndarray):
            return conv(o.tolist())
        if hasattr(o, "to_dict") and callable(o.to_dict):
            return conv(o.to_dict())
        if isinstance(o, Path):
            return str(o)
        if default is not None and not isinstance(o, _PLAIN):
            return default(o)
        return o

    return conv(obj)
