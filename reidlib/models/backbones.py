"""ResNet backbones from torchvision, split the way both papers split them.

The papers' "conv1..conv4" are torchvision's ``conv1/bn1/relu/maxpool + layer1..layer3``
(stage 1, stride 16) and "conv5" is ``layer4`` (stage 2). ``last_stride=1`` keeps layer4 at
stride 16 (Luo et al.'s trick; MUSP's public code uses output stride 16).

Weights are never downloaded: ``weights`` is ``None`` (random init) or the path of a local
state-dict file (e.g. torchvision's ``resnet50-0676ba61.pth`` that the user copied by hand). The
file must hold that ResNet's trunk, key for key and shape for shape (``fc.*`` is optional and
ignored): another ResNet's file is refused naming the ResNet it holds, before torch would fail on
(or, ResNet-34 into ResNet-18, silently accept) it.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn
from torchvision import models as tvm

from reidlib.errors import CheckpointError
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
        net.load_state_dict(_resnet_state(path, name, net.state_dict()), strict=False)
    if last_stride == 1:
        block = net.layer4[0]
        if isinstance(block, tvm.resnet.BasicBlock):
            block.conv1.stride = (1, 1)
        else:
            block.conv2.stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    return net


def state_dict_misfit(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any],
                      ignore: Callable[[str], bool] = lambda key: False) -> Optional[str]:
    """What keeps the state dict ``given`` from loading (strictly) into a module whose own state dict
    is ``expected``, as one phrase (a few keys of each kind, with the counts), or None when it
    fits. Keys for which ``ignore(key)`` is true are not compared."""
    def shape(v: Any) -> str:
        return str(list(v.shape)) if isinstance(v, torch.Tensor) else f"a {type(v).__name__}"

    missing = [k for k in expected if k not in given and not ignore(k)]
    unexpected = [str(k) for k in given if k not in expected and not ignore(k)]
    other = [k for k in expected if k in given and not ignore(k) and shape(given[k]) != shape(expected[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:3])})")
    if other:
        k = other[0]
        parts.append(f"{len(other)} tensor(s) of other shapes (e.g. {k}: {shape(given[k])} in the file, "
                     f"{shape(expected[k])} expected)")
    return ", ".join(parts) or None


def _optional_key(key: str) -> bool:
    """Keys a backbone weights file may leave out or hold in any shape: the unused ``fc`` and
    BatchNorm's ``num_batches_tracked`` (torch fills it in)."""
    return key.startswith("fc.") or key.endswith("num_batches_tracked")


@functools.lru_cache(maxsize=None)
def _resnet_shapes(name: str) -> dict:
    with torch.device("meta"):                                   # shapes only: no memory, no init cost
        return dict(_BUILDERS[name](weights=None).state_dict())


def _resnet_state(path: str, name: str, own: Mapping[str, torch.Tensor]) -> dict:
    """The state dict of the weights file ``path`` for a ``name`` ResNet whose own state dict is
    ``own``, checked (CheckpointError naming the file and what it holds) and without ``fc`` entries
    of another shape (another number of classes: unused here)."""
    state = safe_torch_load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    form = f"a {name} state dict (torchvision's key names: conv1.weight, layer1.0.conv1.weight, ...)"
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}; expected {form}")
    misfit = state_dict_misfit(own, state, ignore=_optional_key)
    if misfit:
        held = [n for n in _BUILDERS if state_dict_misfit(_resnet_shapes(n), state, ignore=_optional_key) is None]
        if held:
            raise CheckpointError(f"{path}: a {held[0]} state dict (its conv1 ... layer4 keys and shapes are "
                                  f"{held[0]}'s), expected {name} for this backbone")
        raise CheckpointError(f"{path}: not a {name} state dict: {misfit}; expected {form}")
    return {k: v for k, v in state.items()
            if not (k.startswith("fc.") and k in own and tuple(v.shape) != tuple(own[k].shape))}


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
