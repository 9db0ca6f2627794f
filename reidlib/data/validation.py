"""A validation split carved from the training identities: how a run shows it trained to a plateau.

Neither paper reports a validation set; both train for a fixed schedule. A reproduction on other
data (and shorter schedules) has to show that every compared model had stopped improving when its
training stopped, without looking at the test set. So ``n_ids`` training identities are held out
(never trained on) and laid out as VeRi-776's test set is (:func:`validation_split`): one query per
(identity, camera), every image of those identities in the gallery; the evaluation protocol drops
a query's same-identity same-camera gallery images, so a query never finds itself.

The identities are drawn with a fixed seed from the sorted training identities, the same for every
model and training seed of a study (the split is part of the data, not of a run).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ValidationSplit", "validation_split", "validation_ids"]

#: the seed of the identity draw (fixed: every run of a study holds out the same identities)
SPLIT_SEED = 0


@dataclass(frozen=True)
class ValidationSplit:
    """The training records left to train on, and the held-out identities as query / gallery."""

    train: list
    query: list
    gallery: list
    ids: tuple          #: the held-out identities, sorted
    #: evaluated as VeRi-776's test set is (:data:`reidlib.data.registry.DATASETS`)
    name: str = "veri776"
    gt_index = None
    jk_index = None

    def __len__(self) -> int:
        return len(self.gallery)


def validation_ids(records: Sequence, n_ids: int) -> tuple:
    """The ``n_ids`` identities of ``records`` held out for validation (a fixed draw from the
    sorted identities; :data:`SPLIT_SEED`). ``n_ids`` must leave at least two to train on."""
    pids = sorted({r.pid for r in records})
    if n_ids < 0 or n_ids > len(pids) - 2:
        raise ValueError(f"data.val_ids={n_ids}: expected 0 ... {max(len(pids) - 2, 0)} (the training split has "
                         f"{len(pids)} identities; at least two must stay in training)")
    if n_ids == 0:
        return ()
    rng = np.random.default_rng(SPLIT_SEED)
    return tuple(sorted(pids[i] for i in rng.choice(len(pids), size=n_ids, replace=False)))


def validation_split(records: Sequence, n_ids: int) -> ValidationSplit:
    """``records`` (a training split) without ``n_ids`` held-out identities, and those identities
    as a VeRi-style query / gallery: the first image (in record order) of each (identity, camera)
    is a query; the gallery holds all their images. Identities seen by one camera only give no
    query with a true match and are left out of the query."""
    held = set(validation_ids(records, n_ids))
    train = [r for r in records if r.pid not in held]
    gallery = [r for r in records if r.pid in held]
    cams: dict = {}
    for r in gallery:
        cams.setdefault(r.pid, set()).add(r.camid)
    seen, query = set(), []
    for r in gallery:
        key = (r.pid, r.camid)
        if key not in seen and len(cams[r.pid]) > 1:
            seen.add(key)
            query.append(r)
    return ValidationSplit(train=train, query=query, gallery=gallery, ids=tuple(sorted(held)))
