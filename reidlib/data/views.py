"""Viewpoint vocabularies shared by the real-data loaders, SynthVeRi and the analyses.

* ``ORIENTATION8``: Wang et al. (ICCV 2017) 8-way orientation codes used in VeRi-776's
  ``keypoint_*.txt``: 0 front, 1 rear, 2 left, 3 left-front, 4 left-rear, 5 right, 6 right-front,
  7 right-rear.
* ``VIEW5``: SPAN's 5 view classes F, R, S, FS, RS (SPAN Sec. 3.1, 4.1), and their semantic label vectors
  l = [front, rear, side] (SPAN Sec. 3.1).
"""
from __future__ import annotations

ORIENTATION8 = ("front", "rear", "left", "left-front", "left-rear", "right", "right-front", "right-rear")
#: yaw of each 8-way orientation in degrees, 0 = seen from the front, counter-clockwise via the left side.
ORIENTATION8_YAW = (0.0, 180.0, 90.0, 45.0, 135.0, 270.0, 315.0, 225.0)

VIEW5 = ("F", "R", "S", "FS", "RS")
#: orientation code (0-7) -> SPAN view class index into VIEW5
ORIENTATION8_TO_VIEW5 = (0, 1, 2, 3, 4, 2, 3, 4)
#: SPAN view class -> semantic label vector l = [front, rear, side]
VIEW5_LABEL = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1))

PARTS = ("front", "rear", "side")
#: values of SynthVeRi's part label maps (masks/<split>/<stem>.png)
PART_LABELS = {"background": 0, "front": 1, "rear": 2, "side": 3, "roof": 4}

VIEW_RELATIONS = ("same", "adjacent", "opposite")


def orientation_to_view5(orientation: int) -> int:
    """Map an 8-way orientation code to SPAN's 5-way view class index."""
    if not 0 <= int(orientation) <= 7:
        raise ValueError(f"orientation must be in 0..7, got {orientation!r}")
    return ORIENTATION8_TO_VIEW5[int(orientation)]


def view5_label(view: int) -> tuple[int, int, int]:
    """SPAN's semantic label vector [front, rear, side] for a 5-way view class index."""
    return VIEW5_LABEL[int(view)]


def yaw_to_orientation8(yaw_deg: float) -> int:
    """Nearest 8-way orientation for a yaw in degrees (0 = front view, 90 = left side)."""
    yaw = float(yaw_deg) % 360.0
    best = min(range(8), key=lambda o: min(abs(yaw - ORIENTATION8_YAW[o]), 360 - abs(yaw - ORIENTATION8_YAW[o])))
    return best


def view_relation(orientation_a: int, orientation_b: int) -> str:
    """Relation of two 8-way orientations: ``same`` (0 deg apart), ``adjacent`` (45 or 90 deg),
    ``opposite`` (135 or 180 deg)."""
    d = abs(ORIENTATION8_YAW[int(orientation_a)] - ORIENTATION8_YAW[int(orientation_b)]) % 360.0
    d = min(d, 360.0 - d)
    if d < 1e-6:
        return "same"
    return "adjacent" if d <= 90.0 else "opposite"
