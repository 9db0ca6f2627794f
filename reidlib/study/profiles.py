"""Run profiles shared by every notebook: how big the data, models and schedules are.

===========  ==========================================================================
profile      meant for
===========  ==========================================================================
``smoke``    nbval in CI: SynthVeRi ``tiny``, resnet18, a few iterations; each notebook
             under 90 s on 2 CPU cores. Proves the chain, not the papers.
``cpu``      SynthVeRi ``small``, small backbones, 1 seed; the whole suite in at most
             90 minutes on 2 CPU cores. The committed results.
``gpu``      SynthVeRi ``veri`` (VeRi-776-sized), the papers' backbones (ResNet-34 SPAN,
             ResNet-50 features), 3 seeds; for one H100-class GPU.
``paper``    the papers' settings (input sizes, schedules) for users with the real datasets.
===========  ==========================================================================

A notebook reads its settings with :func:`get_profile` and may override single keys through
its papermill parameters.
"""
from __future__ import annotations

import copy
from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "synth_preset": "tiny",
        "image_size": 64,
        "input_size": (64, 64),
        "span_size": 64,  # SPAN step 1's input (its masks are resized to the part maps)
        "reid_backbone": "resnet18",
        "span_backbone": "resnet18",
        "init": "standin",  # exercised end to end, at a few iterations
        "pretrain_iters": 4,
        "seeds": [0],
        "reid_iters": 4,
        "span_iters": 4,
        "batch_p": 4,
        "batch_k": 2,
        "span_batch": 8,
        "span_per_view": 8,
        "span_options": {"stride": 8, "decoder": "transposed"},  # SPAN's public code
        "feat_dim": 64,
        "eval_batch": 64,
        "fg_source": "gt",  # SPAN's target V: SynthVeRi's true foreground (fast)
        "num_workers": 0,
        "lr": 1e-3,  # from random initialisation a higher rate than the papers' 3.5e-4 learns faster
    },
    "cpu": {
        "synth_preset": "small",
        "image_size": 128,
        "input_size": (128, 128),  # ResNet-18 with last stride 1: 8 x 8 part maps
        "span_size": 128,
        "reid_backbone": "resnet18",
        "span_backbone": "resnet18",
        "init": "standin",  # the stand-in for ImageNet: pretrained on a SynthVeRi folder of its own
        "pretrain_iters": 1500,
        "seeds": [0],
        "reid_iters": 500,
        "span_iters": 1500,
        "batch_p": 8,
        "batch_k": 4,
        "span_batch": 16,
        "span_per_view": 150,
        # SPAN's mask network: stride 16, bilinear decoder (the pilot page: within this budget its masks
        # formed, the public code's stride 8 + transposed decoder at 64 px did not)
        "span_options": {"stride": 16, "decoder": "bilinear"},
        "feat_dim": 256,
        "eval_batch": 128,
        "fg_source": "grabcut",  # SPAN's target V: GrabCut pseudo-masks (the authors' procedure)
        "num_workers": 0,  # training images come from the uint8 cache; no worker processes
        "lr": 1e-3,
    },
    "gpu": {
        "synth_preset": "veri",
        "image_size": 128,
        "input_size": (128, 128),
        "span_size": 128,
        "reid_backbone": "resnet50",
        "span_backbone": "resnet34",
        "init": "standin",  # or a local ImageNet file: notebooks' init parameter
        "pretrain_iters": 6000,
        "seeds": [0, 1, 2],
        "reid_iters": 3000,
        "span_iters": 1500,
        "batch_p": 16,
        "batch_k": 4,
        "span_batch": 32,
        "span_per_view": 1000,
        "span_options": {"stride": 8, "decoder": "transposed"},  # SPAN's public code
        "feat_dim": 512,
        "eval_batch": 256,
        "fg_source": "grabcut",  # SPAN's target V: GrabCut pseudo-masks (the authors' procedure)
        "num_workers": 8,
        "lr": 3.5e-4,  # the papers' Adam rate (MUSP Sec. 5.2; Luo et al.)
    },
    "paper": {
        "synth_preset": "veri",
        "image_size": 256,
        "input_size": (256, 256),
        "span_size": 192,  # SPAN's public code
        "reid_backbone": "resnet50",
        "span_backbone": "resnet34",
        "init": "standin",  # with real data, pass the notebooks' init=/path/resnet50.pth (ImageNet)
        "pretrain_iters": 20000,
        "seeds": [0, 1, 2],
        "reid_iters": 30000,  # SPAN Sec. 4.2: 30,000 iterations, P=8, K=4
        "span_iters": 12000,  # public code: 10 epochs, batch 32 on a view-balanced subset
        "batch_p": 8,
        "batch_k": 4,
        "span_batch": 32,
        "span_per_view": 2000,
        "span_options": {"stride": 8, "decoder": "transposed"},  # SPAN's public code
        "feat_dim": 1024,
        "eval_batch": 256,
        "fg_source": "grabcut",  # SPAN's target V: GrabCut pseudo-masks (the authors' procedure)
        "num_workers": 8,
        "lr": 3.5e-4,  # the papers' Adam rate (MUSP Sec. 5.2; Luo et al.)
    },
}


def get_profile(name: str, **overrides: Any) -> dict[str, Any]:
    """A copy of profile ``name`` with ``overrides`` applied (unknown keys are refused)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    prof = copy.deepcopy(PROFILES[name])
    unknown = sorted(set(overrides) - set(prof))
    if unknown:
        raise ValueError(f"unknown profile keys {unknown}; valid keys: {sorted(prof)}")
    prof.update(overrides)
    prof["name"] = name
    return prof
