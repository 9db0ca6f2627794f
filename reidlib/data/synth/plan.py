"""The plan of a SynthVeRi data set: identities, cameras, and every image's id, camera, time and view.

Everything is drawn from named random streams of ``numpy.random.SeedSequence([seed, stream, ...])``
so that the plan (and each image, rendered from its own stream ``[seed, IMAGE, index]``) does
not depend on the order or the process in which things are computed.

VeRi-776 conventions followed here:

* train and test identities are disjoint; ids are 4-digit numbers 1..N with the test ids spread
  among them; cameras ``c001..cNNN``;
* every identity passes ``k`` distinct cameras; each pass is a track of consecutive frames with
  increasing 8-digit timestamps (the file name's third field), and its yaw drifts along the track;
* **query rule**: for each test identity and each camera that saw it, one frame of the track is
  the query. The query image is a byte-identical copy of that ``image_test`` image under the
  same file name (as in VeRi-776, whose queries also appear in the gallery list), so under the
  market-style protocol the query's own copy is junk (same id, same camera).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reidlib.data.synth.cameras import sample_camera, sample_view
from reidlib.data.synth.identities import make_identities
from reidlib.data.views import orientation_to_view5, yaw_to_orientation8

# random stream ids
SPLIT, IDENT, CAMERA, TRACK, IMAGE, TEXTURE, QUERY = range(1, 8)


def stream(seed: int, *keys: int) -> np.random.Generator:
    """Generator of the named stream ``(seed, *keys)``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


@dataclass(frozen=True)
class ImagePlan:
    """One image to render. ``index``: position in the plan (the image's random stream);
    ``split``: ``"train"`` or ``"test"``; ``query``: also copied to ``image_query``."""

    index: int
    name: str
    vid: int
    cam: int
    timestamp: int
    yaw: float
    elevation: float
    distance: float
    split: str
    query: bool

    @property
    def orientation(self) -> int:
        """Wang et al.'s 8-way orientation of the rendered yaw."""
        return yaw_to_orientation8(self.yaw)

    @property
    def view(self) -> int:
        """SPAN's 5-way view class (index into ``reidlib.data.views.VIEW5``)."""
        return orientation_to_view5(self.orientation)


def veri_name(vid: int, cam: int, timestamp: int) -> str:
    return f"{vid:04d}_c{cam:03d}_{timestamp:08d}_0.jpg"


@dataclass
class Plan:
    identities: dict[int, dict[str, Any]]
    cameras: dict[int, dict[str, Any]]
    images: list[ImagePlan]
    test_ids: list[int]

    def by_vid(self) -> dict[int, list[ImagePlan]]:
        out: dict[int, list[ImagePlan]] = {}
        for im in self.images:
            out.setdefault(im.vid, []).append(im)
        return out


def build_plan(params: dict[str, Any], seed: int) -> Plan:
    """The full plan for preset ``params`` (see :data:`reidlib.data.synth.config.PRESETS`)."""
    n_train, n_test, n_cam = params["n_train_ids"], params["n_test_ids"], params["n_cameras"]
    n = n_train + n_test
    test_ids = sorted(int(v) + 1 for v in stream(seed, SPLIT).choice(n, size=n_test, replace=False))
    test_set = set(test_ids)
    train_ids = [v for v in range(1, n + 1) if v not in test_set]
    fam = tuple(params["family_size"])
    rng_id = stream(seed, IDENT)
    plates: set[str] = set()
    identities = make_identities(train_ids, fam, rng_id, plates)
    n_fam = 1 + max((v["family"] for v in identities.values()), default=-1)
    identities.update(make_identities(test_ids, fam, rng_id, plates, first_family=n_fam))
    cameras = {c: sample_camera(c, stream(seed, CAMERA, c)) for c in range(1, n_cam + 1)}

    lo_k, hi_k = params["cams_per_id"]
    lo_m, hi_m = params["frames_per_track"]
    images: list[ImagePlan] = []
    for vid in range(1, n + 1):
        rng = stream(seed, TRACK, vid)
        k = int(rng.integers(lo_k, min(hi_k, n_cam) + 1))
        cams = sorted(int(c) + 1 for c in rng.choice(n_cam, size=k, replace=False))
        for cam_id in cams:
            cam = cameras[cam_id]
            m = int(rng.integers(lo_m, hi_m + 1))
            yaw, elev, dist = sample_view(cam, rng)
            dyaw = float(rng.normal(0.0, 4.0))
            t = int(rng.integers(0, 90_000_000))
            q = int(rng.integers(m)) if vid in test_set else -1
            elo, ehi = cam["elevation"]
            for f in range(m):
                y = round((yaw + f * dyaw + float(rng.normal(0.0, 1.5))) % 360.0, 2) % 360.0
                e = round(float(np.clip(elev + rng.normal(0.0, 1.0), elo, ehi)), 2)
                images.append(ImagePlan(len(images), veri_name(vid, cam_id, t), vid, cam_id, t, y, e,
                                        round(dist * (0.97 ** f), 4), "test" if vid in test_set else "train",
                                        f == q))
                t += int(rng.integers(5, 80))
    return Plan(identities, cameras, images, test_ids)
