"""High-level tasks used by the notebooks and the CLI. Each takes a :class:`reidlib.config.Config`
(or a dict / YAML path, see :func:`reidlib.config.as_config`).

* :func:`train_reid`: a re-ID model (``baseline`` | ``span`` | ``musp``) with P x K batches, the
  ID + triplet criterion and the warm-up / multi-step schedule. SPAN's step 2 (Sec. 3.4, eq. 7) is
  ``train_reid`` with model ``span``, a trained SPAN (frozen) and the triplet loss on CPDM.
* :func:`evaluate_reid`: features of query and gallery (``bn_feats`` + ``area_ratios``, eval mode,
  no grad) ranked with the model's distance (or ``distance=``): R1/R5/R10/mAP/mINP.
* :func:`train_span`: SPAN step 1 (eq. 6) on a view-balanced subset.
* :func:`train_foreground`: the foreground network on GrabCut masks (the source of SPAN's ``V``).

Every training task writes to ``cfg.train.out_dir`` (default ``runs/<model>``): ``last.pt`` (the
resumable checkpoint), ``model.pt`` (weights + what is needed to rebuild the model), ``log.jsonl``
and ``config.yaml``. ``resume=True`` continues an interrupted run from ``last.pt``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from reidlib.config import REID_MODELS, Config, as_config, to_yaml, triplet_on
from reidlib.engine.checkpoint import FORMAT, VERSION, jsonable_config, load_checkpoint, to_bytes
from reidlib.engine.optim import WarmupMultiStepLR, build_optimizer, epochs_to_iters
from reidlib.engine.trainer import RandomBatchSampler, Trainer, build_loader, resolve_amp
from reidlib.errors import ConfigError
from reidlib.utils.device import resolve_device, seed_everything
from reidlib.utils.io import atomic_write_bytes, atomic_write_text

MODEL_FILE = "model.pt"


@dataclass
class RunResult:
    """What a training task produced."""
    out_dir: Path
    checkpoint: Path  #: ``model.pt``: weights + rebuild information (for evaluation / SPAN step 2)
    last_checkpoint: Path  #: ``last.pt``: the resumable training state
    log_path: Path
    history: list = field(default_factory=list)  #: the log records (iter, lr, losses, time)
    model: Any = None  #: the trained model (on the training device, eval mode)
    config: Optional[Config] = None
    meta: dict = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "checkpoint": str(self.checkpoint),
                "last_checkpoint": str(self.last_checkpoint), "log_path": str(self.log_path),
                "iterations": self.iterations, "seconds": round(self.seconds, 2),
                "final": self.history[-1] if self.history else None}


# ------------------------------------------------------------------------------------------------
# data and models
# ------------------------------------------------------------------------------------------------

def load_dataset(root: str | os.PathLike, kind: str = "veri776", test_size: Any = ""):
    """A dataset object with ``train`` / ``query`` / ``gallery`` record lists (SynthVeRi: ``veri776``)."""
    if not root:
        raise ConfigError("data.root is empty: point it at a dataset folder (e.g. SynthVeRi made by "
                          "`python -m reidlib.data.synth OUT --preset tiny`)")
    if kind == "veri776":
        from reidlib.data.veri776 import VeRi776

        return VeRi776(root)
    if kind == "vehicleid":
        from reidlib.data.vehicleid import VehicleID

        return VehicleID(root, test_size=int(test_size or 800))
    if kind == "veriwild":
        from reidlib.data.veriwild import VERIWild

        return VERIWild(root, test_size=int(test_size or 3000))
    raise ConfigError(f"data.dataset: unknown dataset {kind!r}; expected veri776, vehicleid or veriwild")


def _dataset_from(cfg: Config, dataset: Any = None):
    if dataset is None:
        return load_dataset(cfg.data.root, cfg.data.dataset, cfg.data.test_size)
    if isinstance(dataset, (str, os.PathLike)):
        return load_dataset(dataset, cfg.data.dataset, cfg.data.test_size)
    return dataset


def reid_model_kwargs(cfg: Config) -> dict:
    """Constructor keyword arguments of ``build_model(cfg.model.name, ...)`` (without ``span``)."""
    name = cfg.model.name
    kw = dict(cfg.model.kwargs)
    kw.setdefault("backbone", cfg.model.backbone)
    kw.setdefault("weights", cfg.model.weights)
    if name == "musp":  # MUSP names it output stride: last stride 1 = output stride 16
        kw.setdefault("output_stride", 16 if cfg.model.last_stride == 1 else 32)
    else:
        kw.setdefault("last_stride", cfg.model.last_stride)
    return kw


def _build_reid_model(name: str, num_classes: int, kwargs: Mapping[str, Any], span=None):
    from reidlib.models.registry import build_model

    kw = dict(kwargs)
    if name == "span":
        if span is None:
            raise ConfigError("model 'span' needs a trained SPAN: train one with `reidlib train --model span-masks` "
                              "and pass model.span_checkpoint=<out>/model.pt (or span=... in Python)")
        kw["span"] = span
    return build_model(name, num_classes, **kw)


def load_span(path: str | os.PathLike, map_location: Any = "cpu"):
    """A trained SPAN from a ``train_span`` output (``model.pt`` / ``last.pt``) or a plain SPAN file."""
    from reidlib.models.span import SPAN

    try:
        state = load_checkpoint(path, map_location=map_location)
    except (ValueError, RuntimeError):
        from reidlib.models.span import load_span as _load_plain

        return _load_plain(path, map_location=map_location)
    meta = state.get("meta") or {}
    if meta.get("task") != "span":
        raise ConfigError(f"{path}: not a SPAN checkpoint (task {meta.get('task')!r}); expected the output "
                          "of `reidlib train --model span-masks`")
    arch = dict(meta.get("span_config") or {})
    span = SPAN(backbone=arch.get("backbone", "resnet34"), out_size=arch.get("out_size"))
    span.load_state_dict(state["model"])
    return span.eval()


def load_model(checkpoint: str | os.PathLike, map_location: Any = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a training task from ``model.pt`` / ``last.pt`` (or the run folder).
    Returns ``(model in eval mode, the checkpoint dict)``."""
    state = load_checkpoint(checkpoint, map_location=map_location)
    meta = state.get("meta") or {}
    task = meta.get("task")
    if task == "reid":
        span = None
        if meta["model_name"] == "span":
            from reidlib.models.span import SPAN

            arch = dict(meta.get("span_config") or {})
            span = SPAN(backbone=arch.get("backbone", "resnet34"), out_size=arch.get("out_size"))
        kwargs = dict(meta.get("model_kwargs") or {})
        kwargs["weights"] = None  # the checkpoint holds every weight
        model = _build_reid_model(meta["model_name"], int(meta["num_classes"]), kwargs, span=span)
        if meta.get("distance"):
            model.distance = meta["distance"]
    elif task == "span":
        from reidlib.models.span import SPAN

        arch = dict(meta.get("span_config") or {})
        model = SPAN(backbone=arch.get("backbone", "resnet34"), out_size=arch.get("out_size"))
    elif task == "foreground":
        from reidlib.models.foreground import ForegroundNet

        arch = dict(meta.get("fg_config") or {})
        model = ForegroundNet(backbone=arch.get("backbone", "resnet34"), out_size=arch.get("out_size"),
                              width=arch.get("width", 64))
    else:
        raise ConfigError(f"{checkpoint}: unknown task {task!r} in the checkpoint's meta")
    model.load_state_dict(state["model"])
    return model.eval(), state


def _save_model_file(out_dir: Path, model: torch.nn.Module, meta: dict, cfg: Config, iteration: int,
                     arch_config: Optional[dict] = None) -> Path:
    """``model.pt``: weights + meta. ``config`` is the architecture config (``SPAN.config`` for SPAN,
    so :func:`reidlib.models.span.load_span` reads it too); the whole run config is ``run_config``."""
    state = {"format": FORMAT, "version": VERSION, "kind": "model", "iteration": int(iteration),
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "config": jsonable_config(arch_config if arch_config is not None else meta),
             "meta": jsonable_config(meta), "run_config": jsonable_config(cfg.to_dict())}
    return atomic_write_bytes(out_dir / MODEL_FILE, to_bytes(state))


def _out_dir(cfg: Config) -> Path:
    return Path(cfg.train.out_dir or os.path.join("runs", cfg.model.name))


def _schedule(cfg: Config, iters_per_epoch: int) -> tuple[int, list[int], int]:
    o = cfg.optim
    if o.unit == "epoch":
        conv = lambda x: epochs_to_iters(float(x), iters_per_epoch)  # noqa: E731
    else:
        conv = lambda x: int(round(float(x)))  # noqa: E731
    return conv(o.max_iters), [conv(m) for m in o.milestones], conv(o.warmup_iters)


def _make_trainer(cfg: Config, model, step_fn, loader, iters_per_epoch: int, meta: dict,
                  progress: Optional[bool], desc: str) -> Trainer:
    max_iters, milestones, warmup = _schedule(cfg, iters_per_epoch)
    device = resolve_device(cfg.train.device)
    model.to(device)
    o = cfg.optim
    optimizer = build_optimizer(o.name, model, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)
    scheduler = WarmupMultiStepLR(optimizer, milestones, gamma=o.gamma, warmup_iters=warmup,
                                  warmup_factor=o.warmup_factor, warmup_method=o.warmup_method)
    meta = {**meta, "iters_per_epoch": iters_per_epoch, "milestones_iters": milestones, "warmup_iters": warmup}
    return Trainer(model, step_fn, optimizer=optimizer, scheduler=scheduler, data_loader=loader,
                   max_iters=max_iters, out_dir=_out_dir(cfg), checkpoint_every=cfg.train.checkpoint_every,
                   keep_last=cfg.train.keep_last, log_every=cfg.train.log_every, device=device,
                   amp=cfg.train.amp, channels_last=cfg.train.channels_last, grad_clip=o.grad_clip,
                   seed=cfg.train.seed, config=cfg.to_dict(), meta=meta,
                   progress=cfg.train.progress if progress is None else progress, desc=desc)


def _finish(cfg: Config, trainer: Trainer, meta: dict, t0: float, arch_config: Optional[dict] = None) -> RunResult:
    out = _out_dir(cfg)
    model = trainer.model.eval()
    ckpt = _save_model_file(out, model, {**trainer.meta, **meta}, cfg, trainer.iteration, arch_config)
    return RunResult(out_dir=out, checkpoint=ckpt, last_checkpoint=out / "last.pt", log_path=out / "log.jsonl",
                     history=list(trainer.history), model=model, config=cfg, meta={**trainer.meta, **meta},
                     iterations=trainer.iteration, seconds=time.perf_counter() - t0)


def _start(cfg: Any, **dotted) -> Config:
    cfg = as_config(cfg, **dotted)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    out = _out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    return cfg


# ------------------------------------------------------------------------------------------------
# re-ID
# ------------------------------------------------------------------------------------------------

def train_reid(cfg: Any = None, *, span: Optional[torch.nn.Module] = None, dataset: Any = None,
               resume: bool = False, progress: Optional[bool] = None, **dotted) -> RunResult:
    """Train ``cfg.model.name`` (baseline | span | musp) on ``cfg.data``; see the module docstring.

    ``span``: the trained SPAN for model ``span`` (else loaded from ``cfg.model.span_checkpoint``).
    ``dataset``: an already loaded dataset object (else ``cfg.data.root`` / ``cfg.data.dataset``).
    ``**dotted``: config overrides such as ``**{"optim.lr": 1e-4}``.
    """
    t0 = time.perf_counter()
    cfg = _start(cfg, **dotted)
    name = cfg.model.name
    if name not in REID_MODELS:
        raise ConfigError(f"train_reid trains {', '.join(REID_MODELS)}; got model {name!r} "
                          "(use train_span / train_foreground)")
    from reidlib.data.dataset import ImageDataset, build_transforms, relabel
    from reidlib.data.sampler import PKSampler
    from reidlib.losses.reid import ReIDCriterion

    if name == "span" and span is None:
        if not cfg.model.span_checkpoint:
            raise ConfigError("model 'span' needs a trained SPAN: train one with `reidlib train --model span-masks` "
                              "and set model.span_checkpoint=<its out dir>/model.pt (CLI: --span)")
        span = load_span(cfg.model.span_checkpoint)
    ds = _dataset_from(cfg, dataset)
    pid_map = relabel(ds.train)
    num_classes = len(pid_map)
    train_set = ImageDataset(ds.train, build_transforms(cfg.data.height, cfg.data.width, train=True,
                                                        **cfg.data.transforms), pid_map)
    sampler = PKSampler(train_set.pids, p=cfg.data.p, k=cfg.data.k, seed=cfg.train.seed)
    loader = build_loader(train_set, sampler, num_workers=cfg.data.num_workers, seed=cfg.train.seed)

    kwargs = reid_model_kwargs(cfg)
    model = _build_reid_model(name, num_classes, kwargs, span=span)
    trip = triplet_on(cfg)
    criterion = ReIDCriterion(num_classes, label_smoothing=cfg.loss.label_smoothing, margin=cfg.loss.margin,
                              id_weight=cfg.loss.id_weight, triplet_weight=cfg.loss.triplet_weight, triplet_on=trip)
    meta = {"task": "reid", "model_name": name, "num_classes": num_classes, "model_kwargs": kwargs,
            "distance": getattr(model, "distance", "euclidean"), "num_parts": getattr(model, "num_parts", 1),
            "triplet_on": trip, "image_size": [cfg.data.height, cfg.data.width],
            "dataset": {"kind": cfg.data.dataset, "root": str(cfg.data.root), "train_images": len(ds.train)},
            "span_config": dict(getattr(span, "config", {}) or {}) if span is not None else None}
    from reidlib.engine.trainer import criterion_step

    trainer = _make_trainer(cfg, model, criterion_step(criterion), loader, len(sampler), meta, progress,
                            desc=f"train {name}")
    trainer.criterion = criterion.to(trainer.device) if isinstance(criterion, torch.nn.Module) else criterion
    trainer.fit(resume=resume)
    return _finish(cfg, trainer, meta, t0)


def _records_of(dataset, split: str):
    return list(getattr(dataset, split))


@torch.no_grad()  # not inference_mode: reidlib.cpdm caches by tensor version, which inference tensors lack
def extract_features(model: torch.nn.Module, records: Sequence, height: int, width: int, *, batch_size: int = 128,
                     num_workers: int = 0, device: Any = "auto", amp: Any = "off", progress: bool = False,
                     desc: str = "features", cache: Optional[dict] = None) -> dict:
    """``bn_feats`` and ``area_ratios`` of ``records`` (test transform, eval mode, no grad).

    Returns ``{"feats": Tensor[N, P, d] float32 (CPU), "area_ratios": Tensor[N, P] | None,
    "pids", "camids", "views": int64 numpy arrays (raw ids; view -1 = unknown), "paths": list}``.
    ``cache``: a dict ``path -> (feat [P, d], ar [P] | None)`` read and filled, so that repeated
    evaluations over the same images (VehicleID's 10 trials) extract each image once.
    """
    from tqdm.auto import tqdm

    from reidlib.data.dataset import ImageDataset, build_transforms

    records = list(records)
    cache = {} if cache is None else cache
    todo = [r for r in dict.fromkeys(r.path for r in records) if r not in cache]
    if todo:
        device = resolve_device(device) if not isinstance(device, torch.device) else device
        was_training = model.training
        model.to(device).eval()
        amp_dtype = resolve_amp(amp, device)
        by_path = {r.path: r for r in records}
        ds = ImageDataset([by_path[p] for p in todo], build_transforms(height, width, train=False))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                             num_workers=min(num_workers, os.cpu_count() or 1),
                                             pin_memory=device.type == "cuda")
        done = 0
        try:
            for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
                img = batch["img"].to(device, non_blocking=True)
                if device.type == "cuda":
                    img = img.contiguous(memory_format=torch.channels_last)
                if amp_dtype is not None:
                    with torch.autocast(device_type=device.type, dtype=amp_dtype):
                        out = model(img)
                else:
                    out = model(img)
                f = out["bn_feats"].float().cpu()
                ar = out.get("area_ratios")
                ar = ar.float().cpu() if ar is not None else None
                for i in range(f.shape[0]):
                    cache[todo[done + i]] = (f[i], None if ar is None else ar[i])
                done += f.shape[0]
        finally:
            model.train(was_training)
    rows = [cache[r.path] for r in records]
    has_ar = bool(rows) and all(row[1] is not None for row in rows)
    return {"feats": torch.stack([row[0] for row in rows]) if rows else torch.zeros(0, 1, 1),
            "area_ratios": torch.stack([row[1] for row in rows]) if has_ar else None,
            "pids": np.asarray([r.pid for r in records], np.int64),
            "camids": np.asarray([r.camid for r in records], np.int64),
            "views": np.asarray([-1 if r.view is None else r.view for r in records], np.int64),
            "paths": [r.path for r in records]}


def evaluate_reid(model_or_checkpoint: Any, dataset: Any = None, cfg: Any = None, *, distance: Optional[str] = None,
                  return_features: bool = False, device: Optional[str] = None, batch_size: Optional[int] = None,
                  progress: bool = False, feature_cache: Optional[dict] = None, trials: Optional[int] = None,
                  **distance_kwargs) -> dict:
    """Rank the gallery for every query; returns ``{"R1", "R5", "R10", "mAP", "mINP"}`` in percent
    (AP = mean precision at each true match, ``ap_definition``), the counts, the distance used and
    timings; with ``return_features`` also ``"query"`` / ``"gallery"`` (dicts of
    :func:`extract_features`: features, area ratios, pids, camids, views, paths, for per-view
    analyses) and ``"rank_result"`` (per-query AP / INP / first-match rank).

    ``model_or_checkpoint``: a model, or a ``model.pt`` / ``last.pt`` / run folder (its run config
    then provides the defaults: image size, dataset kind; ``cfg`` given as a dict overrides them).
    ``dataset``: a dataset object or a root folder (default ``cfg.data.root``). ``distance``:
    override of the model's metric (``"euclidean"`` for SPAN "w/ Cat", ``"cpdm_musp_code"``, ...);
    ``distance_kwargs`` go to :func:`reidlib.cpdm.build_distance`. ``feature_cache``: see
    :func:`extract_features`.

    VehicleID given as a folder (``data.dataset=vehicleid``): the protocol's ``trials`` (default 10)
    seeded random gallery draws are all evaluated (each image's features extracted once); the
    metrics are their means, with ``"std"`` and ``"per_trial"`` beside them.
    """
    model, cfg = _eval_setup(model_or_checkpoint, cfg)
    dev = resolve_device(device or cfg.train.device)
    cache = {} if feature_cache is None else feature_cache
    kw = dict(distance=distance, return_features=return_features, device=dev, batch_size=batch_size,
              progress=progress, cache=cache, distance_kwargs=distance_kwargs)
    if cfg.data.dataset == "vehicleid" and (dataset is None or isinstance(dataset, (str, os.PathLike))):
        from reidlib.data.vehicleid import vehicleid_all_trials

        root = dataset if dataset is not None else cfg.data.root
        n = int(trials or 10)
        agg = vehicleid_all_trials(root, int(cfg.data.test_size or 800),
                                   lambda ds: _evaluate_split(model, ds, cfg, **{**kw, "return_features": False}),
                                   seed=cfg.train.seed, num_trials=n)
        out = {k: v for k, v in agg["mean"].items()}
        out.update(distance=agg["per_trial"][0]["distance"], ap_definition=agg["per_trial"][0]["ap_definition"],
                   std=agg["std"], per_trial=agg["per_trial"], trials=n)
        return out
    return _evaluate_split(model, _dataset_from(cfg, dataset), cfg, **kw)


def _eval_setup(model_or_checkpoint: Any, cfg: Any) -> tuple[torch.nn.Module, Config]:
    ckpt_cfg = None
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        model, state = load_model(model_or_checkpoint)
        task = (state.get("meta") or {}).get("task")
        if task != "reid":
            raise ConfigError(f"{model_or_checkpoint} holds a {task!r} model, not a re-ID model; evaluate the "
                              "model.pt of a baseline / span / musp run")
        run_cfg = state.get("run_config") or state.get("config")
        if isinstance(run_cfg, Mapping) and "model" in run_cfg:
            ckpt_cfg = as_config(run_cfg)
    else:
        model = model_or_checkpoint
    if cfg is None:
        cfg = ckpt_cfg if ckpt_cfg is not None else as_config(None)
    elif isinstance(cfg, Mapping) and ckpt_cfg is not None:
        from reidlib.config import apply_mapping, validate

        cfg = validate(apply_mapping(ckpt_cfg.copy(), cfg))
    else:
        cfg = as_config(cfg)
    return model, cfg


def _evaluate_split(model, ds, cfg: Config, *, distance, return_features, device, batch_size, progress, cache,
                    distance_kwargs) -> dict:
    from reidlib.cpdm import build_distance
    from reidlib.metrics.rank import evaluate_features

    bs = int(batch_size or cfg.eval.batch_size)
    common = dict(batch_size=bs, num_workers=cfg.eval.num_workers, device=device, amp=cfg.eval.amp,
                  progress=progress, cache=cache)
    t0 = time.perf_counter()
    q = extract_features(model, _records_of(ds, "query"), cfg.data.height, cfg.data.width, desc="query", **common)
    g = extract_features(model, _records_of(ds, "gallery"), cfg.data.height, cfg.data.width, desc="gallery", **common)
    t_feat = time.perf_counter() - t0
    dist_name = distance or cfg.eval.distance or getattr(model, "distance", "euclidean")
    dist = build_distance(dist_name, **distance_kwargs)
    qf = (q["feats"], q["area_ratios"]) if q["area_ratios"] is not None else q["feats"]
    gf = (g["feats"], g["area_ratios"]) if g["area_ratios"] is not None else g["feats"]
    res = evaluate_features(qf, gf, q["pids"], g["pids"], q["camids"], g["camids"], distance=dist,
                            chunk_size=cfg.eval.chunk_size or None, device=device)
    out = {"R1": res.rank(1) * 100.0, "R5": res.rank(5) * 100.0, "R10": res.rank(10) * 100.0,
           "mAP": float(res.mAP) * 100.0, "mINP": float(res.mINP) * 100.0, "distance": dist_name,
           "num_query": len(q["pids"]), "num_gallery": len(g["pids"]),
           "num_valid_queries": int(res.num_valid_queries), "num_skipped_queries": int(res.num_skipped_queries),
           "ap_definition": res.ap, "feature_seconds": round(t_feat, 3),
           "seconds": round(time.perf_counter() - t0, 3)}
    if return_features:
        out["query"], out["gallery"], out["rank_result"] = q, g, res
    return out


# ------------------------------------------------------------------------------------------------
# SPAN step 1 and the foreground network
# ------------------------------------------------------------------------------------------------

class _MaskLookup:
    """Picklable ``Record -> mask`` source (foreground-network predictions computed up front)."""

    def __init__(self, masks: dict):
        self.masks = masks

    def __call__(self, record) -> np.ndarray:
        return self.masks[record.path]


@torch.no_grad()
def predict_foreground(fg_model: torch.nn.Module, records: Sequence, size: int = 192, batch_size: int = 64,
                       device: Any = "auto") -> dict:
    """``{path: float32 [size, size] foreground probability}`` of ``records`` by a ForegroundNet."""
    from reidlib.data.masks import MaskDataset

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    fg_model.to(device).eval()
    recs = [r if r.view is not None else dataclasses.replace(r, view=0) for r in records]
    zeros = _MaskLookup({r.path: np.zeros((1, 1), np.float32) for r in recs})
    ds = MaskDataset(recs, fg_source=zeros, size=(size, size), mask_size=(size, size), flip=False)
    out = {}
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    for batch in loader:
        prob = torch.sigmoid(fg_model(batch["img"].to(device), size=(size, size)))[:, 0].float().cpu().numpy()
        for p, m in zip(batch["path"], prob):
            out[p] = m
    return out


def _fg_source(cfg: Config, records: Sequence, source: str, device) -> Any:
    """Resolve ``span.fg_source`` / ``foreground.source``: ``auto`` (SynthVeRi's true masks when the
    data have them, else GrabCut) | ``gt`` (= ``synth``) | ``grabcut[:<cache dir>]`` (default cache:
    ``grabcut-cache/`` beside the run folder, shared by runs; masks computed once, in parallel) |
    ``foreground:<checkpoint>`` (a trained foreground network's predictions)."""
    from reidlib.data.masks import gt_mask_path

    if source == "auto":
        source = "gt" if records and gt_mask_path(records[0].path).is_file() else "grabcut"
    if source in ("gt", "synth"):
        return "gt"
    if source.startswith("grabcut"):
        cache = source.split(":", 1)[1] if ":" in source else str(_out_dir(cfg).parent / "grabcut-cache")
        from reidlib.data.grabcut import compute_masks

        compute_masks(records, cache, workers=max(cfg.data.num_workers, 1), progress=cfg.train.progress)
        return f"grabcut:{cache}"
    if source.startswith("foreground:") or source.endswith(".pt") or Path(source).is_dir():
        path = source.split(":", 1)[1] if source.startswith("foreground:") else source
        fg_model, _ = load_model(path)
        return _MaskLookup(predict_foreground(fg_model, records, size=cfg.span.size, device=device))
    raise ConfigError(f"unknown foreground source {source!r}; expected auto, gt, grabcut[:<cache dir>] or "
                      "foreground:<checkpoint of `reidlib train --model foreground`>")


def _small_batch_loader(cfg: Config, dataset) -> tuple[Any, int]:
    sampler = RandomBatchSampler(len(dataset), cfg.data.batch_size, drop_last=True, seed=cfg.train.seed)
    return build_loader(dataset, sampler, num_workers=cfg.data.num_workers, seed=cfg.train.seed), len(sampler)


def train_span(cfg: Any = None, *, records: Optional[Sequence] = None, dataset: Any = None, resume: bool = False,
               progress: Optional[bool] = None, **dotted) -> RunResult:
    """SPAN step 1 (Sec. 3.1/3.4, eq. 6): the mask network on a view-balanced subset of the training
    images (``span.per_view`` per view; 0 = as many as the rarest view has), against foreground
    targets from ``span.fg_source``. Loss terms are switchable (``span.use_recon/use_area/use_div``)
    and weighted by ``span.lambda_*``. ``RunResult.model`` is the trained SPAN (eval mode)."""
    t0 = time.perf_counter()
    if cfg is None and "model.name" not in dotted:
        dotted["model.name"] = "span-masks"
    cfg = _start(cfg, **dotted)
    if cfg.model.name != "span-masks":
        raise ConfigError(f"train_span needs model.name 'span-masks', got {cfg.model.name!r}")
    from reidlib.data.masks import MaskDataset, view_balanced_subset
    from reidlib.losses.span import span_step1_loss
    from reidlib.models.span import SPAN

    if records is None:
        ds = _dataset_from(cfg, dataset)
        records = ds.train
    labelled = [r for r in records if r.view is not None]
    if not labelled:
        raise ConfigError("SPAN step 1 needs images with view labels (VeRi-776 keypoint files / SynthVeRi)")
    counts = np.bincount([int(r.view) for r in labelled], minlength=5)
    per_view = cfg.span.per_view or int(counts[counts > 0].min())
    subset = view_balanced_subset(labelled, per_view, seed=cfg.train.seed)
    device = resolve_device(cfg.train.device)
    fg = _fg_source(cfg, subset, cfg.span.fg_source, device)
    size = (cfg.span.size, cfg.span.size)
    mask_size = (cfg.span.mask_size, cfg.span.mask_size) if cfg.span.mask_size else None
    train_set = MaskDataset(subset, fg_source=fg, size=size, mask_size=mask_size, flip=cfg.span.flip)
    loader, per_epoch = _small_batch_loader(cfg, train_set)
    model = SPAN(backbone=cfg.model.backbone, weights=cfg.model.weights,
                 out_size=mask_size)
    s = cfg.span
    loss_kw = dict(lambda_recon=s.lambda_recon, lambda_area=s.lambda_area, lambda_div=s.lambda_div,
                   use_recon=s.use_recon, use_area=s.use_area, use_div=s.use_div, area_mode=s.area_mode,
                   a=s.a, margins=(0.0, s.margin, s.margin))

    def step(m, batch):
        masks = m(batch["img"])
        total, terms = span_step1_loss(masks, batch["fg"], batch["view_vec"], **loss_kw)
        return total, {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in terms.items()}

    meta = {"task": "span", "model_name": "span-masks", "span_config": dict(model.config),
            "per_view": per_view, "subset_size": len(subset), "view_counts": counts.tolist(),
            "fg_source": fg if isinstance(fg, str) else "foreground-net", "loss": loss_kw}
    trainer = _make_trainer(cfg, model, step, loader, per_epoch, meta, progress, desc="train SPAN")
    trainer.fit(resume=resume)
    return _finish(cfg, trainer, meta, t0, arch_config=dict(model.config))


def train_foreground(cfg: Any = None, *, records: Optional[Sequence] = None, dataset: Any = None,
                     resume: bool = False, progress: Optional[bool] = None, **dotted) -> RunResult:
    """The foreground network (ResNet-34 encoder + light decoder) trained with BCE on GrabCut masks
    (``foreground.source``: ``auto`` = ``grabcut``; ``gt`` uses SynthVeRi's true masks, for checks)."""
    t0 = time.perf_counter()
    if cfg is None and "model.name" not in dotted:
        dotted["model.name"] = "foreground"
    cfg = _start(cfg, **dotted)
    if cfg.model.name != "foreground":
        raise ConfigError(f"train_foreground needs model.name 'foreground', got {cfg.model.name!r}")
    from reidlib.data.masks import MaskDataset
    from reidlib.models.foreground import ForegroundNet, foreground_loss

    if records is None:
        records = _dataset_from(cfg, dataset).train
    # MaskDataset wants a view class; the foreground task does not use it
    recs = [r if r.view is not None else dataclasses.replace(r, view=0) for r in records]
    source = "grabcut" if cfg.foreground.source == "auto" else cfg.foreground.source
    device = resolve_device(cfg.train.device)
    fg = _fg_source(cfg, recs, source, device)
    size = (cfg.foreground.size, cfg.foreground.size)
    train_set = MaskDataset(recs, fg_source=fg, size=size, flip=True)
    loader, per_epoch = _small_batch_loader(cfg, train_set)
    model = ForegroundNet(backbone=cfg.model.backbone, weights=cfg.model.weights)

    def step(m, batch):
        logits = m(batch["img"], size=tuple(batch["fg"].shape[-2:]))
        loss = foreground_loss(logits, batch["fg"])
        with torch.no_grad():
            pred = logits > 0
            tgt = batch["fg"] > 0.5
            iou = (pred & tgt).sum() / (pred | tgt).sum().clamp_min(1)
        return loss, {"iou": iou}

    meta = {"task": "foreground", "model_name": "foreground", "fg_config": dict(model.config),
            "fg_source": fg if isinstance(fg, str) else "callable", "train_images": len(recs)}
    trainer = _make_trainer(cfg, model, step, loader, per_epoch, meta, progress, desc="train foreground")
    trainer.fit(resume=resume)
    return _finish(cfg, trainer, meta, t0, arch_config=dict(model.config))


def run_training(cfg: Any = None, *, resume: bool = False, progress: Optional[bool] = None, **dotted) -> RunResult:
    """Dispatch on ``cfg.model.name``: re-ID models -> :func:`train_reid`, ``span-masks`` ->
    :func:`train_span`, ``foreground`` -> :func:`train_foreground`."""
    cfg = as_config(cfg, **dotted)
    if cfg.model.name == "span-masks":
        return train_span(cfg, resume=resume, progress=progress)
    if cfg.model.name == "foreground":
        return train_foreground(cfg, resume=resume, progress=progress)
    return train_reid(cfg, resume=resume, progress=progress)
