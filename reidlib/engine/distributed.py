"""More than one process: ``torchrun`` / ``torch.distributed`` / ``DistributedDataParallel``.

reidlib trains with PyTorch's own data-parallel engine, not a loop of its own: every rank runs
the same :class:`reidlib.engine.trainer.Trainer` with the model wrapped in
``torch.nn.parallel.DistributedDataParallel`` (DDP; gradients averaged over the ranks by an
all-reduce, Li et al., "PyTorch Distributed", VLDB 2020). This module holds the pieces around it:

* :func:`init_from_env`: the process group of a ``torchrun`` launch (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK`` in the environment), backend ``nccl`` on GPUs and ``gloo`` on the CPU; a rank's
  device is ``cuda:LOCAL_RANK`` (:func:`rank_device`).
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
  :class:`GlooSyncBatchNorm`, the same computation written with gloo's collectives.
* small collectives the trainer and the evaluation need: :func:`any_rank` (every rank agrees on a
  non-finite loss), :func:`all_gather_objects`, :func:`broadcast_object`, :func:`gather_rows`.

Nothing here runs when no process group is initialised or the world has one rank: a
single-process run is unchanged.
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from reidlib.errors import ConfigError

__all__ = ["env_world", "init_from_env", "shutdown", "is_distributed", "rank", "world_size", "is_main",
           "rank_device", "barrier", "any_rank", "all_gather_objects", "broadcast_object", "all_reduce_mean",
           "gather_batch", "gather_outputs", "GlooSyncBatchNorm", "convert_sync_batchnorm",
           "revert_sync_batchnorm", "resolve_sync_bn", "split_batches", "gather_rows", "GATHERED_KEYS"]

#: model outputs (:mod:`reidlib.models.output`) gathered for the loss on the global batch; ``maps``
#: (spatial, large, unused by the criterion) and ``aux_losses`` (scalars) stay per rank
GATHERED_KEYS = ("feats", "bn_feats", "logits", "area_ratios")


# ------------------------------------------------------------------------------------------------
# the process group
# ------------------------------------------------------------------------------------------------

def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from a ``torchrun`` environment; ``(0, 1, 0)`` outside one."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise ConfigError(f"malformed torchrun environment (RANK / WORLD_SIZE / LOCAL_RANK): {err}") from None


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints."""
    return rank() == 0


def _local_rank() -> int:
    return env_world()[2]


def rank_device(device: Any) -> torch.device:
    """This rank's device: ``cuda`` (or ``cuda:N``) becomes ``cuda:LOCAL_RANK`` under a multi-rank
    launch (one GPU per rank); other devices are returned as they are."""
    from reidlib.utils.device import resolve_device

    device = device if isinstance(device, torch.device) else resolve_device(device)
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", _local_rank())
    return device


def init_from_env(device: Any = "auto", timeout_s: Optional[float] = None) -> bool:
    """Initialise the process group of a ``torchrun`` launch with more than one rank; returns
    whether it did (False outside torchrun, for ``WORLD_SIZE=1``, or when a group already exists).

    Backend: ``nccl`` when ``device`` resolves to CUDA (the rank's GPU is ``cuda:LOCAL_RANK``, set
    as the current device), else ``gloo``. ``timeout_s``: how long a collective may wait for the
    other ranks (torch's default when None)."""
    from reidlib.utils.device import resolve_device

    _, world, local = env_world()
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    backend = "gloo"
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise ConfigError(f"LOCAL_RANK {local} but only {n} GPU(s) visible: start at most {n} processes per "
                              "machine (torchrun --nproc-per-node), or check CUDA_VISIBLE_DEVICES")
        torch.cuda.set_device(local)
        backend = "nccl"
    kw = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=float(timeout_s))}
    if backend == "nccl":
        kw["device_id"] = torch.device("cuda", local)
    dist.init_process_group(backend=backend, **kw)
    global _INITIALISED_HERE
    _INITIALISED_HERE = True
    return True


_INITIALISED_HERE = False


def shutdown(only_own: bool = False) -> None:
    """Destroy the process group if one is initialised (``only_own``: only one that
    :func:`init_from_env` created)."""
    global _INITIALISED_HERE
    if dist.is_available() and dist.is_initialized() and (_INITIALISED_HERE or not only_own):
        dist.destroy_process_group()
        _INITIALISED_HERE = False


def _comm_device() -> torch.device:
    """Where tensors of a collective must live: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def any_rank(flag: Any) -> bool:
    """True on every rank when ``flag`` (a bool or a 0-d bool tensor) is true on any rank: the
    ranks agree before one of them raises, so none waits forever in the next collective."""
    if not is_distributed():
        return bool(flag)
    t = torch.as_tensor(flag, dtype=torch.float32).reshape(1).to(_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_mean(values: Sequence[float]) -> list[float]:
    """The mean over the ranks of each of ``values`` (same length on every rank)."""
    if not is_distributed() or not values:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
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
    float32 anyway, :class:`reidlib.engine.trainer.float32_losses`)."""
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
# BatchNorm over the global batch
# ------------------------------------------------------------------------------------------------

class _SyncBatchNormFn(torch.autograd.Function):
    """Batch normalisation with the statistics of the global batch and the analytic backward of
    ``torch.nn.SyncBatchNorm`` (Ioffe & Szegedy 2015, eqs. in Sec. 3; PyTorch's
    ``torch/nn/modules/_functions.py``), for any backend:

    * forward: each rank's per-channel count, mean and squared deviations (float64), all-gathered
      and combined with Chan et al.'s parallel formula (one collective, no cancellation);
      ``y = (x - mean) * invstd * weight + bias``;
    * backward: ``sum(dy)`` and ``sum(dy * (x - mean))`` all-reduced over the ranks (float64), then
      ``dx = (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean))) * invstd * weight``;
      the weight and bias gradients are this rank's own sums (DDP averages them).

    The closed-form backward matters: differentiating the forward with autograd subtracts large,
    nearly equal terms and loses most float32 digits when the upstream gradient lies almost in the
    span of the normalised input (behind another BatchNorm), which torch's kernels avoid."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, momentum, running_mean, running_var):
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        x64 = x.detach().double()
        n_local = x.numel() // x.shape[1]
        mean_l = x64.mean(dims) if n_local else x64.new_zeros(x.shape[1])
        m2_l = (x64 - mean_l.view(shape)).pow(2).sum(dims)
        local = torch.stack([torch.full_like(mean_l, float(n_local)), mean_l, m2_l])        # [3, C]
        allst = local.new_empty((dist.get_world_size() * 3, local.shape[1]))
        dist.all_gather_into_tensor(allst, local.contiguous())
        allst = allst.view(-1, 3, local.shape[1])
        counts, means, m2s = allst[:, 0], allst[:, 1], allst[:, 2]                          # [R, C]
        n = counts.sum(0)
        mean = (counts * means).sum(0) / n
        m2 = m2s.sum(0) + (counts * (means - mean).pow(2)).sum(0)
        var = m2 / n
        invstd = torch.rsqrt(var + eps)
        if running_mean is not None and running_var is not None:
            unbiased = m2 / (n - 1).clamp_min(1)
            running_mean.mul_(1 - momentum).add_((mean * momentum).to(running_mean.dtype))
            running_var.mul_(1 - momentum).add_((unbiased * momentum).to(running_var.dtype))
        y = (x64 - mean.view(shape)) * invstd.view(shape)
        if weight is not None:
            y = y * weight.detach().double().view(shape) + bias.detach().double().view(shape)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.n = n
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        dy64 = dy.double()
        xmu = x.double() - mean.view(shape)
        sum_dy = dy64.sum(dims)
        sum_dy_xmu = (dy64 * xmu).sum(dims)
        grad_w = (sum_dy_xmu * invstd).to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = sum_dy.to(weight.dtype) if weight is not None and ctx.needs_input_grad[2] else None
        dx = None
        if ctx.needs_input_grad[0]:
            both = torch.stack([sum_dy, sum_dy_xmu])
            dist.all_reduce(both)
            mean_dy = both[0] / ctx.n
            mean_dy_xmu = both[1] / ctx.n
            scale = invstd if weight is None else invstd * weight.detach().double()
            dx = (dy64 - mean_dy.view(shape) - xmu * (invstd.pow(2) * mean_dy_xmu).view(shape)) * scale.view(shape)
            dx = dx.to(x.dtype)
        elif dist.get_world_size() > 1:  # keep the collectives in step with the ranks that need dx
            dist.all_reduce(torch.stack([sum_dy, sum_dy_xmu]))
        return dx, grad_w, grad_b, None, None, None, None


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any backend (gloo on
    the CPU, where ``torch.nn.SyncBatchNorm`` does not run): :class:`_SyncBatchNormFn`, the
    computation of ``torch.nn.SyncBatchNorm`` (statistics and gradient sums accumulated in
    float64, as torch's CPU BatchNorm kernels do). The running variance is updated with the
    unbiased variance of the global batch. Outside training with batch statistics, or with one
    rank, it is torch's BatchNorm. Inputs ``[B, C]`` or ``[B, C, ...]``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and is_distributed()):
            return super().forward(input)  # torch's _BatchNorm computation
        momentum = self.momentum
        track = self.track_running_stats and self.running_mean is not None
        if track:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as _BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        return _SyncBatchNormFn.apply(input, self.weight, self.bias, float(self.eps), float(momentum or 0.0),
                                      self.running_mean if track else None, self.running_var if track else None)


def _replace_bn(module: torch.nn.Module, make) -> torch.nn.Module:
    out = module
    new = make(module)
    if new is not None:
        out = new
    for name, child in module.named_children():
        out.add_module(name, _replace_bn(child, make))
    return out


def _copy_bn(src: _BatchNorm, cls) -> _BatchNorm:
    """A ``cls`` BatchNorm sharing ``src``'s parameters and buffers (an optimiser built on the
    model keeps updating them; state-dict keys are unchanged)."""
    new = cls(src.num_features, src.eps, src.momentum, src.affine, src.track_running_stats)
    if src.affine:
        new.weight, new.bias = src.weight, src.bias
    new.running_mean, new.running_var = src.running_mean, src.running_var
    new.num_batches_tracked = src.num_batches_tracked
    new.train(src.training)
    return new


_SYNC_TYPES = (GlooSyncBatchNorm, torch.nn.SyncBatchNorm)


def convert_sync_batchnorm(model: torch.nn.Module, device: Any) -> torch.nn.Module:
    """Every BatchNorm of ``model`` computing global-batch statistics: ``torch.nn.SyncBatchNorm``
    on CUDA, :class:`GlooSyncBatchNorm` elsewhere. Parameters and buffers are shared with the
    replaced layers; :func:`revert_sync_batchnorm` puts the original classes back."""
    device = device if isinstance(device, torch.device) else torch.device(device)
    cls = torch.nn.SyncBatchNorm if device.type == "cuda" else GlooSyncBatchNorm

    def make(m):
        if isinstance(m, _BatchNorm) and not isinstance(m, _SYNC_TYPES):
            new = _copy_bn(m, cls)
            new._reidlib_bn_class = type(m)
            return new
        return None

    return _replace_bn(model, make)


def revert_sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`convert_sync_batchnorm`: the layers it made become their original
    ``BatchNorm1d/2d/3d`` again, sharing parameters and buffers."""
    def make(m):
        if isinstance(m, _SYNC_TYPES) and hasattr(m, "_reidlib_bn_class"):
            return _copy_bn(m, m._reidlib_bn_class)
        return None

    return _replace_bn(model, make)


def resolve_sync_bn(setting: Any, device: Any) -> bool:
    """``train.sync_bn``: ``on``/``true``, ``off``/``false`` or ``auto`` (on for CUDA ranks, off on the
    CPU, where :class:`GlooSyncBatchNorm` adds two all-reduces per BatchNorm layer and iteration).
    Only meaningful with more than one rank."""
    s = str(setting).strip().lower()
    if s in ("on", "true", "yes", "1"):
        return True
    if s in ("off", "false", "no", "0", "none"):
        return False
    if s != "auto":
        raise ConfigError(f"train.sync_bn: {setting!r} is not one of auto, on, off")
    device = device if isinstance(device, torch.device) else torch.device(device)
    return device.type == "cuda"


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
    dev = _comm_device()
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
