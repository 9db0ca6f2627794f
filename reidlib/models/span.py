"""SPAN: Semantics-guided Part Attention Network (Chen et al., ECCV 2020, Sec. 3.1, Fig. 2a).

``CNN_mask`` is ResNet-34's conv1..conv4 (Sec. 4.2: "the former four blocks ... retain more
spatial information than those after conv5"); stride 16, 256 channels. Three mask generators
``G_front``, ``G_rear``, ``G_side`` turn that map into attention masks ``M_1..M_3`` in ``[0, 1]``.

The generators' architecture is only given in the (unavailable) supplementary material. Ours, per
generator (documented assumption)::

    conv3x3(C3 -> 128) - BN - ReLU            # at stride 16
    [upsample x2 (bilinear) - conv3x3 - BN - ReLU] x 2   # 128 -> 64 -> 32 channels, stride 4
    conv1x1(32 -> 1)                          # mask logit
    (bilinear resize of the logit to ``out_size`` if one is set) -> sigmoid

so the native output is ``input / 4`` (48x48 for the public code's 192x192 input). The three
generators are independent (no weight sharing), as in Fig. 2a. SPAN is trained in step 1 with
eq. (6) (``reidlib.losses.span.span_step1_loss``) and then frozen for step 2 (Sec. 3.4).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import split_resnet, stage1_dim
from .heads import weights_init_kaiming

PART_NAMES = ("front", "rear", "side")


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


#: run defaults of SPAN step 1 (see :mod:`reidlib.models.registry`), as in SPAN's public code:
#: ResNet-34, 192 x 192 input, Adam 1e-4, batch 32, 10 epochs
DEFAULT_RUN = {"model.backbone": "resnet34", "data.batch_size": 32, "optim.lr": 1e-4,
               "optim.weight_decay": 0.0, "optim.unit": "epoch", "optim.max_iters": 10,
               "optim.milestones": [], "optim.warmup_iters": 0, "train.checkpoint_every": 500}


class MaskGenerator(nn.Module):
    """One generator head ``G_part``: ``[B, C3, h16, w16] -> logits [B, 1, 4*h16, 4*w16]``."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (128, 64, 32)):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = _cbr(in_channels, w0)
        self.up1 = _cbr(w0, w1)
        self.up2 = _cbr(w1, w2)
        self.out = nn.Conv2d(w2, 1, 1)
        self.apply(weights_init_kaiming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)                                                             # [B, 128, h, w]
        x = self.up1(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))  # [B, 64, 2h, 2w]
        x = self.up2(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))  # [B, 32, 4h, 4w]
        return self.out(x)                                                           # [B, 1, 4h, 4w]


class SPAN(nn.Module):
    """SPAN mask network (Sec. 3.1): ``forward(x[B,3,H,W]) -> masks M [B, 3, h, w]`` in ``[0, 1]``.

    Channel order of ``M`` is ``(front, rear, side)``, matching the semantic label vector
    ``l = [front, rear, side]`` of eq. (1).

    Args:
        backbone: ResNet for ``CNN_mask`` (paper: ``resnet34``; ``resnet18`` for CPU tests).
        weights: local torchvision state-dict file or ``None`` (never downloads).
        out_size: ``None`` -> masks at ``input / 4``; ``(h, w)`` -> masks resized (bilinear, on the
            logits) to that fixed size.
    """

    part_names = PART_NAMES

    def __init__(self, backbone: str = "resnet34", weights: Optional[str | os.PathLike] = None,
                 out_size: Optional[tuple[int, int]] = None):
        super().__init__()
        self.config = {"backbone": backbone, "out_size": None if out_size is None else tuple(out_size)}
        self.out_size = None if out_size is None else (int(out_size[0]), int(out_size[1]))
        self.cnn_mask, _ = split_resnet(backbone, weights, last_stride=2)   # conv1..conv4, stride 16
        c3 = stage1_dim(backbone)
        self.g_front = MaskGenerator(c3)
        self.g_rear = MaskGenerator(c3)
        self.g_side = MaskGenerator(c3)

    def mask_logits(self, x: torch.Tensor, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Pre-sigmoid mask logits ``[B, 3, h, w]`` (``size`` overrides ``out_size``)."""
        feat = self.cnn_mask(x)                                                    # [B, C3, H/16, W/16]
        logits = torch.cat([self.g_front(feat), self.g_rear(feat), self.g_side(feat)], dim=1)  # [B, 3, H/4, W/4]
        size = size if size is not None else self.out_size
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
        return logits

    def forward(self, x: torch.Tensor, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Attention masks ``M = sigmoid(G(CNN_mask(x)))``, ``[B, 3, h, w]`` in ``[0, 1]``."""
        return torch.sigmoid(self.mask_logits(x, size))

    @torch.no_grad()
    def predict_masks(self, x: torch.Tensor, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Inference helper: masks under ``torch.no_grad()`` in eval mode (the mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            return self.forward(x, size)
        finally:
            self.train(was_training)
