"""More than one process: ``torchrun`` / ``torch.distributed`` / ``DistributedDataParallel``.

reidlib trains with PyTorch's own data-parallel engine, not a loop of its own: every rank runs
the same :class:`reidlib.engine.trainer.Trainer` with the model wrapped in
``torch.nn.parallel.DistributedDataParallel`` (DDP; gradients averaged over the ranks by an
all-reduce, Li et al., "PyTorch Distributed", VLDB 2020). This module holds the pieces around it
(and re-exports those of :mod:`reidlib.engine.process_group` and :mod:`reidlib.engine.syncbn`):

* :func:`init_from_env`: the process group of a ``torchrun`` launch (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK`` in the environment), backend ``nccl`` on GPUs and ``gloo`` on the CPU; a rank's
  device is ``cuda:LOCAL_RANK`` (:func:`rank_device`); in :mod:`reidlib.engine.process_group`.
* the batch design (:func:`split_batches`): every global P x K batch (the batch a single
  process would train on) is cut into ``world_size`` contiguous slices of ``P / world_size``
  identities x K images (batches are id-major), one per rank. ``data.p`` is the *global* number
  of identities; it must be a multiple of the number of ranks. The global batch, the epoch length
  and every augmentation draw are the same with any number of ranks (each sample's augmentation is
  seeded by its slot in the global batch), so a run can be compared with, and resumed on, another
  number of ranks.
* the loss on the global batch (:func:`gather_outputs`): a re-ID step gathers the outputs of all
  ranks with a differentiable all-gather (:func:`gather_batch`, the computation of
  ``torch.distributed.nn.all_gather``: its backward sums the incoming gradients over the ranks,
  a reduce-scatter) and computes the ID and batch-hard triplet
  losses on the whole global batch, so hard examples are mined among all P x K images as in a
  single process (fast-reid's alternative, mining per rank, sees only ``P / world_size``
  identities per anchor and changes the loss with the number of ranks). Every rank then holds
  the same loss ``L``; the summed backward of the gather gives rank r ``world_size * dL/dx_r`` and
  DDP's average divides by ``world_size`` again, so the parameter gradient is exactly ``dL/dθ`` of
  the single-process loss (up to floating-point summation order).
* BatchNorm across ranks (:func:`convert_sync_batchnorm`, ``train.sync_bn``): statistics over the
  global batch, as the single-process BNNeck (Luo et al.) sees them. On CUDA this is
  ``torch.nn.SyncBatchNorm``; torch's version runs on GPUs only, so on the CPU (gloo) it is
  :class:`GlooSyncBatchNorm`, the same computation written with gloo's collectives
  (:mod:`reidlib.engine.syncbn`).
* small collectives the trainer and the evaluation need: :func:`any_rank` (every rank agrees on a
  non-finite loss), :func:`all_gather_objects`, :func:`broadcast_object`, :func:`gather_rows`.

Nothing here runs when no process group is initialised or the world has one rank: a
single-process run is unchanged.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist

# the process group and SyncBatchNorm live in their own modules; re-exported: this is the public face
from reidlib.engine.process_group import (comm_device, env_world, init_from_env, is_distributed, is_main, rank,
                                          rank_device, shutdown, world_size)
from reidlib.engine.syncbn import (GlooSyncBatchNorm, convert_sync_batchnorm, resolve_sync_bn,
                                   revert_sync_batchnorm)

__all__ = ["env_world", "init_from_env", "shutdown", "is_distributed", "rank", "world_size", "is_main",
           "rank_device", "barrier", "any_rank", "all_gather_objects", "broadcast_object", "all_reduce_mean",
           "gather_batch", "gather_outputs", "GlooSyncBatchNorm", "convert_sync_batchnorm",
           "revert_sync_batchnorm", "resolve_sync_bn", "split_batches", "gather_rows", "GATHERED_KEYS"]

#: model outputs (:mod:`reidlib.models.output`) gathered for the loss on the global batch; ``maps``
#: (spatial, large, unused by the criterion) and ``aux_losses`` (scalars) stay per rank
GATHERED_KEYS = ("feats", "bn_feats", "logits", "area_ratios")


# ------------------------------------------------------------------------------------------------
# collectives
# ------------------------------------------------------------------------------------------------

def barrier() -> None:
    if is_distributed():
        dist.barrier()


def any_rank(flag: Any) -> bool:
    """True on every rank when ``flag`` (a bool or a 0-d bool tensor) is true on any rank: the
    ranks agree before one of them raises, so none waits forever in the next collective."""
    if not is_distributed():
        return bool(flag)
    t = torch.as_tensor(flag, dtype=torch.float32).reshape(1).to(comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_mean(values: Sequence[float]) -> list[float]:
    """The mean over the ranks of each of ``values`` (same length on every rank)."""
    if not is_distributed() or not values:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=comm_device())
    dist.all_reduce(t)
    return (t / dist.get_world_size()).cpu().tolist()


def all_gather_objects(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ------------------------------------------------------------------------------------------------
# the loss on the global batch
# ------------------------------------------------------------------------------------------------

class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 whose backward is the reduce-scatter (sum) of the gradient: the
    computation of ``torch.distributed.nn.all_gather`` (deprecated in recent torch releases, with
    a warning on every call), kept here so that it works on every backend and torch >= 2.4
    (gloo has no reduce-scatter: all-reduce, then this rank's rows)."""

    @staticmethod
    def forward(ctx, x):
        world = dist.get_world_size()
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))
        dist.all_gather_into_tensor(out, x.contiguous())
        ctx.rows = x.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        r, n = dist.get_rank(), ctx.rows
        if dist.get_backend() == "nccl":
            gx = grad.new_empty((n, *grad.shape[1:]))
            dist.reduce_scatter_tensor(gx, grad)
            return gx
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad[r * n:(r + 1) * n].contiguous()


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` (``[b, ...]``, the same ``b`` on every rank) concatenated in rank order:
    ``[world_size * b, ...]``. Differentiable: the backward sums the gradients of every rank's
    copy of these rows (a reduce-scatter), as ``torch.distributed.nn.all_gather``."""
    if not is_distributed():
        return x
    if x.requires_grad:
        return _GatherRows.apply(x)
    out = x.new_empty((dist.get_world_size() * x.shape[0], *x.shape[1:]))
    dist.all_gather_into_tensor(out, x.contiguous())
    return out


def gather_outputs(out: Any, targets: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """A model output dict and its targets over the global batch: the :data:`GATHERED_KEYS`
    tensors and ``targets`` gathered from every rank (rank order = the order of the single-process
    batch, see :func:`split_batches`); other entries as they are. The floating tensors are
    gathered in one collective, in float32 (float64 if one of them is: the losses are computed in
    float32 anyway, :class:`reidlib.engine.precision.float32_losses`)."""
    if not is_distributed():
        return out, targets
    targets = gather_batch(torch.as_tensor(targets))
    if not isinstance(out, dict):
        return gather_batch(out.float() if out.is_floating_point() else out), targets
    keys = [k for k in GATHERED_KEYS if isinstance(out.get(k), torch.Tensor)]
    if not keys:
        return out, targets
    b = out[keys[0]].shape[0]
    dtype = torch.float64 if any(out[k].dtype == torch.float64 for k in keys) else torch.float32
    flat = [out[k].to(dtype).reshape(b, -1) for k in keys]
    sizes = [f.shape[1] for f in flat]
    whole = gather_batch(torch.cat(flat, dim=1))
    gathered = dict(out)
    for k, part in zip(keys, torch.split(whole, sizes, dim=1)):
        gathered[k] = part.reshape(whole.shape[0], *out[k].shape[1:])
    return gathered, targets


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

def split_batches(sampler: Any, rank_: Optional[int] = None, world: Optional[int] = None) -> bool:
    """Give this rank its slice of every global batch of ``sampler`` (a loader's batch sampler,
    :meth:`reidlib.data.sampler.ResumableBatchSampler.set_batch_split`). Returns False when the
    sampler cannot be split (None, or not a reidlib resumable sampler: every rank then iterates
    all of the loader). A sampler already split, or sharded into whole batches
    (``PKSampler(num_replicas=...)``), is left as it is. Raises
    :class:`reidlib.errors.ConfigError` when a batch does not divide."""
    rank_ = rank() if rank_ is None else int(rank_)
    world = world_size() if world is None else int(world)
    if sampler is None or not hasattr(sampler, "set_batch_split"):
        return False
    if tuple(getattr(sampler, "batch_split", (0, 1))) == (0, 1) and getattr(sampler, "num_replicas", 1) == 1:
        sampler.set_batch_split(rank_, world)
    return True


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------

def gather_rows(t: Optional[torch.Tensor], chunk_bytes: int = 256 * 2**20) -> Optional[list[torch.Tensor]]:
    """Every rank's ``[n_r, ...]`` tensor (CPU; ``None`` = no rows, e.g. a rank without a batch) on
    rank 0, as ``[tensor of rank 0, tensor of rank 1, ...]`` (CPU); ``None`` on the other ranks.
    Row counts may differ; the trailing shape and dtype are those of the ranks that have rows.
    Sent in chunks of at most ``chunk_bytes`` per rank (bounded memory on the GPU for nccl)."""
    if not is_distributed():
        return [t]
    meta = all_gather_objects(None if t is None else (int(t.shape[0]), tuple(t.shape[1:]), str(t.dtype)))
    known = [m for m in meta if m is not None]
    if not known:
        return [None] * len(meta) if is_main() else None
    _, tail, dtype_name = known[0]
    dtype = getattr(torch, dtype_name.replace("torch.", ""))
    sizes = [0 if m is None else m[0] for m in meta]
    n_max = max(sizes)
    dev = comm_device()
    local = torch.zeros((0, *tail), dtype=dtype) if t is None else t
    row_bytes = max(1, int(torch.tensor([], dtype=dtype).element_size() * max(1, int(torch.Size(tail).numel()))))
    step = max(1, chunk_bytes // row_bytes)
    main = dist.get_rank() == 0
    parts: list[list[torch.Tensor]] = [[] for _ in sizes]
    for s in range(0, n_max, step):
        e = min(s + step, n_max)
        buf = torch.zeros((e - s, *tail), dtype=dtype, device=dev)
        have = local[s:min(e, local.shape[0])]
        if have.shape[0]:
            buf[:have.shape[0]] = have.to(dev)
        bufs = [torch.empty_like(buf) for _ in sizes] if main else None
        dist.gather(buf, bufs, dst=0)
        if main:
            for r, b in enumerate(bufs):
                keep = max(0, min(e, sizes[r]) - s)
                if keep:
                    parts[r].append(b[:keep].cpu())
    if not main:
        return None
    return [torch.cat(p) if p else torch.zeros((0, *tail), dtype=dtype) for p in parts]
