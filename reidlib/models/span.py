"""SPAN: Semantics-guided Part Attention Network (Chen et al., ECCV 2020, Sec. 3.1, Fig. 2a).

``CNN_mask`` is ResNet-34's conv1..conv4 (Sec. 4.2: "the former four blocks ... retain more
spatial information than those after conv5"); 256 channels. Three mask generators ``G_front``,
``G_rear``, ``G_side`` turn that map into attention masks ``M_1..M_3`` in ``[0, 1]``. The three
generators are independent (no weight sharing), as in Fig. 2a. SPAN is trained in step 1 with
eq. (6) (``reidlib.losses.span.span_step1_loss``) and then frozen for step 2 (Sec. 3.4).

The generators' architecture is only given in the (unavailable) supplementary material; two
options select between ours and the one of SPAN's public code:

``stride`` (of ``CNN_mask``)
    ``16`` (default): torchvision's conv1..layer3 with the stem's max-pool. ``8``: the max-pool
    removed, as in SPAN's public code (``resnet.py``: ResNet-34 without max-pool, stopped after
    layer3, ImageNet weights; a 24 x 24 x 256 map for its 192 x 192 input).

``decoder`` (of each generator)
    ``"bilinear"`` (default, ours, a documented assumption)::

        conv3x3(C3 -> 128) - BN - ReLU
        [upsample x2 (bilinear) - conv3x3 - BN - ReLU] x 2   # 128 -> 64 -> 32 channels
        conv1x1(32 -> 1)                                     # mask logit, 4x the trunk's map

    ``"transposed"`` (SPAN's public code, ``model.py``: three stride-2 transposed convolutions
    back to the input resolution)::

        ConvTranspose(C3 -> 128, k4 s2 p1) - BN - ReLU
        ConvTranspose(128 -> 64, k4 s2 p1) - BN - ReLU
        ConvTranspose(64 -> 1, k4 s2 p1)                     # mask logit, 8x the trunk's map

Native mask size ``input * upsampling / stride`` (:attr:`SPAN.mask_stride` = input / mask):

==========  ===========  =============================  ================
stride      decoder      masks for a 192 x 192 input    ``mask_stride``
==========  ===========  =============================  ================
16          bilinear     48 x 48 (our default)          4
16          transposed   96 x 96                        2
8           bilinear     96 x 96                        2
8           transposed   192 x 192 (SPAN's public code)  1
==========  ===========  =============================  ================

then (optionally) a bilinear resize of the logits to ``out_size``, and a sigmoid.
"""
from __future__ import annotations

import math
import os
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import resnet_stage1, stage1_dim
from .heads import weights_init_kaiming

PART_NAMES = ("front", "rear", "side")
STRIDES = (16, 8)
DECODERS = ("bilinear", "transposed")


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


#: run defaults of SPAN step 1 (see :mod:`reidlib.models.registry`), as in SPAN's public code:
#: ResNet-34, 192 x 192 input, Adam 1e-4, batch 32, 10 epochs
DEFAULT_RUN = {"model.backbone": "resnet34", "data.batch_size": 32, "optim.lr": 1e-4,
               "optim.weight_decay": 0.0, "optim.unit": "epoch", "optim.max_iters": 10,
               "optim.milestones": [], "optim.warmup_iters": 0, "train.checkpoint_every": 500}


class MaskGenerator(nn.Module):
    """One generator head ``G_part`` (``decoder="bilinear"``, ours):
    ``[B, C3, h, w] -> logits [B, 1, 4h, 4w]``."""

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


class TransposedMaskGenerator(nn.Module):
    """One generator head ``G_part`` (``decoder="transposed"``) as in SPAN's public code
    (``model.py``, the generator block of the part-attention network):
    ``[B, C3, h, w] -> logits [B, 1, 8h, 8w]``.

    Three ``ConvTranspose2d(kernel 4, stride 2, padding 1, bias=False)`` layers, ``C3 -> 128 -> 64
    -> 1`` channels (the public code: 256 -> 2 * 64 -> 64 -> 1), the first two followed by
    BN + ReLU. The public code ends with a sigmoid; here the layer returns the logit and
    :class:`SPAN` applies the sigmoid. Initialisation as in the public code: transposed-conv
    weights ``N(0, sqrt(2 / (k * k * C_out)))``, BN weight 1 and bias 0.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (128, 64)):
        super().__init__()
        w0, w1 = widths
        self.up1 = nn.Sequential(nn.ConvTranspose2d(in_channels, w0, 4, 2, 1, bias=False), nn.BatchNorm2d(w0),
                                 nn.ReLU(inplace=True))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(w0, w1, 4, 2, 1, bias=False), nn.BatchNorm2d(w1),
                                 nn.ReLU(inplace=True))
        self.out = nn.ConvTranspose2d(w1, 1, 4, 2, 1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up1(x)                                                              # [B, 128, 2h, 2w]
        x = self.up2(x)                                                              # [B, 64, 4h, 4w]
        return self.out(x)                                                           # [B, 1, 8h, 8w]



def native_mask_stride(stride: int = 16, decoder: str = "bilinear") -> int:
    """Input size / native mask size of a SPAN with these options (4 for ours, 1 for the public
    code's stride 8 + transposed decoder)."""
    return max(1, int(stride) // (8 if decoder == "transposed" else 4))

class SPAN(nn.Module):
    """SPAN mask network (Sec. 3.1): ``forward(x[B,3,H,W]) -> masks M [B, 3, h, w]`` in ``[0, 1]``.

    Channel order of ``M`` is ``(front, rear, side)``, matching the semantic label vector
    ``l = [front, rear, side]`` of eq. (1).

    Args:
        backbone: ResNet for ``CNN_mask`` (paper: ``resnet34``; ``resnet18`` for CPU tests).
        weights: local torchvision state-dict file or ``None`` (never downloads); loads into either
            stride's trunk (the max-pool has no weights).
        out_size: ``None`` -> masks at the native size ``input / mask_stride``; ``(h, w)`` -> masks
            resized (bilinear, on the logits) to that fixed size.
        stride: output stride of ``CNN_mask``: 16 (with the stem's max-pool, our default) or 8
            (without it, SPAN's public code).
        decoder: ``"bilinear"`` (ours, x4) or ``"transposed"`` (SPAN's public code, x8). See the
            module docstring. ``stride=8, decoder="transposed"`` is the authors' network: masks at
            the input resolution.

    With ``stride`` and ``decoder`` at their defaults the network, its parameter names and its
    seeded initialisation are those of the earlier SPAN without these options.
    """

    part_names = PART_NAMES

    def __init__(self, backbone: str = "resnet34", weights: Optional[str | os.PathLike] = None,
                 out_size: Optional[tuple[int, int]] = None, stride: Literal[16, 8] = 16,
                 decoder: Literal["bilinear", "transposed"] = "bilinear"):
        super().__init__()
        if stride not in STRIDES:
            raise ValueError(f"stride must be one of {STRIDES}, got {stride!r}")
        stride = int(stride)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.config = {"backbone": backbone, "out_size": None if out_size is None else tuple(out_size),
                       "stride": stride, "decoder": decoder}
        self.out_size = None if out_size is None else (int(out_size[0]), int(out_size[1]))
        self.stride = stride
        self.decoder = decoder
        #: input size / native mask size
        self.mask_stride = native_mask_stride(stride, decoder)
        self.cnn_mask = resnet_stage1(backbone, weights, stride=stride)      # conv1..conv4, [B, C3, H/s, W/s]
        c3 = stage1_dim(backbone)
        gen = TransposedMaskGenerator if decoder == "transposed" else MaskGenerator
        self.g_front = gen(c3)
        self.g_rear = gen(c3)
        self.g_side = gen(c3)

    def mask_logits(self, x: torch.Tensor, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Pre-sigmoid mask logits ``[B, 3, h, w]`` (``size`` overrides ``out_size``)."""
        feat = self.cnn_mask(x)                                                    # [B, C3, H/s, W/s]
        logits = torch.cat([self.g_front(feat), self.g_rear(feat), self.g_side(feat)], dim=1)  # [B, 3, H/ms, W/ms]
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
