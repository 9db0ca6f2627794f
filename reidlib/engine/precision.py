"""How the training computes: the autocast dtype of a run (:func:`resolve_amp`), its name in the
provenance (:func:`precision_name`), the autocast context of a step (:func:`autocast`) and the
float32 island its losses are computed in (:class:`float32_losses`)."""
from __future__ import annotations

import contextlib
from typing import Any, Mapping, Optional

import torch

__all__ = ["resolve_amp", "precision_name", "autocast", "float32_losses"]


def resolve_amp(amp: Any, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``amp`` on ``device``, or None (float32).

    ``"auto"``: on CUDA bf16 where supported, else fp16; on the CPU bf16 where the processor
    computes it natively (:func:`reidlib.utils.device.cpu_bf16_supported`: AVX-512 BF16 / AMX),
    else float32. ``"bf16"``: bf16 on either device (on a CPU without native bf16 it is emulated
    and slow). ``"fp16"``: CUDA only (float32 on the CPU). ``"off"`` (``None``, ``False``,
    ``"fp32"``): float32."""
    amp = str(amp).lower()
    if amp in ("none", "false", "0", "off", "no", "fp32", ""):
        return None
    if amp not in ("auto", "true", "1", "yes", "on", "bf16", "bfloat16", "fp16", "float16", "half"):
        raise ValueError(f"unknown amp setting {amp!r}; expected auto|bf16|fp16|off")
    if device.type == "cuda":
        if amp in ("bf16", "bfloat16"):
            return torch.bfloat16
        if amp in ("fp16", "float16", "half"):
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        from reidlib.utils.device import cpu_bf16_supported

        if amp in ("bf16", "bfloat16") or (amp in ("auto", "true", "1", "yes", "on") and cpu_bf16_supported()):
            return torch.bfloat16
    return None


def precision_name(amp_dtype: Optional[torch.dtype], channels_last: bool = False) -> str:
    """How a run computes, for its provenance: ``fp32``, ``bf16-autocast`` or ``fp16-autocast``
    (+ ``channels-last``)."""
    name = {None: "fp32", torch.bfloat16: "bf16-autocast", torch.float16: "fp16-autocast"}[amp_dtype]
    return name + ("+channels-last" if channels_last else "")


def autocast(device: torch.device, amp_dtype: Optional[torch.dtype]):
    """``torch.autocast`` to ``amp_dtype`` on ``device``'s type; a no-op context for None (float32)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


class float32_losses:
    """``with float32_losses(outputs) as outputs:`` autocast off, and the floating tensors of
    ``outputs`` (a tensor, or dicts / lists / tuples of them) cast to float32: losses, distances
    and hard-example mining are computed in full precision even when the model ran in bf16/fp16."""

    def __init__(self, outputs: Any):
        self.outputs = outputs
        self._ctx = None

    def __enter__(self):
        devices = {t.device.type for t in _tensors(self.outputs)} or {"cpu"}
        self._ctx = [torch.autocast(device_type=d, enabled=False) for d in devices]
        for c in self._ctx:
            c.__enter__()
        return _to_float32(self.outputs)

    def __exit__(self, *exc):
        for c in reversed(self._ctx or []):
            c.__exit__(*exc)
        return False


def _tensors(x: Any):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, Mapping):
        for v in x.values():
            yield from _tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)


def _to_float32(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, Mapping):
        return {k: _to_float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float32(v) for v in x)
    return x
