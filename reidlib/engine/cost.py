"""What one training step costs: floating-point operations and memory, counted without running it.

The model is built on PyTorch's ``meta`` device (shapes only, no data, no arithmetic), so the count
takes seconds on any machine, for any input size, and needs no GPU. It is the basis of the book's
GPU estimates (:mod:`reidlib.study.cost`): a count, not a measurement of time.

* ``flops``: forward + backward of one step, as :class:`torch.utils.flop_counter.FlopCounterMode`
  counts them (matrix products and convolutions; element-wise operations are not counted). A
  frozen sub-network (SPAN's mask network inside a SPAN re-ID model) costs its forward only.
* memory: the float32 master weights, their gradients and ``optimizer_slots`` float32 tensors of
  optimiser state per trained weight (Adam: 2), plus the activations autograd keeps for the
  backward pass in the compute precision (bfloat16 under autocast). Framework overhead (the CUDA
  context, cuDNN workspaces, the allocator's fragmentation) is not included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

__all__ = ["StepCost", "training_step_cost"]


@dataclass(frozen=True)
class StepCost:
    """The cost of one training step (see the module docstring for what each count includes)."""

    flops: int                #: forward + backward floating-point operations
    parameter_bytes: int      #: every weight, float32
    gradient_bytes: int       #: gradients of the trained weights, float32
    optimizer_bytes: int      #: optimiser state of the trained weights, float32
    activation_bytes: int     #: tensors saved for the backward pass, in the compute precision

    @property
    def memory_bytes(self) -> int:
        """Weights + gradients + optimiser state + saved activations."""
        return self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes


def _tensors(out) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def training_step_cost(build: Callable[[], nn.Module], input_shape: Sequence[int], *,
                       optimizer_slots: int = 2, dtype: torch.dtype = torch.bfloat16,
                       forward: Optional[Callable[[nn.Module, torch.Tensor], object]] = None) -> StepCost:
    """Count one training step of the model ``build()`` returns on an input ``[B, 3, H, W]``.

    ``build`` is called under ``torch.device("meta")``: it must not read weights from a file.
    Weights whose ``requires_grad`` is off are frozen (no gradient, no optimiser state). The loss
    is the sum of every differentiable output, so the backward pass reaches every trained weight
    that an output depends on; the papers' losses themselves cost a negligible share of a step.
    ``forward(model, x)`` replaces ``model(x)`` where a model needs more arguments.
    """
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be [B, C, H, W] with positive sizes, got {list(input_shape)}")
    with torch.device("meta"):
        model = build()
    model.train()
    params = list(model.parameters())
    trained = [p for p in params if p.requires_grad]
    parameter_bytes = 4 * sum(p.numel() for p in params)
    trained_bytes = 4 * sum(p.numel() for p in trained)
    model = model.to(dtype)                            # activations in the compute precision
    weights = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}

    saved: dict[int, int] = {}                         # id(tensor) -> bytes, each saved tensor once

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(t) not in weights and id(base) not in weights:
            saved.setdefault(id(base), base.numel() * base.element_size())
        return t

    x = torch.empty(shape, device="meta", dtype=dtype)
    with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward(model, x) if forward is not None else model(x)
        outputs = [t for t in _tensors(out) if t.requires_grad]
        if not outputs:
            raise ValueError("the model returned no output that depends on a trained weight")
        sum(t.float().sum() for t in outputs).backward()
    return StepCost(flops=int(counter.get_total_flops()), parameter_bytes=parameter_bytes,
                    gradient_bytes=trained_bytes, optimizer_bytes=int(optimizer_slots) * trained_bytes,
                    activation_bytes=int(sum(saved.values())))
