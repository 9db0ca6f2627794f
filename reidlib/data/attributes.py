"""Attribute labels of SynthVeRi images: the task of the generic stand-in for ImageNet pretraining.

The papers start every model from ImageNet, a *generic* classification task: no compared model is
trained on it. Pretraining the trunk as a re-ID model (identity classification + triplet, the
strong baseline's own recipe) would give the baseline a head start, so the stand-in learns
something else: to classify each image's **attributes** (body type, colour, grille, head / tail
light shapes, SPAN's 5-way view), shared by many vehicles, never which vehicle it is. The re-ID
models' task is identity; these labels hold none.

``identities.json`` (written by :mod:`reidlib.data.synth.writer`) is keyed by ``str(vid)``; every
SynthVeRi layout writes the vid as the record's ``pid`` (VeRi-776 ``0007_c003_...`` -> ``pid 7`` ->
key ``"7"``; VehicleID / VERI-Wild list the vid itself), so ``str(int(record.pid))`` is the key.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from reidlib.data.synth.identities import BODY_WEIGHTS, COLOURS
from reidlib.data.views import VIEW5
from reidlib.errors import DataFormatError

__all__ = ["ATTRIBUTES", "IDENTITIES_FILE", "attribute_labels"]

IDENTITIES_FILE = "identities.json"

#: attribute -> its class names, in label order (label ``i`` is ``ATTRIBUTES[name][i]``). Grille and
#: light shapes are the generator's style indices (``sample_family``: 5 grilles, 4 head / tail lights)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "body_type": tuple(BODY_WEIGHTS),
    "colour": tuple(COLOURS),
    "grille": tuple(str(i) for i in range(5)),
    "headlight": tuple(str(i) for i in range(4)),
    "taillight": tuple(str(i) for i in range(4)),
    "view": VIEW5,                 # from the record (the image), not from the identity
}


def _identities(root: str | os.PathLike) -> tuple[Path, dict]:
    path = Path(root) / IDENTITIES_FILE
    if not path.is_file():
        raise DataFormatError(path, f"not found: the generic stand-in needs SynthVeRi's {IDENTITIES_FILE} in {root}",
                              expected="a folder written by reidlib.data.synth.generate")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(path, f"not JSON ({err})", expected="SynthVeRi's identities (vid -> attributes)") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, f"holds a {type(data).__name__}", expected="a JSON object keyed by vehicle id")
    return path, data


def attribute_labels(records: Sequence, root: str | os.PathLike,
                     names: Optional[Sequence[str]] = None) -> np.ndarray:
    """``int64 [N, A]`` class indices of ``records`` (one column per attribute of ``names``,
    default every one of :data:`ATTRIBUTES`, in that order), read from ``root/identities.json``;
    -1 where unknown (a record without a view). A record whose ``pid`` has no entry, or an entry
    whose value is not a class of the attribute, is a :class:`DataFormatError` naming the file."""
    names = list(ATTRIBUTES) if names is None else list(names)
    unknown = [n for n in names if n not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"names: unknown attribute(s) {unknown}; expected some of {list(ATTRIBUTES)}")
    path, idents = _identities(root)
    index = {n: {c: i for i, c in enumerate(ATTRIBUTES[n])} for n in names}
    out = np.full((len(records), len(names)), -1, dtype=np.int64)      # [N, A]
    for i, r in enumerate(records):
        ident = idents.get(str(int(r.pid)))
        if ident is None:
            raise DataFormatError(path, f"no identity {int(r.pid)} (the pid of {r.path})",
                                  expected="the identities.json of the folder the records were loaded from")
        for j, n in enumerate(names):
            if n == "view":                            # SPAN's view class index (0-4) or None
                if r.view is not None:
                    out[i, j] = int(r.view)
                continue
            value = ident.get(n)
            if value is None:
                continue
            label = index[n].get(str(value))
            if label is None:
                raise DataFormatError(path, f"identity {int(r.pid)}: {n} {value!r} is not one of {list(ATTRIBUTES[n])}",
                                      expected="SynthVeRi's attribute values (reidlib.data.attributes.ATTRIBUTES)")
            out[i, j] = label
    return out
