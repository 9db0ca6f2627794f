"""CLI: ``python -m reidlib.data check DATASET ROOT [--test-size N] [--verify-images]`` (see
:mod:`reidlib.data.check`)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from reidlib.data.registry import DATASETS

    ap = argparse.ArgumentParser(prog="python -m reidlib.data",
                                 description="Check a dataset folder before a long run.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="load a dataset folder and print what it holds and which pages it can feed")
    c.add_argument("dataset", choices=list(DATASETS))
    c.add_argument("root")
    c.add_argument("--test-size", default=None, help="VehicleID 800/1600/2400, VERI-Wild 3000/5000/10000")
    c.add_argument("--verify-images", action="store_true", help="also decode every image (slower)")
    args = ap.parse_args(argv)
    from reidlib.data.check import check_dataset, report
    from reidlib.errors import CheckpointError, ConfigError, DataFormatError

    try:
        found = check_dataset(args.dataset, args.root, args.test_size, args.verify_images)
    except (DataFormatError, ConfigError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
