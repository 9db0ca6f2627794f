"""CLI: ``python -m reidlib.data.synth OUT [--preset small] [--seed 0] [--image-size N] [--layout veri776]
[--workers N] [--overwrite] [--lock-timeout S]``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from reidlib.data.synth.config import LAYOUTS, PRESETS

    ap = argparse.ArgumentParser(prog="python -m reidlib.data.synth",
                                 description="Generate SynthVeRi, a procedural vehicle re-ID benchmark in "
                                             "VeRi-776's, VehicleID's or VERI-Wild's layout (CPU only).")
    ap.add_argument("out", help="output folder (new, empty, or one SynthVeRi made)")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS),
                    help="veri: 576/200 ids, ~50k images; small: 150/100 ids, ~7k; tiny: a few hundred")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=128, help="square image side in pixels (default 128)")
    ap.add_argument("--layout", default="veri776", choices=list(LAYOUTS),
                    help="folder structure and list files: VeRi-776's (default), VehicleID's or VERI-Wild's")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes (default: all CPU cores; never more than the cores)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace a SynthVeRi folder generated with another configuration (a folder SynthVeRi "
                         "did not make is never touched)")
    ap.add_argument("--lock-timeout", type=float, default=None,
                    help="seconds to wait for another generator writing OUT (default: until it finishes)")
    args = ap.parse_args(argv)

    from reidlib.data.synth.writer import SynthFolderError, SynthWorkerError, generate, load_manifest
    from reidlib.errors import ConfigError
    try:
        out = generate(args.out, preset=args.preset, image_size=args.image_size, seed=args.seed,
                       workers=args.workers, overwrite=args.overwrite, layout=args.layout,
                       lock_timeout=args.lock_timeout)
    except (SynthFolderError, SynthWorkerError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = load_manifest(out)["counts"]
    print(f"SynthVeRi {args.preset} ({args.layout} layout) in {out}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
