"""3D vehicle models of SynthVeRi and the pinhole camera that views them.

Vehicle frame (metres): ``x`` forward (the front is at ``+x``), ``y`` to the vehicle's left,
``z`` up, ground at ``z = 0``. A vehicle is a few convex hexahedra (planar quad faces):

* the *body* box (front, rear, left, right faces; its top is split into the *hood*, in front of
  the cabin, and the *deck*, behind it; the part under the cabin is never seen),
* the *cabin* on top of it (a frustum: sloped windshield and rear window, roof),
* for trucks a *cargo* box behind the cab,
* two mirrors (small boxes) and four wheels (discs in the side planes, drawn as ellipses).

Every face belongs to one semantic part of SPAN (front / rear / side) or the roof, with the
values of :data:`reidlib.data.views.PART_LABELS`: windshield and hood are *front*, rear window
and deck are *rear*, doors, windows, wheels and mirrors are *side*, cabin and cargo tops are *roof*.

Camera: yaw ``0`` puts the camera in front of the vehicle, ``90`` on its left, i.e. the yaw of
:data:`reidlib.data.views.ORIENTATION8_YAW` (counter-clockwise seen from above); elevation is
the angle above the horizontal of the line from the vehicle centre to the camera.

The 20 key points follow the order of Wang et al. (ICCV 2017), as listed in :data:`KEYPOINT_NAMES`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from reidlib.data.views import PART_LABELS

FRONT, REAR, SIDE, ROOF = (PART_LABELS[k] for k in ("front", "rear", "side", "roof"))

#: Wang et al.'s 20 vehicle key points, in the order of the ``keypoint_*.txt`` columns.
KEYPOINT_NAMES = (
    "left-front wheel", "left-rear wheel", "right-front wheel", "right-rear wheel",
    "right fog lamp", "left fog lamp", "right headlight", "left headlight",
    "front logo", "front plate", "left mirror", "right mirror",
    "right-front roof corner", "left-front roof corner", "left-rear roof corner", "right-rear roof corner",
    "left rear lamp", "right rear lamp", "rear logo", "rear plate",
)

#: Face ids of the face-id map (0 = background); names double as texture keys.
FACE_IDS = {name: i + 1 for i, name in enumerate((
    "body_front", "body_rear", "body_left", "body_right", "hood", "deck",
    "cab_front", "cab_rear", "cab_left", "cab_right", "cab_top",
    "cargo_front", "cargo_rear", "cargo_left", "cargo_right", "cargo_top",
    "wheel_lf", "wheel_lr", "wheel_rf", "wheel_rr", "mirror_l", "mirror_r"))}
FACE_PART = {
    "body_front": FRONT, "body_rear": REAR, "body_left": SIDE, "body_right": SIDE, "hood": FRONT, "deck": REAR,
    "cab_front": FRONT, "cab_rear": REAR, "cab_left": SIDE, "cab_right": SIDE, "cab_top": ROOF,
    "cargo_front": FRONT, "cargo_rear": REAR, "cargo_left": SIDE, "cargo_right": SIDE, "cargo_top": ROOF,
    "wheel_lf": SIDE, "wheel_lr": SIDE, "wheel_rf": SIDE, "wheel_rr": SIDE, "mirror_l": SIDE, "mirror_r": SIDE,
}
#: face id -> part label (index with a face-id map to get the part label map)
FACE_TO_PART = np.zeros(256, np.uint8)
for _name, _fid in FACE_IDS.items():
    FACE_TO_PART[_fid] = FACE_PART[_name]


@dataclass(frozen=True)
class BodyType:
    """Proportions of one body type (metres). ``cab_bottom`` / ``cab_top``: x-ranges (rear, front)
    of the cabin's bottom and top rectangles; ``cab_w``: (bottom, top) cabin width as a fraction
    of the body width; ``cargo``: (x_rear, x_front, height, width fraction) of a truck's box."""

    name: str
    length: float
    width: float
    clearance: float
    body_h: float
    wheel_r: float
    overhang: tuple[float, float]          # (front, rear) wheel centre distance from the ends
    cab_bottom: tuple[float, float]
    cab_top: tuple[float, float]
    cab_h: float
    cab_w: tuple[float, float] = (0.94, 0.80)
    cargo: Optional[tuple[float, float, float, float]] = None
    bed: bool = False                      # pickup: the deck is an open bed
    big: bool = False                      # bus / truck: yellow plates, big mirrors


BODY_TYPES: dict[str, BodyType] = {b.name: b for b in (
    BodyType("sedan", 4.6, 1.80, 0.22, 0.72, 0.32, (0.90, 1.00), (-1.25, 0.85), (-0.75, 0.20), 0.55),
    BodyType("hatchback", 4.0, 1.75, 0.22, 0.72, 0.31, (0.80, 0.70), (-1.85, 0.65), (-1.72, 0.00), 0.62),
    BodyType("suv", 4.7, 1.90, 0.35, 0.85, 0.38, (0.90, 0.90), (-2.25, 0.75), (-2.15, 0.10), 0.75),
    BodyType("van", 5.0, 1.95, 0.30, 0.90, 0.36, (0.80, 0.90), (-2.45, 1.45), (-2.45, 1.00), 1.05,
             cab_w=(0.97, 0.92)),
    BodyType("pickup", 5.3, 1.90, 0.38, 0.85, 0.40, (0.95, 1.20), (-0.35, 1.00), (-0.30, 0.45), 0.75,
             bed=True),
    BodyType("bus", 10.0, 2.50, 0.35, 1.00, 0.50, (2.20, 2.60), (-4.95, 4.95), (-4.95, 4.85), 1.65,
             cab_w=(0.99, 0.97), big=True),
    BodyType("truck", 7.5, 2.40, 0.50, 0.60, 0.50, (1.30, 1.60), (2.10, 3.75), (2.10, 3.55), 1.70,
             cab_w=(0.98, 0.96), cargo=(-3.75, 1.95, 2.30, 0.99), big=True),
)}


@dataclass
class Face:
    """A planar quad with corners ``quad`` (4, 3) in texture order top-left, top-right,
    bottom-right, bottom-left as seen from outside, its outward ``normal`` and ``center``."""

    name: str
    quad: np.ndarray
    normal: np.ndarray = field(init=False)
    center: np.ndarray = field(init=False)

    def __post_init__(self):
        tl, tr, _, bl = self.quad
        n = np.cross(bl - tl, tr - tl)
        self.normal = n / np.linalg.norm(n)
        self.center = self.quad.mean(axis=0)

    @property
    def fid(self) -> int:
        return FACE_IDS[self.name]

    @property
    def size_m(self) -> tuple[float, float]:
        """(width, height) in metres: longest of the two opposite edges."""
        tl, tr, br, bl = self.quad
        w = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
        h = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
        return float(w), float(h)


def _hexa(prefix: str, xb: tuple[float, float], xt: tuple[float, float], wb: float, wt: float,
          z0: float, z1: float, with_top: bool = True) -> list[Face]:
    """Faces of a frustum with bottom rectangle ``xb`` x [-wb, wb] at ``z0`` and top ``xt`` x [-wt, wt]
    at ``z1`` (x-ranges are (rear, front); w are half widths). The bottom face is never seen."""
    def B(x, y):
        return np.array([x, y, z0], float)

    def T(x, y):
        return np.array([x, y, z1], float)
    (b0, b1), (t0, t1) = xb, xt
    faces = [
        Face(f"{prefix}_front", np.stack([T(t1, -wt), T(t1, wt), B(b1, wb), B(b1, -wb)])),
        Face(f"{prefix}_rear", np.stack([T(t0, wt), T(t0, -wt), B(b0, -wb), B(b0, wb)])),
        Face(f"{prefix}_left", np.stack([T(t1, wt), T(t0, wt), B(b0, wb), B(b1, wb)])),
        Face(f"{prefix}_right", np.stack([T(t0, -wt), T(t1, -wt), B(b1, -wb), B(b0, -wb)])),
    ]
    if with_top:
        faces.append(Face(f"{prefix}_top", np.stack([T(t1, wt), T(t1, -wt), T(t0, -wt), T(t0, wt)])))
    return faces


def _box_corners(x: tuple[float, float], y: tuple[float, float], z: tuple[float, float]) -> np.ndarray:
    return np.array([[a, b, c] for a in x for b in y for c in z], float)     # (8, 3)


@dataclass
class VehicleModel:
    """Geometry of one vehicle (one family: body type with its proportion jitter).

    ``body``: body faces (convex, drawn first); ``upper``: groups of faces drawn after the body in
    painter's order of their centres (cabin, cargo box); ``mirrors``: name -> (8, 3) box corners;
    ``wheels``: name -> (centre (3,), radius, side sign); ``keypoints``: (20, 3);
    ``kp_faces``: for each key point the face names that must be seen at its pixel.
    """

    body_type: BodyType
    length: float
    width: float
    height: float
    body: list[Face]
    upper: list[list[Face]]
    mirrors: dict[str, np.ndarray]
    wheels: dict[str, tuple[np.ndarray, float, float]]
    keypoints: np.ndarray
    kp_faces: list[tuple[str, ...]]
    hull: np.ndarray                       # (N, 3) points bounding the whole vehicle

    def faces(self) -> list[Face]:
        return self.body + [f for g in self.upper for f in g]


def build_vehicle(bt: BodyType, scale_l: float = 1.0, scale_h: float = 1.0, cab_shift: float = 0.0) -> VehicleModel:
    """Build the model of body type ``bt`` with family proportions: length x ``scale_l``,
    heights x ``scale_h``, cabin moved forward by ``cab_shift`` x length."""
    L, W = bt.length * scale_l, bt.width
    hw = W / 2
    c, hb, hc = bt.clearance, bt.body_h * scale_h, bt.cab_h * scale_h
    ztop = c + hb
    sh = cab_shift * L
    cb = (bt.cab_bottom[0] * scale_l + sh, bt.cab_bottom[1] * scale_l + sh)
    ct = (bt.cab_top[0] * scale_l + sh, bt.cab_top[1] * scale_l + sh)
    cb = (max(cb[0], -L / 2), min(cb[1], L / 2))
    ct = (max(ct[0], -L / 2), min(ct[1], L / 2))

    body = _hexa("body", (-L / 2, L / 2), (-L / 2, L / 2), hw, hw, c, ztop, with_top=False)
    # hood (front of the cabin) and deck (behind it): the visible parts of the body's top
    if L / 2 - cb[1] > 0.05:
        body.append(Face("hood", np.array([[L / 2, hw, ztop], [L / 2, -hw, ztop],
                                           [cb[1], -hw, ztop], [cb[1], hw, ztop]])))
    cargo_x = None
    if bt.cargo is not None:
        cargo_x = (bt.cargo[0] * scale_l, bt.cargo[1] * scale_l)
    deck_front = cb[0] if cargo_x is None else cargo_x[0]
    if deck_front - (-L / 2) > 0.05:
        body.append(Face("deck", np.array([[deck_front, hw, ztop], [deck_front, -hw, ztop],
                                           [-L / 2, -hw, ztop], [-L / 2, hw, ztop]])))
    cab = _hexa("cab", cb, ct, hw * bt.cab_w[0], hw * bt.cab_w[1], ztop, ztop + hc)
    upper = [cab]
    height = ztop + hc
    if cargo_x is not None:
        cw = hw * bt.cargo[3]
        ch = bt.cargo[2] * scale_h
        upper.append(_hexa("cargo", cargo_x, cargo_x, cw, cw, ztop, ztop + ch))
        height = max(height, ztop + ch)

    # mirrors: small boxes sticking out at the front of the cabin's bottom edge
    ms = 0.22 if bt.big else 0.15
    mx = cb[1] - (0.05 if bt.big else 0.12)
    mz = ztop + (0.35 if bt.big else 0.05)
    mirrors = {
        "mirror_l": _box_corners((mx - 0.06, mx + 0.06), (hw, hw + ms), (mz, mz + ms * 1.0)),
        "mirror_r": _box_corners((mx - 0.06, mx + 0.06), (-hw - ms, -hw), (mz, mz + ms * 1.0)),
    }
    r = bt.wheel_r
    xf, xr = L / 2 - bt.overhang[0] * scale_l, -L / 2 + bt.overhang[1] * scale_l
    yo = hw + 0.01
    wheels = {"wheel_lf": (np.array([xf, yo, r]), r, 1.0), "wheel_lr": (np.array([xr, yo, r]), r, 1.0),
              "wheel_rf": (np.array([xf, -yo, r]), r, -1.0), "wheel_rr": (np.array([xr, -yo, r]), r, -1.0)}

    # key points, at the texture positions used by identities.py (FRONT_LAYOUT / REAR_LAYOUT)
    xF, xR = L / 2, -L / 2
    zc = lambda v: ztop - v * hb             # texture row v (0 top .. 1 bottom) of the body's front/rear face
    y_front = lambda u: -hw + u * W          # front face: u = 0 is the vehicle's right
    y_rear = lambda u: hw - u * W            # rear face: u = 0 is the vehicle's left
    lay_f, lay_r = FRONT_LAYOUT, REAR_LAYOUT
    cwt = hw * bt.cab_w[1]
    mc = {k: v.mean(axis=0) for k, v in mirrors.items()}
    kps = np.array([
        wheels["wheel_lf"][0], wheels["wheel_lr"][0], wheels["wheel_rf"][0], wheels["wheel_rr"][0],
        [xF, y_front(lay_f["fog"][0]), zc(lay_f["fog"][1])],
        [xF, y_front(1 - lay_f["fog"][0]), zc(lay_f["fog"][1])],
        [xF, y_front(lay_f["headlight"][0]), zc(lay_f["headlight"][1])],
        [xF, y_front(1 - lay_f["headlight"][0]), zc(lay_f["headlight"][1])],
        [xF, 0.0, zc(lay_f["logo"][1])],
        [xF, 0.0, zc(lay_f["plate"][1])],
        mc["mirror_l"], mc["mirror_r"],
        [ct[1], -cwt, ztop + hc], [ct[1], cwt, ztop + hc], [ct[0], cwt, ztop + hc], [ct[0], -cwt, ztop + hc],
        [xR, y_rear(lay_r["lamp"][0]), zc(lay_r["lamp"][1])],
        [xR, y_rear(1 - lay_r["lamp"][0]), zc(lay_r["lamp"][1])],
        [xR, 0.0, zc(lay_r["logo"][1])],
        [xR, 0.0, zc(lay_r["plate"][1])],
    ], float)
    kp_faces = [("wheel_lf",), ("wheel_lr",), ("wheel_rf",), ("wheel_rr",)] + [("body_front",)] * 6 + \
        [("mirror_l",), ("mirror_r",)] + [("cab_top",)] * 4 + [("body_rear",)] * 4
    hull = np.concatenate([np.concatenate([f.quad for f in body]),
                           np.concatenate([f.quad for g in upper for f in g]),
                           np.concatenate(list(mirrors.values())),
                           np.array([[xf, yo, 0], [xr, yo, 0], [xf, -yo, 0], [xr, -yo, 0],
                                     [xf + r, yo, r], [xr - r, yo, r], [xf + r, -yo, r], [xr - r, -yo, r]])])
    return VehicleModel(bt, L, W, height, body, upper, mirrors, wheels, kps, kp_faces, hull)


#: texture positions (u, v) on the body's front face; u = 0 is the vehicle's right (the viewer's
#: left), v = 0 the top edge. Key points use the same numbers.
FRONT_LAYOUT = {"headlight": (0.15, 0.30), "fog": (0.14, 0.78), "logo": (0.5, 0.32), "plate": (0.5, 0.68)}
#: texture positions on the body's rear face; u = 0 is the vehicle's left (the viewer's left).
REAR_LAYOUT = {"lamp": (0.12, 0.30), "logo": (0.5, 0.28), "plate": (0.5, 0.64)}


# ------------------------------------------------------------------------------------------ camera
@dataclass(frozen=True)
class Camera:
    """Pinhole camera at ``position`` (3,) with world-to-camera rotation ``R`` (3, 3): camera axes
    x right, y down, z forward. Image coordinates are normalised (focal length 1, no offset);
    :func:`fit_transform` maps them to pixels."""

    position: np.ndarray
    R: np.ndarray

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> ((N, 2) normalised image points, (N,) depths)."""
        pc = (pts - self.position) @ self.R.T
        z = pc[:, 2]
        return pc[:, :2] / z[:, None], z

    def sees(self, face: Face) -> bool:
        """Back-face culling: the outward normal points towards the camera."""
        return float(np.dot(face.normal, self.position - face.center)) > 1e-9


def look_at_camera(yaw_deg: float, elev_deg: float, distance: float, target: np.ndarray,
                   roll_deg: float = 0.0) -> Camera:
    """Camera at azimuth ``yaw_deg`` (0 = in front of the vehicle, 90 = on its left), elevation
    ``elev_deg`` and ``distance`` from ``target`` (3,), looking at it, rolled by ``roll_deg``."""
    a, e = math.radians(yaw_deg), math.radians(elev_deg)
    ca, sa, ce, se = math.cos(a), math.sin(a), math.cos(e), math.sin(e)
    pos = np.asarray(target, float) + distance * np.array([ce * ca, ce * sa, se])
    fwd = np.array([-ce * ca, -ce * sa, -se])          # unit vector from the camera to the target
    right = np.array([-sa, ca, 0.0])                   # fwd x up, normalised
    down = np.array([se * ca, se * sa, -ce])           # fwd x right: image y points down
    if roll_deg:
        cr, sr = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
        right, down = cr * right + sr * down, -sr * right + cr * down
    return Camera(pos, np.stack([right, down, fwd]))


def fit_transform(pts2d: np.ndarray, size: int, margin: float, max_stretch: float,
                  shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2x3 affine map from normalised image points to pixels that frames ``pts2d`` (N, 2) like a
    tight detection crop resized to ``size`` x ``size``: the bounding box fills the image up to
    ``margin`` (fraction of the size) on each side, with the aspect stretched by at most
    ``max_stretch``; ``shift`` (fractions of the free space, -1..1) moves the vehicle off-centre."""
    lo, hi = pts2d.min(axis=0), pts2d.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    avail = size * (1.0 - 2.0 * margin)
    sx, sy = avail / extent[0], avail / extent[1]
    if sx > sy * max_stretch:
        sx = sy * max_stretch
    elif sy > sx * max_stretch:
        sy = sx * max_stretch
    free = np.array([size - sx * extent[0], size - sy * extent[1]]) / 2.0
    off = free + np.asarray(shift) * np.maximum(free - size * margin * 0.5, 0.0)
    return np.array([[sx, 0.0, off[0] - sx * lo[0]], [0.0, sy, off[1] - sy * lo[1]]])
