"""ResNet backbones from torchvision, split the way both papers split them.

The papers' "conv1..conv4" are torchvision's ``conv1/bn1/relu/maxpool + layer1..layer3``
(stage 1, stride 16) and "conv5" is ``layer4`` (stage 2). ``last_stride=1`` keeps layer4 at
stride 16 (Luo et al.'s trick; MUSP's public code uses output stride 16).

Weights are never downloaded: ``weights`` is ``None`` (random init) or the path of a local
state-dict file (e.g. torchvision's ``resnet50-0676ba61.pth`` that the user copied by hand).
"""
from __future__ import annotations

import os
from typing import Optional

from torch import nn
from torchvision import models as tvm

from reidlib.utils.io import safe_torch_load

_BUILDERS = {"resnet18": tvm.resnet18, "resnet34": tvm.resnet34, "resnet50": tvm.resnet50,
             "resnet101": tvm.resnet101}


def build_resnet(name: str = "resnet50", weights: Optional[str | os.PathLike] = None,
                 last_stride: int = 2) -> tvm.ResNet:
    """A torchvision ResNet, randomly initialised or loaded from a local ``weights`` file."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(_BUILDERS)}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
    net = _BUILDERS[name](weights=None)
    if weights:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"backbone weights file not found: {path} (reidlib never downloads weights; "
                                    "point `weights` at a local torchvision state-dict file)")
        state = safe_torch_load(path)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        missing, unexpected = net.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("fc.")]
        if bad:
            raise ValueError(f"{path}: not a {name} state dict (missing keys such as {bad[:3]})")
    if last_stride == 1:
        block = net.layer4[0]
        if isinstance(block, tvm.resnet.BasicBlock):
            block.conv1.stride = (1, 1)
        else:
            block.conv2.stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    return net


def feature_dim(name: str) -> int:
    """Channels of layer4's output (512 for resnet18/34, 2048 for resnet50/101)."""
    return 512 if name in ("resnet18", "resnet34") else 2048


def stage1_dim(name: str) -> int:
    """Channels of layer3's output (256 for resnet18/34, 1024 for resnet50/101)."""
    return 256 if name in ("resnet18", "resnet34") else 1024


def split_resnet(name: str = "resnet50", weights: Optional[str | os.PathLike] = None,
                 last_stride: int = 2) -> tuple[nn.Sequential, nn.Module]:
    """Return ``(stage1, stage2)``: stage1 = conv1..conv4 (``[B,3,H,W] -> [B,C3,H/16,W/16]``),
    stage2 = conv5 / layer4 (``-> [B,C4,H/32,W/32]``, or ``H/16`` with ``last_stride=1``)."""
    net = build_resnet(name, weights, last_stride)
    stage1 = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    return stage1, net.layer4


def trunk(name: str = "resnet50", weights: Optional[str | os.PathLike] = None,
          last_stride: int = 2) -> nn.Sequential:
    """The whole convolutional trunk conv1..conv5 (no pooling, no fc)."""
    stage1, stage2 = split_resnet(name, weights, last_stride)
    return nn.Sequential(*stage1, stage2)


#: torchvision names of the children of :func:`trunk`'s ``nn.Sequential`` (indices 0..7)
_TRUNK_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def trunk_to_torchvision(trunk_state: dict) -> dict:
    """A :func:`trunk` state dict (keys ``0.weight``, ``4.0.conv1.weight``, ...) under torchvision's
    ResNet names (``conv1.weight``, ``layer1.0.conv1.weight``, ...): a file that ``weights=`` of
    every model here (and torchvision itself, apart from ``fc``) loads."""
    out = {}
    for key, value in trunk_state.items():
        idx, _, rest = key.partition(".")
        out[f"{_TRUNK_NAMES[int(idx)]}.{rest}"] = value
    return out


def resnet_stage1(name: str = "resnet34", weights: Optional[str | os.PathLike] = None,
                  stride: int = 16) -> nn.Sequential:
    """conv1..conv4 (torchvision's ``conv1/bn1/relu/maxpool + layer1..layer3``) at output ``stride``.

    * ``stride=16``: exactly :func:`split_resnet`'s stage 1 (same modules, same random
      initialisation for the same seed);
    * ``stride=8``: the max-pool replaced by an identity, as in SPAN's public code (``resnet.py``:
      the ResNet-34 trunk without its max-pool, stopped after layer3; a 24 x 24 x 256 map for its
      192 x 192 input). The children keep their indices (``3`` is the identity), so both strides
      have the same state-dict keys, and ``weights`` (a torchvision state dict) loads the same way.

    ``[B, 3, H, W] -> [B, C3, H/stride, W/stride]`` (C3 = :func:`stage1_dim`).
    """
    if stride not in (16, 8):
        raise ValueError(f"stride must be 16 or 8, got {stride!r}")
    stage1, _ = split_resnet(name, weights, last_stride=2)
    if stride == 8:
        stage1[3] = nn.Identity()                                  # the stem's max-pool
    return stage1
