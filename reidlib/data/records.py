"""The record every loader returns: one image with its identity, camera and (when known) view."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Record:
    """One image of a re-ID split.

    ``pid``: vehicle id as written in the dataset (not relabelled); ``camid``: camera index
    (VeRi ``c002`` -> 2; VehicleID has no cameras: every image gets a distinct camera so that
    no gallery item is ever filtered as same-camera); ``orientation``: 8-way code (0-7) or None;
    ``view``: SPAN 5-way view class (index into ``reidlib.data.views.VIEW5``) or None.
    """

    path: str
    pid: int
    camid: int
    orientation: Optional[int] = None
    view: Optional[int] = None
