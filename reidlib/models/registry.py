"""``build_model(name, num_classes, **kwargs)``: one entry point for the engine and the CLI."""
from __future__ import annotations

import importlib

_REGISTRY = {
    "baseline": ("reidlib.models.baseline", "StrongBaseline"),
    "span": ("reidlib.models.part_features", "SPANReID"),
    "musp": ("reidlib.models.musp", "MUSP"),
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, **kwargs):
    """Instantiate a re-ID model by name (``baseline``, ``span``, ``musp``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {available_models()}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)(num_classes=num_classes, **kwargs)
