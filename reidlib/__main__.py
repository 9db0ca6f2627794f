"""Command-line interface: ``python -m reidlib`` (also the ``reidlib`` console script).

Examples::

    python -m reidlib.data.synth data/tiny --preset tiny --image-size 64
    python -m reidlib train --model baseline --data data/tiny --out runs/base optim.max_iters=200
    python -m reidlib train --model span-masks --data data/tiny --out runs/span1
    python -m reidlib train --model span --data data/tiny --span runs/span1/model.pt --out runs/span2
    python -m reidlib train --model musp --data data/tiny --config musp.yaml --resume
    python -m reidlib evaluate --checkpoint runs/span2/model.pt --data data/tiny --distance euclidean
    python -m reidlib config --model musp optim.lr=1e-4      # print the resolved configuration

Everything runs on the CPU when no GPU is present (``train.device=auto``). ``--help`` does not
import torch.

On several GPUs (or CPU processes), the same command under ``torchrun``::

    torchrun --nproc-per-node 4 -m reidlib train --model baseline --data /data/VeRi --out runs/base
    torchrun --nproc-per-node 4 -m reidlib evaluate --checkpoint runs/base/model.pt --data /data/VeRi

The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) is detected: the process group
is initialised (``nccl`` on GPUs, ``gloo`` on the CPU), each rank trains on ``cuda:LOCAL_RANK``
with DistributedDataParallel and its slice of every P x K batch, evaluation is sharded, and only
rank 0 writes files and prints (:mod:`reidlib.engine.distributed`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

MODELS_HELP = "baseline | span | musp (re-ID); span-masks (SPAN step 1); foreground (the foreground network)"


def _parser() -> argparse.ArgumentParser:
    from reidlib.config import DATASETS, MODELS

    p = argparse.ArgumentParser(prog="reidlib", description="Part-aware vehicle re-ID: SPAN + CPDM and MUSP.",
                                epilog="Config keys: `reidlib config --keys`. Docs: the reidlib book.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{train,evaluate,config}")

    t = sub.add_parser("train", help="train a model (resumable; checkpoints + JSON-lines log in --out)",
                       description="Train a model. Config precedence: the model's defaults < --config < key=value.")
    t.add_argument("--model", required=True, choices=MODELS, help=MODELS_HELP)
    t.add_argument("--data", required=True, metavar="ROOT", help="dataset folder (VeRi-776 layout for SynthVeRi)")
    t.add_argument("--dataset", choices=DATASETS, default=None, help="dataset kind (default veri776)")
    t.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML config (sections model, data, optim, ...)")
    t.add_argument("--out", metavar="DIR", default=None, help="output folder (default runs/<model>)")
    t.add_argument("--resume", action="store_true", help="continue from DIR/last.pt if it exists")
    t.add_argument("--span", metavar="CKPT", default=None,
                   help="trained SPAN for --model span (the model.pt of a span-masks run)")
    t.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    t.add_argument("--eval", action="store_true", help="evaluate on query/gallery after training (re-ID models)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=1e-4 data.p=8")

    e = sub.add_parser("evaluate", help="evaluate a re-ID checkpoint: R1/R5/R10/mAP/mINP",
                       description="Extract query/gallery features and rank with the model's distance.")
    e.add_argument("--checkpoint", required=True, metavar="CKPT", help="model.pt / last.pt or a run folder")
    e.add_argument("--data", required=True, metavar="ROOT", help="dataset folder")
    e.add_argument("--dataset", choices=DATASETS, default=None, help="dataset kind (default: as trained)")
    e.add_argument("--test-size", default=None, help="VehicleID 800|1600|2400, VERI-Wild 3000|5000|10000")
    e.add_argument("--distance", default=None, metavar="NAME",
                   help="euclidean | sqeuclidean | cosine | cpdm | cpdm_musp | cpdm_musp_code (default: the model's)")
    e.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--json", metavar="FILE", default=None, help="also write the metrics to FILE (atomically)")

    c = sub.add_parser("config", help="print the resolved configuration (YAML) or the valid keys")
    c.add_argument("--model", default="baseline", choices=MODELS)
    c.add_argument("--config", metavar="FILE.yaml", default=None)
    c.add_argument("--keys", action="store_true", help="list every valid key")
    c.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def _check_paths(args) -> None:
    """The files and folders the command reads must exist: ConfigError in one line, before any
    output folder is made (relative paths are read from the working directory, as the shell does)."""
    from pathlib import Path

    from reidlib.errors import ConfigError

    wanted = {"data": ("folder", "a dataset folder"), "checkpoint": ("file or folder", "a model.pt / last.pt "
              "or a run folder"), "span": ("file", "the model.pt of a span-masks run"),
              "config": ("file", "a YAML config")}
    for key, (kind, expected) in wanted.items():
        value = getattr(args, key, None)
        if value is None:
            continue
        path = Path(value).expanduser()
        found = path.is_dir() if kind == "folder" else path.is_file() if kind == "file" else path.exists()
        if not found:
            where = "" if path.is_absolute() else f" (read from the working directory {Path.cwd()})"
            raise ConfigError(f"--{key} {value}: no {kind} {path.absolute()}{where}; expected {expected}")


def _check_device(device, option: str) -> None:
    """``device`` available here, else ConfigError in one line naming ``option`` and what exists."""
    from reidlib.errors import ConfigError
    from reidlib.utils.device import check_device

    try:
        check_device(device)
    except ConfigError as err:
        raise ConfigError(f"{option}: {err}") from None


def _cmd_train(args) -> int:
    from reidlib.config import REID_MODELS, load_config

    extra = {"data.root": args.data}
    if args.dataset:
        extra["data.dataset"] = args.dataset
    if args.out:
        extra["train.out_dir"] = args.out
    if args.span:
        extra["model.span_checkpoint"] = args.span
    if args.device:
        extra["train.device"] = args.device
    if args.no_progress:
        extra["train.progress"] = False
    cfg = load_config(args.config, model=args.model, overrides=args.overrides, **extra)
    _check_device(cfg.train.device, "--device" if args.device else "train.device")

    from reidlib.engine import distributed as ddp
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.engine.training import run_training

    ddp.init_from_env(cfg.train.device)
    if args.resume and ddp.is_main():
        from reidlib.engine.checkpoint import latest_checkpoint
        from reidlib.engine.training import out_dir

        found = latest_checkpoint(out_dir(cfg)) if out_dir(cfg).is_dir() else None
        print(f"resuming from {found}" if found else f"nothing to resume in {out_dir(cfg)}: a fresh run")
    res = run_training(cfg, resume=args.resume)
    main_rank = ddp.is_main()
    if args.eval and cfg.model.name in REID_MODELS:
        m = evaluate_reid(res.model, None, cfg)  # every rank takes part (sharded extraction)
    if not main_rank:
        return 0
    last = res.history[-1] if res.history else {}
    losses = {k: round(v, 4) for k, v in last.items() if isinstance(v, float) and k not in ("lr", "time", "data_time")}
    print(f"trained {cfg.model.name}: {res.iterations} iterations in {res.seconds:.1f} s; last log {losses}")
    print(f"model: {res.checkpoint}")
    print(f"checkpoint: {res.last_checkpoint}  log: {res.log_path}")
    if ddp.world_size() > 1:
        print(f"ranks: {ddp.world_size()} (DistributedDataParallel, sync_bn={res.meta.get('sync_bn')})")
    if args.eval and cfg.model.name in REID_MODELS:
        _print_metrics(m)
    return 0


def _print_metrics(m: dict) -> None:
    std = m.get("std") or {}

    def f(k: str) -> str:
        return f"{k} {m[k]:.2f}" + (f" +- {std[k]:.2f}" if k in std else "")

    trials = f"; mean of {m['trials']} trials" if "trials" in m else ""
    print("  ".join(f(k) for k in ("R1", "R5", "R10", "mAP", "mINP")) +
          f"  (percent; distance {m['distance']}; {m['num_query']:.0f} queries, {m['num_gallery']:.0f} gallery images"
          f"{trials})")


def _cmd_evaluate(args) -> int:
    from reidlib.engine import distributed as ddp
    from reidlib.engine.evaluation import evaluate_reid

    if args.device:
        _check_device(args.device, "--device")
    cfg = {}
    if args.dataset:
        cfg["data.dataset"] = args.dataset
    if args.test_size:
        cfg["data.test_size"] = str(args.test_size)
    if args.device:
        cfg["train.device"] = args.device
    ddp.init_from_env(args.device or "auto")
    m = evaluate_reid(args.checkpoint, args.data, cfg or None, distance=args.distance, device=args.device,
                      batch_size=args.batch_size)
    valid = [r.num_valid_queries for r in m.get("rank_results") or [m["rank_result"]]]
    if not ddp.is_main():  # rank 0 prints and writes
        return 1 if min(valid) == 0 else 0
    _print_metrics(m)
    if args.json:
        from reidlib.utils.io import atomic_write_json

        atomic_write_json(args.json, {k: v for k, v in m.items()
                                       if k not in ("query", "gallery", "rank_result", "rank_results", "distmat")})
    if min(valid) == 0:
        print(f"error: no query has a true match in the gallery ({m['num_query']:.0f} queries, "
              f"{m['num_gallery']:.0f} gallery images, same id and camera excluded): the metrics are undefined; "
              "check that query and gallery share identities", file=sys.stderr)
        return 1
    return 0


def _cmd_config(args) -> int:
    from reidlib.config import load_config, to_yaml, valid_keys

    if args.keys:
        print("\n".join(valid_keys()))
        return 0
    print(to_yaml(load_config(args.config, model=args.model, overrides=args.overrides)), end="")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from reidlib.errors import CheckpointError, ConfigError, DataFormatError

    try:
        _check_paths(args)
        return {"train": _cmd_train, "evaluate": _cmd_evaluate, "config": _cmd_config}[args.cmd](args)
    except (ConfigError, DataFormatError, CheckpointError, FileNotFoundError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        print(f"error: {_rank_prefix()}{first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (at most checkpoint_every iterations are lost)", file=sys.stderr)
        return 130
    finally:
        if "torch" in sys.modules:  # a process group of a torchrun launch (never imports torch for --help)
            from reidlib.engine.distributed import shutdown

            shutdown(only_own=True)


def _rank_prefix() -> str:
    """``"rank R: "`` in a multi-rank torchrun launch (every rank reports), else ``""``."""
    import os

    world = os.environ.get("WORLD_SIZE", "1")
    return f"rank {os.environ.get('RANK', '0')}: " if world.isdigit() and int(world) > 1 else ""


if __name__ == "__main__":
    sys.exit(main())
