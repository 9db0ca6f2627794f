"""Evaluation of re-ID models: features of the query and gallery images, ranked by the model's
distance under the dataset's protocol.

* :func:`extract_features`: the ranked vectors and ``area_ratios`` (the inputs of CPDM, SPAN eqs.
  4–5 / MUSP eqs. 9–10) of a list of records, in eval mode without gradients. Which vectors is
  ``eval.features`` (or ``evaluate_reid(features=...)``; :func:`reidlib.models.output.ranked_features`):
  ``"post_bn"`` (``bn_feats`` as they are: the default of every model but SPAN's
  ``cat_norm="block"``), ``"post_bn_l2"`` (Luo et al.'s code), ``"pre_bn_l2"`` (MUSP's code), each
  of the P vectors normalised on its own; ``""`` = the model's own ``model.eval_features``.
* :func:`evaluate_reid`: R1 / R5 / R10 / mAP / mINP (percent) with per-query results kept
  (``rank_result``: AP, INP and first-hit rank of every query). The protocol follows the dataset
  (:data:`reidlib.data.registry.DATASETS`): market style (same id *and* same camera is junk) for
  VeRi-776 and VERI-Wild; for VehicleID the seeded 10-trial protocol, each trial's gallery one
  image per identity, every image's features extracted once, metrics averaged with their spread.

Under ``torchrun`` (an initialised process group, :mod:`reidlib.engine.distributed`) the
extraction is sharded: the images are cut into the batches a single process would form
(``eval.batch_size``, in the same order) and batch ``i`` is computed by rank ``i % world_size``;
the features are gathered to rank 0 in the original order, which ranks them with the same
evaluator (:func:`reidlib.metrics.rank.evaluate_features`) and sends the metrics to every rank.
Since every batch is the single-process batch, the features (and so the metrics) are identical
to single-process evaluation on the same device type.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from reidlib.config import Config, as_config
from reidlib.engine import distributed as ddp
from reidlib.engine.trainer import resolve_amp
from reidlib.errors import ConfigError
from reidlib.utils.device import resolve_device

__all__ = ["extract_features", "evaluate_reid", "METRIC_KEYS"]

#: the headline metrics of every evaluation, in percent
METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")


@torch.no_grad()  # not inference_mode: the distance module caches by tensor version, which inference tensors lack
def extract_features(model: torch.nn.Module, records: Sequence, height: int, width: int, *, batch_size: int = 128,
                     num_workers: int = 0, device: Any = "auto", amp: Any = "auto", progress: bool = False,
                     desc: str = "features", cache: Optional[dict] = None,
                     distributed: Optional[bool] = None, features: Optional[str] = None) -> dict:
    """The ranked vectors and ``area_ratios`` of ``records`` (test transform, eval mode, no grad;
    bf16 autocast and channels-last where the device computes bf16 natively, ``amp``: see
    :func:`reidlib.engine.trainer.resolve_amp`; features returned in float32).

    ``features``: which vectors (``eval.features``): ``"post_bn"``, ``"post_bn_l2"``,
    ``"pre_bn_l2"``, or ``None`` / ``""`` for the model's own ``model.eval_features`` (``"post_bn"``
    unless it says otherwise); see :func:`reidlib.models.output.resolve_features` and
    :func:`reidlib.models.output.ranked_features` (L2 normalisation per vector, in float32).

    Returns ``{"feats": Tensor[N, P, d] float32 (CPU), "area_ratios": Tensor[N, P] | None,
    "features": the name of the vectors, "pids", "camids", "views": int64 numpy arrays (raw ids;
    view -1 = unknown), "paths": list}``.
    ``cache``: a dict ``path -> (feat [P, d], ar [P] | None)`` read and filled, so that repeated
    evaluations over the same images (VehicleID's 10 trials) extract each image once. It holds the
    features of one model and one ``features`` choice: never share it across either.

    ``distributed`` (default: whenever a process group with more than one rank is initialised):
    every rank computes its share of the batches (see the module docstring; a collective: every
    rank must call it with the same records) and rank 0 gets all features; on the other ranks
    ``feats`` and ``area_ratios`` are ``None`` (and ``cache`` holds ``None`` for the paths done).
    """
    from tqdm.auto import tqdm

    from reidlib.data.dataset import ImageDataset, build_transforms
    from reidlib.models.output import ranked_features, resolve_features

    features = resolve_features(model, features)
    records = list(records)
    cache = {} if cache is None else cache
    todo = [r for r in dict.fromkeys(r.path for r in records) if r not in cache]
    shard = ddp.is_distributed() if distributed is None else (bool(distributed) and ddp.is_distributed())
    if todo:
        device = resolve_device(device) if not isinstance(device, torch.device) else device
        if shard:
            device = ddp.rank_device(device)
        was_training = model.training
        amp_dtype = resolve_amp(amp, device)
        model.to(device).eval()
        if device.type == "cuda" or amp_dtype is not None:
            model.to(memory_format=torch.channels_last)
        by_path = {r.path: r for r in records}
        mine = todo
        if shard:  # the single-process batches, batch i on rank i % world_size
            world, me = ddp.world_size(), ddp.rank()
            mine = [p for b in range(me, -(-len(todo) // batch_size), world)
                    for p in todo[b * batch_size:(b + 1) * batch_size]]
        ds = ImageDataset([by_path[p] for p in mine], build_transforms(height, width, train=False))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                             num_workers=min(num_workers, os.cpu_count() or 1),
                                             pin_memory=device.type == "cuda")
        done = 0
        feats, ars = [], []
        try:
            for batch in tqdm(loader, desc=desc, disable=not progress or (shard and not ddp.is_main()), leave=False):
                img = batch["img"].to(device, non_blocking=True)
                if device.type == "cuda" or amp_dtype is not None:
                    img = img.contiguous(memory_format=torch.channels_last)
                if amp_dtype is not None:
                    with torch.autocast(device_type=device.type, dtype=amp_dtype):
                        out = model(img)
                else:
                    out = model(img)
                f = ranked_features(out, features).cpu()
                ar = out.get("area_ratios")
                ar = ar.float().cpu() if ar is not None else None
                if shard:
                    feats.append(f)
                    ars.append(ar)
                    continue
                for i in range(f.shape[0]):
                    cache[todo[done + i]] = (f[i], None if ar is None else ar[i])
                done += f.shape[0]
        finally:
            model.train(was_training)
        if shard:
            _gather_features(todo, batch_size, feats, ars, cache)
    rows = [cache[r.path] for r in records]
    meta = {"pids": np.asarray([r.pid for r in records], np.int64),
            "camids": np.asarray([r.camid for r in records], np.int64),
            "views": np.asarray([-1 if r.view is None else r.view for r in records], np.int64),
            "paths": [r.path for r in records]}
    if any(row is None for row in rows):  # a rank other than 0 of a sharded extraction
        return {"feats": None, "area_ratios": None, "features": features, **meta}
    has_ar = bool(rows) and all(row[1] is not None for row in rows)
    return {"feats": torch.stack([row[0] for row in rows]) if rows else torch.zeros(0, 1, 1),
            "area_ratios": torch.stack([row[1] for row in rows]) if has_ar else None,
            "features": features, **meta}


def _gather_features(todo: list, batch_size: int, feats: list, ars: list, cache: dict) -> None:
    """Gather the ranks' batches of a sharded extraction to rank 0 and put them in ``cache`` in the
    order of ``todo`` (batch ``i`` was computed by rank ``i % world_size``, as its ``i // world_size``-th
    batch; every batch but the last is full); the other ranks mark the paths done with ``None``."""
    f_all = ddp.gather_rows(torch.cat(feats) if feats else None)
    has_ar = bool(ars) and all(a is not None for a in ars)
    a_all = ddp.gather_rows(torch.cat(ars) if has_ar else None)
    if not ddp.is_main():
        for p in todo:
            cache[p] = None
        return
    world = ddp.world_size()
    for b in range(-(-len(todo) // batch_size)):
        paths = todo[b * batch_size:(b + 1) * batch_size]
        src, start = b % world, (b // world) * batch_size
        f = f_all[src][start:start + len(paths)]
        a = a_all[src] if a_all is not None else None
        a = a[start:start + len(paths)] if a is not None and a.shape[0] else None
        for i, p in enumerate(paths):
            cache[p] = (f[i], None if a is None else a[i])


def evaluate_reid(model_or_checkpoint: Any, dataset: Any = None, cfg: Any = None, *, distance: Optional[str] = None,
                  return_features: bool = False, return_distmat: bool = False, device: Optional[str] = None,
                  batch_size: Optional[int] = None, progress: bool = False, feature_cache: Optional[dict] = None,
                  trials: Optional[int] = None, distributed: Optional[bool] = None,
                  features: Optional[str] = None, **distance_kwargs) -> dict:
    """Rank the gallery for every query; returns ``{"R1", "R5", "R10", "mAP", "mINP"}`` in percent
    (AP = mean precision at each true match, ``ap_definition``), the counts, the distance used,
    timings and ``rank_result`` (:class:`reidlib.metrics.RankResult`: per-query AP / INP /
    first-match rank); with ``return_features`` also ``"query"`` / ``"gallery"`` (dicts of
    :func:`extract_features`: features, area ratios, pids, camids, views, paths); with
    ``return_distmat`` also ``"distmat"`` (float32 ``[Nq, Ng]``, the matrix that was ranked).

    ``model_or_checkpoint``: a model, or a ``model.pt`` / ``last.pt`` / run folder (its run config
    then provides the defaults: image size, dataset kind; ``cfg`` given as a dict overrides them).
    ``dataset``: a dataset object or a root folder (default ``cfg.data.root``). ``distance``:
    override of the model's metric (``"euclidean"`` for SPAN "w/ Cat", ``"euclidean:global"`` /
    ``"euclidean:parts"`` for Table 2's global-only / parts-only rows, ``"cpdm_musp_code"``, ...);
    ``distance_kwargs`` go to :func:`reidlib.metrics.distance.build_distance`. ``features``:
    override of ``cfg.eval.features`` (the vectors ranked, see :func:`extract_features`; ``None``:
    the config's, whose ``""`` is the model's own); the name used is returned as ``"features"``.
    ``feature_cache``: see :func:`extract_features` (one model, one ``features`` choice).

    Datasets whose protocol has several trials (VehicleID: 10 seeded random gallery draws, seeded
    by the dataset object's own ``seed``, :attr:`reidlib.study.Study.trial_seed`): ``trials`` of them (default: the protocol's) are all evaluated, each
    image's features extracted once; the metrics are their means, with ``"std"`` (sample standard
    deviation over trials), ``"per_trial"`` and ``"rank_results"`` (one per trial) beside them.

    ``distributed`` (default: under an initialised multi-rank process group): features extracted
    by all ranks, ranked on rank 0 (see the module docstring; every rank must call it); every rank
    returns the metrics, ``query`` / ``gallery`` / ``distmat`` only rank 0.
    """
    from reidlib.data.registry import spec_of
    from reidlib.models.output import resolve_features

    model, cfg = _eval_setup(model_or_checkpoint, cfg)
    dev = resolve_device(device or cfg.train.device)
    shard = ddp.is_distributed() if distributed is None else (bool(distributed) and ddp.is_distributed())
    if shard:
        dev = ddp.rank_device(dev)
    cache = {} if feature_cache is None else feature_cache
    feats_name = resolve_features(model, features if features is not None else getattr(cfg.eval, "features", ""))
    kw = dict(distance=distance, device=dev, batch_size=batch_size, progress=progress, cache=cache,
              distance_kwargs=distance_kwargs, shard=shard, features=feats_name)
    ds = _dataset(cfg, dataset)
    n_trials = int(trials if trials is not None else spec_of(ds).trials)
    if n_trials < 1:
        raise ConfigError(f"trials must be >= 1, got {trials!r}")
    if n_trials == 1 or not hasattr(ds, "with_trial"):
        return _evaluate_split(model, ds, cfg, return_features=return_features, return_distmat=return_distmat, **kw)
    per_trial = [_evaluate_split(model, ds if t == ds.trial else ds.with_trial(t), cfg, return_features=False,
                                 return_distmat=False, **kw) for t in range(n_trials)]
    out: dict[str, Any] = {}
    for k in METRIC_KEYS:
        vals = np.asarray([r[k] for r in per_trial], dtype=np.float64)
        out[k] = float(vals.mean())
    out["std"] = {k: float(np.std([r[k] for r in per_trial], ddof=1)) for k in METRIC_KEYS}
    first = per_trial[0]
    for k in ("distance", "features", "ap_definition", "num_gallery"):
        out[k] = first[k]
    out["num_query"] = float(np.mean([r["num_query"] for r in per_trial]))
    out["trials"] = n_trials
    out["per_trial"] = [{k: v for k, v in r.items() if k != "rank_result"} for r in per_trial]
    out["rank_results"] = [r["rank_result"] for r in per_trial]
    out["rank_result"] = per_trial[0]["rank_result"]
    return out


def _dataset(cfg: Config, dataset: Any):
    from reidlib.engine.training import dataset_of

    return dataset_of(cfg, dataset)


def _eval_setup(model_or_checkpoint: Any, cfg: Any) -> tuple[torch.nn.Module, Config]:
    from reidlib.engine.artifacts import load_model

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


def _evaluate_split(model, ds, cfg: Config, *, distance, return_features, return_distmat, device, batch_size,
                    progress, cache, distance_kwargs, shard: bool = False, features: Optional[str] = None) -> dict:
    bs = int(batch_size or cfg.eval.batch_size)
    common = dict(batch_size=bs, num_workers=cfg.eval.num_workers, device=device, amp=cfg.eval.amp,
                  progress=progress, cache=cache, distributed=shard, features=features)
    t0 = time.perf_counter()
    q = extract_features(model, list(ds.query), cfg.data.height, cfg.data.width, desc="query", **common)
    g = extract_features(model, list(ds.gallery), cfg.data.height, cfg.data.width, desc="gallery", **common)
    t_feat = time.perf_counter() - t0
    if shard and not ddp.is_main():  # rank 0 ranks; the others receive its metrics
        return ddp.broadcast_object(None)
    out = _rank_split(model, q, g, cfg, distance=distance, return_features=return_features,
                      return_distmat=return_distmat, device=device, distance_kwargs=distance_kwargs, t0=t0,
                      t_feat=t_feat)
    if shard:
        rr = out["rank_result"]
        sent = {k: v for k, v in out.items() if k not in ("query", "gallery", "distmat", "rank_result")}
        sent["rank_result"] = dataclasses.replace(rr, distmat=None) if rr.distmat is not None else rr
        ddp.broadcast_object(sent)
    return out


def _rank_split(model, q: dict, g: dict, cfg: Config, *, distance, return_features, return_distmat, device,
                distance_kwargs, t0: float, t_feat: float) -> dict:
    """Rank ``g`` for every query of ``q`` (features of :func:`extract_features`)."""
    from reidlib.metrics.distance import build_distance
    from reidlib.metrics.rank import evaluate_features

    dist_name = distance or cfg.eval.distance or getattr(model, "distance", "euclidean")
    dist = build_distance(dist_name, **distance_kwargs)
    qf = (q["feats"], q["area_ratios"]) if q["area_ratios"] is not None else q["feats"]
    gf = (g["feats"], g["area_ratios"]) if g["area_ratios"] is not None else g["feats"]
    res = evaluate_features(qf, gf, q["pids"], g["pids"], q["camids"], g["camids"], distance=dist,
                            chunk_size=cfg.eval.chunk_size or None, device=device, return_distmat=return_distmat)
    out = {"R1": res.rank(1) * 100.0, "R5": res.rank(5) * 100.0, "R10": res.rank(10) * 100.0,
           "mAP": float(res.mAP) * 100.0, "mINP": float(res.mINP) * 100.0, "distance": dist_name,
           "features": q["features"],
           "num_query": len(q["pids"]), "num_gallery": len(g["pids"]),
           "num_valid_queries": int(res.num_valid_queries), "num_skipped_queries": int(res.num_skipped_queries),
           "ap_definition": res.ap, "feature_seconds": round(t_feat, 3),
           "seconds": round(time.perf_counter() - t0, 3), "rank_result": res}
    if return_distmat:
        out["distmat"] = res.distmat
    if return_features:
        out["query"], out["gallery"] = q, g
    return out
