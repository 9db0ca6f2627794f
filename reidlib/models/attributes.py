"""The generic stand-in's network: a ResNet trunk classifying vehicle attributes.

ImageNet pretraining is classification of a task none of the compared re-ID models is trained on.
Our stand-in (:mod:`reidlib.data.attributes`) classifies SynthVeRi images by attribute (body type,
colour, grille, lights, view), not by identity. The network is the strong baseline's trunk kept
as ``self.base = trunk(backbone, weights, last_stride)`` (same module names), so
``reidlib.models.backbones.trunk_to_torchvision(model.base.state_dict())`` is a torchvision-format
file every model here starts from (``model.weights``):

ResNet conv1..conv5 -> global average pooling ``[B, d]`` -> one linear classifier per attribute,
concatenated: ``logits [B, K_1 + ... + K_A]`` (:meth:`AttributeNet.split` gives them per attribute).
"""
from __future__ import annotations

import os
from typing import Any, Literal, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reidlib.data.attributes import ATTRIBUTES

from .backbones import feature_dim, trunk

__all__ = ["DEFAULT_RUN", "AttributeNet", "attribute_heads", "attribute_loss"]

#: run defaults (see :mod:`reidlib.models.registry`): ours (no paper trains it), Adam at the
#: re-ID learning rate, batches of 64 shuffled images, 30 epochs, lr / 10 at epoch 20
DEFAULT_RUN = {"data.batch_size": 64, "optim.unit": "epoch", "optim.max_iters": 30, "optim.milestones": [20],
               "optim.warmup_iters": 1, "train.checkpoint_every": 500}


def attribute_heads(heads: Any = None) -> dict[str, int]:
    """``{attribute: number of classes}``: every one of :data:`ATTRIBUTES` (``None``), the ones
    named (a sequence of names), or a mapping ``name -> number of classes | class names``."""
    if heads is None:
        return {n: len(c) for n, c in ATTRIBUTES.items()}
    if isinstance(heads, Mapping):
        out = {str(n): (int(k) if isinstance(k, int) else len(k)) for n, k in heads.items()}
    else:
        names = [str(n) for n in heads]
        unknown = [n for n in names if n not in ATTRIBUTES]
        if unknown:
            raise ValueError(f"heads: unknown attribute(s) {unknown}; expected some of {list(ATTRIBUTES)} "
                             "(or a mapping name -> number of classes)")
        out = {n: len(ATTRIBUTES[n]) for n in names}
    if not out or any(k < 2 for k in out.values()):
        raise ValueError(f"heads: need at least one attribute with at least 2 classes, got {out}")
    return out


class AttributeNet(nn.Module):
    """ResNet trunk + global average pooling + one linear classifier per attribute.

    Args:
        heads: the attributes predicted: ``None`` = every one of :data:`ATTRIBUTES` in its order;
            a list of their names (a configuration's ``model.kwargs.heads``); in Python also a
            mapping ``name -> number of classes`` (then give the labels to the training task).
        backbone: ``resnet18|34|50|101``.
        weights: local torchvision state-dict file or ``None`` (random init; never downloads).
        last_stride: 1 (as the re-ID models that start from it) or 2.

    ``forward(x [B,3,H,W]) -> logits [B, sum of classes]``, the heads' logits side by side in the
    order of :attr:`heads`.
    """

    def __init__(self, heads: Optional[list] = None, backbone: str = "resnet50",
                 weights: Optional[str | os.PathLike] = None, last_stride: Literal[1, 2] = 1):
        super().__init__()
        self.heads = attribute_heads(heads)                   # name -> K
        self.backbone_name = backbone
        self.base = trunk(backbone, weights, last_stride)
        d = feature_dim(backbone)
        self.classifiers = nn.ModuleDict({n: nn.Linear(d, k) for n, k in self.heads.items()})
        for fc in self.classifiers.values():
            nn.init.normal_(fc.weight, std=0.001)
            nn.init.zeros_(fc.bias)

    @property
    def num_logits(self) -> int:
        return sum(self.heads.values())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ``[B, d]``."""
        return self.base(x).mean(dim=(2, 3))                 # [B, C4, h, w] -> [B, C4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.features(x)                               # [B, d]
        return torch.cat([fc(feat) for fc in self.classifiers.values()], dim=1)   # [B, sum K]

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits [B, sum K]`` -> ``{attribute: [B, K]}``."""
        return dict(zip(self.heads, logits.split(list(self.heads.values()), dim=1)))


def attribute_loss(logits: torch.Tensor, labels: torch.Tensor,
                   heads: Optional[Mapping[str, int] | Sequence[str]] = None) -> tuple[torch.Tensor, dict]:
    """Mean over attributes of the cross-entropy of ``logits [B, sum K]`` against ``labels [B, A]``
    (column ``a`` = class index of attribute ``a`` of ``heads``, default :data:`ATTRIBUTES`; -1 =
    unknown, ignored). An attribute without a known label in the batch is left out of the mean.

    Returns ``(loss, logs)``: ``logs`` holds ``acc_<attribute>``, the accuracy over that
    attribute's labelled images of the batch (0 when there are none, so every log line has the
    same keys)."""
    sizes = attribute_heads(heads)
    if logits.dim() != 2 or logits.shape[1] != sum(sizes.values()):
        raise ValueError(f"logits: expected [B, {sum(sizes.values())}] for heads {sizes}, got {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0], len(sizes)):
        raise ValueError(f"labels: expected [B={logits.shape[0]}, A={len(sizes)}], got {tuple(labels.shape)}")
    labels = labels.long()
    ce, has, logs = [], [], {}
    for a, (name, part) in enumerate(zip(sizes, logits.split(list(sizes.values()), dim=1))):
        y = labels[:, a]                                      # [B], -1 = unknown
        known = y >= 0
        n = known.sum()
        # no host sync: an attribute without labels has a zero sum and weight 0
        ce.append(F.cross_entropy(part, y, ignore_index=-1, reduction="sum") / n.clamp_min(1))
        has.append((n > 0).to(logits.dtype))
        with torch.no_grad():
            correct = ((part.argmax(dim=1) == y) & known).sum()
            logs[f"acc_{name}"] = correct.float() / n.clamp_min(1).float()
    weight = torch.stack(has)                                 # [A]: 1 where the batch has a label
    loss = (torch.stack(ce) * weight).sum() / weight.sum().clamp_min(1)
    return loss, logs
