"""SPAN's part feature extraction module (Chen et al., ECCV 2020, Sec. 3.2, Fig. 2b; Sec. 4.2).

The backbone (ResNet-50 in the paper) is split in two stages: stage 1 = conv1..conv4 (shared),
stage 2 = four distinct conv5 branches (deep copies of ``layer4``) for the global, front, rear and
side features. The three part branches take the stage-1 map multiplied element-wise by the SPAN
attention mask of their view (masks resized bilinearly to the stage-1 map); the global branch
takes the plain stage-1 map. Each branch ends with global average pooling and "one fully-connected
layer ... to generate a 1024-d or 512-d feature vector" (Sec. 4.2), then a BNNeck (BatchNorm +
FC classifier, Sec. 4.2 [26, 18]).

Aggregation:

* ``"concat"`` (the paper's method, and Table 2's "w/ Cat" / "w/ CPDM"): the four features are
  kept separate, ``feats [B, 4, d]`` (0 global, 1 front, 2 rear, 3 side); the distance is CPDM
  (eqs. 4-5) or plain Euclidean on the concatenation (``distance="euclidean"``). The ID loss: the
  paper does not say how the classifier sees the concatenated feature; we attach one BNNeck
  classifier per branch, ``logits [B, 4, C]`` (the ID criterion averages/sums over ``L = 4``).
  This keeps every branch discriminative on its own, which CPDM needs when the global weight is
  small (our documented choice).
* ``"fc"`` (Table 2's "w/ FC", the embedding of [35, 43, 11]): an FC layer maps the concatenated
  ``[B, 4d]`` to one ``d``-vector; ``feats [B, 1, d]``, ``logits [B, 1, C]``, Euclidean distance.
"""
from __future__ import annotations

import copy
import os
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import feature_dim, split_resnet
from .heads import BNNeck, weights_init_kaiming
from .output import make_output

BRANCHES = ("global", "front", "rear", "side")


#: run defaults (see :mod:`reidlib.models.registry`), SPAN Sec. 4.2: P = 8 identities x K = 4 images,
#: 30,000 iterations, 1024-d part features, triplet loss on the CPDM distance (eq. 7). The optimiser
#: and its schedule are not stated in the paper: ours (bag-of-tricks Adam, / 10 at 40% and 80%).
DEFAULT_RUN = {"data.p": 8, "data.k": 4, "optim.unit": "iter", "optim.max_iters": 30000,
               "optim.milestones": [12000, 24000], "optim.warmup_iters": 2000,
               "model.kwargs": {"dim": 1024}, "loss.triplet_on": "cpdm"}


class SPANReID(nn.Module):
    """Global + front/rear/side part features guided by a frozen SPAN (Sec. 3.2).

    Args:
        num_classes: training identities ``C`` (0: no classifiers).
        backbone: ``resnet18|34|50|101`` (paper: resnet50).
        weights: local torchvision state-dict file or ``None`` (never downloads).
        last_stride: stride of conv5 (1 keeps stride 16, Luo et al.).
        dim: per-branch embedding size ``d`` (paper: 1024 or 512).
        aggregation: ``"concat"`` or ``"fc"`` (see module docstring).
        span: a trained :class:`reidlib.models.span.SPAN`; it is frozen (``requires_grad=False``)
            and kept in eval mode even when this model is in training mode. ``None``: masks must be
            passed to :meth:`forward`.
        distance: ``"cpdm"`` (default) or ``"euclidean"`` (Table 2 "w/ Cat"); forced to
            ``"euclidean"`` for ``aggregation="fc"``. Callers may override ``model.distance``.
        span_input_size: optional ``(H, W)`` the images are resized to before SPAN (e.g. the public
            code's 192x192), if the re-ID input size differs from SPAN's training size.

    ``forward(x[B,3,H,W], masks=None)`` returns the :mod:`reidlib.models.output` dict with
    ``area_ratios = reidlib.metrics.cpdm.area_ratios(masks)`` (``[B, 4]``; ``None`` for "fc") and
    ``maps = masks [B, 3, h, w]``.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: Optional[str | os.PathLike] = None,
                 last_stride: Literal[1, 2] = 1, dim: int = 512, aggregation: Literal["concat", "fc"] = "concat",
                 span: Optional[nn.Module] = None, distance: Literal["cpdm", "euclidean"] = "cpdm",
                 span_input_size: Optional[tuple[int, int]] = None):
        super().__init__()
        if aggregation not in ("concat", "fc"):
            raise ValueError(f"aggregation must be 'concat' or 'fc', got {aggregation!r}")
        self.aggregation = aggregation
        self.dim = int(dim)
        self.span_input_size = None if span_input_size is None else tuple(int(s) for s in span_input_size)
        stage1, layer4 = split_resnet(backbone, weights, last_stride)
        self.stage1 = stage1                                             # conv1..conv4, shared
        self.branches = nn.ModuleList([layer4] + [copy.deepcopy(layer4) for _ in range(3)])  # conv5 x 4
        c4 = feature_dim(backbone)
        self.projs = nn.ModuleList([nn.Linear(c4, self.dim) for _ in BRANCHES])
        self.projs.apply(weights_init_kaiming)
        if aggregation == "concat":
            self.necks = nn.ModuleList([BNNeck(self.dim, num_classes) for _ in BRANCHES])
            self.fuse = None
            self.num_parts = len(BRANCHES)
            self.distance = distance
        else:
            self.fuse = nn.Linear(len(BRANCHES) * self.dim, self.dim)
            self.fuse.apply(weights_init_kaiming)
            self.necks = nn.ModuleList([BNNeck(self.dim, num_classes)])
            self.num_parts = 1
            self.distance = "euclidean"
        self.span = span
        if span is not None:
            span.requires_grad_(False)
            span.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.span is not None:
            self.span.eval()        # frozen mask network: BN statistics never update (Sec. 3.4)
        return self

    @torch.no_grad()
    def compute_masks(self, x: torch.Tensor) -> torch.Tensor:
        """SPAN masks ``[B, 3, h, w]`` from the frozen SPAN, under ``torch.no_grad()``."""
        if self.span is None:
            raise ValueError("SPANReID has no SPAN module: pass masks=... to forward() or build it with span=SPAN(...)")
        self.span.eval()
        if self.span_input_size is not None and tuple(x.shape[-2:]) != self.span_input_size:
            x = F.interpolate(x, size=self.span_input_size, mode="bilinear", align_corners=False)
        return self.span(x)

    def forward(self, x: torch.Tensor, masks: Optional[torch.Tensor] = None) -> dict:
        from reidlib.metrics.cpdm import area_ratios as _area_ratios

        if masks is None:
            masks = self.compute_masks(x)                                 # [B, 3, h, w]
        if masks.dim() != 4 or masks.shape[1] != 3 or masks.shape[0] != x.shape[0]:
            raise ValueError(f"masks must be [B, 3, h, w] with B={x.shape[0]}, got {tuple(masks.shape)}")
        masks = masks.to(dtype=x.dtype)
        f1 = self.stage1(x)                                               # [B, C3, H/16, W/16]
        m1 = F.interpolate(masks, size=f1.shape[-2:], mode="bilinear", align_corners=False)  # [B, 3, H/16, W/16]
        inputs = [f1] + [f1 * m1[:, i:i + 1] for i in range(3)]           # global, front, rear, side
        feats = []
        for branch, proj, inp in zip(self.branches, self.projs, inputs):
            fmap = branch(inp)                                            # [B, C4, h', w']
            feats.append(proj(fmap.mean(dim=(2, 3))))                     # [B, d]
        if self.aggregation == "concat":
            outs = [neck(f) for neck, f in zip(self.necks, feats)]
            feat = torch.stack(feats, dim=1)                              # [B, 4, d]
            bn_feat = torch.stack([o[0] for o in outs], dim=1)            # [B, 4, d]
            logits = None if outs[0][1] is None else torch.stack([o[1] for o in outs], dim=1)  # [B, 4, C]
            ratios = _area_ratios(masks).to(dtype=x.dtype)                # [B, 4], eq. (4)'s AR
        else:
            fused = self.fuse(torch.cat(feats, dim=1))                    # [B, d]
            bn, lg = self.necks[0](fused)
            feat, bn_feat = fused.unsqueeze(1), bn.unsqueeze(1)           # [B, 1, d]
            logits = None if lg is None else lg.unsqueeze(1)              # [B, 1, C]
            ratios = None
        return make_output(feat, bn_feat, logits, area_ratios=ratios, maps=masks)
