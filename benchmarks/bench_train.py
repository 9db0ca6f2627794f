"""Training throughput against the compute limit, and fp32 vs bf16, measured in one run.

    .venv/bin/python benchmarks/bench_train.py [--profile cpu] [--iters 20] [--models baseline musp span]
                                               [--accuracy-iters 150] [--loader auto] [--compile]

For each re-ID model at the profile's settings (input size, backbone, P x K batch), images/s of

* the **real loop**: ``Trainer.fit`` with the profile's data path (sampler, loading, augmentation,
  losses, optimiser step, logging), and
* the **compute limit**: the same model, criterion and optimiser stepping on one batch already in
  memory (``Trainer.train_step`` on a fixed batch; no data work at all),

and their ratio (goal: >= 0.85), in float32 and in bf16 autocast (where the CPU has native bf16).
Then a short training run of the baseline in each precision from the same seed, evaluated on the
same test queries, with the paired bootstrap interval of the mAP difference: the precision switch
should change speed, not conclusions (criterion: the interval contains 0, and |difference| is
smaller than the run-to-run spread of two fp32 seeds).

``--compile``: the compute limit again with the model under ``torch.compile`` (inductor), its
first-call compile time and its speed-up over eager, in each precision; the engine keeps eager mode
unless this shows a clear win.

Timings interleave the conditions (real, limit, real, limit, ...) and report medians, since the
machine is shared. Prints the profile's settings and torch's thread count with the numbers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _study(profile: str, tmp: Path):
    from reidlib.study import Study

    return Study(profile, "cpu", data_seed=0, cache_dir=str(tmp / "runs"), init="random")  # weights: no matter for speed


def _trainer(study, model: str, amp: str, iters: int, loader: str, tmp: Path, seed: int = 0):
    from reidlib.config import as_config
    from reidlib.engine.training import prepare_reid, start_run
    from reidlib.models.span import SPAN

    over = {"optim.max_iters": iters, "optim.milestones": [], "optim.warmup_iters": 0, "train.amp": amp,
            "train.checkpoint_every": 0, "train.log_every": max(1, iters), "data.loader": loader,
            "train.out_dir": str(tmp / f"{model}-{amp}-{seed}")}
    if model == "musp":
        over["model.kwargs"] = {"num_attentions": 5}
    cfg = start_run(as_config(study.reid_config(model, seed, **over)))
    span = SPAN(backbone=study.prof.span_backbone).eval() if model == "span" else None
    trainer, _ = prepare_reid(cfg, span=span, progress=False)
    trainer.ckpt = None                      # time training, not checkpoint writes
    return trainer, cfg


def _time_real(trainer, iters: int) -> float:
    trainer.max_iters = trainer.state.iteration + iters
    t0 = time.perf_counter()
    trainer.fit()
    return (time.perf_counter() - t0) / iters


def _time_limit(trainer, batch, iters: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
        trainer.train_step(batch)
    return (time.perf_counter() - t0) / iters


def throughput(profile: str, models, iters: int, loader: str, repeats: int = 3) -> list[dict]:
    from reidlib.engine.trainer import resolve_amp

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        study = _study(profile, tmp)
        amps = ["off"] + (["bf16"] if resolve_amp("auto", torch.device("cpu")) is not None else [])
        for model in models:
            for amp in amps:
                trainer, cfg = _trainer(study, model, amp, iters, loader, tmp)
                batch_size = cfg.data.p * cfg.data.k
                batch = next(iter(trainer.loader))
                _time_real(trainer, 2)                          # warm-up: caches, allocator, oneDNN
                _time_limit(trainer, batch, 2)
                real, limit = [], []
                for _ in range(repeats):
                    real.append(_time_real(trainer, iters))
                    limit.append(_time_limit(trainer, batch, iters))
                r, lm = statistics.median(real), statistics.median(limit)
                rows.append({"model": model, "precision": trainer.precision, "batch": batch_size,
                             "input": f"{cfg.data.height}x{cfg.data.width}", "backbone": cfg.model.backbone,
                             "data path": trainer.meta.get("data_path", "").split(":")[0],
                             "real img/s": batch_size / r, "limit img/s": batch_size / lm, "ratio": lm / r})
                print(f"  {model:8s} {trainer.precision:28s} real {batch_size / r:7.1f} img/s   "
                      f"limit {batch_size / lm:7.1f} img/s   ratio {lm / r:.3f}", flush=True)
    return rows


def compiled(profile: str, models, iters: int, repeats: int = 3) -> list[dict]:
    """The compute limit under ``torch.compile`` against eager, same model and batch."""
    from reidlib.engine.trainer import resolve_amp

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        study = _study(profile, tmp)
        amps = ["off"] + (["bf16"] if resolve_amp("auto", torch.device("cpu")) is not None else [])
        for model in models:
            for amp in amps:
                trainer, cfg = _trainer(study, model, amp, iters, "auto", tmp)
                batch = next(iter(trainer.loader))
                bs = cfg.data.p * cfg.data.k
                _time_limit(trainer, batch, 2)
                eager = trainer._train_model
                t0 = time.perf_counter()
                trainer._train_model = torch.compile(eager)
                _time_limit(trainer, batch, 2)             # the compile happens here
                first = time.perf_counter() - t0
                e, c = [], []
                for _ in range(repeats):
                    trainer._train_model = eager
                    e.append(_time_limit(trainer, batch, iters))
                    trainer._train_model = torch.compile(eager)  # cached graph: no recompilation
                    c.append(_time_limit(trainer, batch, iters))
                trainer._train_model = eager
                em, cm = statistics.median(e), statistics.median(c)
                rows.append({"model": model, "precision": trainer.precision, "eager img/s": bs / em,
                             "compiled img/s": bs / cm, "speed-up": em / cm, "compile s": first})
                print(f"  {model:8s} {trainer.precision:28s} eager {bs / em:7.1f} img/s   compiled "
                      f"{bs / cm:7.1f} img/s   {em / cm:.2f}x   (first call {first:.0f} s)", flush=True)
    return rows


def accuracy(profile: str, iters: int) -> dict:
    """Baseline trained ``iters`` iterations in fp32 (seeds 0 and 1) and bf16 (seed 0)."""
    from reidlib.claims import per_query
    from reidlib.engine.trainer import resolve_amp
    from reidlib.claims.stats import paired_bootstrap

    if resolve_amp("auto", torch.device("cpu")) is None:
        return {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        study = _study(profile, tmp)
        evals = {}
        for name, amp, seed in (("fp32 seed 0", "off", 0), ("fp32 seed 1", "off", 1), ("bf16 seed 0", "bf16", 0)):
            trainer, cfg = _trainer(study, "baseline", amp, iters, "auto", tmp, seed=seed)
            trainer.fit()
            evals[name] = [study.evaluate(trainer.model.eval())]
        arrays = per_query.from_evaluations(evals, [0])
        ap = {k: per_query.values(arrays, k, "mAP") for k in evals}
        prec = paired_bootstrap(ap["bf16 seed 0"], ap["fp32 seed 0"])
        seeds = paired_bootstrap(ap["fp32 seed 1"], ap["fp32 seed 0"])
        return {"mAP": {k: v[0]["mAP"] for k, v in evals.items()}, "bf16 - fp32": prec, "seed 1 - seed 0": seeds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["baseline", "musp", "span"])
    ap.add_argument("--loader", default="auto", choices=["auto", "cache", "files"])
    ap.add_argument("--accuracy-iters", type=int, default=150, help="0 skips the fp32 vs bf16 accuracy run")
    ap.add_argument("--compile", action="store_true", help="also time the compute limit under torch.compile")
    args = ap.parse_args(argv)

    from reidlib.study.profiles import get_profile
    from reidlib.utils.device import cpu_bf16_supported, device_name

    prof = get_profile(args.profile)
    print(f"profile {args.profile}: input {prof.input_size}, re-ID backbone {prof.reid_backbone}, "
          f"P x K {prof.batch_p} x {prof.batch_k}, loader {args.loader}")
    print(f"{device_name('cpu')}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"native bf16: {cpu_bf16_supported()}")
    print(f"throughput (median of {args.repeats} x {args.iters} iterations, interleaved):")
    rows = throughput(args.profile, args.models, args.iters, args.loader, args.repeats)
    worst = min(r["ratio"] for r in rows)
    print(f"lowest ratio real/limit: {worst:.3f} (goal >= 0.85: {'met' if worst >= 0.85 else 'NOT met'})")
    base = {r["model"]: r["real img/s"] for r in rows if r["precision"].startswith("fp32")}
    for r in rows:
        if r["precision"].startswith("bf16"):
            print(f"  {r['model']}: bf16 real loop {r['real img/s'] / base[r['model']]:.2f}x fp32")
    if args.compile:
        print("torch.compile (inductor) on the compute limit:")
        compiled(args.profile, args.models, args.iters, args.repeats)
    if args.accuracy_iters:
        acc = accuracy(args.profile, args.accuracy_iters)
        if acc:
            print(f"accuracy after {args.accuracy_iters} iterations (baseline, mAP %): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in acc["mAP"].items()))
            for k in ("bf16 - fp32", "seed 1 - seed 0"):
                iv = acc[k]
                print(f"  {k}: {iv.estimate:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] (paired bootstrap, "
                      f"{iv.units} queries)")
            same = acc["bf16 - fp32"].low <= 0 <= acc["bf16 - fp32"].high and \
                abs(acc["bf16 - fp32"].estimate) <= abs(acc["seed 1 - seed 0"].estimate) + 1e-9
            print(f"  bf16 changes the result by no more than a change of seed: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
