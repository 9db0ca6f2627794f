"""Identities of SynthVeRi and their face textures.

An identity is ``body type + colour + model details`` (shared by its *family*) plus its own
view-specific *details*, grouped by the faces that show them:

=========  ======================================================  ==========================
group      details                                                 seen from
=========  ======================================================  ==========================
plate      plate string (front and rear plates)                    front, rear
front      windshield stickers, dashboard item                     front (and high elevations)
rear       rear decal, spoiler, rear-window sticker                rear
side       side stripe, door decal                                 left / right
roof       roof rack, sunroof, black roof                          roof (high cameras)
wheels     rim colour and spoke count                              left / right
=========  ======================================================  ==========================

Families make the benchmark hard the way VeRi-776 is (SPAN Fig. 1): siblings share type, colour,
grille, lights and proportions and differ only in their plate and one or two detail groups,
i.e. in details visible from one or two views.

Everything here is deterministic given the numpy ``Generator`` passed in.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from reidlib.data.synth.geometry import BODY_TYPES, FRONT_LAYOUT, REAR_LAYOUT, VehicleModel

#: VeRi-776's ten colours (BGR) and their sampling weights (white/black/grey dominate real traffic).
COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (228, 230, 232), "black": (38, 36, 34), "gray": (128, 128, 124), "red": (40, 36, 178),
    "blue": (150, 84, 30), "yellow": (40, 200, 228), "green": (60, 130, 40), "brown": (40, 70, 110),
    "golden": (80, 170, 205), "orange": (30, 120, 235),
}
COLOUR_WEIGHTS = {"white": 0.24, "black": 0.16, "gray": 0.16, "red": 0.1, "blue": 0.1, "yellow": 0.05,
                  "green": 0.05, "brown": 0.05, "golden": 0.05, "orange": 0.04}
BODY_WEIGHTS = {"sedan": 0.30, "suv": 0.20, "hatchback": 0.12, "van": 0.10, "pickup": 0.08, "bus": 0.08,
                "truck": 0.12}
DETAIL_GROUPS = ("front", "rear", "side", "roof", "wheels")
_DECAL_COLOURS = [(255, 255, 255), (20, 20, 20), (0, 0, 200), (200, 80, 0), (0, 200, 255), (0, 160, 0),
                  (200, 0, 200), (0, 140, 255), (255, 200, 0)]
_STICKER_COLOURS = [(250, 250, 250), (230, 160, 40), (60, 200, 60), (40, 220, 240), (40, 40, 220), (220, 120, 220)]
_RIMS = [(200, 200, 200), (60, 60, 60), (90, 190, 220), (235, 235, 235), (140, 120, 100)]
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _rand_colour(rng, table) -> list[int]:
    return [int(c) for c in table[int(rng.integers(len(table)))]]


def sample_family(rng: np.random.Generator) -> dict[str, Any]:
    """Model-level parameters shared by the identities of one family."""
    bt = _pick(rng, BODY_WEIGHTS)
    big = BODY_TYPES[bt].big
    return {
        "body_type": bt, "colour": _pick(rng, COLOUR_WEIGHTS),
        "scale_l": float(rng.uniform(0.94, 1.06)), "scale_h": float(rng.uniform(0.95, 1.05)),
        "cab_shift": 0.0 if big else float(rng.uniform(-0.03, 0.03)),
        "grille": int(rng.integers(5)), "headlight": int(rng.integers(4)), "taillight": int(rng.integers(4)),
        "door_u": float(rng.uniform(0.42, 0.58)), "glass": [int(rng.integers(45, 80)), int(rng.integers(40, 65)),
                                                           int(rng.integers(30, 55))],
        "bumper_dark": bool(rng.random() < 0.5),
        "cargo_colour": _rand_colour(rng, [(235, 235, 235), (180, 180, 180), (150, 90, 30), (40, 110, 200)]),
        "yellow_plate": bool(big),
    }


def sample_details(rng: np.random.Generator, group: str) -> dict[str, Any]:
    """Random identity details of one group (see the module table)."""
    if group == "front":
        n = int(rng.choice(4, p=[0.15, 0.35, 0.3, 0.2]))
        right = bool(rng.random() < 0.6)
        stickers = []
        for i in range(n):
            stickers.append({"u": float((0.72 if right else 0.12) + 0.07 * i * (1 if rng.random() < .5 else -.3)),
                             "v": float(rng.uniform(0.1, 0.3)), "w": float(rng.uniform(0.05, 0.1)),
                             "h": float(rng.uniform(0.08, 0.16)), "colour": _rand_colour(rng, _STICKER_COLOURS)})
        dash = _rand_colour(rng, _STICKER_COLOURS) if rng.random() < 0.35 else None
        return {"stickers": stickers, "dash": dash, "dash_u": float(rng.uniform(0.25, 0.75))}
    if group == "rear":
        decal = None
        if rng.random() < 0.6:
            decal = {"kind": int(rng.integers(4)), "u": float(rng.choice([0.22, 0.78])), "v": float(rng.uniform(0.4, 0.55)),
                     "size": float(rng.uniform(0.08, 0.14)), "colour": _rand_colour(rng, _DECAL_COLOURS)}
        win = _rand_colour(rng, _STICKER_COLOURS) if rng.random() < 0.3 else None
        return {"decal": decal, "spoiler": bool(rng.random() < 0.3), "window_sticker": win,
                "window_u": float(rng.uniform(0.15, 0.85))}
    if group == "side":
        stripe = None
        if rng.random() < 0.45:
            stripe = {"v": float(rng.uniform(0.15, 0.6)), "t": float(rng.uniform(0.06, 0.16)),
                      "colour": _rand_colour(rng, _DECAL_COLOURS)}
        decal = None
        if rng.random() < 0.45:
            decal = {"kind": int(rng.integers(4)), "u": float(rng.uniform(0.3, 0.7)), "v": float(rng.uniform(0.3, 0.6)),
                     "size": float(rng.uniform(0.25, 0.45)), "colour": _rand_colour(rng, _DECAL_COLOURS)}
        return {"stripe": stripe, "decal": decal}
    if group == "roof":
        return {"rack": bool(rng.random() < 0.35), "sunroof": bool(rng.random() < 0.3),
                "black_roof": bool(rng.random() < 0.2)}
    if group == "wheels":
        return {"rim": _rand_colour(rng, _RIMS), "spokes": int(rng.choice([0, 4, 5, 6, 8]))}
    raise ValueError(group)


def plate_string(rng: np.random.Generator) -> str:
    return "".join(_LETTERS[int(i)] for i in rng.integers(len(_LETTERS), size=2)) + \
        "".join(str(int(d)) for d in rng.integers(10, size=5))


def make_identities(vids: list[int], family_size: tuple[int, int], rng: np.random.Generator,
                    used_plates: set[str] | None = None, first_family: int = 0) -> dict[int, dict[str, Any]]:
    """Identity parameters of ``vids``, grouped into families of ``family_size`` (inclusive range)
    consecutive vids. The first member draws every detail group; each sibling copies it and
    redraws one or two groups (until they differ), so siblings differ in view-specific details.
    Plates are unique across all identities sharing ``used_plates``; families are numbered from
    ``first_family``."""
    used = used_plates if used_plates is not None else set()
    out: dict[int, dict[str, Any]] = {}
    i, fam_no = 0, first_family
    while i < len(vids):
        k = int(rng.integers(family_size[0], family_size[1] + 1))
        family = sample_family(rng)
        base = {g: sample_details(rng, g) for g in DETAIL_GROUPS}
        for j, vid in enumerate(vids[i:i + k]):
            details = {g: dict(v) for g, v in base.items()}
            changed: list[str] = []
            if j > 0:
                n_change = int(rng.integers(1, 3))
                for g in rng.choice(len(DETAIL_GROUPS), size=n_change, replace=False):
                    g = DETAIL_GROUPS[int(g)]
                    for _ in range(20):
                        new = sample_details(rng, g)
                        if new != base[g]:
                            break
                    details[g] = new
                    changed.append(g)
            plate = plate_string(rng)
            while plate in used:
                plate = plate_string(rng)
            used.add(plate)
            out[vid] = {"vid": vid, "family": fam_no, "changed": changed, "plate": plate, **family, **details}
        i += k
        fam_no += 1
    return out


# ------------------------------------------------------------------------------------ textures
def _shade_rows(img: np.ndarray, top: float = 1.08, bottom: float = 0.9) -> np.ndarray:
    """Vertical paint gradient (sheen at the top)."""
    g = np.linspace(top, bottom, img.shape[0], dtype=np.float32)[:, None, None]
    return np.clip(img.astype(np.float32) * g, 0, 255).astype(np.uint8)


def _px(img, u, v):
    h, w = img.shape[:2]
    return int(round(u * (w - 1))), int(round(v * (h - 1)))


def _rect(img, u0, v0, u1, v1, colour, thickness=-1):
    cv2.rectangle(img, _px(img, u0, v0), _px(img, u1, v1), tuple(int(c) for c in colour), thickness)


def _glass(w: int, h: int, tint, rng: np.random.Generator) -> np.ndarray:
    """Dark glass with a diagonal reflection band."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = tint
    x0 = rng.uniform(0.1, 0.6) * w
    pts = np.array([[x0, 0], [x0 + 0.25 * w, 0], [x0 + 0.05 * w, h], [x0 - 0.2 * w, h]], np.int32)
    overlay = img.copy()
    cv2.fillConvexPoly(overlay, pts, tuple(int(min(255, c + 45)) for c in tint))
    return cv2.addWeighted(img, 0.55, overlay, 0.45, 0)


def _decal(img, d, scale_ref: int):
    """Draw a decal (kind 0 disc, 1 triangle, 2 diamond, 3 bar pair) centred at (u, v)."""
    h, w = img.shape[:2]
    cx, cy = _px(img, d["u"], d["v"])
    s = max(2, int(d["size"] * scale_ref / 2))
    col = tuple(int(c) for c in d["colour"])
    k = d["kind"]
    if k == 0:
        cv2.circle(img, (cx, cy), s, col, -1, cv2.LINE_AA)
    elif k == 1:
        cv2.fillConvexPoly(img, np.array([[cx, cy - s], [cx + s, cy + s], [cx - s, cy + s]], np.int32), col, cv2.LINE_AA)
    elif k == 2:
        cv2.fillConvexPoly(img, np.array([[cx, cy - s], [cx + s, cy], [cx, cy + s], [cx - s, cy]], np.int32), col, cv2.LINE_AA)
    else:
        cv2.rectangle(img, (cx - 2 * s, cy - s), (cx + 2 * s, cy - s // 3), col, -1)
        cv2.rectangle(img, (cx - 2 * s, cy + s // 3), (cx + 2 * s, cy + s), col, -1)


def _plate(img, u, v, ident, ppm):
    """Licence plate centred at (u, v): 0.44 x 0.14 m, blue/white (cars) or yellow/black (big)."""
    h, w = img.shape[:2]
    pw, ph = max(6, int(0.44 * ppm)), max(3, int(0.14 * ppm))
    cx, cy = _px(img, u, v)
    bg, fg = ((40, 200, 240), (15, 15, 15)) if ident["yellow_plate"] else ((170, 70, 20), (245, 245, 245))
    x0, y0 = cx - pw // 2, cy - ph // 2
    cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), bg, -1)
    text = ident["plate"]
    font = cv2.FONT_HERSHEY_PLAIN
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    sc = min((pw - 2) / tw, (ph - 1) / th)
    (tw, th), _ = cv2.getTextSize(text, font, sc, 1)
    cv2.putText(img, text, (cx - tw // 2, cy + th // 2), font, sc, fg, 1, cv2.LINE_AA)


def _body_front(size, ident, ppm, paint, rng):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    img = _shade_rows(img)
    dark = (30, 30, 30) if ident["bumper_dark"] else tuple(int(c * 0.8) for c in paint)
    _rect(img, 0, 0.86, 1, 1, dark)
    # grille (family style) around the logo
    g0, g1 = (0.3, 0.2), (0.7, 0.55)
    _rect(img, g0[0], g0[1], g1[0], g1[1], (25, 25, 28))
    st = ident["grille"]
    chrome = (190, 190, 195)
    if st == 0:
        for v in np.linspace(g0[1], g1[1], 5):
            _rect(img, g0[0], v, g1[0], v, chrome, 1)
    elif st == 1:
        for v in np.linspace(g0[1], g1[1], 6):
            _rect(img, g0[0], v, g1[0], v, (90, 90, 90), 1)
        for u in np.linspace(g0[0], g1[0], 9):
            _rect(img, u, g0[1], u, g1[1], (90, 90, 90), 1)
    elif st == 2:
        for u in np.linspace(g0[0], g1[0], 8):
            _rect(img, u, g0[1], u, g1[1], chrome, 1)
    elif st == 3:
        _rect(img, g0[0], g0[1], g1[0], g1[1], chrome, 2)
    else:
        for v in np.linspace(g0[1] + 0.05, g1[1] - 0.05, 3):
            for u in np.linspace(g0[0] + 0.03, g1[0] - 0.03, 7):
                cv2.circle(img, _px(img, u, v), max(1, w // 90), (120, 120, 120), -1)
    # headlights (family shape) at FRONT_LAYOUT["headlight"], mirrored
    hu, hv = FRONT_LAYOUT["headlight"]
    lamp = (235, 240, 240)
    for u in (hu, 1 - hu):
        cx, cy = _px(img, u, hv)
        a, b = max(2, int(0.11 * w)), max(2, int(0.09 * h))
        s = ident["headlight"]
        if s == 0:
            cv2.rectangle(img, (cx - a, cy - b), (cx + a, cy + b), lamp, -1)
        elif s == 1:
            cv2.ellipse(img, (cx, cy), (a, b), 0, 0, 360, lamp, -1, cv2.LINE_AA)
        elif s == 2:
            sgn = 1 if u < 0.5 else -1
            cv2.fillConvexPoly(img, np.array([[cx - a, cy - b], [cx + a, cy - b + sgn * b], [cx + a, cy + b],
                                              [cx - a, cy + b - sgn * b]], np.int32), lamp, cv2.LINE_AA)
        else:
            cv2.circle(img, (cx - a // 2, cy), b, lamp, -1, cv2.LINE_AA)
            cv2.circle(img, (cx + a // 2, cy), b, lamp, -1, cv2.LINE_AA)
        cv2.rectangle(img, (cx - a, cy - b), (cx + a, cy + b), (60, 60, 60), 1)
    fu, fv = FRONT_LAYOUT["fog"]
    for u in (fu, 1 - fu):
        cv2.circle(img, _px(img, u, fv), max(1, int(0.035 * w)), (200, 220, 225), -1)
    cv2.circle(img, _px(img, *FRONT_LAYOUT["logo"]), max(1, int(0.03 * w)), (210, 210, 215), -1)
    _plate(img, *FRONT_LAYOUT["plate"], ident, ppm)
    return img


def _body_rear(size, ident, ppm, paint, rng):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    img = _shade_rows(img)
    dark = (30, 30, 30) if ident["bumper_dark"] else tuple(int(c * 0.8) for c in paint)
    _rect(img, 0, 0.84, 1, 1, dark)
    lu, lv = REAR_LAYOUT["lamp"]
    st = ident["taillight"]
    for u in (lu, 1 - lu):
        cx, cy = _px(img, u, lv)
        a, b = max(2, int(0.1 * w)), max(2, int(0.1 * h))
        if st == 0:
            cv2.rectangle(img, (cx - a, cy - b), (cx + a, cy + b), (30, 30, 200), -1)
        elif st == 1:
            cv2.rectangle(img, (cx - a, cy - b), (cx + a, cy + b), (30, 30, 200), -1)
            cv2.rectangle(img, (cx - a, cy), (cx + a, cy + b), (220, 220, 230), -1)
        elif st == 2:
            cv2.circle(img, (cx, cy), b, (30, 30, 210), -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx - a, cy - b // 2), (cx + a, cy + b // 2), (40, 30, 180), -1)
    if st == 3:     # full-width light bar
        _rect(img, lu, lv - 0.03, 1 - lu, lv + 0.03, (40, 30, 170))
    cv2.circle(img, _px(img, *REAR_LAYOUT["logo"]), max(1, int(0.03 * w)), (210, 210, 215), -1)
    _plate(img, *REAR_LAYOUT["plate"], ident, ppm)
    if ident["rear"]["decal"] is not None:
        _decal(img, ident["rear"]["decal"], min(w, 3 * h))
    return img


def _body_side(size, ident, ppm, paint, rng, bt):
    """Left side, front at u = 0 (the right side is this image flipped)."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    img = _shade_rows(img, 1.1, 0.85)
    _rect(img, 0, 0.9, 1, 1, (35, 35, 35) if ident["bumper_dark"] else tuple(int(c * 0.75) for c in paint))
    line = tuple(int(c * 0.55) for c in paint)
    if not bt.big:
        for u in (ident["door_u"] - 0.2, ident["door_u"], ident["door_u"] + 0.2):
            _rect(img, u, 0.0, u, 0.85, line, 1)
        for u in (ident["door_u"] - 0.07, ident["door_u"] + 0.13):
            _rect(img, u, 0.15, u + 0.04, 0.22, (40, 40, 40))
    else:
        _rect(img, 0.06, 0.05, 0.14, 0.85, line, 1)
    s = ident["side"]
    if s["stripe"] is not None:
        st = s["stripe"]
        _rect(img, 0.0, st["v"], 1.0, st["v"] + st["t"], st["colour"])
    if s["decal"] is not None:
        _decal(img, s["decal"], h)
    return img


def _hood(size, ident, paint, rng):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = tuple(int(min(255, c * 1.08)) for c in paint)
    _rect(img, 0.48, 0.0, 0.52, 1.0, tuple(int(c * 0.9) for c in paint))
    return img


def _deck(size, ident, paint, rng, bt):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = tuple(int(min(255, c * 1.05)) for c in paint)
    if bt.bed:
        _rect(img, 0.08, 0.04, 0.92, 0.96, (45, 45, 48))
        for u in np.linspace(0.15, 0.85, 6):
            _rect(img, u, 0.06, u, 0.94, (70, 70, 72), 1)
    if ident["rear"]["spoiler"]:
        _rect(img, 0.02, 0.80, 0.98, 0.97, (25, 25, 25))
    return img


def _cab_front(size, ident, ppm, paint, rng, bt):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    v1 = 0.62 if bt.name == "truck" else 0.95
    g = _glass(w, max(2, int(h * (v1 - 0.06))), ident["glass"], rng)
    x0, x1 = int(0.07 * w), int(0.93 * w)
    y0 = int(0.06 * h)
    img[y0:y0 + g.shape[0], x0:x1] = g[:, x0:x1]
    if bt.name == "truck":       # lower cab front: bars
        for v in np.linspace(0.7, 0.95, 4):
            _rect(img, 0.2, v, 0.8, v, (50, 50, 50), 1)
    f = ident["front"]
    for s in f["stickers"]:
        u0, v0 = s["u"], 0.06 + s["v"] * (v1 - 0.06)
        _rect(img, u0, v0, u0 + s["w"], v0 + s["h"] * (v1 - 0.06), s["colour"])
    if f["dash"] is not None:
        _rect(img, f["dash_u"] - 0.06, v1 - 0.1, f["dash_u"] + 0.06, v1 - 0.03, f["dash"])
    return img


def _cab_rear(size, ident, paint, rng, bt):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    if bt.name == "truck":
        return img
    v0, v1 = (0.1, 0.75) if bt.name in ("van", "bus") else (0.08, 0.9)
    g = _glass(w, max(2, int(h * (v1 - v0))), ident["glass"], rng)
    x0, x1, y0 = int(0.1 * w), int(0.9 * w), int(v0 * h)
    img[y0:y0 + g.shape[0], x0:x1] = g[:, x0:x1]
    r = ident["rear"]
    if r["window_sticker"] is not None:
        u = r["window_u"]
        _rect(img, u - 0.07, v0 + 0.1, u + 0.07, v0 + 0.3, r["window_sticker"])
    return img


def _cab_side(size, ident, paint, rng, bt):
    """Left cabin side, front at u = 0."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    v0, v1 = (0.12, 0.9) if bt.name != "bus" else (0.1, 0.8)
    g = _glass(w, max(2, int(h * (v1 - v0))), ident["glass"], rng)
    u0, u1 = (0.1, 0.9) if bt.name not in ("bus", "van") else (0.04, 0.96)
    x0, x1, y0 = int(u0 * w), int(u1 * w), int(v0 * h)
    img[y0:y0 + g.shape[0], x0:x1] = g[:, x0:x1]
    pillars = np.linspace(u0, u1, 9)[1:-1] if bt.name == "bus" else [ident["door_u"]]
    if bt.name == "truck":
        pillars = []
        _rect(img, 0.0, v0, 0.5, v1, paint)
    pw = max(1, int(0.025 * w))
    for u in pillars:
        x = int(u * w)
        img[y0:y0 + g.shape[0], max(0, x - pw):x + pw] = paint
    return img


def _cab_top(size, ident, paint, rng, bt):
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    r = ident["roof"]
    base = (30, 30, 32) if r["black_roof"] else tuple(int(min(255, c * 1.1)) for c in paint)
    img[:] = base
    if bt.name == "bus":
        _rect(img, 0.25, 0.1, 0.75, 0.3, (170, 170, 170))
    if r["sunroof"]:
        _rect(img, 0.25, 0.15, 0.75, 0.45, (45, 40, 35))
    if r["rack"]:
        for u in (0.12, 0.88):
            _rect(img, u - 0.03, 0.05, u + 0.03, 0.95, (20, 20, 20))
        for v in (0.3, 0.7):
            _rect(img, 0.1, v - 0.02, 0.9, v + 0.02, (60, 60, 60))
    return img


def _cargo(face, size, ident, rng):
    w, h = size
    col = tuple(ident["cargo_colour"])
    img = np.empty((h, w, 3), np.uint8)
    img[:] = col
    img = _shade_rows(img, 1.05, 0.92)
    line = tuple(int(c * 0.7) for c in col)
    if face == "cargo_rear":
        _rect(img, 0.5, 0.02, 0.5, 0.98, line, 1)
        _rect(img, 0.02, 0.02, 0.98, 0.98, line, 1)
        for u in (0.42, 0.58):
            _rect(img, u - 0.01, 0.45, u + 0.01, 0.6, (40, 40, 40))
        if ident["rear"]["decal"] is not None:
            d = dict(ident["rear"]["decal"], v=0.3)
            _decal(img, d, 2 * w)
    elif face == "cargo_left":
        for u in np.linspace(0.1, 0.9, 9):
            _rect(img, u, 0.02, u, 0.98, line, 1)
        s = ident["side"]
        if s["stripe"] is not None:
            _rect(img, 0.0, 0.55 + 0.3 * s["stripe"]["v"], 1.0, 0.55 + 0.3 * s["stripe"]["v"] + s["stripe"]["t"] * 0.5,
                  s["stripe"]["colour"])
        if s["decal"] is not None:
            _decal(img, dict(s["decal"], v=0.35), h)
    elif face == "cargo_top":
        for v in np.linspace(0.1, 0.9, 8):
            _rect(img, 0.0, v, 1.0, v, line, 1)
    return img


def make_textures(ident: dict[str, Any], model: VehicleModel, ppm: float,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """BGR texture of every face of ``model`` for identity ``ident`` at ``ppm`` pixels per metre.

    Texture orientation matches :class:`reidlib.data.synth.geometry.Face` corner order: the image's
    top-left pixel is the face's top-left corner seen from outside (for the hood / deck / roofs the
    top edge is towards the vehicle's front). Right-side textures are the left ones mirrored.
    """
    bt = model.body_type
    paint = tuple(int(c) for c in COLOURS[ident["colour"]])
    out: dict[str, np.ndarray] = {}

    def size_of(face):
        w, h = face.size_m
        return (int(np.clip(round(w * ppm), 8, 640)), int(np.clip(round(h * ppm), 8, 640)))

    for face in model.faces():
        n = face.name
        if n.endswith("_right"):
            continue
        sz = size_of(face)
        if n == "body_front":
            t = _body_front(sz, ident, ppm, paint, rng)
        elif n == "body_rear":
            t = _body_rear(sz, ident, ppm, paint, rng)
        elif n == "body_left":
            t = _body_side(sz, ident, ppm, paint, rng, bt)
        elif n == "hood":
            t = _hood(sz, ident, paint, rng)
        elif n == "deck":
            t = _deck(sz, ident, paint, rng, bt)
        elif n == "cab_front":
            t = _cab_front(sz, ident, ppm, paint, rng, bt)
        elif n == "cab_rear":
            t = _cab_rear(sz, ident, paint, rng, bt)
        elif n == "cab_left":
            t = _cab_side(sz, ident, paint, rng, bt)
        elif n == "cab_top":
            t = _cab_top(sz, ident, paint, rng, bt)
        else:
            t = _cargo(n, sz, ident, rng)
        out[n] = np.ascontiguousarray(t)
    for n in list(out):
        if n.endswith("_left"):
            out[n.replace("_left", "_right")] = np.ascontiguousarray(out[n][:, ::-1])
    return out
