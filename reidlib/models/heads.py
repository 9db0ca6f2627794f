"""Heads shared by the baseline, SPAN part features and MUSP.

:class:`BNNeck` is the "BNNeck" of Luo et al. ("Bag of Tricks and A Strong Baseline for Deep
Person Re-identification", CVPRW 2019): the feature ``f_t`` before the neck feeds the triplet
loss, a BatchNorm1d with a frozen (zero, non-trainable) bias gives ``f_i`` for the ID classifier
and for inference, and the classifier is a bias-free Linear layer. SPAN Sec. 4.2 uses the same
head ("a BatchNorm and a fully-connected layer as the classifier [26, 18]").
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def weights_init_kaiming(m: nn.Module) -> None:
    """Kaiming init as in Luo et al.'s code: fan-out for Linear, fan-in for Conv, BN weight 1 / bias 0."""
    name = m.__class__.__name__
    if name.find("Linear") != -1:
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.0)
    elif name.find("Conv") != -1:
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.0)
    elif name.find("BatchNorm") != -1:
        if m.affine:
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0.0)


def weights_init_classifier(m: nn.Module) -> None:
    """Classifier init as in Luo et al.'s code: N(0, 0.001) weights, zero bias."""
    if m.__class__.__name__.find("Linear") != -1:
        nn.init.normal_(m.weight, std=0.001)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.0)


class BNNeck(nn.Module):
    """BatchNorm1d (bias frozen at 0) + bias-free Linear classifier (Luo et al., BNNeck).

    ``forward(feat[B, d]) -> (bn_feat[B, d], logits[B, C])`` in training mode and
    ``(bn_feat, None)`` in eval mode (the classifier is only needed for the ID loss).
    ``num_classes=0`` builds a neck without classifier (logits always ``None``).
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.dim = int(dim)
        self.num_classes = int(num_classes)
        self.bn = nn.BatchNorm1d(self.dim)
        self.bn.bias.requires_grad_(False)
        self.bn.apply(weights_init_kaiming)
        self.classifier: Optional[nn.Linear] = None
        if self.num_classes > 0:
            self.classifier = nn.Linear(self.dim, self.num_classes, bias=False)
            self.classifier.apply(weights_init_classifier)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        bn_feat = self.bn(feat)  # [B, d]
        if not self.training or self.classifier is None:
            return bn_feat, None
        return bn_feat, self.classifier(bn_feat)  # [B, C]


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling ``[B, C, h, w] -> [B, C]`` (the papers use GAP)."""
    return x.mean(dim=(2, 3))
