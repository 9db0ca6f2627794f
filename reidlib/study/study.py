"""A study: the models one book page trains and evaluates, cached so that pages share them.

A :class:`Study` binds a profile (:mod:`reidlib.study.profiles`), a dataset folder, a device and a cache
folder. Every model it needs is trained through :mod:`reidlib.engine` into
``<cache>/<kind>-<hash>/`` and reused by later pages with the same configuration: the hash covers
the *resolved* run configuration (defaults filled in, settings that cannot change the weights left
out) and whatever the run depends on (the SPAN it is built on, a prepared training set). So
``make reproduce`` trains the baseline once although Tables 1 and 2 and the viewpoint page all use
it. An interrupted training resumes from its ``last.pt`` (deleted once the run has finished and
written its ``model.pt``, unless ``keep_state=True``).

Rows of an ablation table are *variants*: plain data saying what changes from the profile's
defaults (:class:`Variant`); :meth:`Study.evaluate_variant` trains and evaluates one, and
:func:`design_table` shows a table's variants before anything is trained.

Tables (:meth:`Results.table`): one row per variant with R1 / R5 / mAP / mINP in percent, the mean
over seeds, the standard deviation over seeds when there are several, and the bootstrap 95%
interval of mAP and R1 (queries resampled, and seeds first when there are several). The
per-query arrays behind them (:meth:`Results.arrays`) are what claims are checked on
(:mod:`reidlib.claims.verdicts`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import pandas as pd
import torch

from reidlib.study.profiles import get_profile

__all__ = ["Study", "Variant", "Results", "design_table", "dataset_root", "METRICS"]

METRICS = ("R1", "R5", "mAP", "mINP")

#: run settings that cannot change the trained weights (left out of the cache key)
_NOT_IN_KEY = (("train", "progress"), ("train", "out_dir"), ("data", "num_workers"), ("eval", "num_workers"),
               ("eval", "batch_size"), ("train", "log_every"), ("train", "checkpoint_every"), ("train", "keep_last"))


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def dataset_root(profile: str | Mapping[str, Any], data_root: Optional[str | os.PathLike] = None, seed: int = 0,
                 data_dir: Optional[str | os.PathLike] = None, layout: str = "veri776") -> Path:
    """The dataset folder of a study: ``data_root`` when the user points at their own data, else
    SynthVeRi generated for ``profile`` (a name, or a profile dict with overrides applied) in the
    folder layout of dataset ``layout`` into ``data_dir`` (default :func:`reidlib.utils.paths.data_dir`;
    idempotent: an existing complete folder with the same manifest is reused)."""
    if data_root:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data_root {root} does not exist (expected a {layout} folder)")
        return root
    from reidlib.utils import paths
    from reidlib.data.synth import generate

    prof = get_profile(profile) if isinstance(profile, str) else profile
    base = Path(data_dir) if data_dir else paths.data_dir()
    name = f"synthveri-{prof['synth_preset']}-{prof['image_size']}px-seed{seed}"
    out = base / (name if layout == "veri776" else f"{name}-{layout}")
    return Path(generate(out, preset=prof["synth_preset"], image_size=prof["image_size"], seed=seed, layout=layout))


@dataclass(frozen=True)
class Variant:
    """One row of an ablation table: what changes from the profile's defaults.

    ``model``: ``baseline`` | ``span`` | ``musp``. ``config``: run-configuration overrides (dotted
    keys, e.g. ``{"model.kwargs": {"num_attentions": 3}}``). ``span``: for SPAN's part model,
    overrides of SPAN step 1 (e.g. ``{"span.use_area": False}``). ``distance``: the distance used
    at test time (default: the model's own).
    """

    model: str
    config: Mapping[str, Any] = field(default_factory=dict)
    span: Mapping[str, Any] = field(default_factory=dict)
    distance: Optional[str] = None
    note: str = ""

    def describe(self) -> dict:
        changes = {**{k: v for k, v in self.config.items()},
                   **{f"SPAN step 1: {k}": v for k, v in self.span.items()}}
        return {"model": self.model,
                "changes": ", ".join(f"{k}={v}" for k, v in changes.items()) or "(profile defaults)",
                "test distance": self.distance or "the model's own", "note": self.note}


def design_table(variants: Mapping[Any, Variant]) -> pd.DataFrame:
    """The design of an experiment: one row per variant, saying what it changes."""
    return pd.DataFrame([{"row": str(k), **v.describe()} for k, v in variants.items()])


@dataclass
class Study:
    """Settings shared by one notebook's experiments. ``overrides`` change single profile keys."""

    profile: str = "smoke"
    device: str = "auto"
    data_root: Optional[str] = None
    seed: int = 0
    cache_dir: Optional[str] = None   #: trained models (default :func:`reidlib.utils.paths.runs_dir`)
    data_dir: Optional[str] = None    #: generated SynthVeRi (default :func:`reidlib.utils.paths.data_dir`)
    overrides: dict = field(default_factory=dict)
    #: the dataset (:data:`reidlib.data.registry.DATASETS`): its protocol and, for SynthVeRi, the
    #: folder layout it is written in; ``test_size``: VehicleID 800/1600/2400, VERI-Wild 3000/...
    dataset: str = "veri776"
    test_size: Optional[int] = None
    #: how every backbone starts: ``"standin"`` (pretrained on a SynthVeRi folder of its own,
    #: :meth:`pretrained_backbone`), ``"random"``, or the path of a local ImageNet state-dict file;
    #: ``None``: the profile's choice
    init: Optional[str] = None
    #: keep each finished run's resumable training state (``last.pt``, ``iter_*.pt``: weights plus
    #: optimiser moments, ~3x the model) next to its ``model.pt``. Off by default: a finished run is
    #: only ever reloaded from ``model.pt``, and the state of a SPAN re-ID model is ~0.5 GB.
    keep_state: bool = False

    def __post_init__(self):
        from reidlib.utils import paths

        from reidlib.data.registry import DATASETS

        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}; expected one of {', '.join(DATASETS)}")
        self.prof = get_profile(self.profile, **self.overrides)
        self.root = dataset_root(self.prof, self.data_root, seed=self.seed, data_dir=self.data_dir,
                                 layout=self.dataset)
        self.cache = Path(self.cache_dir) if self.cache_dir else paths.runs_dir(self.profile)
        self._dataset = None
        self.init = self.init or self.prof.get("init", "random")
        self._weights: dict[str, Optional[str]] = {}

    # ---------------------------------------------------------------- data
    @property
    def data(self):
        """The loaded dataset (train / query / gallery records)."""
        if self._dataset is None:
            from reidlib.data.registry import load_dataset

            self._dataset = load_dataset(self.dataset, self.root, test_size=self.test_size)
        return self._dataset

    def example_batch(self, n: int = 6, split: str = "gallery", seed: int = 0, size: Optional[int] = None):
        """``n`` test images covering the 5 SPAN view classes, as a normalised batch ``[n, 3, H, W]``
        at the profile's input size (or ``size``; SPAN's: ``prof["span_size"]``) (+ their
        records), for figures of masks and attention maps."""
        from reidlib.data.masks import MaskDataset

        recs = [r for r in getattr(self.data, split) if r.view is not None]
        rng = np.random.default_rng(seed)
        picked = []
        for v in range(5):
            cand = [r for r in recs if r.view == v]
            if cand:
                picked.append(cand[int(rng.integers(len(cand)))])
        while len(picked) < n and recs:
            picked.append(recs[int(rng.integers(len(recs)))])
        picked = picked[:n]
        ds = MaskDataset(picked, fg_source="gt", size=(size, size) if size else tuple(self.prof["input_size"]))
        return torch.stack([ds[i]["img"] for i in range(len(ds))]), picked

    @property
    def seeds(self) -> list[int]:
        return [self.seed + s for s in self.prof["seeds"]]

    # ---------------------------------------------------------------- configs
    def _base(self, model: str, seed: int, iters: int) -> dict:
        h, w = self.prof["input_size"]
        return {
            "model.name": model,
            "data.root": str(self.root), "data.height": h, "data.width": w, "data.dataset": self.dataset,
            "data.test_size": "" if self.test_size is None else str(self.test_size),
            "data.num_workers": self.prof["num_workers"],
            "optim.unit": "iter", "optim.max_iters": iters,
            "optim.milestones": [int(iters * 0.6), int(iters * 0.85)],
            "optim.warmup_iters": max(1, iters // 10),
            "train.seed": seed, "train.device": self.device, "train.progress": False,
            "train.checkpoint_every": max(10, iters // 4), "train.log_every": max(1, iters // 20),
        }

    def reid_config(self, model: str, seed: int, **overrides) -> dict:
        """The run configuration of re-ID model ``model`` (``baseline`` | ``span`` | ``musp``)."""
        c = self._base(model, seed, self.prof["reid_iters"])
        c.update({"model.backbone": self.prof["reid_backbone"], "model.last_stride": 1,
                  "model.weights": self.backbone_weights(self.prof["reid_backbone"]),
                  "optim.lr": self.prof["lr"],
                  "data.p": self.prof["batch_p"], "data.k": self.prof["batch_k"],
                  "eval.batch_size": self.prof["eval_batch"]})
        if model == "span":
            c["model.kwargs"] = {"dim": self.prof["feat_dim"]}
            if self.prof["span_size"] != self.prof["input_size"][0]:   # SPAN sees the images at its own size
                c["model.kwargs"]["span_input_size"] = (self.prof["span_size"],) * 2
        for key, value in overrides.items():
            if key == "model.kwargs" and isinstance(value, Mapping):
                c[key] = {**c.get(key, {}), **value}
            else:
                c[key] = value
        return c

    def span_config(self, seed: int, **overrides) -> dict:
        """The run configuration of SPAN step 1 (eq. 6)."""
        c = self._base("span-masks", seed, self.prof["span_iters"])
        c.update({"model.backbone": self.prof["span_backbone"], "span.size": self.prof["span_size"],
                  "model.weights": self.backbone_weights(self.prof["span_backbone"]),
                  "model.kwargs": dict(self.prof.get("span_options", {})),
                  "span.per_view": self.prof["span_per_view"], "data.batch_size": self.prof["span_batch"],
                  "span.fg_source": self.prof["fg_source"],
                  "optim.lr": 1e-3, "optim.milestones": []})
        c.update(overrides)
        return c

    # ---------------------------------------------------------------- initialisation
    def backbone_weights(self, backbone: str) -> Optional[str]:
        """The ``model.weights`` every model with ``backbone`` starts from (see ``init``)."""
        if backbone not in self._weights:
            if self.init == "random":
                self._weights[backbone] = None
            elif self.init == "standin":
                self._weights[backbone] = str(self.pretrained_backbone(backbone)[0])
            else:
                path = Path(self.init).expanduser()
                if not path.is_file():
                    raise FileNotFoundError(f"init={self.init!r}: expected 'standin', 'random' or a local "
                                            "ImageNet state-dict file (reidlib never downloads weights)")
                self._weights[backbone] = str(path)
        return self._weights[backbone]

    @property
    def pretrain_seed(self) -> int:
        """The SynthVeRi seed of the pretraining data: the first from 1000 + seed whose vehicles are
        all different from the evaluation data's (:func:`reidlib.data.synth.disjoint.first_disjoint_seed`)."""
        from reidlib.data.synth.disjoint import first_disjoint_seed

        return first_disjoint_seed(self.prof["synth_preset"], [self.seed], 1000 + self.seed)

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

    def pretrained_backbone(self, backbone: str):
        """``(path of a torchvision-format state dict, info)``: ``backbone`` trained as the strong
        baseline (ID + triplet) for ``pretrain_iters`` iterations on :meth:`pretraining_dataset`,
        cached like every run. Every model of a ``standin`` study starts from it, as the papers'
        start from ImageNet."""
        from reidlib.engine.training import train_reid
        from reidlib.models.backbones import trunk_to_torchvision
        from reidlib.utils.io import atomic_path

        ds = self.pretraining_dataset()
        iters = self.prof["pretrain_iters"]
        cfg = self._base("baseline", self.seed, iters)
        cfg.update({"data.root": str(ds.root), "model.backbone": backbone, "model.last_stride": 1,
                    "model.weights": None, "optim.lr": self.prof["lr"], "data.p": self.prof["batch_p"],
                    "data.k": self.prof["batch_k"]})
        model, info = self.cached("pretrain", cfg, lambda c, resume: train_reid(c, dataset=ds, resume=resume),
                                  extra=("all images of seed", self.pretrain_seed))
        path = Path(info["out_dir"]) / f"backbone-{backbone}.pth"
        if not path.is_file():
            state = trunk_to_torchvision({k: v.detach().cpu() for k, v in model.base.state_dict().items()})
            with atomic_path(path, suffix=".pth") as tmp:
                torch.save(state, tmp)
        return path, info

    # ---------------------------------------------------------------- cached training
    def run_dir(self, kind: str, cfg: Mapping[str, Any], extra: Any = None) -> Path:
        """Runs are keyed by the *resolved* configuration (defaults filled in), so two spellings of
        the same run share one folder; settings that cannot change the weights are left out."""
        from reidlib.config import as_config

        resolved = as_config(dict(cfg)).to_dict()
        for section, key in _NOT_IN_KEY:
            resolved.get(section, {}).pop(key, None)
        return self.cache / f"{kind}-{_hash([resolved, extra])}"

    def cached(self, kind: str, cfg: dict, train: Callable, extra: Any = None):
        """``(model in eval mode, info)``: the model of ``cfg`` from the cache, or trained by
        ``train(cfg, resume)`` (resuming an interrupted run) and cached. One process at a time
        per cache entry: a second one (another notebook, another GPU's job) waits for the first
        and then loads its model instead of training it again."""
        from reidlib.engine.artifacts import MODEL_FILE, load_model
        from reidlib.utils.io import file_lock

        out = self.run_dir(kind, cfg, extra)
        model_file = out / MODEL_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(out.parent / f".{out.name}.lock"):
            if model_file.exists():
                model, _ = load_model(model_file)
                return model.eval(), {"out_dir": str(out), "cached": True}
            cfg = {**cfg, "train.out_dir": str(out)}
            res = train(cfg, resume=(out / "last.pt").exists())
            if not self.keep_state and model_file.exists():
                for p in [out / "last.pt", *out.glob("iter_*.pt")]:
                    p.unlink(missing_ok=True)
        return res.model.eval(), {"out_dir": str(out), "cached": False, "seconds": round(res.seconds, 1),
                                  "final_log": res.history[-1] if res.history else None}

    def span_model(self, seed: int, **span_overrides):
        """A trained SPAN (step 1, eq. 6) for this profile; ``span_overrides`` like ``{"span.use_area": False}``."""
        from reidlib.engine.training import train_span

        cfg = self.span_config(seed, **span_overrides)
        return self.cached("span-masks", cfg, lambda c, resume: train_span(c, resume=resume))

    def reid_model(self, model: str, seed: int, span=None, span_key: Any = None, **overrides):
        """A trained re-ID model (``baseline`` | ``span`` | ``musp``); SPAN models need ``span``
        (and ``span_key``, what identifies it in the cache: its run folder's name)."""
        from reidlib.engine.training import train_reid

        cfg = self.reid_config(model, seed, **overrides)
        return self.cached(model, cfg, lambda c, resume: train_reid(c, span=span, resume=resume), extra=span_key)

    def variant_models(self, variant: Variant) -> list:
        """The trained models of ``variant``, one per seed (their run folders: ``_last_run_dirs``)."""
        span = key = None
        if variant.model == "span":
            span, info = self.span_model(self.seed, **variant.span)
            key = Path(info["out_dir"]).name
        runs = [self.reid_model(variant.model, s, span=span, span_key=key, **variant.config) for s in self.seeds]
        self._last_run_dirs = [info["out_dir"] for _, info in runs]
        return [m for m, _ in runs]

    def evaluate_variant(self, variant: Variant) -> list[dict]:
        """Train (or load) and evaluate ``variant`` for every seed: one :meth:`evaluate` result per
        seed, with the run folder it was trained in (``run_dir``: its ``log.jsonl`` is the learning curve)."""
        out = []
        for model, run_dir in zip(self.variant_models(variant), self._last_run_dirs):
            ev = self.evaluate(model, distance=variant.distance)
            ev["run_dir"] = run_dir
            out.append(ev)
        return out

    def reference_levels(self) -> pd.DataFrame:
        """The levels a table is read against (R1 / R5 / mAP / mINP, %): an untrained network of the
        profile's re-ID architecture and, with ``init="standin"``, the stand-in backbone's own
        features before any fine-tuning. (The best level any metric allows is 100.) Cached in
        ``<cache>/reference-levels-<hash>.json``."""
        import json as _json

        from reidlib.engine.artifacts import load_model
        from reidlib.models.registry import build_model
        from reidlib.utils.device import seed_everything
        from reidlib.utils.io import atomic_write_json

        key = _hash([self.prof, self.seed, str(self.root), self.init, self.dataset, self.test_size])
        path = self.cache / f"reference-levels-{key}.json"
        if path.is_file():
            rows = _json.loads(path.read_text())
        else:
            seed_everything(self.seed)
            models = {"untrained network": build_model("baseline", 1, backbone=self.prof["reid_backbone"],
                                                       last_stride=1)}
            if self.init == "standin":
                _, info = self.pretrained_backbone(self.prof["reid_backbone"])
                models["stand-in, no fine-tuning"] = load_model(Path(info["out_dir"]) / "model.pt")[0]
            rows = {}
            for name, model in models.items():
                ev = self.evaluate(model.eval())
                rows[name] = {m: ev[m] for m in METRICS}
            atomic_write_json(path, rows)
        return pd.DataFrame.from_dict(rows, orient="index")

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, model, distance: Optional[str] = None, distmat: bool = False) -> dict:
        """:func:`reidlib.engine.evaluation.evaluate_reid` of ``model`` on this study's test set,
        with features (``query`` / ``gallery``) and, with ``distmat``, the ranked distance matrix."""
        from reidlib.engine.evaluation import evaluate_reid

        h, w = self.prof["input_size"]
        cfg = {"data.root": str(self.root), "data.height": h, "data.width": w, "data.num_workers": 0,
               "data.dataset": self.dataset,
               "eval.batch_size": self.prof["eval_batch"], "eval.num_workers": 0, "train.device": self.device}
        return evaluate_reid(model, self.data, cfg, distance=distance, return_features=True,
                             return_distmat=distmat)

    # ---------------------------------------------------------------- tables
    def run(self, variants: Mapping[Any, Variant]) -> "Results":
        """Train (or load) and evaluate every variant, every seed."""
        return Results({name: self.evaluate_variant(v) for name, v in variants.items()}, self.seeds)

    def variants_table(self, variants: Mapping[Any, Variant]) -> pd.DataFrame:
        """Every variant trained and evaluated, as one :meth:`Results.table`."""
        return self.run(variants).table()


@dataclass
class Results:
    """The evaluations of one experiment: ``runs[row]`` holds one
    :func:`reidlib.engine.evaluation.evaluate_reid` result per training seed (``seeds``)."""

    runs: dict
    seeds: list
    _arrays: Optional[dict] = field(default=None, repr=False)

    def arrays(self) -> dict:
        """The per-query arrays of every row and seed (:mod:`reidlib.claims.per_query`; computed once)."""
        from reidlib.claims import per_query

        if self._arrays is None:
            self._arrays = per_query.from_evaluations(self.runs, self.seeds)
        return self._arrays

    def logs(self) -> dict:
        """``{row: training log}`` (pandas, one row per logged iteration) of each row's first seed."""
        from reidlib.engine.logging import read_log

        return {row: read_log(Path(per_seed[0]["run_dir"]) / "log.jsonl")
                for row, per_seed in self.runs.items() if per_seed and per_seed[0].get("run_dir")}

    def table(self, resamples: int = 2000, bootstrap_seed: int = 0) -> pd.DataFrame:
        """One row per variant: R1 / R5 / mAP / mINP in percent (mean over seeds; with several
        seeds also their standard deviation ``<metric>_std``), and the 95% bootstrap interval of
        mAP and R1 (``mAP_low`` / ``mAP_high`` ...: queries resampled, and seeds first when there
        are several; :func:`reidlib.claims.stats.bootstrap_interval`)."""
        from reidlib.claims import per_query
        from reidlib.claims.stats import bootstrap_interval

        arrays = self.arrays()
        rows = {}
        for name, per_seed in self.runs.items():
            row: dict[str, Any] = {}
            for m in METRICS:
                vals = np.array([r[m] for r in per_seed], dtype=float)
                row[m] = vals.mean()
                if len(vals) > 1:
                    row[f"{m}_std"] = vals.std(ddof=1)
            for m in ("mAP", "R1"):
                iv = bootstrap_interval(per_query.values(arrays, name, m), resamples=resamples, seed=bootstrap_seed)
                row[f"{m}_low"], row[f"{m}_high"] = iv.low, iv.high
            row["seeds"] = len(per_seed)
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")


class _Split:
    """A dataset object with another training split (for loaders that are not dataclasses)."""

    def __init__(self, ds, train):
        self._ds, self.train = ds, train

    def __getattr__(self, name):
        return getattr(self._ds, name)


def strip(result: dict) -> dict:
    """An evaluate() result without its arrays (for JSON)."""
    return {k: v for k, v in result.items() if k not in ("rank_result", "rank_results", "query", "gallery", "distmat")}
