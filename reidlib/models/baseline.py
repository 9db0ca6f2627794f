"""The "Baseline" of SPAN Tables 1/2: Luo et al.'s strong baseline (BNNeck, last stride 1).

ResNet trunk (conv1..conv5) -> global average pooling -> feature ``f`` ``[B, d]`` (triplet loss)
-> BNNeck -> ``f_bn`` (inference) -> bias-free classifier (ID loss). SPAN Sec. 4.2 trains its
part-feature network with the same triplet + ID losses and the same BN + FC classifier, so this
model differs from :class:`reidlib.models.part_features.SPANReID` only by having no part branches.
"""
from __future__ import annotations

import os
from typing import Literal, Optional

import torch
from torch import nn

from .backbones import feature_dim, trunk
from .heads import BNNeck, weights_init_kaiming
from .output import make_output


#: run defaults (see :mod:`reidlib.models.registry`): Luo et al.'s strong baseline ("bag of tricks"),
#: 120 epochs, learning rate / 10 at epochs 40 and 70, 10 warm-up epochs; triplet on the global feature
#: the features its public code ranks at test time (``eval.features``; the ``paper`` profile
#: ranks each model so): Luo et al.'s strong-baseline code ranks the BNNeck's output, L2-normalised
PUBLIC_CODE_FEATURES = "post_bn_l2"
DEFAULT_RUN = {"optim.unit": "epoch", "optim.max_iters": 120, "optim.milestones": [40, 70],
               "optim.warmup_iters": 10, "loss.triplet_on": "global"}


class StrongBaseline(nn.Module):
    """Global-feature re-ID model (Luo et al., CVPRW 2019).

    Args:
        num_classes: number of training identities ``C`` (0: no classifier).
        backbone: ``resnet18|34|50|101``.
        weights: local torchvision state-dict file or ``None`` (random init; never downloads).
        last_stride: 1 (Luo et al.) or 2.
        neck_dim: if given, a Linear projection ``d_backbone -> neck_dim`` precedes the BNNeck
            (not in Luo et al.; useful to match SPANReID's ``dim``). ``None``: no projection.

    ``forward(x[B,3,H,W])`` returns :func:`make_output` with ``P = 1``: ``feats [B,1,d]``,
    ``bn_feats [B,1,d]``, ``logits [B,1,C]`` (training only, else ``None``), ``area_ratios None``,
    ``maps None``.
    """

    distance = "euclidean"
    num_parts = 1
    #: vectors ranked at test time when ``eval.features`` is "" (:mod:`reidlib.models.output`):
    #: ``bn_feats`` un-normalised (SPAN's text); Luo et al.'s code ranks them L2-normalised,
    #: ``eval.features="post_bn_l2"``
    eval_features = "post_bn"

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: Optional[str | os.PathLike] = None,
                 last_stride: Literal[1, 2] = 1, neck_dim: Optional[int] = None):
        super().__init__()
        self.backbone_name = backbone
        self.base = trunk(backbone, weights, last_stride)
        in_dim = feature_dim(backbone)
        self.proj: Optional[nn.Linear] = None
        if neck_dim is not None:
            self.proj = nn.Linear(in_dim, int(neck_dim))
            self.proj.apply(weights_init_kaiming)
            in_dim = int(neck_dim)
        self.feat_dim = in_dim
        self.neck = BNNeck(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> dict:
        fmap = self.base(x)                       # [B, C4, H/16, W/16] (last_stride 1)
        feat = fmap.mean(dim=(2, 3))              # [B, C4] global average pooling
        if self.proj is not None:
            feat = self.proj(feat)                # [B, d]
        bn_feat, logits = self.neck(feat)         # [B, d], [B, C] | None
        return make_output(feat.unsqueeze(1), bn_feat.unsqueeze(1),
                           None if logits is None else logits.unsqueeze(1))
