"""SynthVeRi generation speed: images per second in one run, JPEG/PNG encoding and writing included.

    .venv/bin/python benchmarks/bench_synth.py [--preset small] [--image-size 128] [--workers 2]

Goal (issue 3): >= 500 images/s on 2 CPU cores at 128 x 128. Also prints the single-process
render+encode rate (no file writes) for reference. Writes into a temporary folder that is removed.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def render_only_rate(image_size: int, n: int = 400) -> float:
    """Images/s of render + JPEG + PNG encoding in this process, no disk."""
    import cv2

    from reidlib.data.synth.config import preset_params
    from reidlib.data.synth.geometry import BODY_TYPES, build_vehicle
    from reidlib.data.synth.identities import make_textures
    from reidlib.data.synth.plan import TEXTURE, build_plan, stream
    from reidlib.data.synth.writer import render_one

    plan = build_plan(preset_params("tiny"), seed=0)
    ims = plan.images[:n]
    cache, canv = {}, {}
    from reidlib.data.synth.cameras import make_background, make_noise
    t0 = time.perf_counter()
    count = 0
    while count < n:
        for im in ims:
            ident = plan.identities[im.vid]
            if im.vid not in cache:
                m = build_vehicle(BODY_TYPES[ident["body_type"]], ident["scale_l"], ident["scale_h"], ident["cab_shift"])
                cache[im.vid] = (m, make_textures(ident, m, 0.35 * image_size, stream(0, TEXTURE, im.vid)))
            cam = plan.cameras[im.cam]
            if im.cam not in canv:
                canv[im.cam] = (make_background(cam, image_size), make_noise(cam, image_size))
            m, tex = cache[im.vid]
            r = render_one(im, ident, m, tex, cam, image_size, 0, 0.08, canv[im.cam])
            cv2.imencode(".jpg", r.image, [cv2.IMWRITE_JPEG_QUALITY, cam["jpeg"]])
            cv2.imencode(".png", r.parts, [cv2.IMWRITE_PNG_COMPRESSION, 3])
            count += 1
            if count >= n:
                break
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default=None, help="parent folder of the temporary output (default: system temp)")
    args = ap.parse_args()
    from reidlib.data.synth import generate, load_manifest

    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()}")
    print(f"render+encode, 1 process, no disk: {render_only_rate(args.image_size):.0f} images/s")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        out = Path(tmp) / "synth"
        t0 = time.perf_counter()
        generate(out, preset=args.preset, image_size=args.image_size, seed=0, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
        counts = load_manifest(out)["counts"]
    n = counts["train_images"] + counts["test_images"]          # rendered images (queries are copies)
    print(json.dumps(counts))
    print(f"generate(preset={args.preset!r}, image_size={args.image_size}, workers={args.workers}): "
          f"{n} images in {dt:.1f} s = {n / dt:.0f} images/s")


if __name__ == "__main__":
    main()
