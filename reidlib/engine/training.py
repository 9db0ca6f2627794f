"""Training tasks: a run configuration in, a trained model and its files out.

* :func:`train_reid`: a re-ID model (``baseline`` | ``span`` | ``musp``) with P x K batches, the
  ID + triplet criterion and the warm-up / multi-step schedule. SPAN's step 2 (Sec. 3.4, eq. 7) is
  ``train_reid`` with model ``span``, a trained SPAN (frozen) and the triplet loss on CPDM.
* :func:`train_span`: SPAN step 1 (Sec. 3.1, 3.4; eq. 6) on a view-balanced subset.
* :func:`train_foreground`: the foreground network (the source of SPAN's ``V``,
  :mod:`reidlib.engine.foreground`).
* :func:`run_training`: dispatch on ``cfg.model.name``.

Every task takes a :class:`reidlib.config.Config` (or a dict / YAML path, see
:func:`reidlib.config.as_config`) and writes to ``cfg.train.out_dir`` (default ``runs/<model>``):
``last.pt`` (the resumable checkpoint), ``model.pt`` (weights + what :func:`reidlib.engine.artifacts.rebuild`
needs), ``log.jsonl`` and ``config.yaml``. ``resume=True`` continues an interrupted run from ``last.pt``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from reidlib.config import Config, as_config, to_yaml
from reidlib.engine.artifacts import model_meta, save_model_file
from reidlib.engine.optim import WarmupMultiStepLR, build_optimizer, epochs_to_iters, parameter_groups
from reidlib.engine.trainer import Trainer, criterion_step
from reidlib.errors import ConfigError
from reidlib.utils.device import resolve_device, seed_everything
from reidlib.utils.io import atomic_write_text

__all__ = ["RunResult", "train_attributes", "AttributeStep", "attribute_loader", "train_reid", "prepare_reid", "train_span", "train_foreground", "run_training", "dataset_of", "start_run", "out_dir",
           "make_trainer", "finish_run", "batch_loader", "schedule"]


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
# shared steps of every task
# ------------------------------------------------------------------------------------------------

def dataset_of(cfg: Config, dataset: Any = None):
    """``dataset`` if it is a loaded dataset object, else the dataset ``cfg.data`` names (from
    ``dataset`` as a folder, or ``cfg.data.root``), through :func:`reidlib.data.registry.load_dataset`."""
    from reidlib.data.registry import load_dataset

    if dataset is None or isinstance(dataset, (str, os.PathLike)):
        return load_dataset(cfg.data.dataset, dataset if dataset is not None else cfg.data.root,
                            test_size=cfg.data.test_size or None)
    return dataset


def out_dir(cfg: Config) -> Path:
    return Path(cfg.train.out_dir or os.path.join("runs", cfg.model.name))


def schedule(cfg: Config, iters_per_epoch: int) -> tuple[int, list[int], int]:
    """``(max_iters, milestones, warmup_iters)`` in iterations (``optim.unit`` epochs converted)."""
    o = cfg.optim
    if o.unit == "epoch":
        conv = lambda x: epochs_to_iters(float(x), iters_per_epoch)  # noqa: E731
    else:
        conv = lambda x: int(round(float(x)))  # noqa: E731
    return conv(o.max_iters), [conv(m) for m in o.milestones], conv(o.warmup_iters)


def start_run(cfg: Any, resume: bool = False, **dotted) -> Config:
    """Resolve the configuration, seed everything and write ``config.yaml`` into the run folder.
    With ``resume`` and a checkpoint in the folder, first check that the configuration is the one
    the checkpoint was written with (:func:`reidlib.engine.trainer.check_resumable`): a refused
    resume records nothing."""
    from reidlib.engine.checkpoint import latest_checkpoint, load_latest
    from reidlib.engine.trainer import check_resumable

    cfg = as_config(cfg, **dotted)
    if resume and out_dir(cfg).is_dir() and latest_checkpoint(out_dir(cfg)) is not None:
        check_resumable(load_latest(out_dir(cfg)), cfg.to_dict())
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    out = out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    return cfg


def batch_loader(cfg: Config, dataset) -> tuple[Any, int]:
    """Shuffled fixed-size batches (``data.batch_size``) for the non-re-ID tasks: ``(loader, batches per epoch)``."""
    from reidlib.data.loaders import build_loader
    from reidlib.data.sampler import RandomBatchSampler

    sampler = RandomBatchSampler(len(dataset), cfg.data.batch_size, drop_last=True, seed=cfg.train.seed)
    return build_loader(dataset, sampler, num_workers=cfg.data.num_workers, seed=cfg.train.seed), len(sampler)


def make_trainer(cfg: Config, model, step_fn, loader, iters_per_epoch: int, meta: dict,
                 progress: Optional[bool], desc: str) -> Trainer:
    """The :class:`Trainer` of a task. Under ``torchrun`` (an initialised process group,
    :mod:`reidlib.engine.distributed`) it trains with DDP on this rank's device (``cuda:LOCAL_RANK``
    on GPUs), with ``train.sync_bn``; ``iters_per_epoch`` counts global batches, the same on any
    number of ranks."""
    from reidlib.engine.distributed import rank_device

    max_iters, milestones, warmup = schedule(cfg, iters_per_epoch)
    device = rank_device(resolve_device(cfg.train.device))
    model.to(device)
    o = cfg.optim
    params = parameter_groups(model, o.lr, o.lr_mult) if o.lr_mult else model
    optimizer = build_optimizer(o.name, params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)
    scheduler = WarmupMultiStepLR(optimizer, milestones, gamma=o.gamma, warmup_iters=warmup,
                                  warmup_factor=o.warmup_factor, warmup_method=o.warmup_method)
    meta = {**meta, "iters_per_epoch": iters_per_epoch, "milestones_iters": milestones, "warmup_iters": warmup}
    return Trainer(model, step_fn, optimizer=optimizer, scheduler=scheduler, data_loader=loader,
                   max_iters=max_iters, out_dir=out_dir(cfg), checkpoint_every=cfg.train.checkpoint_every,
                   keep_last=cfg.train.keep_last, log_every=cfg.train.log_every, device=device,
                   amp=cfg.train.amp, channels_last=cfg.train.channels_last, grad_clip=o.grad_clip,
                   seed=cfg.train.seed, config=cfg.to_dict(), meta=meta,
                   progress=cfg.train.progress if progress is None else progress, desc=desc,
                   sync_bn=cfg.train.sync_bn)


def finish_run(cfg: Config, trainer: Trainer, meta: dict, t0: float) -> RunResult:
    """Write ``model.pt`` and return the :class:`RunResult`. Under DDP rank 0 writes it, every
    rank gets the result (the model with plain BatchNorm layers again, on the rank's device)."""
    from reidlib.engine import distributed as ddp

    out = out_dir(cfg)
    model = ddp.revert_sync_batchnorm(trainer.model).eval()
    meta = {**trainer.meta, **meta}
    if trainer.is_main:
        ckpt = save_model_file(out, model, meta, cfg.to_dict(), trainer.iteration)
    else:
        ckpt = out / "model.pt"
    if trainer.distributed:
        ddp.barrier()
    return RunResult(out_dir=out, checkpoint=ckpt, last_checkpoint=out / "last.pt", log_path=out / "log.jsonl",
                     history=list(trainer.history), model=model, config=cfg, meta=meta,
                     iterations=trainer.iteration, seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# re-ID
# ------------------------------------------------------------------------------------------------

def reid_loader(cfg: Config, records: Sequence, pid_map: dict):
    """The P x K training loader of ``records``: ``(loader, batch sampler, description)``.

    ``data.loader``: ``cache`` decodes the split once into a uint8 tensor cache
    (:class:`reidlib.data.cache.ImageCache`) and augments whole batches in the main process
    (:class:`reidlib.data.batch_augment.CachedBatchLoader`); ``files`` decodes image by image in
    ``data.num_workers`` DataLoader workers; ``auto`` takes the cache when the split fits
    ``data.cache_max_gb``. Both are exact under resume; the description says which was used.
    Under ``torchrun`` the :class:`Trainer` gives every rank its slice of each P x K batch
    (``P / world_size`` identities x K, ``PKSampler.set_batch_split``): ``data.p`` is the global P."""
    from reidlib.data import cache as image_cache
    from reidlib.data.batch_augment import BatchAugment, CachedBatchLoader
    from reidlib.data.dataset import ImageDataset, build_transforms
    from reidlib.data.loaders import build_loader
    from reidlib.data.sampler import PKSampler
    from reidlib.engine.distributed import is_main

    h, w = cfg.data.height, cfg.data.width
    pids = [pid_map[r.pid] for r in records]
    sampler = PKSampler(pids, p=cfg.data.p, k=cfg.data.k, seed=cfg.train.seed)
    use_cache = cfg.data.loader == "cache" or (
        cfg.data.loader == "auto" and image_cache.fits(records, h, w, cfg.data.cache_max_gb))
    if use_cache:
        # under torchrun every rank opens it; the cache's lock lets one of them decode
        cache = image_cache.ImageCache(records, h, w, cache_dir=cfg.data.cache_dir or None,
                                       progress=cfg.train.progress and is_main())
        loader = CachedBatchLoader(cache, pids, sampler, BatchAugment(train=True, **cfg.data.transforms),
                                   seed=cfg.train.seed, camids=[r.camid for r in records],
                                   views=[-1 if r.view is None else r.view for r in records])
        return loader, sampler, (f"cache: {len(records)} images decoded once at {h}x{w} "
                                 f"({cache.megabytes:.0f} MB, {cache.path}), batched augmentation")
    train_set = ImageDataset(records, build_transforms(h, w, train=True, **cfg.data.transforms), pid_map)
    loader = build_loader(train_set, sampler, num_workers=cfg.data.num_workers, seed=cfg.train.seed)
    return loader, sampler, f"files: decoded per image, {loader.num_workers} loader worker(s)"


def train_reid(cfg: Any = None, *, span: Optional[torch.nn.Module] = None, dataset: Any = None,
               resume: bool = False, progress: Optional[bool] = None, **dotted) -> RunResult:
    """Train ``cfg.model.name`` (baseline | span | musp) on ``cfg.data``; see the module docstring.

    ``span``: the trained SPAN for model ``span`` (else loaded from ``cfg.model.span_checkpoint``).
    ``dataset``: an already loaded dataset object (else ``cfg.data.root`` / ``cfg.data.dataset``).
    ``**dotted``: config overrides such as ``**{"optim.lr": 1e-4}``.
    """
    t0 = time.perf_counter()
    cfg = start_run(cfg, resume, **dotted)
    trainer, meta = prepare_reid(cfg, span=span, dataset=dataset, progress=progress)
    trainer.fit(resume=resume)
    return finish_run(cfg, trainer, meta, t0)


def prepare_reid(cfg: Config, *, span: Optional[torch.nn.Module] = None, dataset: Any = None,
                 progress: Optional[bool] = None) -> tuple[Trainer, dict]:
    """Everything :func:`train_reid` trains with, ready: ``(trainer, rebuild metadata)``. The
    trainer's loader, model, criterion and optimiser are the real ones (``benchmarks/bench_train.py``
    times them)."""
    from reidlib.data.dataset import relabel
    from reidlib.engine.artifacts import load_span
    from reidlib.losses.reid import ReIDCriterion
    from reidlib.models.registry import MODELS, REID_MODELS, build_model, constructor_kwargs

    name = cfg.model.name
    if name not in REID_MODELS:
        raise ConfigError(f"train_reid trains {', '.join(REID_MODELS)}; got model {name!r} "
                          "(use train_span / train_foreground)")
    needs_span = MODELS[name].needs_span
    if needs_span and span is None:
        if not cfg.model.span_checkpoint:
            raise ConfigError(f"model {name!r} needs a trained SPAN: train one with `reidlib train --model span-masks` "
                              "and set model.span_checkpoint=<its out dir>/model.pt (CLI: --span)")
        span = load_span(cfg.model.span_checkpoint)
    ds = dataset_of(cfg, dataset)
    train_records = list(ds.train)
    if cfg.data.val_ids:                  # held-out identities (reidlib.data.validation), never trained on
        from reidlib.data.validation import validation_split

        train_records = validation_split(train_records, cfg.data.val_ids).train
    pid_map = relabel(train_records)
    num_classes = len(pid_map)
    loader, sampler, data_path = reid_loader(cfg, train_records, pid_map)

    kwargs = constructor_kwargs(name, cfg.model.backbone, cfg.model.weights, cfg.model.last_stride,
                                cfg.model.kwargs)
    model = build_model(name, num_classes, span=span, **kwargs) if needs_span \
        else build_model(name, num_classes, **kwargs)
    criterion = ReIDCriterion(num_classes, label_smoothing=cfg.loss.label_smoothing, margin=cfg.loss.margin,
                              id_weight=cfg.loss.id_weight, triplet_weight=cfg.loss.triplet_weight,
                              triplet_on=cfg.loss.triplet_on, id_reduction=cfg.loss.id_reduction)
    meta = model_meta(name, kwargs, num_classes=num_classes, distance=getattr(model, "distance", "euclidean"),
                      num_parts=getattr(model, "num_parts", 1), triplet_on=cfg.loss.triplet_on,
                      image_size=[cfg.data.height, cfg.data.width],
                      dataset={"kind": cfg.data.dataset, "root": str(cfg.data.root), "train_images": len(train_records),
                               "validation_ids": cfg.data.val_ids},
                      data_path=data_path,
                      span_kwargs=dict(span.config) if span is not None else None)
    trainer = make_trainer(cfg, model, criterion_step(criterion), loader, len(sampler), meta, progress,
                           desc=f"train {name}")
    return trainer, meta


# ------------------------------------------------------------------------------------------------
# SPAN step 1
# ------------------------------------------------------------------------------------------------

def span_loss_options(cfg: Config) -> dict:
    """Keyword arguments of :func:`reidlib.losses.span.span_step1_loss` from ``cfg.span`` (eq. 6)."""
    s = cfg.span
    return dict(lambda_recon=s.lambda_recon, lambda_area=s.lambda_area, lambda_div=s.lambda_div,
                use_recon=s.use_recon, use_area=s.use_area, use_div=s.use_div, area_mode=s.area_mode,
                a=s.a, margins=(0.0, s.margin, s.margin), area_reduction=s.area_reduction)


class SpanStep(torch.nn.Module):
    """SPAN step 1's training step: masks of the batch's images, eq. (6) against its foreground
    targets and view labels (``batch["img"]``, ``batch["fg"]``, ``batch["view_vec"]``); with
    ``supervision="true_parts"`` instead the true part masks (``batch["target"]``, ``batch["ignore"]``:
    :func:`reidlib.losses.span.true_part_mask_loss`, our ground-truth row)."""

    def __init__(self, supervision: str = "weak", **loss_options):
        super().__init__()
        self.supervision = supervision
        self.loss_options = loss_options

    def forward(self, model, batch):
        from reidlib.engine.trainer import float32_losses
        from reidlib.losses.span import span_step1_loss, true_part_mask_loss

        with float32_losses(model(batch["img"])) as masks:
            if self.supervision == "true_parts":
                total = true_part_mask_loss(masks, batch["target"], batch["ignore"])
                return total, {"true_parts": total.detach()}
            total, terms = span_step1_loss(masks, batch["fg"], batch["view_vec"], **self.loss_options)
        return total, {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in terms.items()}


def _start_task(cfg: Any, resume: bool, dotted: dict, model_name: str, task: str) -> Config:
    """:func:`start_run` for a task that trains one kind of model: ``model.name`` defaults to it and
    any other name is refused."""
    if cfg is None and "model.name" not in dotted:
        dotted["model.name"] = model_name
    cfg = start_run(cfg, resume, **dotted)
    if cfg.model.name != model_name:
        raise ConfigError(f"{task} needs model.name {model_name!r}, got {cfg.model.name!r}")
    return cfg


def train_span(cfg: Any = None, *, records: Optional[Sequence] = None, dataset: Any = None,
               train_set: Optional[torch.utils.data.Dataset] = None, resume: bool = False,
               progress: Optional[bool] = None, **dotted) -> RunResult:
    """SPAN step 1 (Sec. 3.1/3.4, eq. 6): the mask network on a view-balanced subset of the training
    images (``span.per_view`` per view; 0 = as many as the rarest view has), against foreground
    targets from ``span.fg_source`` (:func:`reidlib.engine.foreground.resolve_foreground`). Loss
    terms are switchable (``span.use_recon/use_area/use_div``) and weighted by ``span.lambda_*``.

    ``train_set``: a ready dataset of ``{"img", "fg", "view_vec"}`` items instead (e.g.
    :class:`reidlib.data.multidigit.MultiDigitDataset`, SPAN's Fig. 4). ``RunResult.model`` is the
    trained SPAN (eval mode)."""
    from reidlib.data.masks import MaskDataset, view_balanced_subset
    from reidlib.engine.foreground import describe_foreground, resolve_foreground
    from reidlib.models.registry import model_options
    from reidlib.models.span import SPAN, native_mask_stride

    t0 = time.perf_counter()
    cfg = _start_task(cfg, resume, dotted, "span-masks", "train_span")
    mask_size = (cfg.span.mask_size, cfg.span.mask_size) if cfg.span.mask_size else None
    kwargs = {"backbone": cfg.model.backbone, "weights": cfg.model.weights, **cfg.model.kwargs}
    if mask_size is not None:
        kwargs["out_size"] = mask_size
    extra: dict = {}
    if train_set is None:
        if records is None:
            records = dataset_of(cfg, dataset).train
        labelled = [r for r in records if r.view is not None]
        if not labelled:
            raise ConfigError("SPAN step 1 needs images with view labels (VeRi-776 keypoint files / SynthVeRi)")
        counts = np.bincount([int(r.view) for r in labelled], minlength=5)
        per_view = cfg.span.per_view or int(counts[counts > 0].min())
        subset = view_balanced_subset(labelled, per_view, seed=cfg.train.seed)
        device = resolve_device(cfg.train.device)
        fg = resolve_foreground(cfg.span.fg_source, subset, default_cache=out_dir(cfg).parent / "grabcut-cache",
                                size=cfg.span.size, device=device, workers=cfg.data.num_workers,
                                progress=cfg.train.progress)
        size = (cfg.span.size, cfg.span.size)
        if mask_size is None:  # targets at the masks' native size
            opts = {**{k: d for k, (_, d) in model_options("span-masks").items()}, **cfg.model.kwargs}
            native = native_mask_stride(opts["stride"], opts["decoder"])
            mask_size = (cfg.span.size // native, cfg.span.size // native)
        train_set = MaskDataset(subset, fg_source=fg, size=size, mask_size=mask_size, flip=cfg.span.flip,
                                side_aug=cfg.span.side_aug)
        extra = {"per_view": per_view, "subset_size": len(subset), "view_counts": counts.tolist(),
                 "fg_source": describe_foreground(fg)}
    loader, per_epoch = batch_loader(cfg, train_set)
    model = SPAN(**kwargs)
    loss_kw = span_loss_options(cfg)
    meta = model_meta("span-masks", kwargs, loss=loss_kw, supervision=cfg.span.supervision, **extra)
    trainer = make_trainer(cfg, model, SpanStep(cfg.span.supervision, **loss_kw), loader, per_epoch, meta, progress,
                           desc="train SPAN")
    trainer.fit(resume=resume)
    return finish_run(cfg, trainer, meta, t0)


def train_foreground(cfg: Any = None, *, records: Optional[Sequence] = None, dataset: Any = None,
                     resume: bool = False, progress: Optional[bool] = None, **dotted):
    """The foreground network (ResNet encoder + light decoder) trained with BCE on GrabCut masks
    (``foreground.source``: ``auto`` = ``grabcut``; ``gt`` uses SynthVeRi's true masks, for checks).
    Returns a :class:`RunResult`."""
    import dataclasses

    from reidlib.data.masks import MaskDataset
    from reidlib.engine.foreground import describe_foreground, resolve_foreground
    from reidlib.models.foreground import ForegroundNet, foreground_loss

    t0 = time.perf_counter()
    cfg = _start_task(cfg, resume, dotted, "foreground", "train_foreground")
    if records is None:
        records = dataset_of(cfg, dataset).train
    # MaskDataset wants a view class; the foreground task does not use it
    recs = [r if r.view is not None else dataclasses.replace(r, view=0) for r in records]
    spec = "grabcut" if cfg.foreground.source == "auto" else cfg.foreground.source
    device = resolve_device(cfg.train.device)
    fg = resolve_foreground(spec, recs, default_cache=out_dir(cfg).parent / "grabcut-cache",
                            size=cfg.foreground.size, device=device, workers=cfg.data.num_workers,
                            progress=cfg.train.progress)
    size = (cfg.foreground.size, cfg.foreground.size)
    train_set = MaskDataset(recs, fg_source=fg, size=size, flip=True)
    loader, per_epoch = batch_loader(cfg, train_set)
    kwargs = {"backbone": cfg.model.backbone, "weights": cfg.model.weights, **cfg.model.kwargs}
    model = ForegroundNet(**kwargs)

    def step(m, batch):
        from reidlib.engine.trainer import float32_losses

        with float32_losses(m(batch["img"], size=tuple(batch["fg"].shape[-2:]))) as logits:
            loss = foreground_loss(logits, batch["fg"])
        with torch.no_grad():
            pred = logits > 0
            tgt = batch["fg"] > 0.5
            iou = (pred & tgt).sum() / (pred | tgt).sum().clamp_min(1)
        return loss, {"iou": iou}

    meta = model_meta("foreground", kwargs, fg_source=describe_foreground(fg), train_images=len(recs))
    trainer = make_trainer(cfg, model, step, loader, per_epoch, meta, progress, desc="train foreground")
    trainer.fit(resume=resume)
    return finish_run(cfg, trainer, meta, t0)


# ------------------------------------------------------------------------------------------------
# the generic stand-in (attribute classification): reidlib.engine.attributes documents it
# ------------------------------------------------------------------------------------------------

ATTRIBUTES_MODEL = "attributes"


class AttributeStep(torch.nn.Module):
    """The training step: ``attribute_loss(model(batch["img"]), labels[batch["index"]])``.

    ``labels``: ``int64 [N, A]``, one row per training image (-1 = unknown), kept as a buffer so
    the :class:`Trainer` moves it to the training device with the step."""

    def __init__(self, labels: torch.Tensor, heads: Mapping[str, int]):
        super().__init__()
        self.register_buffer("labels", torch.as_tensor(labels, dtype=torch.long), persistent=False)
        self.heads = dict(heads)

    def forward(self, model, batch):
        from reidlib.engine.precision import float32_losses
        from reidlib.models.attributes import attribute_loss

        y = self.labels[batch["index"].to(self.labels.device)]          # [B, A]
        with float32_losses(model(batch["img"])) as logits:              # [B, sum K]
            return attribute_loss(logits, y, self.heads)


def attribute_loader(cfg: Config, records: Sequence) -> tuple[Any, int, str]:
    """Shuffled batches of ``data.batch_size`` images of ``records`` with their positions
    (``batch["index"]``): ``(loader, batches per epoch, description)``. ``data.loader`` as for
    re-ID: ``cache`` | ``files`` | ``auto`` (the cache when the images fit ``data.cache_max_gb``)."""
    from reidlib.data import cache as image_cache
    from reidlib.data.batch_augment import BatchAugment, CachedBatchLoader
    from reidlib.data.dataset import ImageDataset, build_transforms
    from reidlib.data.sampler import RandomBatchSampler
    from reidlib.engine.distributed import is_main

    h, w = cfg.data.height, cfg.data.width
    use_cache = cfg.data.loader == "cache" or (
        cfg.data.loader == "auto" and image_cache.fits(records, h, w, cfg.data.cache_max_gb))
    if use_cache:
        cache = image_cache.ImageCache(records, h, w, cache_dir=cfg.data.cache_dir or None,
                                       progress=cfg.train.progress and is_main())
        sampler = RandomBatchSampler(len(records), cfg.data.batch_size, drop_last=True, seed=cfg.train.seed)
        loader = CachedBatchLoader(cache, [r.pid for r in records], sampler,
                                   BatchAugment(train=True, **cfg.data.transforms), seed=cfg.train.seed,
                                   camids=[r.camid for r in records],
                                   views=[-1 if r.view is None else r.view for r in records])
        return loader, len(sampler), (f"cache: {len(records)} images decoded once at {h}x{w} "
                                      f"({cache.megabytes:.0f} MB, {cache.path}), batched augmentation")
    train_set = ImageDataset(records, build_transforms(h, w, train=True, **cfg.data.transforms))
    loader, per_epoch = batch_loader(cfg, train_set)
    return loader, per_epoch, f"files: decoded per image, {loader.num_workers} loader worker(s)"


def train_attributes(cfg: Any = None, *, records: Optional[Sequence] = None, dataset: Any = None,
                     labels: Any = None, resume: bool = False, progress: Optional[bool] = None,
                     **dotted) -> RunResult:
    """Train :class:`reidlib.models.attributes.AttributeNet` (model ``attributes``) to classify
    the attributes of ``records`` (see the module docstring). Returns a :class:`RunResult`
    (``model``: the trained network, eval mode; ``checkpoint``: ``model.pt``).

    ``records``: the training images (default: the training split of ``dataset`` / ``cfg.data``).
    ``labels``: ``int [N, A]`` class indices, one column per head of the model in its order (-1 =
    unknown); default :func:`reidlib.data.attributes.attribute_labels` from the ``identities.json``
    of the folder ``dataset`` (when it is a path) or ``cfg.data.root``.
    ``**dotted``: config overrides, e.g. ``**{"optim.max_iters": 6}``.
    """
    from reidlib.data.attributes import attribute_labels
    from reidlib.models.attributes import AttributeNet
    from reidlib.models.registry import constructor_kwargs

    t0 = time.perf_counter()
    if cfg is None and "model.name" not in dotted:
        dotted["model.name"] = ATTRIBUTES_MODEL
    cfg = start_run(cfg, resume, **dotted)
    if cfg.model.name != ATTRIBUTES_MODEL:
        raise ConfigError(f"train_attributes needs model.name {ATTRIBUTES_MODEL!r}, got {cfg.model.name!r}")
    kwargs = constructor_kwargs(ATTRIBUTES_MODEL, cfg.model.backbone, cfg.model.weights, cfg.model.last_stride,
                                cfg.model.kwargs)
    model = AttributeNet(**kwargs)
    if records is None:
        records = dataset_of(cfg, dataset).train
    records = list(records)
    if not records:
        raise ConfigError("records: no training images")
    if labels is None:
        root = dataset if isinstance(dataset, (str, os.PathLike)) else cfg.data.root
        labels = attribute_labels(records, root, names=list(model.heads))
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)          # [N, A]
    if tuple(labels.shape) != (len(records), len(model.heads)):
        raise ConfigError(f"labels: expected [N={len(records)}, A={len(model.heads)}] (one column per head "
                          f"{list(model.heads)}), got {tuple(labels.shape)}")
    too_big = [n for a, (n, k) in enumerate(model.heads.items()) if int(labels[:, a].max()) >= k]
    if too_big:
        raise ConfigError(f"labels: class indices beyond the heads' classes for {too_big} ({model.heads})")

    loader, per_epoch, data_path = attribute_loader(cfg, records)
    counts = {n: np.bincount(labels[:, a][labels[:, a] >= 0].numpy(), minlength=k).tolist()
              for a, (n, k) in enumerate(model.heads.items())}
    meta = model_meta(ATTRIBUTES_MODEL, kwargs, heads=dict(model.heads), label_counts=counts,
                      image_size=[cfg.data.height, cfg.data.width], train_images=len(records),
                      data_path=data_path)
    trainer = make_trainer(cfg, model, AttributeStep(labels, model.heads), loader, per_epoch, meta, progress,
                           desc="train attributes")
    trainer.fit(resume=resume)
    return finish_run(cfg, trainer, meta, t0)


def run_training(cfg: Any = None, *, resume: bool = False, progress: Optional[bool] = None, **dotted) -> RunResult:
    """Dispatch on the task of ``cfg.model.name`` (:data:`reidlib.models.registry.MODELS`)."""
    from reidlib.models.registry import MODELS

    cfg = as_config(cfg, **dotted)
    task = {"reid": train_reid, "span": train_span, "foreground": train_foreground,
            "attributes": train_attributes}[MODELS[cfg.model.name].task]
    return task(cfg, resume=resume, progress=progress)
