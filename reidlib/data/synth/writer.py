"""Writing a SynthVeRi folder in VeRi-776's layout, in parallel, resumably and reproducibly.

Output under ``out_dir`` (VeRi-776 layout, REFERENCE.md, plus SynthVeRi's extras)::

    image_train/ image_query/ image_test/        VVVV_cCCC_TTTTTTTT_0.jpg
    name_train.txt name_query.txt name_test.txt  one file name a line
    gt_index.txt jk_index.txt                    one line per query: 1-based indices into name_test.txt
                                                 (gt: same id, other camera; junk: same id, same camera)
    keypoint_train.txt keypoint_test.txt         <folder>/<name> x1 y1 ... x20 y20 orientation
                                                 (-1 -1 = invisible; keypoint_test.txt lists
                                                 image_test/ then image_query/ images)
    masks/<image folder>/<stem>.png              uint8 part labels (PART_LABELS: 0 bg, 1 front,
                                                 2 rear, 3 side, 4 roof)
    meta_train.csv meta_query.csv meta_test.csv  name,vid,camid,yaw,elevation,orientation,view,body_type,colour
    identities.json cameras.json                 the sampled identity / camera parameters
    manifest.json                                config, counts and the sha256 of every file

Crash safety: ``.incomplete`` (holding the config) is written first and removed last, after
``manifest.json``. Work is split into one chunk per identity; a chunk's sidecar
``.partial/chunk_VVVV.json`` (hashes and key points) is written after all its files, so an
interrupted run with the same config is *resumed* (finished chunks are kept, the others redone)
and a folder is never used unless its manifest is complete.

Determinism: image ``i`` uses only the random stream ``(seed, IMAGE, i)`` and per-identity /
per-camera streams, JPEG/PNG encoding has fixed parameters, so the bytes do not depend on the
worker count (byte-identical on the same platform and library versions).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Optional

import cv2
import numpy as np

from reidlib.data.synth.cameras import make_background, make_noise
from reidlib.data.synth.config import run_config
from reidlib.data.synth.geometry import BODY_TYPES, build_vehicle
from reidlib.data.synth.identities import make_textures
from reidlib.data.synth.plan import IMAGE, TEXTURE, ImagePlan, Plan, build_plan, stream
from reidlib.data.synth.render import render
from reidlib.utils.io import atomic_write_json, atomic_write_text

SPLIT_DIRS = {"train": "image_train", "query": "image_query", "test": "image_test"}
MARKER = ".incomplete"
PARTIAL = ".partial"
MANIFEST = "manifest.json"
META_COLUMNS = ("name", "vid", "camid", "yaw", "elevation", "orientation", "view", "body_type", "colour")
#: every top-level entry this generator writes (``overwrite`` removes exactly these)
OWNED = ("image_train", "image_query", "image_test", "masks", PARTIAL, "name_train.txt", "name_query.txt",
         "name_test.txt", "gt_index.txt", "jk_index.txt", "keypoint_train.txt", "keypoint_test.txt",
         "meta_train.csv", "meta_query.csv", "meta_test.csv", "identities.json", "cameras.json", MANIFEST, MARKER)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


class SynthFolderError(FileExistsError):
    """``out_dir`` holds something :func:`generate` must not silently replace."""


# ------------------------------------------------------------------------------------ workers
_STATE: dict[str, Any] = {}


def _init_worker(state: dict[str, Any]) -> None:
    _STATE.clear()
    _STATE.update(state)
    _STATE["bg"] = {}
    cv2.setNumThreads(1)


def _camera_canvases(cam_id: int):
    cache = _STATE["bg"]
    if cam_id not in cache:
        cam = _STATE["cameras"][cam_id]
        size = _STATE["config"]["image_size"]
        cache[cam_id] = (make_background(cam, size), make_noise(cam, size))
    return cache[cam_id]


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def render_one(im: ImagePlan, ident: dict[str, Any], model, textures, cam: dict[str, Any], size: int, seed: int,
               occlusion_prob: float, canvases=None):
    """Render image ``im`` (from its own random stream); returns
    :class:`reidlib.data.synth.render.Rendered`."""
    bg, noise = canvases if canvases is not None else (make_background(cam, size), make_noise(cam, size))
    return render(model, textures, ident, cam, im.yaw, im.elevation, im.distance, size, stream(seed, IMAGE, im.index),
                  bg, noise, occlusion_prob)


def _render_chunk(task: tuple[int, list[ImagePlan]]) -> dict[str, Any]:
    """Render and write all images of one identity; write its sidecar last; return it."""
    vid, images = task
    cfg = _STATE["config"]
    out = Path(_STATE["out_dir"])
    size, seed = cfg["image_size"], cfg["seed"]
    ident = _STATE["identities"][vid]
    model = build_vehicle(BODY_TYPES[ident["body_type"]], ident["scale_l"], ident["scale_h"], ident["cab_shift"])
    textures = make_textures(ident, model, 0.35 * size, stream(seed, TEXTURE, vid))
    occ = cfg["params"]["occlusion_prob"]
    entries = []
    for im in images:
        cam = _STATE["cameras"][im.cam]
        r = render_one(im, ident, model, textures, cam, size, seed, occ, _camera_canvases(im.cam))
        ok1, jpg = cv2.imencode(".jpg", r.image, [cv2.IMWRITE_JPEG_QUALITY, int(cam["jpeg"])])
        ok2, png = cv2.imencode(".png", r.parts, PNG_PARAMS)
        if not (ok1 and ok2):
            raise RuntimeError(f"encoding {im.name} failed")
        jpg, png = jpg.tobytes(), png.tobytes()
        stem = im.name[:-4]
        folders = [SPLIT_DIRS[im.split]] + (["image_query"] if im.query else [])
        for folder in folders:
            _write(str(out / folder / im.name), jpg)
            _write(str(out / "masks" / folder / f"{stem}.png"), png)
        kp = np.where(r.visible[:, None], np.round(r.keypoints), -1).astype(int).ravel().tolist()
        entries.append({"index": im.index, "name": im.name, "jpg": hashlib.sha256(jpg).hexdigest(),
                        "png": hashlib.sha256(png).hexdigest(), "kp": kp})
    result = {"vid": vid, "entries": entries}
    # written (atomically: temp file + rename) only after all the chunk's files
    side = out / PARTIAL / f"chunk_{vid:04d}.json"
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    _write(str(tmp), json.dumps(result).encode())
    os.replace(tmp, side)
    return result


# ------------------------------------------------------------------------------------ helpers
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _describe(cfg: Optional[dict]) -> str:
    if not isinstance(cfg, dict):
        return "an unreadable configuration"
    return (f"preset={cfg.get('preset')!r} image_size={cfg.get('image_size')} seed={cfg.get('seed')} "
            f"version={cfg.get('generator_version')}")


def _clean(out: Path) -> None:
    """Remove what this generator writes (and nothing else) from ``out``."""
    for name in (MANIFEST, MARKER) + OWNED:          # manifest first: never leave a stale one
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _files_present(out: Path, files: Iterable[str]) -> bool:
    return all(os.path.isfile(out / f) for f in files)


def _existing_chunks(out: Path, by_vid: dict[int, list[ImagePlan]]) -> dict[int, dict[str, Any]]:
    """Finished chunks of an interrupted run whose sidecar and files are all there."""
    done: dict[int, dict[str, Any]] = {}
    part = out / PARTIAL
    if not part.is_dir():
        return done
    for vid, images in by_vid.items():
        res = _read_json(part / f"chunk_{vid:04d}.json")
        if not isinstance(res, dict) or [e.get("name") for e in res.get("entries", [])] != [im.name for im in images]:
            continue
        paths = []
        for im in images:
            for folder in [SPLIT_DIRS[im.split]] + (["image_query"] if im.query else []):
                paths += [f"{folder}/{im.name}", f"masks/{folder}/{im.name[:-4]}.png"]
        if _files_present(out, paths):
            done[vid] = res
    return done


def _prepare(out: Path, cfg: dict[str, Any], overwrite: bool) -> str:
    """Decide what to do with ``out``: ``"done"`` (no-op), ``"resume"`` or ``"fresh"``."""
    if not out.exists() or not any(out.iterdir()):
        return "fresh"
    marker = out / MARKER
    manifest = out / MANIFEST
    if marker.exists():
        old = _read_json(marker)
        if old == cfg:
            man = _read_json(manifest)     # interrupted between the manifest and the marker's removal
            if (isinstance(man, dict) and man.get("config") == cfg and isinstance(man.get("files"), dict)
                    and _files_present(out, man["files"])):
                shutil.rmtree(out / PARTIAL, ignore_errors=True)
                marker.unlink()
                return "done"
            if manifest.exists():
                manifest.unlink()
            return "resume"
        if not overwrite:
            raise SynthFolderError(
                f"{out} holds an interrupted SynthVeRi run with {_describe(old)}, but {_describe(cfg)} was "
                "requested; pass overwrite=True (--overwrite) to replace it, or use another folder")
        _clean(out)
        return "fresh"
    if manifest.exists():
        man = _read_json(manifest)
        old = man.get("config") if isinstance(man, dict) else None
        if old == cfg:
            if isinstance(man.get("files"), dict) and _files_present(out, man["files"]):
                return "done"
            # same config but files missing: redo it (never use it silently)
            atomic_write_json(out / MARKER, cfg)
            manifest.unlink()
            return "resume"
        if not overwrite:
            raise SynthFolderError(
                f"{out} already holds SynthVeRi generated with {_describe(old)}, but {_describe(cfg)} was "
                "requested; pass overwrite=True (--overwrite) to replace it, or use another folder")
        _clean(out)
        return "fresh"
    if not overwrite:
        raise SynthFolderError(f"{out} is not empty and holds no SynthVeRi manifest; refusing to write into it "
                               "(pass overwrite=True / --overwrite to replace SynthVeRi's files there)")
    _clean(out)
    return "fresh"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------ generate
def generate(out_dir: str | os.PathLike, preset: str = "small", image_size: int = 128, seed: int = 0,
             workers: Optional[int] = None, overwrite: bool = False, *, progress: bool = True) -> Path:
    """Generate SynthVeRi ``preset`` into ``out_dir`` in VeRi-776's layout; return ``out_dir``.

    Same ``(preset, image_size, seed)`` and generator version => byte-identical files, whatever
    ``workers`` (None = all CPU cores; 1 = in this process). An existing complete folder with the
    same config is left as it is (no-op); one with another config raises
    :class:`SynthFolderError` unless ``overwrite``; an interrupted one (``.incomplete``) with the
    same config is resumed, with another config refused unless ``overwrite``.

    ``workers > 1`` uses a ``forkserver`` (or ``spawn``) process pool: as always with those, a
    script that calls this must do so under ``if __name__ == "__main__":``. ``progress`` shows a
    tqdm bar of rendered images.
    """
    cfg = run_config(preset, image_size, seed)
    out = Path(out_dir)
    state = _prepare(out, cfg, overwrite)
    if state == "done":
        return out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, cfg)

    plan = build_plan(cfg["params"], seed)
    by_vid = plan.by_vid()
    for folder in SPLIT_DIRS.values():
        (out / folder).mkdir(exist_ok=True)
        (out / "masks" / folder).mkdir(parents=True, exist_ok=True)
    (out / PARTIAL).mkdir(exist_ok=True)

    results = _existing_chunks(out, by_vid) if state == "resume" else {}
    todo = [(vid, ims) for vid, ims in sorted(by_vid.items()) if vid not in results]
    wstate = {"config": cfg, "out_dir": str(out), "identities": plan.identities, "cameras": plan.cameras}
    n_workers = max(1, min(workers or _cpu_count(), len(todo) or 1))

    from tqdm import tqdm
    bar = tqdm(total=len(plan.images), unit="img", desc=f"SynthVeRi {preset}", disable=not progress)
    bar.update(sum(len(by_vid[v]) for v in results))
    try:
        if n_workers == 1:
            _init_worker(wstate)
            for task in todo:
                res = _render_chunk(task)
                results[res["vid"]] = res
                bar.update(len(res["entries"]))
        else:
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
            with ctx.Pool(n_workers, initializer=_init_worker, initargs=(wstate,)) as pool:
                for res in pool.imap_unordered(_render_chunk, todo, chunksize=1):
                    results[res["vid"]] = res
                    bar.update(len(res["entries"]))
    finally:
        bar.close()
        _STATE.clear()

    _write_lists(out, cfg, plan, results)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    (out / MARKER).unlink()
    return out


def _write_lists(out: Path, cfg: dict[str, Any], plan: Plan, results: dict[int, dict[str, Any]]) -> None:
    """Lists, index files, key points, metadata and (last) the manifest."""
    entry = {e["index"]: e for r in results.values() for e in r["entries"]}
    files: dict[str, str] = {}
    splits: dict[str, list[ImagePlan]] = {"train": [], "query": [], "test": []}
    for im in plan.images:
        splits[im.split].append(im)
        if im.query:
            splits["query"].append(im)
    for split, ims in splits.items():
        folder = SPLIT_DIRS[split]
        for im in ims:
            e = entry[im.index]
            files[f"{folder}/{im.name}"] = e["jpg"]
            files[f"masks/{folder}/{im.name[:-4]}.png"] = e["png"]

    def put(name: str, text: str):
        data = text.encode("utf-8")
        atomic_write_text(out / name, text)
        files[name] = _sha(data)

    for split in ("train", "query", "test"):
        put(f"name_{split}.txt", "".join(im.name + "\n" for im in splits[split]))

    # gt / jk: 1-based indices into name_test.txt
    test_pos: dict[int, list[tuple[int, int]]] = {}
    for j, im in enumerate(splits["test"], start=1):
        test_pos.setdefault(im.vid, []).append((j, im.cam))
    gt_lines, jk_lines = [], []
    for q in splits["query"]:
        same = test_pos.get(q.vid, [])
        gt_lines.append(" ".join(str(j) for j, c in same if c != q.cam) + "\n")
        jk_lines.append(" ".join(str(j) for j, c in same if c == q.cam) + "\n")
    put("gt_index.txt", "".join(gt_lines))
    put("jk_index.txt", "".join(jk_lines))

    def kp_lines(folder: str, ims: list[ImagePlan]) -> str:
        return "".join(f"{folder}/{im.name} " + " ".join(map(str, entry[im.index]["kp"])) + f" {im.orientation}\n"
                       for im in ims)
    put("keypoint_train.txt", kp_lines("image_train", splits["train"]))
    put("keypoint_test.txt", kp_lines("image_test", splits["test"]) + kp_lines("image_query", splits["query"]))

    for split in ("train", "query", "test"):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(META_COLUMNS)
        for im in splits[split]:
            ident = plan.identities[im.vid]
            w.writerow([im.name, im.vid, im.cam, f"{im.yaw:.2f}", f"{im.elevation:.2f}", im.orientation, im.view,
                        ident["body_type"], ident["colour"]])
        put(f"meta_{split}.csv", buf.getvalue())
    put("identities.json", json.dumps({str(k): v for k, v in sorted(plan.identities.items())}, indent=1) + "\n")
    put("cameras.json", json.dumps({str(k): v for k, v in sorted(plan.cameras.items())}, indent=1) + "\n")

    counts = {"train_ids": len({im.vid for im in splits["train"]}), "test_ids": len(plan.test_ids),
              "cameras": len(plan.cameras), "train_images": len(splits["train"]),
              "query_images": len(splits["query"]), "test_images": len(splits["test"])}
    manifest = {"generator": cfg["generator"], "generator_version": cfg["generator_version"], "seed": cfg["seed"],
                "config": cfg, "counts": counts,
                "query_rule": "one frame per (test id, camera), copied byte-identically from image_test",
                "files": dict(sorted(files.items()))}
    atomic_write_json(out / MANIFEST, manifest)


def load_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished SynthVeRi folder (FileNotFoundError if there is none)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a (finished) SynthVeRi folder")
    return json.loads(path.read_text())


def verify(root: str | os.PathLike) -> list[str]:
    """Re-hash every file listed in the manifest; return the paths that are missing or differ."""
    root = Path(root)
    bad = []
    for rel, sha in load_manifest(root)["files"].items():
        p = root / rel
        if not p.is_file() or _sha(p.read_bytes()) != sha:
            bad.append(rel)
    return bad
