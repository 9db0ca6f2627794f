"""MUSP: multi-attention-based soft partition network (Lee, Woo, Lee; ``papers/musp.md`` Sec. 3-4).

Pipeline (paper equation numbers)::

    M   = CNN_B(I)                      [B, d, h, w]   eq. (1)  ResNet trunk (output stride 16 or 32)
    V   = CNN_VE(M)                     [B, c, h, w]   eq. (2)  3x3 conv, pad 1 (optionally depthwise)
    A   = CNN_AE(M)                     [B, n, h, w]   eq. (3)  3x3 conv, pad 1
    F   = V (x) softmax_n(A) / |hw|     [B, n, c]      eq. (4)  softmax over the n axis at every location
    F_d = F[:, :n-1]                    [B, n-1, c]    eq. (5)  background vector f_n discarded
    F_e = F_d * sigmoid(MLP(vec(F_d)))  [B, n-1, c]    eqs. (6)-(8)  extended SE (ESE)
    f_g = GAP(M)                        [B, d]         Sec. 3.4 global feature
    BNNeck + ID classifier per feature  (n heads: global + n-1 parts)   eq. (12)
    L_div = attention_product_loss(kept attention)                        eq. (14)

Output (see :mod:`reidlib.models.output`): ``feats``/``bn_feats`` ``[B, n, d]`` ordered
``[f_g, f_1 .. f_{n-1}]`` (index 0 = global, the CPDM convention), ``logits`` ``[B, n, C]`` in
training, ``area_ratios`` ``[B, n]`` (column 0 = 1.0; column i = mean attention weight of kept part
i, the "AR ... calculated by averaging the attention weights" of eq. 9), ``maps`` = the kept
attention maps ``[B, n-1, h, w]``, ``aux_losses = {"loss_div": div_weight * L_div}`` in training.

Paper text vs. the public code (``vehiclereid/models/resnet.py``, ``train_xent_tri.py``), all switchable:

* ``depthwise_value``: the public value conv is depthwise (``groups=d``); the paper says "a simple
  single convolution layer". Default: dense conv (paper).
* ``ese_over_all``: the public code applies ESE over all n vectors *including* the background one and
  discards it afterwards (so the background vector still steers the channel gates of the parts);
  the paper (eq. 6) reshapes only ``F_d``. Default: paper.
* ``global_from``: ``"backbone"`` = GAP of M (paper, Sec. 3.4 / Fig. 2); ``"value"`` = spatial mean
  of the value map V (public code). The latter needs ``c == d`` only if you want all feats to share
  one width; with ``"backbone"`` and ``c != d`` the model refuses (``feats`` is one ``[B, n, d]`` tensor).
* ``area_ratio``: ``"mean"`` = spatial mean of each kept attention map (paper); ``"l1"`` = the kept
  parts' attention mass L1-normalised over the kept parts (public code). The two differ by a
  per-image factor, which cancels in eq. (9) when the global weight is handled separately.
* ``distance``: ``"cpdm_musp"`` (paper: Euclidean, global weight 1/(n-1)) or ``"cpdm_musp_code"``
  (public code: L2-normalised features, squared Euclidean); see :func:`reidlib.metrics.distance.build_distance`.
* ranked vectors (``eval.features``, not a model option): the default ranks the post-BNNeck
  ``bn_feats`` (``"post_bn"``, as every model); the public code ranks the global and part vectors
  L2-normalised *before* their BNNeck, ``eval.features="pre_bn_l2"`` (with ``"cpdm_musp_code"``
  that is the code's test-time ranking); see :mod:`reidlib.models.output`.
* ESE width: the paper says the ESE input is 2,048-d, which is not ``c (n-1)`` for ResNet-50's
  ``c = 2048`` (it would be 8,192 for n = 5). We follow eqs. (6)-(8): ``r = c (n-1)``
  (``c n`` with ``ese_over_all``). Hidden width 128 as in the paper.

``attention="sigmoid"`` (Table 7): A has ``n - 1`` channels passed through an element-wise sigmoid
and all of them are kept ("we retained four attentions for the sigmoid-based and five for the
softmax-based module"), so both variants give ``n - 1`` part vectors for the same ``num_attentions``.
There is no background vector, so ``ese_over_all`` has no effect there (ESE sees the n-1 parts).
The diversity loss (eq. 14) is applied to the kept maps in both variants (the ablation changes only
the activation); set ``div_weight=0`` to switch it off. With a single kept map (``n = 2``) eq. (14)
degenerates to the map's own mass, whose minimisation would push all attention onto the background,
so ``loss_div`` is a constant 0 there.

Example (visualise the n maps incl. background, as in the paper's Figs. 1 and 5)::

    model = MUSP(num_classes=576).eval()
    maps = model.attention(images)                        # [B, n, h, w], sums to 1 over n
    from reidlib.viz import attention_maps
    attention_maps(images, maps, names=[f"att {i + 1}" for i in range(4)] + ["background"])
"""
from __future__ import annotations

import os
from typing import Literal, Optional

import torch
from torch import nn

from reidlib.losses.musp import attention_product_loss
from reidlib.models.backbones import feature_dim, trunk
from reidlib.models.heads import BNNeck
from reidlib.models.output import make_output

__all__ = ["MUSP", "ExtendedSE", "soft_partition_pool"]


#: run defaults (see :mod:`reidlib.models.registry`), MUSP Sec. 5.2: 256 x 256 input, batch 64 =
#: 16 identities x 4 images, Adam 3.5e-4 (weight decay 5e-4), 90 epochs, learning rate / 10 at
#: epochs 30 and 60, 10 warm-up epochs from 3.5e-5, label smoothing; the ID losses of the n heads
#: summed (eq. 12) and the triplet losses of the n features summed (eq. 13), ID : triplet = 1 : 1
#: whatever n (as in the public code, ``train_xent_tri.py``)
#: the features its public code ranks at test time (``eval.features``; the ``paper`` profile
#: ranks each model so): MUSP's public code ranks the part and global vectors L2-normalised before their BNNeck
PUBLIC_CODE_FEATURES = "pre_bn_l2"
DEFAULT_RUN = {"data.p": 16, "data.k": 4, "optim.unit": "epoch", "optim.max_iters": 90,
               "optim.milestones": [30, 60], "optim.warmup_iters": 10, "optim.warmup_factor": 0.1,
               "loss.triplet_on": "per_part", "loss.id_reduction": "sum"}


def soft_partition_pool(value: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. (4): ``F = V (x) W / |hw|``.

    ``value [B, c, h, w]``, ``weights [B, k, h, w]`` (already activated attention weights) ->
    ``F [B, k, c]`` with ``F[b, i] = sum_{x} W[b, i, x] V[b, :, x] / (h w)``.
    """
    B, c, h, w = value.shape
    v_flat = value.reshape(B, c, h * w)                      # [B, c, hw]
    w_flat = weights.reshape(B, weights.shape[1], h * w)     # [B, k, hw]
    return torch.bmm(w_flat, v_flat.transpose(1, 2)) / float(h * w)  # [B, k, c]


class ExtendedSE(nn.Module):
    """Extended squeeze-and-excitation over a set of part vectors (eqs. 6-8).

    ``forward(F [B, k, c]) -> F * gate(F)``, with ``gate(F) = sigmoid(W2 relu(W1 vec(F)))`` reshaped
    back to ``[B, k, c]``; ``vec`` flattens the k vectors into one ``r = k c`` vector (eq. 6), so
    every gate sees all parts at once (unlike the original SE, one gate per vector).
    """

    def __init__(self, num_vectors: int, channels: int, hidden: int = 128):
        super().__init__()
        self.num_vectors, self.channels = int(num_vectors), int(channels)
        r = self.num_vectors * self.channels
        self.fc1 = nn.Linear(r, int(hidden))
        self.fc2 = nn.Linear(int(hidden), r)
        self.relu = nn.ReLU(inplace=True)

    def gate(self, parts: torch.Tensor) -> torch.Tensor:
        """Channel gates ``rho(MLP(f_d))`` of eq. (7), reshaped to ``[B, k, c]``; values in (0, 1)."""
        B, k, c = parts.shape
        if (k, c) != (self.num_vectors, self.channels):
            raise ValueError(f"ESE expects [B, {self.num_vectors}, {self.channels}], got {tuple(parts.shape)}")
        f_d = parts.reshape(B, k * c)                            # eq. (6)  [B, r]
        return torch.sigmoid(self.fc2(self.relu(self.fc1(f_d)))).reshape(B, k, c)

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        return parts * self.gate(parts)                          # eqs. (7)-(8)  [B, k, c]


class MUSP(nn.Module):
    """Multi-attention soft partition network (MUSP, eqs. 1-8 and 14). See the module docstring.

    Args:
        num_classes: number of training identities C (0 = no classifiers).
        backbone: torchvision ResNet name (``resnet18/34/50/101``).
        weights: local path of a torchvision state dict, or None (random init). Never downloaded.
        output_stride: 16 (layer4 stride 1, the public code) or 32.
        num_attentions: n, 2..6 in Table 5; the model yields n features (global + n-1 parts).
        value_channels: c; default = backbone channels d so all features share width d.
        depthwise_value: 3x3 depthwise value conv (public code); needs ``c % d == 0``.
        attention: ``"softmax"`` (n channels, background discarded) or ``"sigmoid"`` (n-1 channels, all kept).
        ese / ese_hidden / ese_over_all: channel-wise attention module (eqs. 6-8) and its variants.
        global_from: ``"backbone"`` (GAP of M, paper) or ``"value"`` (mean of V, public code).
        area_ratio: ``"mean"`` (paper) or ``"l1"`` (public code).
        div_weight: weight of eq. (14) in ``aux_losses["loss_div"]``.
        div_reduction: ``reduction=`` of :func:`attention_product_loss`: None = its default (``"sum"``
            over the batch, eq. 14 as written), ``"sum"`` or ``"mean"`` (batch-size independent).
        distance: name of the inference metric (``"cpdm_musp"`` or ``"cpdm_musp_code"``).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50",
                 weights: Optional[str | os.PathLike] = None, output_stride: Literal[16, 32] = 16,
                 num_attentions: int = 5, value_channels: Optional[int] = None,
                 depthwise_value: bool = False, attention: Literal["softmax", "sigmoid"] = "softmax",
                 ese: bool = True, ese_hidden: int = 128, ese_over_all: bool = False,
                 global_from: Literal["backbone", "value"] = "backbone", area_ratio: Literal["mean", "l1"] = "mean",
                 div_weight: float = 1.0, div_reduction: Optional[Literal["sum", "mean"]] = None,
                 distance: Literal["cpdm_musp", "cpdm_musp_code"] = "cpdm_musp"):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride!r}")
        if int(num_attentions) < 2:
            raise ValueError(f"num_attentions must be >= 2 (one part + background), got {num_attentions!r}")
        if attention not in ("softmax", "sigmoid"):
            raise ValueError(f"attention must be 'softmax' or 'sigmoid', got {attention!r}")
        if global_from not in ("backbone", "value"):
            raise ValueError(f"global_from must be 'backbone' or 'value', got {global_from!r}")
        if area_ratio not in ("mean", "l1"):
            raise ValueError(f"area_ratio must be 'mean' or 'l1', got {area_ratio!r}")
        if distance not in ("cpdm_musp", "cpdm_musp_code"):
            raise ValueError(f"distance must be 'cpdm_musp' or 'cpdm_musp_code', got {distance!r}")

        if div_reduction not in (None, "sum", "mean"):
            raise ValueError(f"div_reduction must be None, 'sum' or 'mean' (aux losses are scalars), got {div_reduction!r}")
        d = feature_dim(backbone)
        c = d if value_channels is None else int(value_channels)
        if depthwise_value and c % d != 0:
            raise ValueError(f"depthwise_value needs value_channels to be a multiple of {d}, got {c}")
        if global_from == "backbone" and c != d:
            raise ValueError(f"global_from='backbone' gives a {d}-d global feature but the parts are {c}-d; "
                             "use value_channels=None or global_from='value'")

        n = int(num_attentions)
        self.num_attentions = n
        self.num_parts = n                       # P = global + (n - 1) kept parts
        self.num_kept = n - 1
        self.attention_type = attention
        self.ese_over_all = bool(ese_over_all) and attention == "softmax"  # sigmoid has no background
        self.global_from = global_from
        self.area_ratio_mode = area_ratio
        self.div_weight = float(div_weight)
        self.div_reduction = div_reduction
        self.distance = distance
        self.eval_features = "post_bn"           # ranked when eval.features is "" (see the module docstring)
        self.feat_dim = c
        self.num_classes = int(num_classes)

        self.backbone = trunk(backbone, weights, last_stride=1 if output_stride == 16 else 2)  # eq. (1)
        self.value = nn.Conv2d(d, c, kernel_size=3, padding=1, groups=d if depthwise_value else 1)  # eq. (2)
        attn_channels = n if attention == "softmax" else n - 1
        self.attn = nn.Conv2d(d, attn_channels, kernel_size=3, padding=1)                         # eq. (3)
        self.ese: Optional[ExtendedSE] = None
        if ese:
            k = n if self.ese_over_all else n - 1
            self.ese = ExtendedSE(k, c, ese_hidden)
        self.necks = nn.ModuleList([BNNeck(c, num_classes) for _ in range(n)])

    # ------------------------------------------------------------------ attention
    def _weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Activated attention ``[B, n, h, w]`` (softmax over the n axis) or ``[B, n-1, h, w]`` (sigmoid)."""
        if self.attention_type == "softmax":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)

    def soft_partition(self, fmap: torch.Tensor) -> dict:
        """Eqs. (2)-(8) on a backbone map ``M [B, d, h, w]``.

        Returns ``{"value": V [B, c, h, w], "weights": W (all activated maps, incl. the background
        for softmax), "vectors": F [B, n or n-1, c] (eq. 4, every map, before ESE), "parts":
        F_e [B, n-1, c] (after discarding the background and ESE)}``.
        """
        value = self.value(fmap)                          # V [B, c, h, w]
        weights = self._weights(self.attn(fmap))          # [B, n | n-1, h, w]
        vectors = soft_partition_pool(value, weights)     # F [B, n | n-1, c]
        k = self.num_kept
        if self.ese is not None and self.ese_over_all:
            parts = self.ese(vectors)[:, :k]              # public code: ESE over all n, then discard
        else:
            parts = vectors[:, :k]                        # eq. (5): F_d, background f_n discarded
            if self.ese is not None:
                parts = self.ese(parts)                   # eqs. (6)-(8)
        return {"value": value, "weights": weights, "vectors": vectors, "parts": parts}

    def attention(self, images: torch.Tensor) -> torch.Tensor:
        """Attention maps for visualisation: softmax ``[B, n, h, w]`` with the background last
        (sums to 1 over n), or sigmoid ``[B, n-1, h, w]`` (no background map)."""
        return self._weights(self.attn(self.backbone(images)))

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> dict:
        """``images [B, 3, H, W]`` -> output dict of :func:`reidlib.models.output.make_output`."""
        fmap = self.backbone(images)                      # M [B, d, h, w]          eq. (1)
        sp = self.soft_partition(fmap)
        kept = sp["weights"][:, :self.num_kept]           # [B, n-1, h, w]
        parts = sp["parts"]                               # F_e [B, n-1, c]
        if self.global_from == "backbone":
            f_g = fmap.mean(dim=(2, 3))                   # GAP(M) [B, d]
        else:
            f_g = sp["value"].mean(dim=(2, 3))            # mean of V [B, c]
        feats = torch.cat([f_g.unsqueeze(1), parts], dim=1)   # [B, n, c]

        bn_list, logit_list = [], []
        for i, neck in enumerate(self.necks):
            bn, lg = neck(feats[:, i])                    # [B, c], [B, C] | None
            bn_list.append(bn)
            logit_list.append(lg)
        bn_feats = torch.stack(bn_list, dim=1)            # [B, n, c]
        logits = None
        if self.training and all(lg is not None for lg in logit_list):
            logits = torch.stack(logit_list, dim=1)       # [B, n, C]

        if self.area_ratio_mode == "mean":
            ar_parts = kept.mean(dim=(2, 3))              # [B, n-1], eq. (9)'s AR
        else:
            mass = kept.sum(dim=(2, 3))
            ar_parts = mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-12)
        area_ratios = torch.cat([torch.ones_like(ar_parts[:, :1]), ar_parts], dim=1)  # [B, n]

        aux = {}
        if self.training:
            if self.num_kept >= 2 and self.div_weight != 0.0:
                kw = {} if self.div_reduction is None else {"reduction": self.div_reduction}
                aux["loss_div"] = self.div_weight * attention_product_loss(kept, **kw)  # eq. (14)
            else:
                aux["loss_div"] = kept.new_zeros(())
        return make_output(feats, bn_feats, logits=logits, area_ratios=area_ratios, maps=kept,
                           aux_losses=aux)
