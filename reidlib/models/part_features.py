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

The ranked "w/ Cat" feature (``cat_norm``, our documented choice; the paper does not say). SPAN
Sec. 3.3 motivates CPDM (eqs. 4-5) by what plain Euclidean on the concatenation does: every part
contributes whether or not it is visible. On the post-BNNeck, un-normalised concatenation we
measured more: the three part blocks (3 of the 4 blocks, each BN-scaled to a norm of about
``sqrt(d)``) dominate the distance, and an absent part (mask ~ 0, so a near-zero input to its
branch) gives a near-constant feature that still adds its share. Also, the triplet loss of the Cat model
(``loss.triplet_on="concat"``) is computed on the pre-BN concatenation, while ranking uses the
post-BN one, so training and test rank different vectors.

* ``cat_norm="none"`` (default; every existing run): the model ranks ``bn_feats`` as they are
  (``model.eval_features = "post_bn"``) and the triplet loss sees the pre-BN ``feats``, exactly as
  before the option existed.
* ``cat_norm="block"``: the ranked feature is each of the four post-BN blocks (global, front,
  rear, side) L2-normalised, then concatenated, so every block weighs the same in the Euclidean
  distance, ``||a - b||^2 = sum_i ||a^_i - b^_i||^2`` of unit vectors
  (``model.eval_features = "post_bn_l2"``, see :mod:`reidlib.models.output`), and the triplet loss
  is computed on those same vectors (``out["triplet_vectors"] = "post_bn_l2"``), whatever
  ``loss.triplet_on`` (``"concat"``: Euclidean on the block-normalised concatenation, the ranked
  "w/ Cat" distance; ``"cpdm"``: CPDM on the normalised blocks). Any distance then ranks the
  normalised blocks (CPDM too), unless ``eval.features`` overrides it. Only for
  ``aggregation="concat"``.

Table 2's "global-only" and "parts-only" rows of a trained concat model need no new training:
rank it with ``distance="euclidean:global"`` (block 0) or ``"euclidean:parts"`` (blocks 1-3,
each L2-normalised, concatenated); see :func:`reidlib.metrics.distance.build_distance`.
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
#: ``cat_norm`` choices (see the module docstring)
CAT_NORMS = ("none", "block")
#: cat_norm -> (vectors ranked by default, vectors of the triplet loss), names of
#: :data:`reidlib.models.output.VECTORS`
_CAT_VECTORS = {"none": ("post_bn", "pre_bn"), "block": ("post_bn_l2", "post_bn_l2")}


#: run defaults (see :mod:`reidlib.models.registry`), SPAN Sec. 4.2: P = 8 identities x K = 4 images,
#: 30,000 iterations, 1024-d part features, triplet loss on the CPDM distance (eq. 7). The optimiser
#: and its schedule are not stated in the paper: ours (bag-of-tricks Adam, / 10 at 40% and 80%).
#: the features its public code ranks at test time (``eval.features``; the ``paper`` profile
#: ranks each model so): SPAN publishes no re-ID code; its text ranks the part features (after the BNNeck, Sec. 4.2)
PUBLIC_CODE_FEATURES = "post_bn"
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
        cat_norm: ``"none"`` (default, unchanged behaviour) or ``"block"``: the ranked feature is
            the four post-BN blocks each L2-normalised, then concatenated, and the triplet loss
            sees that same feature (SPAN Sec. 3.3, eqs. 4-5; Table 2 "w/ Cat"; see the module
            docstring). ``"concat"`` aggregation only.

    ``forward(x[B,3,H,W], masks=None)`` returns the :mod:`reidlib.models.output` dict with
    ``area_ratios = reidlib.metrics.cpdm.area_ratios(masks)`` (``[B, 4]``; ``None`` for "fc") and
    ``maps = masks [B, 3, h, w]``.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: Optional[str | os.PathLike] = None,
                 last_stride: Literal[1, 2] = 1, dim: int = 512, aggregation: Literal["concat", "fc"] = "concat",
                 span: Optional[nn.Module] = None, distance: Literal["cpdm", "euclidean"] = "cpdm",
                 span_input_size: Optional[tuple[int, int]] = None, cat_norm: Literal["none", "block"] = "none"):
        super().__init__()
        if aggregation not in ("concat", "fc"):
            raise ValueError(f"aggregation must be 'concat' or 'fc', got {aggregation!r}")
        if cat_norm not in CAT_NORMS:
            raise ValueError(f"cat_norm must be one of {CAT_NORMS}, got {cat_norm!r}")
        if cat_norm != "none" and aggregation != "concat":
            raise ValueError(f"cat_norm={cat_norm!r} normalises the four concatenated blocks; it needs "
                             f"aggregation='concat', got {aggregation!r}")
        self.aggregation = aggregation
        self.cat_norm = cat_norm
        #: the vectors ranked at test time unless ``eval.features`` says otherwise, and the vectors
        #: the triplet loss sees (:mod:`reidlib.models.output`); see the module docstring
        self.eval_features, self.triplet_vectors = _CAT_VECTORS[cat_norm]
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
        return make_output(feat, bn_feat, logits, area_ratios=ratios, maps=masks,
                           triplet_vectors=self.triplet_vectors)
