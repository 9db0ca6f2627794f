"""SynthVeRi's on-disk layouts: the same plan and rendered images, written in one dataset's folders.

``layout="veri776"`` (the default; Liu et al., ICME 2016 / TMM 2018)::

    image_train/ image_query/ image_test/        VVVV_cCCC_TTTTTTTT_0.jpg
    name_train.txt name_query.txt name_test.txt  one file name a line
    gt_index.txt jk_index.txt                    one line per query: 1-based indices into name_test.txt
                                                 (gt: same id, other camera; junk: same id, same camera)
    keypoint_train.txt keypoint_test.txt         <folder>/<name> x1 y1 ... x20 y20 orientation (Wang et
                                                 al., ICCV 2017: -1 -1 = invisible; keypoint_test.txt
                                                 lists image_test/ then image_query/ images)
    meta_train.csv meta_query.csv meta_test.csv  name,vid,camid,yaw,elevation,orientation,view,body_type,colour

  Queries: one frame per (test id, camera), a byte-identical copy of that ``image_test`` image.

``layout="vehicleid"`` (Liu et al., CVPR 2016)::

    image/<imgid>.jpg                            imgid: 7 digits, the plan index + 1
    train_test_split/train_list.txt              <imgid> <vid>
    train_test_split/test_list_{800,1600,2400}.txt

  VehicleID has no cameras: no list or metadata file of this layout names one. The test lists
  keep VehicleID's names (small / medium / large), so every consumer's ``test_size`` works
  unchanged; a list holds ``min(T, n_test_ids * T // 2400)`` test ids (the first ones in id
  order, so the lists are nested): all of VehicleID's 800 / 1600 / 2400 when the preset has that
  many test ids, else the same proportions (tiny: 3 / 6 / 10 ids). ``manifest.json``'s
  ``test_sizes`` maps each list name to its real id and image counts. There is no fixed query:
  the protocol draws one gallery image per id and trial (:class:`reidlib.data.vehicleid.VehicleID`).

``layout="veriwild"`` (Lou et al., CVPR 2019)::

    images/<vid>/<imgid>.jpg                     vid: 5 digits, imgid: 6 digits (plan index + 1)
    train_test_split/train_list.txt              vid/imgid
    train_test_split/test_{3000,5000,10000}.txt  the gallery, vid/imgid
    train_test_split/test_{3000,5000,10000}_query.txt
    train_test_split/vehicle_info.txt            header "id/image;Camera ID;Time;Model;Type;Color",
                                                 then one ';'-separated line per image

  Queries: one image per test id (drawn from the stream ``(seed, QUERY, vid)``), never in the
  gallery; the id's other images are its gallery. The query's track has at least two frames
  (every preset's ``frames_per_track`` starts at 2), so the official rule (same id and same
  camera gallery images are removed) removes at least one gallery image per query; the manifest's
  ``test_sizes`` records, per list, the ids, queries, gallery images and ``same_id_same_camera``
  (query, gallery) pairs that rule removes. Test lists as for VehicleID, scaled from 10000.
  ``Time`` is the plan's frame timestamp read as tenths of a second after 2018-03-01 00:00:00;
  ``Model`` is the identity's family (siblings share body, colour and model details).

Every layout also writes:

* ``masks/<image path without .jpg>.png``: the uint8 part label map of each image
  (``PART_LABELS``: 0 background, 1 front, 2 rear, 3 side, 4 roof; > 0 = foreground);
  :func:`mask_path` finds it from an image path in any layout;
* views: VeRi-776's key-point files carry the 8-way orientation; the other two layouts write the
  SynthVeRi-specific ``synthveri_meta.csv`` (``path,split,vid[,camid],yaw,elevation,orientation,
  view,body_type,colour``; ``path`` relative to the root; ``camid`` only for VERI-Wild) and
  ``synthveri_keypoints.txt`` (VeRi-776's 42-field key-point lines keyed by the relative path),
  which the VehicleID / VERI-Wild loaders read for ``Record.orientation`` / ``Record.view``;
* ``identities.json``, ``cameras.json`` and ``manifest.json`` (config, counts, ``lists``: the
  images and ids of every list file, checked by the loaders, and the sha256 of every file).
"""
from __future__ import annotations

import csv
import datetime
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reidlib.data.synth.plan import QUERY, ImagePlan, Plan, stream

VERI_DIRS = {"train": "image_train", "query": "image_query", "test": "image_test"}
VEHICLEID_TIERS = (800, 1600, 2400)
VERIWILD_TIERS = (3000, 5000, 10000)
SPLIT_DIR = "train_test_split"
META_FILE = "synthveri_meta.csv"
KEYPOINT_FILE = "synthveri_keypoints.txt"
VERI_META_COLUMNS = ("name", "vid", "camid", "yaw", "elevation", "orientation", "view", "body_type", "colour")
VEHICLE_INFO_HEADER = "id/image;Camera ID;Time;Model;Type;Color"
_TIME0 = datetime.datetime(2018, 3, 1)

_COMMON = ("masks", "identities.json", "cameras.json")
#: the top-level entries each layout writes (besides the manifest, marker and lock)
OWNED: dict[str, tuple[str, ...]] = {
    "veri776": ("image_train", "image_query", "image_test", "name_train.txt", "name_query.txt", "name_test.txt",
                "gt_index.txt", "jk_index.txt", "keypoint_train.txt", "keypoint_test.txt", "meta_train.csv",
                "meta_query.csv", "meta_test.csv") + _COMMON,
    "vehicleid": ("image", SPLIT_DIR, META_FILE, KEYPOINT_FILE) + _COMMON,
    "veriwild": ("images", SPLIT_DIR, META_FILE, KEYPOINT_FILE) + _COMMON,
}


# ------------------------------------------------------------------------------------ names
def vehicleid_imgid(im: ImagePlan) -> str:
    return f"{im.index + 1:07d}"


def veriwild_key(im: ImagePlan) -> str:
    """``vid/imgid`` of VERI-Wild's lists."""
    return f"{im.vid:05d}/{im.index + 1:06d}"


def image_files(layout: str, im: ImagePlan) -> list[str]:
    """Relative paths of the JPEG file(s) of image ``im`` (VeRi-776's queries are copies)."""
    if layout == "veri776":
        return [f"{VERI_DIRS[im.split]}/{im.name}"] + ([f"image_query/{im.name}"] if im.query else [])
    if layout == "vehicleid":
        return [f"image/{vehicleid_imgid(im)}.jpg"]
    if layout == "veriwild":
        return [f"images/{veriwild_key(im)}.jpg"]
    raise ValueError(f"unknown layout {layout!r}")


def mask_file(image_rel: str) -> str:
    """Relative path of the part mask of the image at relative path ``image_rel``."""
    return f"masks/{image_rel[:-4]}.png"


def folders(layout: str, plan: Plan) -> list[str]:
    """Every folder the images and masks of ``plan`` go to (created before rendering)."""
    dirs = sorted({os.path.dirname(rel) for im in plan.images for rel in image_files(layout, im)})
    return dirs + [f"masks/{d}" for d in dirs]


def mask_path(image_path: str | os.PathLike) -> Path:
    """The ground-truth part mask of a SynthVeRi image in any layout:
    ``<root>/masks/<image path relative to root>.png``, where the image is one folder below the
    root (``image_train/``, ``image/``) or two (VERI-Wild's ``images/<vid>/``). Returns the first
    candidate that exists, else the one-folder form (which then does not exist)."""
    p = Path(image_path)
    candidates = [p.parents[d] / "masks" / p.relative_to(p.parents[d]).with_suffix(".png")
                  for d in (1, 2) if len(p.parents) > d]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0] if candidates else p.with_suffix(".png")


def tier_sizes(n_test_ids: int, tiers: tuple[int, ...]) -> dict[int, int]:
    """Test ids of each test list: the dataset's own count when the preset has that many, else
    the same proportion of the largest list (at least 1)."""
    return {t: min(t, max(1, n_test_ids * t // tiers[-1])) for t in tiers}


def veriwild_queries(plan: Plan, seed: int) -> dict[int, int]:
    """test vid -> plan index of its VERI-Wild query image (uniform over the id's images)."""
    by_vid: dict[int, list[ImagePlan]] = {}
    for im in plan.images:
        if im.split == "test":
            by_vid.setdefault(im.vid, []).append(im)
    return {vid: ims[int(stream(seed, QUERY, vid).integers(len(ims)))].index for vid, ims in sorted(by_vid.items())}


# ------------------------------------------------------------------------------------ lists
@dataclass
class ListWriter:
    """What the list writers need: the plan, each image's sidecar entry (``kp``), the seed and
    ``put(relative path, text)`` (atomic write + hash into the manifest)."""

    plan: Plan
    entry: dict[int, dict[str, Any]]
    seed: int
    put: Callable[[str, str], None]

    def kp_line(self, rel: str, im: ImagePlan) -> str:
        return f"{rel} " + " ".join(map(str, self.entry[im.index]["kp"])) + f" {im.orientation}\n"

    def ident(self, im: ImagePlan) -> dict[str, Any]:
        return self.plan.identities[im.vid]


def _stats(ims: list[ImagePlan]) -> dict[str, int]:
    return {"images": len(ims), "ids": len({im.vid for im in ims})}


def _csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_veri776(lw: ListWriter) -> dict[str, Any]:
    """VeRi-776's lists, index files, key points and metadata; returns the manifest's additions."""
    splits: dict[str, list[ImagePlan]] = {"train": [], "query": [], "test": []}
    for im in lw.plan.images:
        splits[im.split].append(im)
        if im.query:
            splits["query"].append(im)
    for split in ("train", "query", "test"):
        lw.put(f"name_{split}.txt", "".join(im.name + "\n" for im in splits[split]))
    # gt / jk: 1-based indices into name_test.txt
    test_pos: dict[int, list[tuple[int, int]]] = {}
    for j, im in enumerate(splits["test"], start=1):
        test_pos.setdefault(im.vid, []).append((j, im.cam))
    gt_lines, jk_lines = [], []
    for q in splits["query"]:
        same = test_pos.get(q.vid, [])
        gt_lines.append(" ".join(str(j) for j, c in same if c != q.cam) + "\n")
        jk_lines.append(" ".join(str(j) for j, c in same if c == q.cam) + "\n")
    lw.put("gt_index.txt", "".join(gt_lines))
    lw.put("jk_index.txt", "".join(jk_lines))

    def kp_lines(folder: str, ims: list[ImagePlan]) -> str:
        return "".join(lw.kp_line(f"{folder}/{im.name}", im) for im in ims)
    lw.put("keypoint_train.txt", kp_lines("image_train", splits["train"]))
    lw.put("keypoint_test.txt", kp_lines("image_test", splits["test"]) + kp_lines("image_query", splits["query"]))
    for split in ("train", "query", "test"):
        lw.put(f"meta_{split}.csv", _csv(VERI_META_COLUMNS, (
            [im.name, im.vid, im.cam, f"{im.yaw:.2f}", f"{im.elevation:.2f}", im.orientation, im.view,
             lw.ident(im)["body_type"], lw.ident(im)["colour"]] for im in splits[split])))
    counts = {"train_ids": len({im.vid for im in splits["train"]}), "test_ids": len(lw.plan.test_ids),
              "cameras": len(lw.plan.cameras), "train_images": len(splits["train"]),
              "query_images": len(splits["query"]), "test_images": len(splits["test"])}
    return {"counts": counts,
            "lists": {f"name_{s}.txt": _stats(splits[s]) for s in ("train", "query", "test")},
            "query_rule": "one frame per (test id, camera), copied byte-identically from image_test"}


def _extras(lw: ListWriter, layout: str, rel: Callable[[ImagePlan], str]) -> None:
    """``synthveri_meta.csv`` and ``synthveri_keypoints.txt`` of the VehicleID / VERI-Wild layouts."""
    cams = layout == "veriwild"
    header = ["path", "split", "vid"] + (["camid"] if cams else []) + [
        "yaw", "elevation", "orientation", "view", "body_type", "colour"]
    lw.put(META_FILE, _csv(header, (
        [rel(im), im.split, im.vid] + ([im.cam] if cams else []) + [
            f"{im.yaw:.2f}", f"{im.elevation:.2f}", im.orientation, im.view, lw.ident(im)["body_type"],
            lw.ident(im)["colour"]] for im in lw.plan.images)))
    lw.put(KEYPOINT_FILE, "".join(lw.kp_line(rel(im), im) for im in lw.plan.images))


def write_vehicleid(lw: ListWriter) -> dict[str, Any]:
    """VehicleID's lists (no cameras), SynthVeRi's view files; returns the manifest's additions."""
    plan = lw.plan
    train = [im for im in plan.images if im.split == "train"]
    test = [im for im in plan.images if im.split == "test"]
    lists = {}

    def put_list(name: str, ims: list[ImagePlan]) -> None:
        lw.put(f"{SPLIT_DIR}/{name}", "".join(f"{vehicleid_imgid(im)} {im.vid}\n" for im in ims))
        lists[f"{SPLIT_DIR}/{name}"] = _stats(ims)

    put_list("train_list.txt", train)
    ordered = sorted(plan.test_ids)
    test_sizes = {}
    for tier, n in tier_sizes(len(ordered), VEHICLEID_TIERS).items():
        ids = set(ordered[:n])
        ims = [im for im in test if im.vid in ids]
        put_list(f"test_list_{tier}.txt", ims)
        test_sizes[str(tier)] = _stats(ims)
    _extras(lw, "vehicleid", lambda im: f"image/{vehicleid_imgid(im)}.jpg")
    counts = {"train_ids": len({im.vid for im in train}), "test_ids": len(ordered),
              "train_images": len(train), "test_images": len(test)}
    return {"counts": counts, "test_sizes": test_sizes, "lists": lists,
            "query_rule": "none fixed: per trial, one random image per test id is the gallery, the others are "
                          "queries (VehicleID protocol; reidlib.data.vehicleid draws trial t with seed [seed, t])"}


def write_veriwild(lw: ListWriter) -> dict[str, Any]:
    """VERI-Wild's lists and ``vehicle_info.txt``, SynthVeRi's view files; returns the manifest's additions."""
    plan = lw.plan
    train = [im for im in plan.images if im.split == "train"]
    test = [im for im in plan.images if im.split == "test"]
    lists = {}

    def put_list(name: str, ims: list[ImagePlan]) -> None:
        lw.put(f"{SPLIT_DIR}/{name}", "".join(veriwild_key(im) + "\n" for im in ims))
        lists[f"{SPLIT_DIR}/{name}"] = _stats(ims)

    put_list("train_list.txt", train)
    query_of = veriwild_queries(plan, lw.seed)
    ordered = sorted(plan.test_ids)
    test_sizes = {}
    for tier, n in tier_sizes(len(ordered), VERIWILD_TIERS).items():
        ids = set(ordered[:n])
        queries = [im for im in test if im.vid in ids and query_of[im.vid] == im.index]
        gallery = [im for im in test if im.vid in ids and query_of[im.vid] != im.index]
        put_list(f"test_{tier}.txt", gallery)
        put_list(f"test_{tier}_query.txt", queries)
        same = sum(1 for q in queries for g in gallery if g.vid == q.vid and g.cam == q.cam)
        test_sizes[str(tier)] = {"ids": len(ids), "query": len(queries), "gallery": len(gallery),
                                 "same_id_same_camera": same}

    def info(im: ImagePlan) -> str:
        ident = lw.ident(im)
        t = (_TIME0 + datetime.timedelta(seconds=im.timestamp // 10)).strftime("%Y-%m-%d %H:%M:%S")
        return f"{veriwild_key(im)};{im.cam:03d};{t};synth-{ident['family']:04d};{ident['body_type']};{ident['colour']}\n"
    lw.put(f"{SPLIT_DIR}/vehicle_info.txt", VEHICLE_INFO_HEADER + "\n" + "".join(info(im) for im in plan.images))
    _extras(lw, "veriwild", lambda im: f"images/{veriwild_key(im)}.jpg")
    counts = {"train_ids": len({im.vid for im in train}), "test_ids": len(ordered), "cameras": len(plan.cameras),
              "train_images": len(train), "test_images": len(test)}
    return {"counts": counts, "test_sizes": test_sizes, "lists": lists,
            "query_rule": "one image per test id (stream (seed, QUERY, vid)), not in the gallery; same id and "
                          "same camera gallery images are removed per query (VERI-Wild protocol)"}


WRITERS: dict[str, Callable[[ListWriter], dict[str, Any]]] = {
    "veri776": write_veri776, "vehicleid": write_vehicleid, "veriwild": write_veriwild}
