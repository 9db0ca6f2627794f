"""JSON-lines training logs: one JSON object per log step (``iter``, ``lr``, the losses, timings),
appended and flushed at once so that a killed run keeps every line it printed.

(This module is ``reidlib.engine.logging``; it does not shadow the standard library's ``logging``
for absolute imports.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from reidlib.utils.io import atomic_write_text, jsonable


class JSONLLogger:
    """Append-only JSON-lines writer.

    ``resume_from=N`` first drops the lines whose ``iter`` is greater than ``N`` (written by a run
    that was killed after its last checkpoint), so that a resumed run's log reads as if it had
    never been interrupted.
    """

    def __init__(self, path: str | os.PathLike, resume_from: Optional[int] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is None:
            self.path.write_text("")  # a fresh run starts a fresh log
        elif self.path.exists():
            kept = [r for r in read_jsonl(self.path) if int(r.get("iter", 0)) <= resume_from]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, record: Mapping[str, Any]) -> dict:
        rec = jsonable(dict(record), nonfinite=str)  # tensors -> numbers; NaN -> "nan" (valid JSON)
        self._fh.write(json.dumps(rec, sort_keys=False) + "\n")
        self._fh.flush()
        return rec

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "JSONLLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the records of a JSON-lines file; a truncated last line (killed writer) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


def read_log(path: str | os.PathLike):
    """The log as a pandas DataFrame (one row per log step), for plotting loss curves."""
    import pandas as pd

    return pd.json_normalize(read_jsonl(path), sep=".")
