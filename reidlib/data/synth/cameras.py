"""The cameras of SynthVeRi: each has its own view geometry, light and background.

A camera profile (a JSON-able dict, stored in ``cameras.json``) fixes:

* ``direction``: the traffic direction it watches (yaw of vehicles driving towards it); a
  vehicle is seen about ``direction`` (approaching) or ``direction + 180`` (leaving), sometimes
  turning (any yaw),
* ``elevation``: the range of its elevation angles (low road-side to high mast cameras),
  ``distance``: distance range in vehicle lengths (perspective strength), ``roll``,
* light: ``ambient``/``diffuse`` shading, the sun direction relative to the camera,
  a global ``gain`` and a per-channel colour ``cast`` (BGR),
* degradation: Gaussian ``blur`` sigma (at 128 px; scaled with the image size), sensor
  ``noise`` std, ``jpeg`` quality,
* background: road colour and markings, clutter (kerbs, grass, manholes, poles, building bits).
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np


def sample_camera(cam_id: int, rng: np.random.Generator) -> dict[str, Any]:
    """Random profile of camera ``cam_id``."""
    lo = float(rng.uniform(6.0, 24.0))
    hi = float(min(lo + rng.uniform(8.0, 20.0), 50.0))
    road = int(rng.integers(70, 135))
    tint = [int(t) for t in rng.integers(-12, 13, size=3)]
    return {
        "cam": cam_id,
        "direction": float(rng.uniform(0.0, 360.0)),
        "turn_prob": float(rng.uniform(0.05, 0.25)),
        "elevation": [lo, hi],
        "distance": [float(rng.uniform(1.6, 2.2)), float(rng.uniform(2.4, 3.4))],
        "roll": float(rng.uniform(-4.0, 4.0)),
        "ambient": float(rng.uniform(0.45, 0.7)), "diffuse": float(rng.uniform(0.25, 0.55)),
        "sun_azimuth": float(rng.uniform(0.0, 360.0)), "sun_elevation": float(rng.uniform(25.0, 70.0)),
        "gain": float(rng.uniform(0.75, 1.2)), "cast": [float(c) for c in rng.uniform(0.9, 1.1, size=3)],
        "blur": float(rng.choice([0.0, 0.0, 0.5, 0.8, 1.1])), "noise": float(rng.uniform(1.5, 7.0)),
        "jpeg": int(rng.integers(80, 96)),
        "road": [min(255, max(0, road + t)) for t in tint],
        "lane_colour": [235, 235, 235] if rng.random() < 0.7 else [40, 200, 230],
        "lane_angle": float(rng.uniform(-70.0, 70.0)), "clutter": int(rng.integers(3, 9)),
        "grass": bool(rng.random() < 0.4), "seed": int(rng.integers(2**31)),
    }


def sample_view(cam: dict[str, Any], rng: np.random.Generator) -> tuple[float, float, float]:
    """(yaw, elevation, distance factor) of the first frame of a track through ``cam``."""
    u = rng.random()
    if u < cam["turn_prob"]:
        yaw = rng.uniform(0.0, 360.0)
    else:
        yaw = cam["direction"] + (180.0 if u > (1 + cam["turn_prob"]) / 2 else 0.0) + rng.normal(0.0, 22.0)
    elev = rng.uniform(*cam["elevation"])
    dist = rng.uniform(*cam["distance"])
    return float(yaw % 360.0), float(elev), float(dist)


def make_background(cam: dict[str, Any], size: int) -> np.ndarray:
    """A (2 size, 2 size, 3) BGR canvas for ``cam``; images crop a ``size`` window at random."""
    rng = np.random.default_rng(cam["seed"])
    n = 2 * size
    base = np.empty((n, n, 3), np.float32)
    base[:] = cam["road"]
    low = cv2.resize(rng.normal(0, 10, (8, 8, 1)).astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
    base += low[..., None] if low.ndim == 2 else low
    base += rng.normal(0, 6, (n, n, 1)).astype(np.float32)
    img = np.clip(base, 0, 255).astype(np.uint8)
    if cam["grass"]:                      # a verge along one edge
        w = int(rng.uniform(0.1, 0.3) * n)
        g = np.clip(np.array([50, 110, 70], np.float32) + rng.normal(0, 15, (n, w, 3)), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            img[:, :w] = g
        else:
            img[:, -w:] = g
    # lane markings: dashed parallel lines at the camera's road angle
    a = math.radians(cam["lane_angle"])
    d = np.array([math.sin(a), math.cos(a)])
    perp = np.array([d[1], -d[0]])
    thick = max(1, n // 80)
    spacing = rng.uniform(0.3, 0.45) * n
    offset = rng.uniform(0, spacing)
    for k in range(-2, 3):
        c = np.array([n / 2, n / 2]) + perp * (k * spacing + offset)
        for s in np.arange(-n, n, n / 4):
            p0, p1 = c + d * s, c + d * (s + n / 8)
            cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), cam["lane_colour"], thick, cv2.LINE_AA)
    # clutter: kerbs, manholes, poles, building bits, parked shapes
    for _ in range(cam["clutter"]):
        kind = int(rng.integers(4))
        col = tuple(int(c) for c in rng.integers(30, 200, size=3))
        x, y = (int(v) for v in rng.integers(0, n, size=2))
        s = int(rng.uniform(0.05, 0.25) * n)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + s // 3), col, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), max(2, s // 4), (60, 60, 60), -1, cv2.LINE_AA)
        elif kind == 2:
            cv2.line(img, (x, 0), (x + int(rng.integers(-8, 9)), n), (90, 90, 95), max(1, n // 80))
        else:
            pts = np.array([[x, y], [x + s, y + s // 4], [x + s // 2, y + s], [x - s // 3, y + s // 2]], np.int32)
            cv2.fillConvexPoly(img, pts, col, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 0.6)


def make_noise(cam: dict[str, Any], size: int) -> np.ndarray:
    """(2 size, 2 size, 3) int16 sensor-noise tile of std ``cam['noise']``; images crop it."""
    rng = np.random.default_rng(cam["seed"] + 1)
    return np.round(rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32) * cam["noise"]).astype(np.int16)
