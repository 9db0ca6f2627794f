"""Rendering one SynthVeRi image with OpenCV: pinhole projection, textured faces, painter's order.

:func:`render` draws, on a crop of the camera's background:

1. the vehicle's shadow (its ground rectangle projected),
2. the visible body faces (back-face culled; the body is convex so they do not overlap), each
   face texture warped onto its projected quad with ``cv2.warpPerspective`` and clipped by the
   quad's ``cv2.fillConvexPoly`` mask, shaded by a Lambertian term of the camera's sun,
3. the near-side wheels (projected circles: ellipses) with rim colour and spokes,
4. the cabin, the cargo box and the mirrors in painter's order (farthest group first; the
   camera is always above the body's top so these never hide behind the body),
5. an optional partial occluder, then the camera's colour cast, blur and noise.

A face-id map is drawn with the same polygons, so the part label map
(:data:`reidlib.data.synth.geometry.FACE_TO_PART`) matches the image pixel for pixel, and a key
point is visible exactly when the face that carries it is what the image shows at its pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from reidlib.data.synth.geometry import FACE_IDS, FACE_TO_PART, VehicleModel, fit_transform, look_at_camera

_DY, _DX = (a.reshape(1, 9) for a in np.mgrid[-1:2, -1:2])      # 3x3 window offsets
_SHIFT = 4                    # fillConvexPoly sub-pixel bits
_ONE = 1 << _SHIFT
_N_CIRCLE = 16
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, _N_CIRCLE, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, _N_CIRCLE, endpoint=False))], 1)     # (16, 2)


@dataclass
class Rendered:
    """One rendered image: ``image`` (S, S, 3) BGR uint8, ``face_ids`` (S, S) uint8,
    ``keypoints`` (20, 2) float pixel coordinates, ``visible`` (20,) bool."""

    image: np.ndarray
    face_ids: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray

    @property
    def parts(self) -> np.ndarray:
        """(S, S) uint8 part label map with the values of ``reidlib.data.views.PART_LABELS``."""
        return FACE_TO_PART[self.face_ids]


class _Points:
    """All 3D points of a model stacked once, so each image projects them in one call."""

    def __init__(self, model: VehicleModel):
        chunks, self.slices = [], {}

        def add(key, pts):
            start = sum(len(c) for c in chunks)
            chunks.append(np.asarray(pts, float))
            self.slices[key] = slice(start, start + len(pts))

        add("hull", model.hull)
        add("kps", model.keypoints)
        self.body = model.body
        self.faces = model.faces()
        add("quads", np.concatenate([f.quad for f in self.faces]))              # (F*4, 3)
        self.normals = np.stack([f.normal for f in self.faces])                 # (F, 3)
        self.centers = np.stack([f.center for f in self.faces])                 # (F, 3)
        self.face_index = {f.name: i for i, f in enumerate(self.faces)}
        self.kp_fids = np.array([[FACE_IDS[n] for n in names][:1] for names in model.kp_faces])   # (20, 1)
        assert all(len(names) == 1 for names in model.kp_faces)
        self.upper_centers = [np.mean([f.center for f in g], axis=0) for g in model.upper]
        for name, box in model.mirrors.items():
            add(name, box)
        for name, (c, r, _) in model.wheels.items():
            ring = np.stack([c[0] + r * _CIRCLE[:, 0], np.full(_N_CIRCLE, c[1]), c[2] + r * _CIRCLE[:, 1]], 1)
            rim = np.stack([c[0] + 0.62 * r * _CIRCLE[:, 0], np.full(_N_CIRCLE, c[1]), c[2] + 0.62 * r * _CIRCLE[:, 1]], 1)
            hub = np.stack([c[0] + 0.16 * r * _CIRCLE[::2, 0], np.full(_N_CIRCLE // 2, c[1]),
                            c[2] + 0.16 * r * _CIRCLE[::2, 1]], 1)
            add(name, np.concatenate([ring, rim, hub, c[None]]))
        hl, hw = model.length / 2 + 0.25, model.width / 2 + 0.2
        add("shadow", [[hl, hw, 0], [hl, -hw, 0], [-hl, -hw, 0], [-hl, hw, 0]])
        self.all = np.concatenate(chunks)


def _points(model: VehicleModel) -> _Points:
    p = getattr(model, "_points_cache", None)
    if p is None:
        p = _Points(model)
        model._points_cache = p
    return p


def _sun(cam: dict[str, Any], yaw: float) -> np.ndarray:
    """Unit sun direction in the vehicle frame: fixed relative to the camera's azimuth."""
    a = math.radians(yaw + cam["sun_azimuth"])
    e = math.radians(cam["sun_elevation"])
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


_SRC_CORNERS: dict[tuple[int, int], np.ndarray] = {}


def _src_corners(h: int, w: int) -> np.ndarray:
    """(4, 2) float32 corner pixels of an h x w texture: TL, TR, BR, BL."""
    c = _SRC_CORNERS.get((h, w))
    if c is None:
        c = _SRC_CORNERS[(h, w)] = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    return c


def _draw_face(img, fmap, tex, quad_px, quad_fixed, box, fid, shade):
    """Warp ``tex`` onto the pixel quad ``quad_px`` (4, 2) float32 inside its clipped bounding
    ``box`` (x0, y0, x1, y1) only; ``quad_fixed``: the quad in fillConvexPoly's fixed point."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    H = cv2.getPerspectiveTransform(_src_corners(*tex.shape[:2]), quad_px - np.float32((x0, y0)))
    warped = cv2.warpPerspective(tex, H, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    if abs(shade - 1.0) > 1e-3:
        warped = cv2.convertScaleAbs(warped, alpha=shade)
    cv2.fillConvexPoly(fmap, quad_fixed, fid, cv2.LINE_8, _SHIFT)
    mask = cv2.compare(fmap[y0:y1, x0:x1], fid, cv2.CMP_EQ)
    cv2.copyTo(warped, mask, img[y0:y1, x0:x1])


def _fill(img, fmap, pts_px, colour, fid):
    p = np.round(pts_px * _ONE).astype(np.int32)
    cv2.fillConvexPoly(img, p, colour, cv2.LINE_8, _SHIFT)
    if fid is not None:
        cv2.fillConvexPoly(fmap, p, fid, cv2.LINE_8, _SHIFT)


def render(model: VehicleModel, textures: dict[str, np.ndarray], ident: dict[str, Any], cam: dict[str, Any],
           yaw: float, elevation: float, distance: float, size: int, rng: np.random.Generator,
           background: np.ndarray, noise: np.ndarray, occlusion_prob: float = 0.0) -> Rendered:
    """Render ``model`` with ``textures`` seen by camera profile ``cam`` at ``yaw`` / ``elevation``
    (degrees) and ``distance`` (in vehicle lengths, plus a constant) into a ``size`` x ``size`` image.

    ``background`` / ``noise``: the camera's canvases (:mod:`reidlib.data.synth.cameras`);
    ``rng`` draws the per-image nuisances (framing, crop offsets, wheel phase, occluder).
    """
    target = (0.0, 0.0, model.height * 0.45)
    D = distance * model.length + 4.0
    camera = look_at_camera(yaw, elevation, D, target, roll_deg=cam["roll"])
    P = _points(model)
    uv, _ = camera.project(P.all)
    A = fit_transform(uv[P.slices["hull"]], size, margin=float(rng.uniform(0.02, 0.09)), max_stretch=2.0,
                      shift=tuple(rng.uniform(-0.6, 0.6, size=2)))
    px = uv @ A[:, :2].T + A[:, 2]                                          # (N, 2) pixels

    bx, by = (int(v) for v in rng.integers(0, background.shape[0] - size, size=2))
    img = background[by:by + size, bx:bx + size].copy()
    fmap = np.zeros((size, size), np.uint8)

    road = background[by + size // 2, bx + size // 2].astype(np.float32)
    shadow = P.slices["shadow"]
    _fill(img, fmap, cv2.convexHull(px[shadow].astype(np.float32)).reshape(-1, 2),
          tuple(int(c) for c in road * 0.45), None)

    sun = _sun(cam, yaw)

    def shade_of(normal):
        return cam["ambient"] + cam["diffuse"] * max(0.0, float(normal @ sun))

    # per face: back-face culling, Lambertian shade, pixel quad and clipped bounding box
    seen = ((camera.position - P.centers) * P.normals).sum(1) > 1e-9                  # (F,)
    shades = cam["ambient"] + cam["diffuse"] * np.maximum(P.normals @ sun, 0.0)        # (F,)
    quads = px[P.slices["quads"]].reshape(-1, 4, 2)                                    # (F, 4, 2)
    boxes = np.concatenate([np.floor(quads.min(1)), np.ceil(quads.max(1)) + 1], 1)     # (F, 4)
    boxes = np.clip(boxes, 0, size).astype(int).tolist()
    quads32 = quads.astype(np.float32)
    fixed = np.round(quads * _ONE).astype(np.int32)                                    # (F, 4, 2)

    def draw(i, face):
        _draw_face(img, fmap, textures[face.name], quads32[i], fixed[i], boxes[i], face.fid, float(shades[i]))

    for i, face in enumerate(P.body):
        if seen[i]:
            draw(i, face)

    # wheels on the visible side
    left_visible = float(camera.position[1]) > model.width / 2
    right_visible = float(camera.position[1]) < -model.width / 2
    rim = tuple(int(c) for c in ident["wheels"]["rim"])
    spokes = int(ident["wheels"]["spokes"])
    phase = int(rng.integers(_N_CIRCLE))
    for name, (_, _, side) in model.wheels.items():
        if not ((side > 0 and left_visible) or (side < 0 and right_visible)):
            continue
        s = shade_of(np.array([0.0, side, 0.0]))
        pts = px[P.slices[name]]
        ring, rimp, hub, centre = pts[:_N_CIRCLE], pts[_N_CIRCLE:2 * _N_CIRCLE], pts[2 * _N_CIRCLE:-1], pts[-1]
        _fill(img, fmap, ring, (int(28 * s), int(28 * s), int(30 * s)), FACE_IDS[name])
        _fill(img, fmap, rimp, tuple(int(c * s) for c in rim), None)
        if spokes:
            ends = rimp[(phase + np.arange(spokes) * (_N_CIRCLE // spokes)) % _N_CIRCLE]           # (k, 2)
            segs = np.round(np.stack([np.broadcast_to(centre, ends.shape), ends], 1) * _ONE).astype(np.int32)
            cv2.polylines(img, list(segs), False, (int(35 * s),) * 3, 1, cv2.LINE_8, _SHIFT)
        _fill(img, fmap, hub, (int(70 * s),) * 3, None)

    # cabin, cargo box and mirrors: painter's order, farthest first
    groups: list[tuple[float, str, Any]] = []
    for g, c in zip(model.upper, P.upper_centers):
        groups.append((float(np.linalg.norm(camera.position - c)), "faces", g))
    for name, box in model.mirrors.items():
        groups.append((float(np.linalg.norm(camera.position - box.mean(axis=0))), "mirror", name))
    groups.sort(key=lambda t: -t[0])
    mirror_col = (25, 25, 25) if ident["bumper_dark"] else tuple(int(c) for c in textures["body_front"][2, 2])
    for _, kind, obj in groups:
        if kind == "faces":
            for face in obj:
                i = P.face_index[face.name]
                if seen[i]:
                    draw(i, face)
        else:
            hull = cv2.convexHull(px[P.slices[obj]].astype(np.float32)).reshape(-1, 2)
            _fill(img, fmap, hull, mirror_col, FACE_IDS[obj])

    if occlusion_prob > 0 and rng.random() < occlusion_prob:
        _occlude(img, fmap, size, rng)

    # camera look: colour cast and gain, blur, sensor noise
    gains = np.diag(np.asarray(cam["cast"], np.float32) * np.float32(cam["gain"]))     # (3, 3) BGR gains
    image = cv2.transform(img, gains)                                                  # saturating uint8
    sigma = cam["blur"] * size / 128.0
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    nx, ny = (int(v) for v in rng.integers(0, noise.shape[0] - size, size=2))
    image = cv2.add(image, noise[ny:ny + size, nx:nx + size], dtype=cv2.CV_8U)        # + int16 noise, saturating

    # a key point is visible if its face is drawn within one pixel of it (3x3 window)
    kps = px[P.slices["kps"]]                                                          # (20, 2)
    kpi = np.round(kps).astype(int)
    inside = ((kpi >= 0) & (kpi < size)).all(1)
    xs = np.clip(kpi[:, :1] + _DX, 0, size - 1)                                        # (20, 9)
    ys = np.clip(kpi[:, 1:] + _DY, 0, size - 1)
    visible = inside & (fmap[ys, xs] == P.kp_fids).any(1)
    return Rendered(image, fmap, kps, visible)


def _occlude(img, fmap, size, rng):
    """A partial occluder entering from the left, right or bottom edge (pole, another vehicle, sign)."""
    edge = int(rng.integers(3))
    f = float(rng.uniform(0.15, 0.35)) * size
    j = float(rng.uniform(-0.1, 0.1)) * size
    if edge == 0:
        pts = np.array([[0, 0], [f + j, 0], [f - j, size], [0, size]])
    elif edge == 1:
        pts = np.array([[size - f - j, 0], [size, 0], [size, size], [size - f + j, size]])
    else:
        pts = np.array([[0, size - f + j], [size, size - f - j], [size, size], [0, size]])
    colour = tuple(int(c) for c in rng.integers(20, 220, size=3))
    p = np.round(pts * _ONE).astype(np.int32)
    cv2.fillConvexPoly(img, p, colour, cv2.LINE_8, _SHIFT)
    cv2.fillConvexPoly(fmap, p, 0, cv2.LINE_8, _SHIFT)
