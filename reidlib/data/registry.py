"""The dataset table: every dataset reidlib reads, its loader and its evaluation protocol.

==============  ==========================  =================  =============================================
name            loader                      test sizes         protocol
==============  ==========================  =================  =============================================
``veri776``     :class:`VeRi776`            (one test set)     market style: same id *and* camera is junk
``vehicleid``   :class:`VehicleID`          800, 1600, 2400    10 seeded trials, one gallery image per id
``veriwild``    :class:`VERIWild`           3000, 5000, 10000  market style (same-id same-camera removed)
==============  ==========================  =================  =============================================

SynthVeRi is written in VeRi-776's layout (and, with ``layout=``, in the other two), so the same
table serves it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from reidlib.errors import ConfigError

__all__ = ["DatasetSpec", "DATASETS", "load_dataset", "spec_of", "accepted_test_sizes"]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Callable[..., Any]
    test_sizes: tuple = ()      #: the official test-set sizes (empty: one test set)
    trials: int = 1             #: evaluation trials of the protocol (VehicleID: 10 random gallery draws)
    cameras: bool = True        #: whether the dataset has cameras (VehicleID has none)

    def load(self, root: str | os.PathLike, test_size: Optional[Any] = None, **kwargs):
        if not root:
            raise ConfigError(f"no folder given for dataset {self.name!r} (data.root / data_root is empty); point "
                              "it at your copy, or make SynthVeRi with `python -m reidlib.data.synth OUT --preset tiny`")
        if self.test_sizes:
            kwargs["test_size"] = int(test_size) if test_size not in (None, "") else self.test_sizes[0]
        elif test_size not in (None, ""):
            raise ConfigError(f"dataset {self.name!r} has a single test set; test_size={test_size!r} does not apply")
        return self.loader(root, **kwargs)


def _veri776(root, **kw):
    from reidlib.data.veri776 import VeRi776

    return VeRi776(root, **kw)


def _vehicleid(root, **kw):
    from reidlib.data.vehicleid import VehicleID

    return VehicleID(root, **kw)


def _veriwild(root, **kw):
    from reidlib.data.veriwild import VERIWild

    return VERIWild(root, **kw)


DATASETS: dict[str, DatasetSpec] = {
    "veri776": DatasetSpec("veri776", _veri776),
    "vehicleid": DatasetSpec("vehicleid", _vehicleid, (800, 1600, 2400), trials=10, cameras=False),
    "veriwild": DatasetSpec("veriwild", _veriwild, (3000, 5000, 10000)),
}


def load_dataset(name: str, root: str | os.PathLike, test_size: Optional[Any] = None, **kwargs):
    """The dataset ``name`` (a key of :data:`DATASETS`) read from ``root``; ``test_size`` picks the
    test set where the dataset has several (default: the smallest)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name].load(root, test_size, **kwargs)


def spec_of(dataset: Any) -> DatasetSpec:
    """The table entry of a loaded dataset object (by its ``name`` attribute)."""
    name = getattr(dataset, "name", None)
    if name not in DATASETS:
        raise ConfigError(f"{type(dataset).__name__} is not a dataset of the table (name {name!r}); expected one "
                          f"of {', '.join(DATASETS)}")
    return DATASETS[name]


def accepted_test_sizes(name: str) -> tuple:
    """The ``test_size`` values dataset ``name`` accepts besides ``None`` (its first test set):
    its official test-set sizes, ``()`` for a dataset with one test set (then only ``None``)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return tuple(DATASETS[name].test_sizes)
