"""What a profile's models would cost on a GPU: counted, then converted at a published rate.

No page of this book has run on a GPU, so its GPU times are estimates, built in two steps:

1. **Counted**: each model's training step at the profile's input size and batch
   (:func:`reidlib.engine.cost.training_step_cost`: forward + backward FLOPs and training memory,
   on PyTorch's ``meta`` device), times the iterations the profile trains it for.
2. **Converted** at one rate: the FLOPs per second that NVIDIA's published mixed-precision training
   throughput of ResNet-50 v1.5 on one A100 80GB implies (2,470 images/s at 224 x 224 px;
   NVIDIA/DeepLearningExamples, ``PyTorch/Classification/ConvNets/resnet50v1.5/README.md``,
   "Training performance: NVIDIA DGX A100"), with the FLOPs of that step counted by the same
   counter. A newer GPU (an H100 or H200) is faster; the small batches of re-ID (32-64 images),
   the data loading and the evaluation passes are slower than that benchmark. Read the minutes as
   an order of magnitude: no GPU run has checked them.

Memory is weights + gradients + optimiser state + the activations kept for the backward pass, in
bfloat16 (see :mod:`reidlib.engine.cost`); a GPU needs about 1 GiB more for its context and
workspaces.
"""
from __future__ import annotations

from functools import lru_cache

from reidlib.study.profiles import Profile, get_profile

__all__ = ["REFERENCE_IMAGES_PER_S", "REFERENCE_SOURCE", "VERI776_TRAIN_IMAGES", "reference_flop_rate",
           "profile_costs", "costs_markdown"]

#: NVIDIA's published ResNet-50 v1.5 training throughput, one A100 80GB, mixed precision, 224 px
REFERENCE_IMAGES_PER_S = 2470.0
REFERENCE_BATCH = 256
REFERENCE_SOURCE = ("NVIDIA/DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md "
                    "(ResNet-50 v1.5, one A100 80GB, mixed precision: 2,470 images/s)")
#: VeRi-776's training split (Liu et al. 2016): the paper profile's epochs are counted on it
VERI776_TRAIN_IMAGES = 37778
#: SPAN's view classes (front, rear, side, front-side, rear-side): step 1's subset has at most
#: ``span_per_view`` images of each
SPAN_VIEW_CLASSES = 5
#: memory a GPU needs beyond the counted tensors (CUDA context, cuDNN workspaces), an allowance
GPU_OVERHEAD_GIB = 1.0


@lru_cache(maxsize=None)
def reference_flop_rate() -> float:
    """FLOPs per second implied by :data:`REFERENCE_IMAGES_PER_S`: the counted FLOPs of one
    ResNet-50 training step on ``[256, 3, 224, 224]`` (torchvision's ResNet-50, 1000 classes) x
    steps per second."""
    import torchvision

    from reidlib.engine.cost import training_step_cost

    cost = training_step_cost(lambda: torchvision.models.resnet50(weights=None), (REFERENCE_BATCH, 3, 224, 224))
    return cost.flops / REFERENCE_BATCH * REFERENCE_IMAGES_PER_S


def _iterations(cfg, batch: int, images: int) -> int:
    """The run's length in iterations, as the trainer converts it (:func:`reidlib.engine.training.schedule`;
    an epoch is ``images // batch`` batches, as the P x K and shuffled samplers count it)."""
    from reidlib.engine.training import schedule

    return schedule(cfg, max(1, images // batch))[0]


def _rows(prof: Profile):
    """``(model, build, input shape, iterations)`` of every model the profile trains."""
    from reidlib.config import load_config
    from reidlib.models.registry import build_model, model_class

    h, w = prof.input_size
    pk = prof.batch_p * prof.batch_k
    n_classes = 576                                   # VeRi-776's training identities
    span_shape = (prof.span_batch, 3, prof.span_size, prof.span_size)
    span_images = SPAN_VIEW_CLASSES * prof.span_per_view
    if prof.own_recipes:                              # SPAN's public code: 10 epochs of its subset
        span_iters = _iterations(load_config(model="span-masks"), prof.span_batch, span_images)
    else:
        span_iters = prof.span_iters

    def span_net():
        return model_class("span-masks")(backbone=prof.span_backbone, **dict(prof.span_options))

    def frozen_span():
        net = span_net()
        net.requires_grad_(False)
        return net

    rows = []
    if prof.init == "standin":
        backbones = dict.fromkeys([prof.reid_backbone, prof.span_backbone])
        for bb in backbones:
            rows.append((f"stand-in ({bb})", lambda bb=bb: model_class("attributes")(backbone=bb, last_stride=1), (pk, 3, h, w),
                         prof.pretrain_iters))
    rows.append(("SPAN step 1", span_net, span_shape, span_iters))
    if prof.fg_source == "grabcut":
        rows.append(("foreground network", lambda: model_class("foreground")(backbone=prof.span_backbone), span_shape, span_iters))
    span_kwargs = {"dim": prof.feat_dim}
    if prof.span_size != h:
        span_kwargs["span_input_size"] = (prof.span_size, prof.span_size)
    for name, kwargs in {"baseline": {}, "span": span_kwargs, "musp": {}}.items():
        if prof.own_recipes:
            cfg = load_config(model=name)
            batch = cfg.data.p * cfg.data.k
            iters = _iterations(cfg, batch, VERI776_TRAIN_IMAGES)
        else:
            batch, iters = pk, prof.reid_iters
        structural = {"last_stride": 1} if name != "musp" else {}

        def build(name=name, kwargs=kwargs, structural=structural):
            extra = {"span": frozen_span()} if name == "span" else {}
            return build_model(name, num_classes=n_classes, backbone=prof.reid_backbone, **structural,
                               **kwargs, **extra)
        rows.append((name, build, (batch, 3, h, w), iters))
    return rows


def profile_costs(profile: str | Profile = "gpu"):
    """One row per model the profile trains: input, batch, iterations, GFLOPs per iteration,
    training memory (GiB, with :data:`GPU_OVERHEAD_GIB`) and the estimated GPU minutes of one
    training run (:func:`reference_flop_rate`). A page trains one run per training seed of each
    model it compares (pages share the runs they have in common)."""
    import pandas as pd

    from reidlib.engine.cost import training_step_cost

    prof = get_profile(profile) if isinstance(profile, str) else profile
    rate = reference_flop_rate()
    out = []
    for name, build, shape, iters in _rows(prof):
        cost = training_step_cost(build, shape)
        out.append({"model": name, "input": f"{shape[2]} x {shape[3]}", "batch": shape[0],
                    "iterations": iters, "GFLOP / iteration": cost.flops / 1e9,
                    "memory (GiB)": cost.memory_bytes / 2 ** 30 + GPU_OVERHEAD_GIB,
                    "estimated GPU minutes": cost.flops * iters / rate / 60})
    return pd.DataFrame(out)


#: the Markdown tables' model names (the DataFrame keeps the registry's; a SPAN re-ID step includes
#: its frozen mask network's forward pass)
_LABELS = {"baseline": "strong baseline", "span": "SPAN re-ID", "musp": "MUSP, n = 5"}


def costs_markdown(profiles=("gpu", "paper")) -> str:
    """The cost tables of ``profiles`` as Markdown, with what the estimate is based on."""
    rate = reference_flop_rate()
    parts = [f"Estimated, not measured (no page has run on a GPU yet): each model's training step is "
             f"counted (forward + backward FLOPs and training memory at the profile's input size and "
             f"batch, `reidlib.study.cost`) and converted at {rate / 1e12:.0f} TFLOP/s, the rate that "
             f"{REFERENCE_SOURCE} implies under the same count. A newer GPU is faster; re-ID's small "
             f"batches, data loading and evaluation are slower. Read the minutes as an order of "
             f"magnitude: no GPU run has checked them. Memory includes {GPU_OVERHEAD_GIB:.0f} GiB for the GPU's "
             f"context. One row is one training run; a page trains one run per training seed of each "
             f"model it compares, and pages share the runs they have in common. The stand-in rows apply only "
             f"with `init=standin`; a SPAN re-ID step includes its frozen mask network's forward pass."]
    for name in profiles:
        prof = get_profile(name)
        df = profile_costs(prof)
        where = (f"VeRi-776 ({VERI776_TRAIN_IMAGES:,} training images; each model's own recipe, epochs "
                 f"counted on it; SPAN step 1 on at most {SPAN_VIEW_CLASSES} x {prof.span_per_view:,} images)"
                 if prof.own_recipes else f"SynthVeRi `{prof.synth_preset}`, one schedule for every model")
        lines = [f"**`{name}` profile**, on {where}; {len(prof.seeds)} training seeds:", "",
                 "| model | input | batch | iterations | GFLOP / it. | memory (GiB) | GPU minutes (est.) |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for r in df.to_dict("records"):
            minutes = r["estimated GPU minutes"]
            shown = f"{minutes:.0f}" if minutes >= 10 else f"{minutes:.1f}"
            lines.append(f"| {_LABELS.get(r['model'], r['model'])} | {r['input']} | {r['batch']} | "
                         f"{r['iterations']:,} | {r['GFLOP / iteration']:,.0f} | {r['memory (GiB)']:.1f} | {shown} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"

