"""Benchmark of reidlib.metrics against a plain per-query numpy loop.

    python benchmarks/bench_eval.py                 # VeRi-776 speed + VERI-Wild-Large memory
    python benchmarks/bench_eval.py --skip-large    # speed only
    python benchmarks/bench_eval.py --rerank        # also time re-ranking at VeRi-776 size

1. VeRi-776 size (1,678 queries x 11,579 gallery, 200 ids, 20 cameras, random float32
   distances): ``evaluate_rank`` vs the plain loop (per query: argsort, drop junk, cumulative
   sums), both run here, in this process, interleaved. The loop is timed with a stable
   argsort (the exact reference: the same results as ours, checked) and with numpy's default
   quicksort (faster, but its tie order is unspecified). Wall-clock and process CPU times.
2. VERI-Wild Large shape (10,000 queries x 128,517 gallery; a float32 distance matrix alone would
   be 5.1 GB) through ``evaluate_features`` with 64-d random features, in a child process whose
   peak resident memory (ru_maxrss) is reported, next to its resident memory just before the
   evaluation (interpreter + torch + features). Pass ``--large-scale 0.1`` for a scaled-down run.
3. The compiled ranking kernel's first call in a fresh process (``--skip-cold`` to skip): child
   processes time ``import reidlib.metrics.rank``, ``import numba`` and two ``evaluate_rank`` calls
   (64 queries x 11,579 gallery) with the numba backend, (a) with numba's on-disk cache
   unavailable (as on a read-only install: the kernel is compiled in the process), (b) with the
   cache (filled by a first child, then timed in a second). "cold" = the first call of the child,
   "warm" = its second.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def plain_loop(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50, kind="stable"):
    """The plain per-query numpy evaluation (toolbox style, mean-precision AP)."""
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind=kind)
        same = g_pids[order] == q_pids[i]
        keep = ~(same & (g_cams[order] == q_cams[i]))
        matches = same[keep]
        if not matches.any():
            continue
        cum = matches.cumsum()
        all_cmc.append(np.minimum(cum, 1)[:max_rank])
        prec = cum / np.arange(1, len(cum) + 1)
        all_ap.append((prec * matches).sum() / cum[-1])
        all_inp.append(cum[-1] / (np.flatnonzero(matches)[-1] + 1))
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp))


def _timed(fn, *args, **kw):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - w0, time.process_time() - c0


def veri_speed(repeats: int = 5, seed: int = 0) -> dict:
    from reidlib.metrics import evaluate_rank

    rng = np.random.default_rng(seed)
    nq, ng = 1678, 11579
    q_pids, g_pids = rng.integers(0, 200, nq), rng.integers(0, 200, ng)
    q_cams, g_cams = rng.integers(0, 20, nq), rng.integers(0, 20, ng)
    dist = rng.random((nq, ng), dtype=np.float32)

    from reidlib.metrics.rank import default_num_threads, resolve_backend

    evaluate_rank(dist[:64], q_pids[:64], g_pids, q_cams[:64], g_cams)      # warm-up
    (cmc_s, map_s, minp_s), wall_s, cpu_s = _timed(plain_loop, dist, q_pids, g_pids, q_cams, g_cams)
    # the quicksort loop and ours interleaved (the loop every other round), medians: slow drifts
    # of a shared machine's speed hit both sides alike
    walls_q, cpus_q, walls, cpus, walls_1, walls_np = [], [], [], [], [], []
    for i in range(repeats):
        if i % 2 == 0:
            (cmc_q, map_q, _), w, c = _timed(plain_loop, dist, q_pids, g_pids, q_cams, g_cams, kind="quicksort")
            walls_q.append(w)
            cpus_q.append(c)
        res, w, c = _timed(evaluate_rank, dist, q_pids, g_pids, q_cams, g_cams)
        walls.append(w)
        cpus.append(c)
        walls_1.append(_timed(evaluate_rank, dist, q_pids, g_pids, q_cams, g_cams, num_threads=1)[1])
        walls_np.append(_timed(evaluate_rank, dist, q_pids, g_pids, q_cams, g_cams, backend="numpy")[1])
    wall_q, cpu_q = float(np.median(walls_q)), float(np.median(cpus_q))
    same = bool(np.array_equal(res.cmc, cmc_s) and abs(res.mAP - map_s) < 1e-12
                and abs(res.mINP - minp_s) < 1e-12)
    w_fast, c_fast, w_one = float(np.median(walls)), float(np.median(cpus)), float(np.median(walls_1))
    w_np = float(np.median(walls_np))
    return {
        "shape": [nq, ng],
        "plain_loop_stable_wall_s": round(wall_s, 3), "plain_loop_stable_cpu_s": round(cpu_s, 3),
        "plain_loop_quicksort_wall_s": round(wall_q, 3), "plain_loop_quicksort_cpu_s": round(cpu_q, 3),
        "plain_loop_quicksort_wall_s_all": [round(x, 3) for x in walls_q],
        "ranker_threads": default_num_threads(),
        "backend": resolve_backend("auto"),
        "evaluate_rank_numpy_backend_wall_s_median": round(w_np, 4),
        "speedup_vs_quicksort_loop_wall_numpy_backend": round(wall_q / w_np, 1),
        "evaluate_rank_1thread_wall_s_median": round(w_one, 4),
        "speedup_vs_quicksort_loop_wall_1thread": round(wall_q / w_one, 1),
        "evaluate_rank_wall_s_median": round(w_fast, 4), "evaluate_rank_cpu_s_median": round(c_fast, 4),
        "evaluate_rank_wall_s_all": [round(x, 4) for x in walls],
        "speedup_vs_stable_loop_wall": round(wall_s / w_fast, 1),
        "speedup_vs_stable_loop_cpu": round(cpu_s / c_fast, 1),
        "speedup_vs_quicksort_loop_wall": round(wall_q / w_fast, 1),
        "speedup_vs_quicksort_loop_cpu": round(cpu_q / c_fast, 1),
        "identical_to_stable_loop": same,
        "mAP": res.mAP,
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def large_child(scale: float, dim: int, seed: int = 0) -> dict:
    """Run in a child process: VERI-Wild-Large-like evaluate_features; peak RSS."""
    import resource

    import torch

    from reidlib.metrics import evaluate_features

    rng = np.random.default_rng(seed)
    nq, ng = int(round(10_000 * scale)), int(round(128_517 * scale))
    n_ids = nq
    q_pids = np.arange(nq)                                  # one query per id, as in VERI-Wild
    g_pids = rng.integers(0, n_ids, ng)
    q_cams, g_cams = rng.integers(0, 174, nq), rng.integers(0, 174, ng)
    q = torch.from_numpy(rng.standard_normal((nq, dim), dtype=np.float32))
    g = torch.from_numpy(rng.standard_normal((ng, dim), dtype=np.float32))
    rss_before = _rss_mb()
    res, wall, cpu = _timed(evaluate_features, q, g, q_pids, g_pids, q_cams, g_cams,
                            distance="euclidean")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"shape": [nq, ng], "feature_dim": dim, "scale": scale,
            "full_float32_matrix_gb": round(nq * ng * 4 / 1e9, 2),
            "rss_before_eval_mb": round(rss_before, 1), "peak_rss_mb": round(peak, 1),
            "eval_wall_s": round(wall, 1), "eval_cpu_s": round(cpu, 1),
            "num_valid_queries": res.num_valid_queries, "mAP": res.mAP,
            "torch_threads": torch.get_num_threads()}


def cold_child() -> dict:
    """Run in a fresh child process: import time, first and second evaluate_rank call (numba backend)."""
    t0 = time.perf_counter()
    from reidlib.metrics.rank import evaluate_rank
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    import numba  # noqa: F401  (imported by the first call otherwise; timed apart)
    t_numba = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    nq, ng = 64, 11579
    dist = rng.random((nq, ng), dtype=np.float32)
    args = (rng.integers(0, 200, nq), rng.integers(0, 200, ng), rng.integers(0, 20, nq), rng.integers(0, 20, ng))
    _, first, _ = _timed(evaluate_rank, dist, *args, backend="numba")
    _, second, _ = _timed(evaluate_rank, dist, *args, backend="numba")
    from reidlib.metrics import _rank_kernel
    return {"import_s": round(t_import, 3), "import_numba_s": round(t_numba, 3),
            "first_call_s": round(first, 3), "second_call_s": round(second, 4),
            "cache": type(_rank_kernel.count_before._cache).__name__}


def kernel_cold_warm() -> dict:
    """First call of the ranking kernel in fresh processes, without and with numba's disk cache."""
    def child(env_extra: dict) -> dict:
        env = dict(os.environ, **env_extra)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_cold"], capture_output=True,
                             text=True, check=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # no locator applies to a plain file -> numba cannot cache -> njit_cached compiles without a cache
    no_cache = child({"NUMBA_CACHE_LOCATOR_CLASSES": "ZipCacheLocator"})
    child({})                                              # fills the cache if it is not there yet
    cached = child({})
    return {"no_cache": no_cache, "cached": cached}


def rerank_speed(seed: int = 0) -> dict:
    import resource

    from reidlib.metrics import evaluate_rank, pairwise_distance, re_ranking

    rng = np.random.default_rng(seed)
    nq, ng, dim = 1678, 11579, 64
    centres = rng.standard_normal((200, dim))
    q_pids, g_pids = rng.integers(0, 200, nq), rng.integers(0, 200, ng)
    q = centres[q_pids] + 1.5 * rng.standard_normal((nq, dim))
    g = centres[g_pids] + 1.5 * rng.standard_normal((ng, dim))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    g = (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
    q_cams, g_cams = rng.integers(0, 20, nq), rng.integers(0, 20, ng)
    base = evaluate_rank(pairwise_distance(q, g), q_pids, g_pids, q_cams, g_cams)
    rr, wall, cpu = _timed(re_ranking, q, g)
    after = evaluate_rank(rr, q_pids, g_pids, q_cams, g_cams)
    return {"shape": [nq, ng], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "mAP_before": round(base.mAP, 4), "mAP_after": round(after.mAP, 4),
            "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--large-scale", type=float, default=1.0)
    ap.add_argument("--large-dim", type=int, default=64)
    ap.add_argument("--rerank", action="store_true")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_cold", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        print(json.dumps(large_child(float(args._child[0]), int(args._child[1]))))
        return 0
    if args._cold:
        print(json.dumps(cold_child()))
        return 0

    results = {"cpu_count": os.cpu_count()}
    print(f"== VeRi-776 size, random distances ({os.cpu_count()} CPUs) ==", flush=True)
    r = veri_speed(args.repeats)
    results["veri776_speed"] = r
    print(f"plain loop, stable argsort : {r['plain_loop_stable_wall_s']:.3f} s wall, "
          f"{r['plain_loop_stable_cpu_s']:.3f} s CPU")
    print(f"plain loop, quicksort (median of {len(r['plain_loop_quicksort_wall_s_all'])}): "
          f"{r['plain_loop_quicksort_wall_s']:.3f} s wall, {r['plain_loop_quicksort_cpu_s']:.3f} s CPU")
    print(f"evaluate_rank, {r['backend']} backend, {r['ranker_threads']} threads (median of {args.repeats}): "
          f"{r['evaluate_rank_wall_s_median']:.4f} s wall, {r['evaluate_rank_cpu_s_median']:.4f} s CPU")
    print(f"evaluate_rank, 1 thread  (median of {args.repeats}): {r['evaluate_rank_1thread_wall_s_median']:.4f} s wall "
          f"({r['speedup_vs_quicksort_loop_wall_1thread']}x the quicksort loop)")
    print(f"evaluate_rank, numpy backend, {r['ranker_threads']} threads: {r['evaluate_rank_numpy_backend_wall_s_median']:.4f} s "
          f"wall ({r['speedup_vs_quicksort_loop_wall_numpy_backend']}x the quicksort loop)")
    print(f"speed-up vs stable loop    : {r['speedup_vs_stable_loop_wall']}x wall, "
          f"{r['speedup_vs_stable_loop_cpu']}x CPU")
    print(f"speed-up vs quicksort loop : {r['speedup_vs_quicksort_loop_wall']}x wall, "
          f"{r['speedup_vs_quicksort_loop_cpu']}x CPU")
    print(f"identical to the stable loop: {r['identical_to_stable_loop']}", flush=True)

    if not args.skip_large:
        label = "VERI-Wild Large shape" if args.large_scale == 1.0 else \
            f"VERI-Wild Large shape scaled by {args.large_scale} (an estimate, not the full run)"
        print(f"\n== {label}: evaluate_features, {args.large_dim}-d features ==", flush=True)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child",
                              str(args.large_scale), str(args.large_dim)],
                             capture_output=True, text=True, check=True)
        lr = json.loads(out.stdout.strip().splitlines()[-1])
        results["veriwild_large_memory"] = lr
        print(f"shape {lr['shape'][0]} x {lr['shape'][1]} (full float32 matrix would be "
              f"{lr['full_float32_matrix_gb']} GB)")
        print(f"RSS before evaluation {lr['rss_before_eval_mb']} MB, peak RSS {lr['peak_rss_mb']} MB, "
              f"time {lr['eval_wall_s']} s wall / {lr['eval_cpu_s']} s CPU")

    if not args.skip_cold:
        print("\n== ranking kernel (numba): first call in a fresh process, 64 x 11,579 ==", flush=True)
        cw = kernel_cold_warm()
        results["kernel_cold_warm"] = cw
        for label, key in (("no disk cache (compiled in the process)", "no_cache"), ("with the disk cache", "cached")):
            c = cw[key]
            print(f"{label:<40}: import {c['import_s']:.3f} s + numba {c['import_numba_s']:.3f} s, "
                  f"cold (1st call) {c['first_call_s']:.3f} s, "
                  f"warm (2nd call) {c['second_call_s']:.4f} s  [{c['cache']}]")

    if args.rerank:
        print("\n== re-ranking at VeRi-776 size (64-d clustered features) ==", flush=True)
        rr = rerank_speed()
        results["rerank"] = rr
        print(f"re_ranking: {rr['wall_s']} s wall, mAP {rr['mAP_before']} -> {rr['mAP_after']}, "
              f"process peak RSS {rr['process_peak_rss_mb']} MB")

    if args.json:
        from reidlib.utils import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
