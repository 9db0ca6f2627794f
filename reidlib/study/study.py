"""A study: the models one book page trains and evaluates, cached so that pages share them.

A :class:`Study` binds a profile (:mod:`reidlib.study.profiles`), a dataset folder, a device and a
cache folder. It turns the profile into run configurations (:class:`reidlib.config.Config`, built
and checked once) and every model it needs is trained through :mod:`reidlib.engine` into
``<cache>/<kind>-<hash>/`` and reused by later pages with the same configuration: the hash covers
the resolved configuration (settings that cannot change the weights,
:func:`reidlib.config.weight_neutral_keys`, left out) and whatever the run depends on (the SPAN it is
built on, a prepared training set). So ``make reproduce`` trains the baseline once although Tables 1
and 2 and the viewpoint page all use it. An interrupted training resumes from its ``last.pt``
(deleted once the run has finished and written its ``model.pt``, unless ``keep_state=True``).
A finished run's test-image features are kept beside it (``test-features-<hash>.pt``,
:meth:`Study.evaluate`), so a page that ranks one model under several distances (Table 2's rows,
the viewpoint breakdown) or a later page's reference rows extract them once; ranking them again
gives the same metrics.

Asking for a configuration is pure: data are generated and the stand-in is pretrained only when a
run that needs them trains (:meth:`Study.cached`), never when a configuration is built.

Seeds, each with one meaning (all recorded in a page's provenance):

* ``data_seed``: the SynthVeRi world (which vehicles, cameras, images); also where the stand-in's
  own world is searched from (:attr:`Study.pretrain_seed`);
* ``train_seeds``: the training seeds (default: the profile's); SPAN step 1 is trained once per
  training seed, with that seed;
* ``eval_seed``: the evaluation samples (the images mask tables are measured on, the untrained
  network of the reference levels);
* ``trial_seed``: VehicleID's random gallery draws (its 10 trials).

Rows of an ablation table are variants (:class:`reidlib.study.variants.Variant`);
:meth:`Study.run` trains and evaluates them into :class:`reidlib.study.results.Results`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from reidlib.study.profiles import Profile, get_profile
from reidlib.study.results import METRICS, VAL_CURVE_FILE, Results
from reidlib.study.variants import Variant

__all__ = ["Study", "dataset_path", "dataset_root", "synth_preset"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


#: what a finished run folder holds (:func:`run_complete`); ``model.pt`` is written last
LOG_FILE, CONFIG_FILE = "log.jsonl", "config.yaml"


#: the schedule settings a profile sets for every run unless each model keeps its own recipe
#: (:attr:`reidlib.study.profiles.Profile.own_recipes`)
_SCHEDULE_KEYS = ("optim.unit", "optim.max_iters", "optim.milestones", "optim.warmup_iters")


def run_complete(out: str | os.PathLike) -> bool:
    """Whether the run folder ``out`` is a finished cache entry: its ``model.pt``, ``log.jsonl``
    and ``config.yaml`` are all there (a folder with ``model.pt`` alone, say after ``runs/`` was
    deleted while a run was writing it, is not)."""
    from reidlib.engine.artifacts import MODEL_FILE

    return all((Path(out) / name).is_file() for name in (MODEL_FILE, LOG_FILE, CONFIG_FILE))


def _drop_training_state(out: Path) -> None:
    """Remove a run folder's resumable training state (``last.pt``, ``iter_*.pt``)."""
    for p in [out / "last.pt", *out.glob("iter_*.pt")]:
        p.unlink(missing_ok=True)


def _profile(profile: str | Profile) -> Profile:
    return get_profile(profile) if isinstance(profile, str) else profile


def dataset_path(profile: str | Profile, seed: int = 0, data_dir: Optional[str | os.PathLike] = None,
                 layout: str = "veri776") -> Path:
    """Where SynthVeRi for ``profile`` (a name or a :class:`Profile`) and world ``seed`` lives, in the
    folder layout of dataset ``layout`` (pure: nothing is generated)."""
    from reidlib.utils import paths

    prof = _profile(profile)
    base = Path(data_dir) if data_dir else paths.data_dir()
    name = f"synthveri-{synth_preset(prof, layout)}-{prof.image_size}px-seed{seed}"
    return base / (name if layout == "veri776" else f"{name}-{layout}")


def dataset_root(profile: str | Profile, data_root: Optional[str | os.PathLike] = None, seed: int = 0,
                 data_dir: Optional[str | os.PathLike] = None, layout: str = "veri776") -> Path:
    """The dataset folder of a study: ``data_root`` when the user points at their own data, else
    SynthVeRi generated for ``profile`` at :func:`dataset_path` (idempotent: an existing complete
    folder with the same manifest is reused)."""
    if data_root:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data_root {root} does not exist (expected a {layout} folder)")
        return root
    from reidlib.data.synth import generate

    prof = _profile(profile)
    out = dataset_path(prof, seed, data_dir, layout)
    return Path(generate(out, preset=synth_preset(prof, layout), image_size=prof.image_size, seed=seed,
                         layout=layout))


def synth_preset(profile: str | Profile, layout: str = "veri776") -> str:
    """The SynthVeRi preset a study of ``profile`` generates in ``layout``: the profile's
    ``vehicleid_preset`` for the VehicleID layout when it names one (a VehicleID-sized test set),
    else its ``synth_preset``."""
    prof = _profile(profile)
    return (prof.vehicleid_preset or prof.synth_preset) if layout == "vehicleid" else prof.synth_preset


@dataclass
class Study:
    """Settings shared by one notebook's experiments. ``overrides`` change single profile fields."""

    profile: str = "smoke"
    device: str = "auto"
    data_root: Optional[str] = None
    data_seed: int = 0                #: the SynthVeRi world (see the module docstring)
    cache_dir: Optional[str] = None   #: trained models (default :func:`reidlib.utils.paths.runs_dir`)
    data_dir: Optional[str] = None    #: generated SynthVeRi (default :func:`reidlib.utils.paths.data_dir`)
    overrides: dict = field(default_factory=dict)
    #: the dataset (:data:`reidlib.data.registry.DATASETS`): its protocol and, for SynthVeRi, the
    #: folder layout it is written in; ``test_size``: VehicleID 800/1600/2400, VERI-Wild 3000/...
    dataset: str = "veri776"
    test_size: Optional[int] = None
    #: how the re-ID backbone starts: ``"standin"`` (pretrained on a SynthVeRi folder of its own,
    #: :meth:`pretrained_backbone`), ``"random"``, or the path of a local ImageNet state-dict file
    #: (torchvision naming) for the profile's ``reid_backbone``; ``None``: the profile's choice,
    #: refused with a ``data_root`` of one's own when that is the stand-in (say how, then)
    init: Optional[str] = None
    #: how SPAN's trunk (``span_backbone``: SPAN step 1, the foreground network) starts, the same
    #: choices; ``None``: as ``init``, except that a file given as ``init`` is for the re-ID
    #: backbone only, refused when the two architectures differ (one file cannot start both)
    span_init: Optional[str] = None
    #: keep each finished run's resumable training state (``last.pt``, ``iter_*.pt``: weights plus
    #: optimiser moments, ~3x the model) next to its ``model.pt``. Off by default: a finished run is
    #: only ever reloaded from ``model.pt``, and the state of a SPAN re-ID model is ~0.5 GB.
    keep_state: bool = False
    train_seeds: Optional[Sequence[int]] = None   #: None: the profile's ``seeds``
    eval_seed: int = 0                #: evaluation samples (mask-table images, reference levels)
    trial_seed: int = 0               #: VehicleID's gallery draws

    def __post_init__(self):
        from reidlib.data.registry import DATASETS
        from reidlib.utils import paths

        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}; expected one of {', '.join(DATASETS)}")
        for name in ("data_seed", "eval_seed", "trial_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        self.prof: Profile = get_profile(self.profile, **self.overrides)
        if self.data_root:
            self.root_path = Path(self.data_root).expanduser()
            if not self.root_path.is_dir():
                raise FileNotFoundError(f"data_root {self.root_path} does not exist (expected a {self.dataset} folder)")
        else:
            self.root_path = dataset_path(self.prof, self.data_seed, self.data_dir, self.dataset)
        self.cache = Path(self.cache_dir) if self.cache_dir else paths.runs_dir(self.profile)
        self._dataset = None
        self._generated = bool(self.data_root)
        self._resolve_inits()
        self._weights: dict[str, Optional[str]] = {}
        self._standins: dict[str, str] = {}      # stand-in weight file -> its backbone (made when needed)
        import weakref

        self._run_of = weakref.WeakKeyDictionary()   # cached model -> its run folder (test-feature cache)

    # ---------------------------------------------------------------- data
    @property
    def root(self) -> Path:
        """The dataset folder, generated on first use (SynthVeRi; a user's ``data_root`` as it is)."""
        if not self._generated:
            dataset_root(self.prof, None, seed=self.data_seed, data_dir=self.data_dir, layout=self.dataset)
            self._generated = True
        return self.root_path

    @property
    def data(self):
        """The loaded dataset (train / query / gallery records)."""
        if self._dataset is None:
            from reidlib.data.registry import load_dataset

            kwargs = {"seed": self.trial_seed} if self.dataset == "vehicleid" else {}
            self._dataset = load_dataset(self.dataset, self.root, test_size=self.test_size, **kwargs)
        return self._dataset

    def example_batch(self, n: int = 6, split: str = "gallery", seed: Optional[int] = None,
                      size: Optional[int] = None):
        """``n`` test images covering the 5 SPAN view classes, as a normalised batch ``[n, 3, H, W]``
        at the profile's input size (or ``size``; SPAN's: ``prof.span_size``) (+ their records), for
        figures of masks and attention maps; drawn with ``seed`` (default :attr:`eval_seed`)."""
        from reidlib.data.masks import MaskDataset

        recs = [r for r in getattr(self.data, split) if r.view is not None]
        rng = np.random.default_rng(self.eval_seed if seed is None else seed)
        picked = []
        for v in range(5):
            cand = [r for r in recs if r.view == v]
            if cand:
                picked.append(cand[int(rng.integers(len(cand)))])
        while len(picked) < n and recs:
            picked.append(recs[int(rng.integers(len(recs)))])
        picked = picked[:n]
        ds = MaskDataset(picked, fg_source="gt", size=(size, size) if size else tuple(self.prof.input_size))
        return torch.stack([ds[i]["img"] for i in range(len(ds))]), picked

    @property
    def seeds(self) -> list[int]:
        """The training seeds (``train_seeds``, else the profile's)."""
        return [int(s) for s in (self.train_seeds if self.train_seeds is not None else self.prof.seeds)]

    def seeds_record(self) -> dict:
        """Every seed of this study by its meaning, as used (for provenance)."""
        return {"data_seed": self.data_seed, "training_seeds": self.seeds, "span_step1_seeds": self.seeds,
                "eval_seed": self.eval_seed, "trial_seed": self.trial_seed if self.dataset == "vehicleid" else None,
                "pretrain_data_seed": self.pretrain_seed if "standin" in (self.init, self.span_init) else None}

    # ---------------------------------------------------------------- configs
    def _base(self, model: str, seed: int, iters: int, root: Optional[Path] = None) -> dict:
        """The settings every run of this study shares (dotted keys; :meth:`config` builds them)."""
        h, w = self.prof.input_size
        return {
            "data.root": str(root if root is not None else self.root_path), "data.height": h, "data.width": w,
            "data.dataset": self.dataset,
            "data.test_size": "" if self.test_size is None else str(self.test_size),
            "data.num_workers": self.prof.num_workers,
            "optim.unit": "iter", "optim.max_iters": iters,
            "optim.milestones": [int(iters * 0.6), int(iters * 0.85)],
            "optim.warmup_iters": max(1, iters // 10),
            "train.seed": seed, "train.device": self.device, "train.progress": False,
            "train.checkpoint_every": max(10, iters // 4), "train.log_every": max(1, iters // 20),
        }

    @staticmethod
    def config(model: str, settings: Mapping[str, Any], *overrides: Mapping[str, Any]):
        """The :class:`reidlib.config.Config` of ``model``: its own defaults, then ``settings`` and
        each mapping of ``overrides`` (dotted keys; ``model.kwargs`` merged), checked once."""
        from reidlib.config import load_config

        merged: dict = dict(settings)
        for extra in overrides:
            for key, value in extra.items():
                if key == "model.kwargs" and isinstance(value, Mapping):
                    merged[key] = {**merged.get(key, {}), **value}
                else:
                    merged[key] = value
        return load_config(model=model, **merged)

    def reid_config(self, model: str, seed: int, **overrides):
        """The run configuration of re-ID model ``model`` (``baseline`` | ``span`` | ``musp``)."""
        from reidlib.models.registry import MODELS

        c = self._base(model, seed, self.prof.reid_iters)
        recipe = {"model.backbone": self.prof.reid_backbone, "model.last_stride": 1,
                  "optim.lr": self.prof.lr, "data.p": self.prof.batch_p, "data.k": self.prof.batch_k}
        if self.prof.own_recipes:            # the model's own DEFAULT_RUN decides its schedule and batch
            for key in (*_SCHEDULE_KEYS, "optim.lr", "data.p", "data.k"):
                c.pop(key, None)
                recipe.pop(key, None)
        c.update({"data.val_ids": self.prof.val_ids,
                  # the validation curve's points (neutral: the checkpoints are not in the cache key)
                  "train.checkpoint_every": max(1, -(-self.prof.reid_iters // self.prof.val_points)),
                  "train.keep_last": self.prof.val_points})
        c.update({**recipe, "model.weights": self.backbone_weights(self.prof.reid_backbone),
                  "eval.batch_size": self.prof.eval_batch})
        if MODELS[model].needs_span:        # SPAN's part features: their size, SPAN's own input size
            c["model.kwargs"] = {"dim": self.prof.feat_dim}
            if self.prof.span_size != self.prof.input_size[0]:
                c["model.kwargs"]["span_input_size"] = (self.prof.span_size,) * 2
        return self.config(model, c, overrides)

    def span_config(self, seed: int, **overrides):
        """The run configuration of SPAN step 1 (eq. 6)."""
        c = self._base("span-masks", seed, self.prof.span_iters)
        c.update({"model.backbone": self.prof.span_backbone, "span.size": self.prof.span_size,
                  "model.weights": self.backbone_weights(self.prof.span_backbone),
                  "model.kwargs": dict(self.prof.span_options),
                  "span.per_view": self.prof.span_per_view, "data.batch_size": self.prof.span_batch,
                  "span.fg_source": self.prof.fg_source,
                  "optim.lr": 1e-3, "optim.milestones": []})
        if self.prof.own_recipes:            # SPAN's public code: its DEFAULT_RUN (Adam 1e-4, 10 epochs, no warm-up)
            for key in (*_SCHEDULE_KEYS, "optim.lr"):
                c.pop(key)
            c["span.side_aug"] = 0.5          # and its oblique-view augmentation of side images
        return self.config("span-masks", c, overrides)

    def foreground_config(self, seed: int, **overrides):
        """The run configuration of SPAN's foreground network (the public code's source of ``V``)."""
        c = self._base("foreground", seed, self.prof.span_iters)
        c.update({"model.backbone": self.prof.span_backbone, "foreground.size": self.prof.span_size,
                  "model.weights": self.backbone_weights(self.prof.span_backbone),
                  "data.batch_size": self.prof.span_batch, "foreground.source": "grabcut",
                  "optim.lr": 1e-3, "optim.milestones": []})
        if self.prof.own_recipes:
            for key in (*_SCHEDULE_KEYS, "optim.lr"):
                c.pop(key)
        return self.config("foreground", c, overrides)

    # ---------------------------------------------------------------- initialisation
    def _resolve_inits(self) -> None:
        """``init`` and ``span_init`` resolved (``"standin"``, ``"random"`` or a file) and checked,
        each failure one line: a stand-in nobody asked for with one's own data, one file for two
        architectures, two settings for one architecture (a backbone has one start), a missing file
        or one holding another network (:func:`reidlib.models.backbones.build_resnet`'s check)."""
        from reidlib.errors import CheckpointError, ConfigError
        from reidlib.models.backbones import build_resnet

        prof, keywords = self.prof, ("standin", "random")
        reid, span = prof.reid_backbone, prof.span_backbone

        def check(name: str, value: str, backbone: str) -> None:
            if value in keywords:
                return
            path = Path(value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{name}={value!r}: no file {path}; expected 'standin', 'random' or a local "
                                        f"ImageNet {backbone} state-dict file (reidlib never downloads weights)")
            try:
                build_resnet(backbone, path)                # the check every model's loading makes
            except CheckpointError as err:
                raise CheckpointError(f"{name}: {err}") from None

        explicit = bool(self.init) or "init" in self.overrides
        self.init = self.init or prof.init
        if self.data_root and not explicit and self.init == "standin":
            both = reid if reid == span else f"each of {reid}, {span}"
            span_file = "" if reid == span else f" -p span_init=/path/{span}.pth"
            raise ConfigError(f"with your own data (data_root={self.data_root!r}) say how the backbones start: "
                              f"-p init=/path/{reid}.pth{span_file} (ImageNet, torchvision naming), or "
                              f"-p init=standin to pretrain a stand-in on SynthVeRi first ({prof.pretrain_iters} "
                              f"iterations for {both}; profile {prof.name}) - nothing is downloaded")
        check("init", self.init, reid)
        if not self.span_init:
            if self.init not in keywords and reid != span:
                raise ConfigError(f"init={self.init!r} is the re-ID backbone's {reid} file, but SPAN's trunk is a "
                                  f"{span} (profile {prof.name}): pass span_init=/path/{span}.pth (ImageNet, "
                                  f"torchvision naming) or span_init=standin (pretrained on SynthVeRi, only if a "
                                  f"page trains SPAN); one file cannot start both")
            self.span_init = self.init
        def where(value: str):
            return value if value in keywords else Path(value).expanduser().resolve()

        if reid == span and where(self.init) != where(self.span_init):
            raise ConfigError(f"span_init={self.span_init!r} differs from init={self.init!r}, but SPAN's trunk and "
                              f"the re-ID backbone are both {reid} (profile {prof.name}): one start serves both; "
                              f"leave span_init unset")
        if reid != span:                                    # else the same start, checked as init
            check("span_init", self.span_init, span)

    def backbone_weights(self, backbone: str) -> Optional[str]:
        """The ``model.weights`` every model with ``backbone`` starts from: ``span_init`` for SPAN's
        trunk (the profile's ``span_backbone``), ``init`` for the re-ID backbone (one setting when
        both are the same architecture). For the stand-in this is the file its pretraining run
        writes; the run happens when a model that starts from it is trained (:meth:`cached`), not
        here."""
        if backbone not in self._weights:
            init, name = (self.span_init, "span_init") if backbone == self.prof.span_backbone else (self.init, "init")
            if init == "random":
                self._weights[backbone] = None
            elif init == "standin":
                path = str(self.run_dir("pretrain", self.pretrain_config(backbone), self._pretrain_extra)
                           / f"backbone-{backbone}.pth")
                self._standins[path] = backbone
                self._weights[backbone] = path
            else:
                path = Path(init).expanduser()
                if not path.is_file():
                    raise FileNotFoundError(f"{name}={init!r}: expected 'standin', 'random' or a local "
                                            "ImageNet state-dict file (reidlib never downloads weights)")
                self._weights[backbone] = str(path)
        return self._weights[backbone]

    @property
    def pretrain_seed(self) -> int:
        """The SynthVeRi seed of the pretraining data: the first from 1000 + data seed whose vehicles
        are all different from the evaluation data's (:func:`reidlib.data.synth.disjoint.first_disjoint_seed`)."""
        from reidlib.data.synth.disjoint import first_disjoint_seed

        if not hasattr(self, "_pretrain_seed"):
            self._pretrain_seed = first_disjoint_seed(self.prof.synth_preset, [self.data_seed], 1000 + self.data_seed)
        return self._pretrain_seed

    @property
    def _pretrain_extra(self) -> tuple:
        return ("all images of seed", self.pretrain_seed)

    def pretraining_dataset(self):
        """The stand-in's training data: every image (train, query, gallery) of a SynthVeRi folder
        generated for it alone (:attr:`pretrain_seed`), as one training split."""
        import dataclasses

        from reidlib.data.registry import load_dataset

        root = dataset_root(self.prof, None, seed=self.pretrain_seed, data_dir=self.data_dir)
        ds = load_dataset("veri776", root)
        seen, images = set(), []
        for r in list(ds.train) + list(ds.gallery) + list(ds.query):
            name = Path(r.path).name
            if name not in seen:                 # SynthVeRi queries are copies of gallery images
                seen.add(name)
                images.append(r)
        return dataclasses.replace(ds, train=images) if dataclasses.is_dataclass(ds) else _Split(ds, images)

    def pretrain_config(self, backbone: str):
        """The stand-in's run: ``backbone`` trained to classify SynthVeRi's attributes (body type,
        colour, grille, lights, view: :class:`reidlib.models.attributes.AttributeNet`) on
        :meth:`pretraining_dataset`, for ``pretrain_iters`` iterations with the first training seed:
        a generic task, as ImageNet classification is, and none of the compared models' (they
        learn identities)."""
        iters = self.prof.pretrain_iters
        root = dataset_path(self.prof, self.pretrain_seed, self.data_dir)
        c = self._base("attributes", self.seeds[0], iters, root=root)
        c.update({"model.backbone": backbone, "model.last_stride": 1, "model.weights": None,
                  "optim.lr": self.prof.lr, "data.batch_size": self.prof.batch_p * self.prof.batch_k})
        return self.config("attributes", c)

    def pretrained_backbone(self, backbone: str):
        """``(path of a torchvision-format state dict, info)``: the stand-in (:meth:`pretrain_config`),
        cached like every run. Every model of a ``standin`` study starts from it, as the papers'
        start from ImageNet."""
        from reidlib.engine.attributes import train_attributes
        from reidlib.models.backbones import trunk_to_torchvision
        from reidlib.utils.io import atomic_path

        cfg = self.pretrain_config(backbone)
        model, info = self.cached("pretrain", cfg,
                                  lambda c, resume: train_attributes(c, dataset=self.pretraining_dataset(),
                                                                     labels=self.pretraining_labels(), resume=resume),
                                  extra=self._pretrain_extra)
        path = Path(info["out_dir"]) / f"backbone-{backbone}.pth"
        if not path.is_file():
            state = trunk_to_torchvision({k: v.detach().cpu() for k, v in model.base.state_dict().items()})
            with atomic_path(path, suffix=".pth") as tmp:
                torch.save(state, tmp)
        return path, info

    def pretraining_labels(self):
        """The attribute labels ``int [N, A]`` of :meth:`pretraining_dataset`'s images
        (:func:`reidlib.data.attributes.attribute_labels`)."""
        from reidlib.data.attributes import attribute_labels

        root = dataset_path(self.prof, self.pretrain_seed, self.data_dir)
        return attribute_labels(self.pretraining_dataset().train, root)

    def standin_model(self):
        """The stand-in's attribute network (trained, eval mode; :meth:`pretrained_backbone`)."""
        from reidlib.engine.artifacts import load_model

        _, info = self.pretrained_backbone(self.prof.span_backbone if self.span_init == "standin"
                                           else self.prof.reid_backbone)
        return load_model(Path(info["out_dir"]) / "model.pt")[0].eval()

    def _prepare(self, cfg) -> None:
        """What a run needs before it trains: its data generated, its stand-in weights pretrained."""
        if cfg.data.root == str(self.root_path):
            self.root                                    # noqa: B018  (generates SynthVeRi once)
        weights = cfg.model.weights
        if weights in self._standins and not Path(weights).is_file():
            self.pretrained_backbone(self._standins[weights])

    # ---------------------------------------------------------------- cached training
    def run_inputs(self, cfg) -> dict:
        """What the run of ``cfg`` reads besides its configuration, by content: the fingerprint of
        a dataset folder the user gave (:func:`reidlib.data.fingerprint.dataset_fingerprint`: its
        lists and image files) and of a weights file the user gave
        (:func:`reidlib.data.fingerprint.weights_fingerprint`). SynthVeRi folders this study
        generates are identified by their path (preset, image size, seed and layout), stand-in
        weights by the pretraining run's folder in their path: nothing is generated or trained to
        compute this."""
        from reidlib.data.fingerprint import dataset_fingerprint, weights_fingerprint

        inputs = {}
        root = cfg.data.root
        if root and not self._generated_root(root):
            inputs["data"] = dataset_fingerprint(root)
        weights = cfg.model.weights
        if weights and weights not in self._standins:
            inputs["weights"] = weights_fingerprint(weights)
        return inputs

    def _generated_root(self, root: str) -> bool:
        """Whether ``root`` is a SynthVeRi folder this study generates (its data, the stand-in's)."""
        root = os.path.abspath(root)
        if root == os.path.abspath(self.root_path):
            return not self.data_root
        return root == os.path.abspath(dataset_path(self.prof, self.pretrain_seed, self.data_dir))

    def run_dir(self, kind: str, cfg, extra: Any = None) -> Path:
        """Runs are keyed by the resolved configuration (a :class:`reidlib.config.Config`: defaults
        filled in), so two spellings of the same run share one folder; settings that cannot change
        the weights (:func:`reidlib.config.weight_neutral_keys`) are left out, and so are settings
        added later while at the value older runs had (:data:`reidlib.config.KEY_NEUTRAL_DEFAULTS`);
        ``extra`` and the
        content of the user's dataset folder and weights file (:meth:`run_inputs`) are put in, so a
        cut list or a replaced file under the same path gets a new folder."""
        from reidlib.config import KEY_NEUTRAL_DEFAULTS, weight_neutral_keys

        resolved = cfg.to_dict()
        for key in weight_neutral_keys():
            section, name = key.split(".")
            resolved.get(section, {}).pop(name, None)
        for key, default in KEY_NEUTRAL_DEFAULTS.items():
            section, name = key.split(".")
            if resolved.get(section, {}).get(name, default) == default:
                resolved.get(section, {}).pop(name, None)
        inputs = self.run_inputs(cfg)
        return self.cache / f"{kind}-{_hash([resolved, extra, inputs] if inputs else [resolved, extra])}"

    def cached(self, kind: str, cfg, train: Callable, extra: Any = None):
        """``(model in eval mode, info)``: the model of ``cfg`` from the cache, or trained by
        ``train(cfg, resume)`` and cached. Only a complete folder counts (:func:`run_complete`:
        ``model.pt``, ``log.jsonl`` and ``config.yaml``); an incomplete one resumes from its
        ``last.pt`` when its log is there too, else it is trained again from scratch (its partial
        files removed first, so a stale ``model.pt`` never completes it). One process at a time
        per cache entry: a second one (another notebook, another GPU's job) waits for the first
        and then loads its model instead of training it again."""
        from reidlib.engine.artifacts import MODEL_FILE, load_model
        from reidlib.utils.io import file_lock

        out = self.run_dir(kind, cfg, extra)
        model_file = out / MODEL_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(out.parent / f".{out.name}.lock"):
            if run_complete(out):
                model, _ = load_model(model_file)
                self._run_of[model] = out
                return model.eval(), {"out_dir": str(out), "cached": True}
            self._prepare(cfg)
            cfg = cfg.copy()
            cfg.train.out_dir = str(out)
            resume = (out / "last.pt").is_file() and (out / LOG_FILE).is_file()
            model_file.unlink(missing_ok=True)               # written again last, when the run finishes
            if not resume:
                _drop_training_state(out)
            res = train(cfg, resume=resume)
            if not self.keep_state and run_complete(out):
                _drop_training_state(out)
        if run_complete(out):
            self._run_of[res.model] = out
        return res.model.eval(), {"out_dir": str(out), "cached": False, "seconds": round(res.seconds, 1),
                                  "final_log": res.history[-1] if res.history else None}

    def span_model(self, seed: int, **span_overrides):
        """A trained SPAN (step 1, eq. 6) for this profile; ``span_overrides`` like ``{"span.use_area": False}``."""
        from reidlib.engine.training import train_span

        cfg = self.span_config(seed, **span_overrides)
        return self.cached("span-masks", cfg, lambda c, resume: train_span(c, resume=resume))

    def reid_model(self, model: str, seed: int, span=None, span_key: Any = None, **overrides):
        """A trained re-ID model (``baseline`` | ``span`` | ``musp``); models that need a SPAN
        (:attr:`reidlib.models.registry.ModelSpec.needs_span`) take ``span`` (and ``span_key``,
        what identifies it in the cache: its run folder's name)."""
        from reidlib.engine.training import train_reid

        cfg = self.reid_config(model, seed, **overrides)

        def train(c, resume):
            res = train_reid(c, span=span, resume=resume)
            self.validation_curve(res.out_dir, res.model, res.iterations)   # from the kept checkpoints, before they go
            return res

        return self.cached(model, cfg, train, extra=span_key)

    # ---------------------------------------------------------------- validation
    @property
    def validation(self):
        """The validation split (:func:`reidlib.data.validation.validation_split` of the training
        identities, ``val_ids`` of the profile), or None when the profile holds none out."""
        from reidlib.data.validation import validation_split

        if not self.prof.val_ids:
            return None
        if getattr(self, "_validation", None) is None:
            self._validation = validation_split(self.data.train, self.prof.val_ids)
        return self._validation

    def validation_curve(self, run_dir, final_model=None, final_iter: Optional[int] = None) -> Optional[pd.DataFrame]:
        """Validation mAP / R1 (%) of a re-ID run at the iterations of its kept checkpoints
        (``iter_*.pt``; the finished ``final_model`` at the last iteration), written once beside
        the run as ``val_curve.csv`` and read from there afterwards. None without a validation
        split or (for a run trained before curves were kept) without the file."""
        from reidlib.engine.artifacts import load_model
        from reidlib.engine.checkpoint import checkpoints_newest_first
        from reidlib.utils.io import atomic_path

        run_dir = Path(run_dir)
        path = run_dir / VAL_CURVE_FILE
        if path.is_file():
            return pd.read_csv(path)
        if self.validation is None or final_model is None:
            return None
        files = sorted((p for p in checkpoints_newest_first(run_dir) if p.name.startswith("iter_")),
                       key=lambda p: int(p.stem.split("_")[1]))
        models = [(int(p.stem.split("_")[1]), p) for p in files]
        last = int(final_iter if final_iter is not None else self.prof.reid_iters)
        rows = []
        for it, src in models + ([] if any(it == last for it, _ in models) else [(last, None)]):
            model = final_model if src is None or it == last else load_model(src)[0]
            ev = self.evaluate(model.eval(), data=self.validation, features=False)
            rows.append({"iteration": it, "val mAP": ev["mAP"], "val R1": ev["R1"],
                         "val queries": ev.get("num_query")})
        curve = pd.DataFrame(rows)
        with atomic_path(path) as tmp:
            curve.to_csv(tmp, index=False)
        return curve

    def variant_runs(self, variant: Variant) -> list[tuple[Any, dict]]:
        """``[(trained model, info)]`` of ``variant``, one per training seed (``info["out_dir"]``: its
        run folder). A model that needs a SPAN gets one trained with the same seed."""
        from reidlib.models.registry import MODELS

        runs = []
        for seed in self.variant_seeds(variant):
            span = key = None
            if MODELS[variant.model].needs_span:
                span, info = self.span_model(seed, **variant.span)
                key = Path(info["out_dir"]).name
            runs.append(self.reid_model(variant.model, seed, span=span, span_key=key, **variant.config))
        return runs

    def variant_seeds(self, variant: Variant) -> list[int]:
        """The training seeds of ``variant``: the study's, or its first ``variant.seeds``."""
        return self.seeds if variant.seeds is None else self.seeds[:variant.seeds]

    def variant_models(self, variant: Variant) -> list:
        """The trained models of ``variant``, one per training seed."""
        return [m for m, _ in self.variant_runs(variant)]

    def evaluate_variant(self, variant: Variant) -> list[dict]:
        """Train (or load) and evaluate ``variant`` for every seed: one :meth:`evaluate` result per
        seed, with the run folder it was trained in (``run_dir``: its ``log.jsonl`` is the learning curve)."""
        out = []
        for model, info in self.variant_runs(variant):
            ev = self.evaluate(model, distance=variant.distance)
            ev["run_dir"] = info["out_dir"]
            out.append(ev)
        return out

    def reference_levels(self) -> pd.DataFrame:
        """The levels a table is read against (R1 / R5 / mAP / mINP, %): an untrained network of the
        profile's re-ID architecture (initialised with :attr:`eval_seed`) and, with
        ``init="standin"``, the stand-in backbone's own features before any fine-tuning. (The best
        level any metric allows is 100.) Cached in ``<cache>/reference-levels-<hash>.json``."""
        from reidlib.models.registry import build_model
        from reidlib.utils.device import seed_everything
        from reidlib.utils.io import atomic_write_json

        from reidlib.data.fingerprint import dataset_fingerprint

        own_data = dataset_fingerprint(self.root_path) if self.data_root else None   # a user's folder, by content
        from reidlib.data.fingerprint import weights_fingerprint

        init = self.init if self.init in ("standin", "random") else weights_fingerprint(self.init)
        key = _hash(["attribute stand-in", self.prof.to_dict(), self.data_seed, self.eval_seed, self.seeds, str(self.root_path),
                     own_data, init, self.dataset, self.test_size, self.trial_seed])
        path = self.cache / f"reference-levels-{key}.json"
        if path.is_file():
            rows = json.loads(path.read_text())
        else:
            seed_everything(self.eval_seed)
            models = {"untrained network": build_model("baseline", 1, backbone=self.prof.reid_backbone,
                                                       last_stride=1)}
            if self.init == "standin":     # its trunk's pooled features under an untrained BNNeck
                standin, _ = self.pretrained_backbone(self.prof.reid_backbone)
                models["stand-in, no fine-tuning"] = build_model("baseline", 1, backbone=self.prof.reid_backbone,
                                                                 weights=str(standin), last_stride=1)
            rows = {}
            for name, model in models.items():
                ev = self.evaluate(model.eval())
                rows[name] = {m: ev[m] for m in METRICS}
            atomic_write_json(path, rows)
        return pd.DataFrame.from_dict(rows, orient="index")

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, model, distance: Optional[str] = None, distmat: bool = False, data=None,
                 features: bool = True) -> dict:
        """:func:`reidlib.engine.evaluation.evaluate_reid` of ``model`` on this study's test set (or
        ``data``: e.g. :attr:`validation`), with features (``query`` / ``gallery``) and, with
        ``distmat``, the ranked distance matrix."""
        from reidlib.config import load_config
        from reidlib.engine.evaluation import evaluate_reid

        h, w = self.prof.input_size
        cfg = load_config(**{"data.root": str(self.root_path), "data.height": h, "data.width": w,
                             "data.num_workers": 0, "data.dataset": self.dataset,
                             "eval.batch_size": self.prof.eval_batch, "eval.num_workers": 0,
                             "train.device": self.device})
        ranked = self.ranked_features(model)
        store = self._test_feature_file(model, ranked) if data is None else None
        cache = _load_feature_cache(store) if store is not None else None
        known = None if cache is None else len(cache)
        ev = evaluate_reid(model, self.data if data is None else data, cfg, distance=distance,
                           return_features=features, return_distmat=distmat, features=ranked,
                           feature_cache=cache)
        if store is not None and len(cache) != known:
            _save_feature_cache(store, cache)
        return ev

    def _test_feature_file(self, model, ranked: str) -> Optional[Path]:
        """Where the test-image features of a cached run's ``model`` are kept:
        ``<run>/test-features-<hash>.pt``, the hash over what decides them besides the weights (the
        dataset folder and, for a user's folder, its content fingerprint; the layout; the vectors
        ranked; the input size; the device kind). A page that evaluates one trained model under
        several distances (Table 2's rows, the viewpoint breakdown, the reference rows of later
        pages) extracts its features once; only the ranking is repeated. None for a model that is
        not a finished cached run, or under a multi-process group (each rank holds a share)."""
        from reidlib.engine import distributed as ddp
        from reidlib.models.output import resolve_features
        from reidlib.utils.device import resolve_device

        out = self._run_of.get(model)
        if out is None or ddp.is_distributed():
            return None
        from reidlib.data.fingerprint import dataset_fingerprint

        own_data = dataset_fingerprint(self.root_path) if self.data_root else None
        key = _hash(["test features", str(os.path.abspath(self.root_path)), own_data, self.dataset,
                     resolve_features(model, ranked), list(self.prof.input_size),
                     resolve_device(self.device).type])
        return out / f"test-features-{key}.pt"

    def ranked_features(self, model) -> str:
        """Which vectors of ``model`` are ranked (``eval.features``) under the profile's
        ``ranked_features``: "" (the model's own default) or, for ``"public_code"``, what its
        module declares (``PUBLIC_CODE_FEATURES``)."""
        import sys

        if self.prof.ranked_features != "public_code":
            return ""
        return getattr(sys.modules[type(model).__module__], "PUBLIC_CODE_FEATURES", "post_bn")

    # ---------------------------------------------------------------- tables
    def run(self, variants: Mapping[Any, Variant]) -> Results:
        """Train (or load) and evaluate every variant, every seed."""
        return Results({name: self.evaluate_variant(v) for name, v in variants.items()}, self.seeds)

    def variants_table(self, variants: Mapping[Any, Variant]) -> pd.DataFrame:
        """Every variant trained and evaluated, as one :meth:`Results.table`."""
        return self.run(variants).table()


def _load_feature_cache(path: Path) -> dict:
    """The ``path -> (feat [P, d], area ratios [P] | None)`` dict of
    :func:`reidlib.engine.evaluation.extract_features` kept in ``path`` (empty when absent or
    unreadable: the features are then extracted again)."""
    if not path.is_file():
        return {}
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        feats, ars = saved["feats"], saved.get("area_ratios")
        return {p: (feats[i], None if ars is None else ars[i]) for i, p in enumerate(saved["paths"])}
    except Exception:                                        # a damaged file is re-made, never trusted
        return {}


def _save_feature_cache(path: Path, cache: dict) -> None:
    """Write ``cache`` (see :func:`_load_feature_cache`) to ``path`` atomically."""
    from reidlib.utils.io import atomic_path

    if not cache or any(v is None for v in cache.values()):
        return
    paths = list(cache)
    has_ar = all(cache[p][1] is not None for p in paths)
    saved = {"paths": paths, "feats": torch.stack([cache[p][0] for p in paths]),
             "area_ratios": torch.stack([cache[p][1] for p in paths]) if has_ar else None}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(saved, tmp)


class _Split:
    """A dataset object with another training split (for loaders that are not dataclasses)."""

    def __init__(self, ds, train):
        self._ds, self.train = ds, train

    def __getattr__(self, name):
        return getattr(self._ds, name)

