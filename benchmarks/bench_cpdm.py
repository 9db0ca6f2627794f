"""Benchmark: CPDM distance matrix vs a plain Euclidean distance matrix, same run, same data.

Default size = VeRi-776 evaluation (1,678 queries x 11,579 gallery), d = 512, P = 4, float32, CPU.
The plain baseline is the Euclidean matrix of the concatenated ``[N, P*d]`` features, timed two
ways: ``torch.cdist`` and our matrix-product :func:`reidlib.metrics.pairwise.euclidean_distance`.
The ratio is taken against the faster of the two (the stricter comparison).
Goal: ``cpdm <= 1.2 x plain`` (median wall time) for the default, true-Euclidean CPDM (SPAN eq. 5).

CPDM is timed with both implementations of its inference tiles (:func:`reidlib.metrics.cpdm.resolve_backend`):
``cpdm`` = the default (the compiled numba kernel when numba is installed) and ``cpdm_torch`` =
the torch element-wise ops (the implementation before the kernel, and the fallback without
numba): the before / after of the kernel, measured in the same run. The largest difference between
the two backends' matrices is reported too (they agree within float32 rounding).

The cases are run round-robin (``--repeats`` rounds after one warm-up round), so a burst of load
from other processes hits every case alike; per case we report the median and the minimum wall
time and the median process CPU time (all threads). The headline ratios use the median wall
time. With more than one thread the CPU time includes BLAS threads spinning at the end of each
parallel region, so CPU-time ratios of cases with many small ops read high; the single-thread
ratio (``--threads 1``) is the steadiest cross-check on a shared machine.

Usage::

    python benchmarks/bench_cpdm.py                   # VeRi-776 size
    python benchmarks/bench_cpdm.py --nq 300 --ng 2000 --repeats 3
    python benchmarks/bench_cpdm.py --json out.json   # also write the numbers
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from reidlib.metrics.cpdm import area_ratios, cpdm_distance, resolve_backend  # noqa: E402
from reidlib.metrics.distance import build_distance  # noqa: E402
from reidlib.metrics.pairwise import euclidean_distance  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _differences(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Largest absolute / relative difference of two distance matrices, and how many entries and
    rows (nearest gallery item) differ."""
    diff = (a - b).abs()
    return {"max_abs": float(diff.max()), "max_rel": float((diff / b.abs().clamp_min(1e-30)).max()),
            "entries_differing": int((a != b).sum()), "entries": a.numel(),
            "rows_with_other_nearest_item": int((a.argmin(1) != b.argmin(1)).sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nq", type=int, default=1678)
    p.add_argument("--ng", type=int, default=11579)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--chunk-size", type=int, default=None, help="rows per block; default auto (None)")
    p.add_argument("--eval-chunk", type=int, default=512,
                   help="query rows per call in the evaluator-style case (Distance object, cached gallery)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    g = torch.Generator().manual_seed(a.seed)
    fq = torch.randn(a.nq, a.parts, a.dim, generator=g).to(device)        # [Nq, P, d]
    fg = torch.randn(a.ng, a.parts, a.dim, generator=g).to(device)        # [Ng, P, d]
    # area ratios from random soft masks, with about 30% of the views absent
    mq = torch.rand(a.nq, a.parts - 1, 8, 8, generator=g) * (torch.rand(a.nq, a.parts - 1, 1, 1, generator=g) > 0.3)
    mg = torch.rand(a.ng, a.parts - 1, 8, 8, generator=g) * (torch.rand(a.ng, a.parts - 1, 1, 1, generator=g) > 0.3)
    aq, ag = area_ratios(mq).to(device), area_ratios(mg).to(device)      # [Nq, P], [Ng, P]
    cq, cg = fq.reshape(a.nq, -1), fg.reshape(a.ng, -1)                   # [N, P*d]
    cs = a.chunk_size
    gw = 1.0 / (a.parts - 1)
    default = resolve_backend("auto")
    dist = build_distance("cpdm", chunk_size=cs)

    def eval_style():
        return [dist((fq[s:s + a.eval_chunk], aq[s:s + a.eval_chunk]), (fg, ag))
                for s in range(0, a.nq, a.eval_chunk)]

    cases = {
        "cdist_concat": lambda: torch.cdist(cq, cg),
        "euclidean_concat": lambda: euclidean_distance(cq, cg, chunk_size=cs),
        "cpdm": lambda: cpdm_distance(fq, aq, fg, ag, chunk_size=cs),
        "cpdm_torch": lambda: cpdm_distance(fq, aq, fg, ag, chunk_size=cs, backend="torch"),
        "cpdm_squared": lambda: cpdm_distance(fq, aq, fg, ag, squared=True, chunk_size=cs),
        "cpdm_musp": lambda: cpdm_distance(fq, aq, fg, ag, global_weight=gw, chunk_size=cs),
        "cpdm_musp_torch": lambda: cpdm_distance(fq, aq, fg, ag, global_weight=gw, chunk_size=cs, backend="torch"),
        "cpdm_eval_chunks": eval_style,
    }
    wall = {k: [] for k in cases}
    cpu = {k: [] for k in cases}
    with torch.no_grad():
        diffs = {"cpdm": _differences(cases["cpdm"](), cases["cpdm_torch"]()),
                 "cpdm_musp": _differences(cases["cpdm_musp"](), cases["cpdm_musp_torch"]())}
        for rnd in range(a.repeats + 1):
            for name, fn in cases.items():
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn()
                _sync(device)
                t1, c1 = time.perf_counter(), time.process_time()
                del out
                if rnd:                      # round 0 = warm-up
                    wall[name].append(t1 - t0)
                    cpu[name].append(c1 - c0)

    res = {k: {"wall_median_s": statistics.median(wall[k]), "wall_min_s": min(wall[k]),
               "cpu_median_s": statistics.median(cpu[k]), "wall_runs_s": wall[k]} for k in cases}
    base = min(("cdist_concat", "euclidean_concat"), key=lambda k: res[k]["wall_median_s"])
    base_m, base_w = res[base]["wall_median_s"], min(res[k]["wall_min_s"] for k in ("cdist_concat", "euclidean_concat"))
    base_c = res[base]["cpu_median_s"]
    info = {"nq": a.nq, "ng": a.ng, "dim": a.dim, "parts": a.parts, "chunk_size": cs, "repeats": a.repeats,
            "threads": torch.get_num_threads(), "device": str(device), "torch": torch.__version__,
            "default_backend": default, "baseline": base,
            "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    print(f"# {info}")
    print(f"{'case':<18}{'wall med s':>11}{'wall min s':>11}{'cpu med s':>11}"
          f"{'ratio(med)':>11}{'ratio(min)':>11}{'ratio(cpu)':>11}")
    for name, r in res.items():
        r["ratio_wall_median"] = r["wall_median_s"] / base_m
        r["ratio_wall_min"] = r["wall_min_s"] / base_w
        r["ratio_cpu_median"] = r["cpu_median_s"] / base_c
        print(f"{name:<18}{r['wall_median_s']:>11.3f}{r['wall_min_s']:>11.3f}{r['cpu_median_s']:>11.3f}"
              f"{r['ratio_wall_median']:>11.2f}{r['ratio_wall_min']:>11.2f}{r['ratio_cpu_median']:>11.2f}")
    for name, d in diffs.items():
        print(f"{name}: {default} vs torch backend: max |diff| {d['max_abs']:.3g}, max relative {d['max_rel']:.3g}, "
              f"{d['entries_differing']} of {d['entries']} entries differ, "
              f"{d['rows_with_other_nearest_item']} rows with another nearest gallery item")
    ratio = res["cpdm"]["ratio_wall_median"]
    print(f"CPDM / plain Euclidean on the concatenated {a.parts}x{a.dim} features (median wall, same run): "
          f"{ratio:.2f} with the {default} backend (before the kernel, torch backend: "
          f"{res['cpdm_torch']['ratio_wall_median']:.2f}); CPU time {res['cpdm']['ratio_cpu_median']:.2f} "
          f"(torch {res['cpdm_torch']['ratio_cpu_median']:.2f}); goal <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"info": info, "results": res, "differences": diffs, "ratio": ratio}, f, indent=2)
    return ratio


if __name__ == "__main__":
    main()
