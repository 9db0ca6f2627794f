"""Writing a SynthVeRi folder, in parallel, resumably, reproducibly and safely.

The files of each layout (VeRi-776's, VehicleID's, VERI-Wild's) are described in
:mod:`reidlib.data.synth.layouts`; every layout also has ``masks/``, ``identities.json``,
``cameras.json`` and ``manifest.json`` (config, counts, the images and ids of every list file,
the sha256 of every file).

Crash safety: ``.incomplete`` (holding the config) is written first and removed last, after
``manifest.json``. Work is split into one chunk per identity; a chunk's sidecar
``.partial/chunk_VVVV.json`` (hashes and key points) is written after all its files, so an
interrupted run with the same config is *resumed* (finished chunks are kept, the others redone)
and a folder is never used unless its manifest is complete. Every file is written to a temporary
name and renamed into place.

Ownership: SynthVeRi only writes into an empty (or new) folder or one it made itself (its
``manifest.json`` or ``.incomplete``, both saying ``"generator": "SynthVeRi"``). ``overwrite``
replaces such a folder's SynthVeRi files; a folder without them (a real dataset, say) is
refused with or without ``overwrite``.

Concurrency: a generator holds an exclusive ``fcntl.flock`` on ``<out>/.synthveri.lock`` while it
works; a second one on the same folder waits (up to ``lock_timeout``). The operating system
releases the lock when its holder dies, so a killed generator never blocks the next one.

Determinism: image ``i`` uses only the random stream ``(seed, IMAGE, i)`` and per-identity /
per-camera streams, JPEG/PNG encoding has fixed parameters, so the bytes do not depend on the
worker count (byte-identical on the same platform and library versions) nor on the layout.
"""
from __future__ import annotations

import ast
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from reidlib.data.synth.cameras import make_background, make_noise
from reidlib.data.synth.config import config_layout, run_config, same_config
from reidlib.data.synth.geometry import BODY_TYPES, build_vehicle
from reidlib.data.synth.identities import make_textures
from reidlib.data.synth.layouts import OWNED as LAYOUT_OWNED
from reidlib.data.synth.layouts import (VERI_DIRS, VERI_META_COLUMNS, WRITERS, ListWriter, folders, image_files,
                                        mask_file)
from reidlib.data.synth.plan import IMAGE, TEXTURE, ImagePlan, Plan, build_plan, stream
from reidlib.data.synth.render import render
from reidlib.errors import ConfigError
from reidlib.utils.io import atomic_write_json, atomic_write_text, file_lock

SPLIT_DIRS = dict(VERI_DIRS)
MARKER = ".incomplete"
PARTIAL = ".partial"
MANIFEST = "manifest.json"
LOCK = ".synthveri.lock"
META_COLUMNS = VERI_META_COLUMNS
#: every top-level entry the VeRi-776 layout writes (see ``layouts.OWNED`` for the others)
OWNED = LAYOUT_OWNED["veri776"] + (PARTIAL, MANIFEST, MARKER)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
GUARD_HINT = ('put the call under `if __name__ == "__main__":` (worker processes re-import the main script: see '
              '"Safe importing of main module" in the multiprocessing documentation), or pass workers=1 to '
              'render in this process')


class SynthFolderError(FileExistsError):
    """``out_dir`` holds something :func:`generate` must not silently replace, or another
    generator is writing it."""


class SynthWorkerError(RuntimeError):
    """SynthVeRi's worker processes died (at start-up, usually: a script that calls
    :func:`generate` at import time, without the ``if __name__ == "__main__":`` guard)."""


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


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path`` and rename it into place (no fsync:
    a crash is caught by the chunk sidecars and the manifest's hashes)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


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
    layout = config_layout(cfg)
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
        for rel in image_files(layout, im):
            _write(out / rel, jpg)
            _write(out / mask_file(rel), png)
        kp = np.where(r.visible[:, None], np.round(r.keypoints), -1).astype(int).ravel().tolist()
        entries.append({"index": im.index, "name": im.name, "jpg": hashlib.sha256(jpg).hexdigest(),
                        "png": hashlib.sha256(png).hexdigest(), "kp": kp})
    result = {"vid": vid, "entries": entries}
    # written (atomically: temp file + rename) only after all the chunk's files
    _write(out / PARTIAL / f"chunk_{vid:04d}.json", json.dumps(result).encode())
    return result


# ------------------------------------------------------------------------------------ helpers
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _synth_json(path: Path) -> Optional[dict[str, Any]]:
    """The JSON object at ``path`` if SynthVeRi wrote it (``"generator": "SynthVeRi"``), else None."""
    obj = _read_json(path)
    return obj if isinstance(obj, dict) and obj.get("generator") == "SynthVeRi" else None


def _describe(cfg: Optional[dict]) -> str:
    if not isinstance(cfg, dict):
        return "an unreadable configuration"
    return (f"preset={cfg.get('preset')!r} image_size={cfg.get('image_size')} seed={cfg.get('seed')} "
            f"layout={config_layout(cfg)!r} version={cfg.get('generator_version')}")


def _has_content(out: Path) -> bool:
    """Whether ``out`` exists and holds anything besides SynthVeRi's lock file."""
    if out.exists() and not out.is_dir():
        raise SynthFolderError(f"{out} is a file, not a folder; pass a new or empty folder")
    return out.is_dir() and any(p.name != LOCK for p in out.iterdir())


def _refuse_foreign(out: Path) -> None:
    """Refuse a non-empty folder that SynthVeRi did not make (whatever ``overwrite`` says)."""
    if _has_content(out) and _synth_json(out / MARKER) is None and _synth_json(out / MANIFEST) is None:
        raise SynthFolderError(
            f"{out} is not empty and holds no SynthVeRi manifest ({MANIFEST} or {MARKER} written by SynthVeRi): "
            "it may be a real dataset or other data, so SynthVeRi neither writes into it nor deletes anything "
            "there, even with overwrite=True / --overwrite; choose a new or empty folder")


def _clean(out: Path, *cfgs: Optional[dict]) -> None:
    """Remove what SynthVeRi writes in the layouts of ``cfgs`` (and nothing else) from ``out``."""
    names = [MANIFEST, MARKER, PARTIAL]            # manifest first: never leave a stale one
    for cfg in cfgs:
        names += [n for n in LAYOUT_OWNED[config_layout(cfg)] if n not in names]
    for name in names:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _files_present(out: Path, files) -> bool:
    return all(os.path.isfile(out / f) for f in files)


def _existing_chunks(out: Path, by_vid: dict[int, list[ImagePlan]], layout: str) -> dict[int, dict[str, Any]]:
    """Finished chunks of an interrupted run whose sidecar and files are all there."""
    done: dict[int, dict[str, Any]] = {}
    part = out / PARTIAL
    if not part.is_dir():
        return done
    for vid, images in by_vid.items():
        res = _read_json(part / f"chunk_{vid:04d}.json")
        if not isinstance(res, dict) or [e.get("name") for e in res.get("entries", [])] != [im.name for im in images]:
            continue
        paths = [p for im in images for rel in image_files(layout, im) for p in (rel, mask_file(rel))]
        if _files_present(out, paths):
            done[vid] = res
    return done


def _complete(out: Path, cfg: dict[str, Any]) -> bool:
    """Whether ``out`` is a finished SynthVeRi folder of ``cfg`` (manifest, every file, no marker)."""
    man = _synth_json(out / MANIFEST)
    return (man is not None and not (out / MARKER).exists() and same_config(man.get("config"), cfg)
            and isinstance(man.get("files"), dict) and _files_present(out, man["files"]))


def _prepare(out: Path, cfg: dict[str, Any], overwrite: bool) -> str:
    """Decide what to do with ``out``: ``"done"`` (no-op), ``"resume"`` or ``"fresh"``."""
    if not _has_content(out):
        return "fresh"
    _refuse_foreign(out)
    marker, manifest = out / MARKER, out / MANIFEST
    old = _synth_json(marker)
    man = _synth_json(manifest)
    if old is not None:
        if same_config(old, cfg):
            # interrupted between the manifest and the marker's removal?
            if (man is not None and same_config(man.get("config"), cfg) and isinstance(man.get("files"), dict)
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
        _clean(out, old, cfg)
        return "fresh"
    old = man.get("config")
    if same_config(old, cfg):
        if isinstance(man.get("files"), dict) and _files_present(out, man["files"]):
            return "done"
        # same config but files missing: redo it (never use it silently)
        atomic_write_json(marker, cfg)
        manifest.unlink()
        return "resume"
    if not overwrite:
        raise SynthFolderError(
            f"{out} already holds SynthVeRi generated with {_describe(old)}, but {_describe(cfg)} was "
            "requested; pass overwrite=True (--overwrite) to replace it, or use another folder")
    _clean(out, old, cfg)
    return "fresh"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _n_workers(workers: Optional[int], n_tasks: int) -> int:
    """Worker processes: ``workers`` (None / 0: all), never more than CPU cores or tasks."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers must be None or an int >= 0, got {workers!r}")
    cores = _cpu_count()
    return max(1, min(workers or cores, cores, n_tasks or 1))


# ------------------------------------------------------------------------------------ lock
def _folder_lock(out: Path, timeout: Optional[float], progress: bool):
    """Hold an exclusive ``flock`` on ``<out>/.synthveri.lock`` (:func:`reidlib.utils.io.file_lock`;
    released by the OS if we die), noting our pid in it; wait for another generator at most
    ``timeout`` seconds (None: as long as it takes), saying so once when ``progress``."""
    def waiting(holder: str) -> None:
        print(f"SynthVeRi: {out} is being written by another generator (pid {holder or 'unknown'}); waiting for it",
              file=sys.stderr, flush=True)

    def busy(holder: str) -> SynthFolderError:
        return SynthFolderError(
            f"{out} is being written by another SynthVeRi generator (pid {holder or 'unknown'}); gave up after "
            f"lock_timeout={timeout:g} s. Run again once it has finished (its lock is released as "
            "soon as it exits, even if it is killed)")

    return file_lock(out / LOCK, timeout=timeout, note_holder=f"{os.getpid()}\n",
                     on_wait=waiting if progress else None, error=busy)


# ------------------------------------------------------------------------------------ main-module safety
def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _unsafe_main() -> Optional[str]:
    """Why forkserver / spawn workers cannot run beside this call, or None when they can.

    Workers re-run the main module when it is a file (not ``python -c``, a notebook or a
    package's ``__main__``: the rules of ``multiprocessing.spawn``). That breaks them when this
    call runs in the script's top-level code outside an ``if __name__ == "__main__":`` block (they
    would call it again), or when the file cannot be read back (a script piped to ``python -``)."""
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    path = getattr(main, "__file__", None)
    if main is None or not path or (spec_name and (spec_name == "__main__" or spec_name.endswith(".__main__"))):
        return None
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return f"the main script {path} cannot be read back by worker processes (a script piped to stdin?)"
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None                                   # not called while the script's top level runs
    line = frame.f_lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_guard(node.test) and node.body:
            if node.body[0].lineno <= line <= (node.body[-1].end_lineno or node.body[-1].lineno):
                return None
    return (f'{path} calls generate() at import time (line {line}, not under `if __name__ == "__main__":`), '
            "so worker processes, which re-import it, would run it again")


def _refuse_in_bootstrap() -> None:
    """A worker process re-running the main script must not start generating (again)."""
    if getattr(mp.current_process(), "_inheriting", False):
        raise SynthWorkerError("generate() was called while a worker process was importing the main script, "
                               "i.e. at import time; " + GUARD_HINT)


def _run_pool(todo: list, n_workers: int, wstate: dict[str, Any], on_result) -> None:
    """Render ``todo`` on ``n_workers`` processes (forkserver, else spawn); a dead worker raises
    :class:`SynthWorkerError` at once (``ProcessPoolExecutor`` never respawns)."""
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    ex = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker, initargs=(wstate,))
    finished = 0
    try:
        futures = [ex.submit(_render_chunk, task) for task in todo]
        for fut in as_completed(futures):
            on_result(fut.result())
            finished += 1
    except (BrokenProcessPool, EOFError, ConnectionError) as err:
        when = ("before finishing any identity" if finished == 0
                else f"after {finished} of {len(todo)} identities (finished ones are kept: re-running resumes)")
        raise SynthWorkerError(
            f"SynthVeRi's worker processes died {when}. At start-up this almost always means the script that "
            f"calls generate() runs it at import time: {GUARD_HINT}. Later, a worker may have been killed "
            f"(out of memory?). ({type(err).__name__}: {err})") from err
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------ generate
def generate(out_dir: str | os.PathLike, preset: str = "small", image_size: int = 128, seed: int = 0,
             workers: Optional[int] = None, overwrite: bool = False, layout: str = "veri776", *,
             progress: bool = True, lock_timeout: Optional[float] = None) -> Path:
    """Generate SynthVeRi ``preset`` into ``out_dir`` in ``layout``'s folders; return ``out_dir``.

    ``layout``: ``"veri776"`` (default), ``"vehicleid"`` or ``"veriwild"``: the same identities and
    images, written as that dataset is (:mod:`reidlib.data.synth.layouts`) and readable by
    :class:`~reidlib.data.veri776.VeRi776` / :class:`~reidlib.data.vehicleid.VehicleID` /
    :class:`~reidlib.data.veriwild.VERIWild`.

    Same ``(preset, image_size, seed, layout)`` and generator version => byte-identical files,
    whatever ``workers`` (None = all CPU cores; never more processes than cores; 1 = in this
    process). An existing complete folder with the same config is left as it is (no-op); one with
    another config raises :class:`SynthFolderError` unless ``overwrite``; an interrupted one
    (``.incomplete``) with the same config is resumed, with another config refused unless
    ``overwrite``. A non-empty folder SynthVeRi did not make is always refused.

    A second generator on the same folder waits for the first (at most ``lock_timeout`` seconds,
    None = as long as it takes, then :class:`SynthFolderError`); then it finds the folder done
    (same config) or refuses it (another config).

    ``workers > 1`` uses a ``forkserver`` (or ``spawn``) process pool, whose workers re-import the
    main script: when this is called from a script's top-level code outside
    ``if __name__ == "__main__":``, it renders in this process instead and warns
    (``RuntimeWarning``); if the workers still die, :class:`SynthWorkerError` is raised at once.
    ``progress`` shows a tqdm bar of rendered images.
    """
    _refuse_in_bootstrap()
    cfg = run_config(preset, image_size, seed, layout)
    _n_workers(workers, 0)                                  # validates ``workers``
    out = Path(out_dir)
    _refuse_foreign(out)
    if _complete(out, cfg):
        return out                  # nothing to do: no lock taken, so a read-only copy works too
    with _folder_lock(out, lock_timeout, progress):
        state = _prepare(out, cfg, overwrite)
        if state == "done":
            return out
        atomic_write_json(out / MARKER, cfg)

        plan = build_plan(cfg["params"], seed)
        by_vid = plan.by_vid()
        for folder in folders(layout, plan):
            (out / folder).mkdir(parents=True, exist_ok=True)
        (out / PARTIAL).mkdir(exist_ok=True)

        results = _existing_chunks(out, by_vid, layout) if state == "resume" else {}
        todo = [(vid, ims) for vid, ims in sorted(by_vid.items()) if vid not in results]
        wstate = {"config": cfg, "out_dir": str(out), "identities": plan.identities, "cameras": plan.cameras}
        n_workers = _n_workers(workers, len(todo))
        if n_workers > 1:
            why = _unsafe_main()
            if why is not None:
                warnings.warn(f"SynthVeRi: {why}; rendering in this process instead of {n_workers} worker "
                              'processes. To use them, call generate() under `if __name__ == "__main__":` in a '
                              "script file", RuntimeWarning, stacklevel=2)
                n_workers = 1

        from tqdm import tqdm
        bar = tqdm(total=len(plan.images), unit="img", desc=f"SynthVeRi {preset}", disable=not progress)
        bar.update(sum(len(by_vid[v]) for v in results))

        def done(res: dict[str, Any]) -> None:
            results[res["vid"]] = res
            bar.update(len(res["entries"]))
        try:
            if n_workers == 1:
                _init_worker(wstate)
                for task in todo:
                    done(_render_chunk(task))
            else:
                _run_pool(todo, n_workers, wstate, done)
        finally:
            bar.close()
            _STATE.clear()

        _write_lists(out, cfg, plan, results)
        shutil.rmtree(out / PARTIAL, ignore_errors=True)
        (out / MARKER).unlink()
    return out


def _write_lists(out: Path, cfg: dict[str, Any], plan: Plan, results: dict[int, dict[str, Any]]) -> None:
    """The layout's lists and metadata, identities / cameras and (last) the manifest."""
    layout = config_layout(cfg)
    entry = {e["index"]: e for r in results.values() for e in r["entries"]}
    files: dict[str, str] = {}
    for im in plan.images:
        e = entry[im.index]
        for rel in image_files(layout, im):
            files[rel] = e["jpg"]
            files[mask_file(rel)] = e["png"]

    def put(name: str, text: str) -> None:
        atomic_write_text(out / name, text)
        files[name] = _sha(text.encode("utf-8"))

    extra = WRITERS[layout](ListWriter(plan, entry, cfg["seed"], put))
    put("identities.json", json.dumps({str(k): v for k, v in sorted(plan.identities.items())}, indent=1) + "\n")
    put("cameras.json", json.dumps({str(k): v for k, v in sorted(plan.cameras.items())}, indent=1) + "\n")
    manifest = {"generator": cfg["generator"], "generator_version": cfg["generator_version"], "seed": cfg["seed"],
                "layout": layout, "config": cfg, "counts": extra.pop("counts"), **extra,
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
