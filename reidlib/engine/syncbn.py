"""BatchNorm over the global batch (``train.sync_bn``): statistics over the batch of all ranks,
as the single-process BNNeck (Luo et al.) sees them. On CUDA this is ``torch.nn.SyncBatchNorm``;
torch's version runs on GPUs only, so on the CPU (gloo) it is :class:`GlooSyncBatchNorm`, the same
computation written with gloo's collectives. :func:`convert_sync_batchnorm` swaps them into a
model, :func:`revert_sync_batchnorm` back (re-exported by :mod:`reidlib.engine.distributed`)."""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from reidlib.engine.process_group import is_distributed
from reidlib.errors import ConfigError

__all__ = ["GlooSyncBatchNorm", "convert_sync_batchnorm", "revert_sync_batchnorm", "resolve_sync_bn"]


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
