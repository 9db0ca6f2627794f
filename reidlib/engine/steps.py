"""The step of the training loop: ``step_fn(model, batch) -> (loss, logs)``, the one way the
:class:`reidlib.engine.trainer.Trainer` gets its loss (:data:`StepFn`), the step of every re-ID
model (:class:`CriterionStep`, :func:`criterion_step`) and the batch moved to the training device
before it (:func:`move_to_device`)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from reidlib.engine import distributed as ddp
from reidlib.engine.precision import float32_losses

__all__ = ["StepFn", "CriterionStep", "criterion_step", "move_to_device"]

StepFn = Callable[[torch.nn.Module, Mapping[str, Any]], "tuple[torch.Tensor, Mapping[str, Any]]"]


def move_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors (in dicts / lists / tuples) to ``device``; 4-D float tensors to channels_last if asked."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, channels_last) for v in batch)
    return batch


class CriterionStep(torch.nn.Module):
    """The step of every re-ID model: ``out = model(batch[img]); criterion(out, batch[pid])``.

    The model's own regularisers (``out["aux_losses"]``, e.g. MUSP's eq. 14) are added unless the
    criterion already reports them in its logs (as :class:`reidlib.losses.ReIDCriterion` does,
    under their own key or ``aux_<key>``). A module, so the criterion's buffers move to the
    training device with it.

    Under ``DistributedDataParallel`` (``gather``, set by the :class:`Trainer`) the outputs and
    targets of every rank are gathered first (:func:`reidlib.engine.distributed.gather_outputs`,
    differentiable), so the ID loss and the batch-hard triplet mining see the global P x K batch,
    exactly as one process would; ``aux_losses`` stay per rank (DDP averages their gradients)."""

    def __init__(self, criterion: Callable, image_key: str = "img", target_key: str = "pid",
                 gather: bool = True):
        super().__init__()
        self.criterion = criterion
        self.image_key, self.target_key = image_key, target_key
        self.gather = bool(gather)

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]):
        out = model(batch[self.image_key])
        targets = batch[self.target_key]
        if self.gather and ddp.is_distributed():         # the loss of the global batch
            out, targets = ddp.gather_outputs(out, targets)
        with float32_losses(out) as out:                 # losses and distances in float32
            loss, logs = self.criterion(out, targets)
        logs = dict(logs or {})
        aux = out.get("aux_losses") if isinstance(out, Mapping) else None
        for name, value in (aux or {}).items():
            if name not in logs and f"aux_{name}" not in logs:
                loss = loss + value
                logs[name] = value.detach()
        return loss, logs


def criterion_step(criterion: Callable, image_key: str = "img", target_key: str = "pid") -> CriterionStep:
    """:class:`CriterionStep` of ``criterion`` (a re-ID loss ``criterion(out, pids) -> (loss, logs)``)."""
    return CriterionStep(criterion, image_key, target_key)
