"""Run profiles shared by every notebook: how big the data, models and schedules are.

===========  ==========================================================================
profile      meant for
===========  ==========================================================================
``smoke``    nbval in CI: SynthVeRi ``tiny``, resnet18, a few iterations; each notebook
             under 90 s on 2 CPU cores. Proves the chain, not the papers.
``cpu``      SynthVeRi ``small``, ResNet-18, 3 seeds for the headline rows; the whole suite
             in about three hours on 2 CPU cores. The committed results.
``gpu``      SynthVeRi ``veri`` (VeRi-776-sized), the papers' backbones (ResNet-34 SPAN,
             ResNet-50 features), 3 seeds; for one H100-class GPU.
``paper``    the papers' settings for users with the real datasets: input sizes, and each model
             trained with its own paper's recipe (``own_recipes``).
===========  ==========================================================================

A profile is a frozen :class:`Profile`; :func:`get_profile` returns one with single fields
overridden (an unknown field fails at once, naming it and the valid ones). A
:class:`reidlib.study.Study` turns it into run configurations (:class:`reidlib.config.Config`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from reidlib.errors import ConfigError

__all__ = ["Profile", "PROFILES", "get_profile"]

#: SPAN's public code: its mask network (stride 8, transposed-convolution decoder)
SPAN_PUBLIC_CODE_OPTIONS = {"stride": 8, "decoder": "transposed"}


@dataclass(frozen=True)
class Profile:
    """How big one profile's data, models and schedules are (every field typed; frozen)."""

    name: str
    synth_preset: str                      #: SynthVeRi preset (:data:`reidlib.data.synth.config.PRESETS`)
    image_size: int                        #: SynthVeRi's rendered image size (px)
    input_size: tuple[int, int]            #: the re-ID models' input (h, w)
    span_size: int                         #: SPAN step 1's input (its masks are resized to the part maps)
    reid_backbone: str
    span_backbone: str
    #: how every backbone starts: "standin" (pretrained on a SynthVeRi folder of its own), "random",
    #: or a local ImageNet state-dict file (the notebooks' ``init`` parameter overrides it)
    init: str
    pretrain_iters: int                    #: the stand-in's schedule
    seeds: tuple[int, ...]                 #: the training seeds (SPAN step 1 is trained per seed)
    reid_iters: int
    span_iters: int
    batch_p: int                           #: identities per P x K batch
    batch_k: int                           #: images per identity
    span_batch: int
    span_per_view: int                     #: SPAN step 1's view-balanced subset: images per view class
    span_options: dict = field(default_factory=dict)   #: SPAN's mask-network options
    feat_dim: int = 256                    #: SPAN's part-feature size
    eval_batch: int = 128
    fg_source: Literal["gt", "grabcut"] = "grabcut"   #: SPAN's target V
    num_workers: int = 0
    lr: float = 3.5e-4
    #: test images the foreground targets (GrabCut, the foreground network) are scored on
    foreground_eval_images: int = 300
    #: SynthVeRi preset of the ``vehicleid`` layout (MUSP Table 6's VehicleID-sized test set:
    #: ``small_vehicleid``, whose test_list_800 holds 800 ids); None: ``synth_preset``
    vehicleid_preset: Optional[str] = None
    #: training identities held out as a validation split (never trained on; 0 = none, as the
    #: papers): each re-ID model's validation mAP at ``val_points`` evenly spaced points of its
    #: schedule shows whether it trained to a plateau (:mod:`reidlib.data.validation`)
    val_ids: int = 0
    val_points: int = 4
    #: each model trained with its own paper's recipe (its ``DEFAULT_RUN``: batch layout, schedule,
    #: warm-up, learning rate; SPAN step 1 and the foreground network as SPAN's public code) instead
    #: of the profile's shared schedule (``reid_iters``, ``batch_p`` x ``batch_k``, ``lr``, ...)
    own_recipes: bool = False
    #: the features ranked at test time: "model" (each model's own default, ``eval_features``: after
    #: the BNNeck, un-normalised; SPAN's per-block "w/ Cat" its normalised blocks) or "public_code"
    #: (each model as its public code ranks them: the models' ``PUBLIC_CODE_FEATURES``)
    ranked_features: Literal["model", "public_code"] = "model"

    def replace(self, **overrides: Any) -> "Profile":
        """A copy with single fields changed; an unknown field raises :class:`ConfigError` naming it."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ConfigError(f"unknown profile field(s) {unknown}; valid fields: {', '.join(valid)}")
        if "seeds" in overrides:
            overrides["seeds"] = tuple(int(s) for s in overrides["seeds"])
        if "input_size" in overrides:
            overrides["input_size"] = tuple(int(s) for s in overrides["input_size"])
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_GPU = Profile(
    name="gpu", synth_preset="veri", image_size=128, input_size=(128, 128), span_size=128,
    reid_backbone="resnet50", span_backbone="resnet34", init="standin", pretrain_iters=6000,
    seeds=(0, 1, 2), reid_iters=3000, span_iters=1500, batch_p=16, batch_k=4, span_batch=32,
    span_per_view=1000, span_options=SPAN_PUBLIC_CODE_OPTIONS, feat_dim=512, eval_batch=256,
    fg_source="grabcut", num_workers=8,
    vehicleid_preset="small_vehicleid",  # VehicleID's 800 test ids (the veri preset's layout has 66)
    lr=3.5e-4,  # the papers' Adam rate (MUSP Sec. 5.2; Luo et al.)
    val_ids=50,  # of VeRi-776's 576 training identities
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", synth_preset="tiny", image_size=64, input_size=(64, 64), span_size=64,
        reid_backbone="resnet18", span_backbone="resnet18",
        init="standin",  # exercised end to end, at a few iterations
        pretrain_iters=4, seeds=(0,), reid_iters=4, span_iters=4, batch_p=4, batch_k=2, span_batch=8,
        span_per_view=8, span_options=SPAN_PUBLIC_CODE_OPTIONS, feat_dim=64, eval_batch=64,
        fg_source="gt",  # SPAN's target V: SynthVeRi's true foreground (fast)
        num_workers=0,
        lr=1e-3,  # from random initialisation a higher rate than the papers' 3.5e-4 learns faster
        foreground_eval_images=40,
        val_ids=4, val_points=2,  # of tiny's 16 training identities
    ),
    "cpu": Profile(
        name="cpu", synth_preset="small", image_size=128,
        input_size=(128, 128),  # ResNet-18 with last stride 1: 8 x 8 part maps
        span_size=128, reid_backbone="resnet18", span_backbone="resnet18",
        init="standin",  # the stand-in for ImageNet: attribute classification on a SynthVeRi folder of its own
        # the budget (2 CPU cores, <= 3 h for the book, <= 45 min a page): three training seeds for
        # the headline rows, 250 iterations each (whether that reaches a plateau is checked on the
        # validation split, and said); SPAN step 1 700 iterations (0.34 s each: 14 step-1 runs)
        pretrain_iters=1500, seeds=(0, 1, 2), reid_iters=250, span_iters=700, batch_p=8, batch_k=4,
        span_batch=16, span_per_view=150,
        # SPAN's mask network: stride 16, bilinear decoder (the pilot page compares other settings)
        span_options={"stride": 16, "decoder": "bilinear"},
        feat_dim=256, eval_batch=128,
        fg_source="grabcut",  # SPAN's target V: GrabCut pseudo-masks (the authors' procedure)
        num_workers=0,  # training images come from the uint8 cache; no worker processes
        vehicleid_preset="small_vehicleid",  # VehicleID's 800 test ids (small's layout has 33)
        lr=1e-3,
        val_ids=30,  # of small's 150 training identities
    ),
    "gpu": _GPU,
    # the papers' settings on top of the gpu profile's
    "paper": _GPU.replace(
        name="paper", image_size=256, input_size=(256, 256),
        span_size=192,  # SPAN's public code
        init="standin",  # with real data, pass the notebooks' init=/path/resnet50.pth (ImageNet)
        pretrain_iters=20000,
        reid_iters=30000,  # SPAN Sec. 4.2: 30,000 iterations, P=8, K=4
        span_per_view=2000, feat_dim=1024,
        # each model as its paper trains it (models/*.py DEFAULT_RUN); SPAN step 1 and the
        # foreground network as SPAN's public code (Adam 1e-4, batch 32, 10 epochs, no warm-up)
        own_recipes=True, span_batch=32, ranked_features="public_code",
        val_ids=0,  # the papers train on every training identity
    ),
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """Profile ``name`` with ``overrides`` applied (:meth:`Profile.replace`)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name].replace(**overrides)
