"""``python -m reidlib.runner {run,reproduce,list}`` (also ``python -m reidlib.experiments``)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from reidlib.errors import CheckpointError, ConfigError, DataFormatError
from reidlib.runner.notebooks import PROFILE_ORDER, ExperimentError, notebooks_dir, parse_overrides, results_root
from reidlib.runner.scheduler import reproduce
from reidlib.runner.transaction import run

DESCRIPTION = "The experiment runner: papermill notebooks in, executed notebooks + metrics with provenance out."


def quiet_teardown() -> None:
    """For a process about to exit after the one-line error (``python -m reidlib.runner``): an
    interrupted kernel client can leave asyncio tasks whose exception (the dead kernel) Python
    would print as a traceback while it exits, after our line. The run was already reported and
    cleaned up; keep the error the last thing the user reads. (Not called by :func:`main` itself,
    so a caller in a longer-lived process keeps its own hooks.)"""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlib.runner", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute one notebook with papermill into results/<profile>/")
    p_run.add_argument("name")
    p_run.add_argument("--profile", default="smoke")
    p_run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                       help="override a notebook parameter (value parsed as YAML); repeatable")
    p_run.add_argument("--results-root", default=None)
    p_run.add_argument("--notebooks-dir", default=None, help="where NAME.ipynb is (default: notebooks/)")
    p_run.add_argument("--kernel", default=None)
    p_run.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p_rep = sub.add_parser("reproduce", help="run the notebooks of notebooks/order.json for a profile, JOBS at a "
                           "time (one per GPU; the summary last)")
    p_rep.add_argument("names", nargs="*", help="notebooks (default: notebooks/order.json)")
    p_rep.add_argument("--profile", default="smoke")
    p_rep.add_argument("--jobs", type=int, default=1,
                       help="notebooks at a time: one per GPU (CUDA_VISIBLE_DEVICES), at most one per CPU core")
    p_rep.add_argument("--keep-going", action="store_true", help="after a failure, still start the other notebooks")
    p_rep.add_argument("--results-root", default=None)
    p_rep.add_argument("--notebooks-dir", default=None)
    p_rep.add_argument("--kernel", default=None)
    p_rep.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p_list = sub.add_parser("list", help="list notebooks and the results available for each")
    p_list.add_argument("--results-root", default=None)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "run":
            rec = run(args.name, args.profile, parse_overrides(args.parameter), results_root=args.results_root,
                      notebooks_dir=args.notebooks_dir, kernel_name=args.kernel, progress_bar=sys.stderr.isatty(), timeout=args.timeout)
            shown = {k: v for k, v in rec["metrics"].items() if not isinstance(v, (dict, list))}
            print(f"{args.name} [{args.profile}] done in {rec['duration_s']} s on {rec['device']}: "
                  f"{json.dumps(shown)[:400]}")
        elif args.cmd == "reproduce":
            res = reproduce(args.profile, args.jobs, args.names or None, results_root=args.results_root,
                            notebooks_dir=args.notebooks_dir, kernel_name=args.kernel, timeout=args.timeout,
                            keep_going=args.keep_going)
            if res["failed"]:
                failed = ", ".join(f"{n} (exit {c})" for n, c in res["failed"].items())
                not_run = f"; not run: {', '.join(res['not_run'])}" if res["not_run"] else ""
                print(f"error: reproduce [{args.profile}]: failed: {failed}{not_run}", file=sys.stderr)
                return 1
            print(f"reproduce [{args.profile}]: {len(res['ok'])} notebook(s) done, {res['jobs']} at a time")
        elif args.cmd == "list":
            root = results_root(args.results_root)
            for nb in sorted(notebooks_dir().glob("*.ipynb")):
                have = [p for p in PROFILE_ORDER if (root / p / f"{nb.stem}.json").is_file()]
                print(f"{nb.stem:24s} {' '.join(have) or '-'}")
    except (ExperimentError, ConfigError, DataFormatError, CheckpointError, OSError) as err:
        # one line: the run reports its first error; a library error or an unwritable results
        # folder found before the run started is named the same way
        print(f"error: {(str(err).splitlines() or [type(err).__name__])[0]}", file=sys.stderr)
        return 2
    return 0
