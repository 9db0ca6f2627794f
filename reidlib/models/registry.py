"""The model table: one entry per model of both papers, in the spirit of torchreid's ``build_model``
and timm's per-model default configs.

Each entry names the class and the *task* that trains it (``reid``: an ID + triplet re-ID model;
``span``: SPAN's mask network, step 1; ``foreground``: the foreground network; ``attributes``: the
generic stand-in for ImageNet pretraining, attribute classification, :mod:`reidlib.models.attributes`).
Two things live beside each model, in its own module:

* its **options**: the keyword arguments of its constructor, typed by the constructor's
  annotations (``Literal[...]`` for choices) and defaulted by its signature. A run configuration
  passes them as ``model.kwargs``; :func:`check_options` coerces and checks them when the
  configuration is built, so an unknown or ill-typed option fails there, naming the option;
* its **run defaults** ``DEFAULT_RUN`` (dotted configuration keys -> values): the schedule and
  batch layout its paper trains it with.

The structural arguments every model shares come from the top of the run configuration
(``model.backbone``, ``model.weights``, ``model.last_stride``), not from the options.
"""
from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from reidlib.errors import ConfigError
from reidlib.utils.coerce import coerce

__all__ = ["ModelSpec", "MODELS", "REID_MODELS", "available_models", "model_class", "model_options",
           "check_options", "default_run", "constructor_kwargs", "build_model"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str   #: ``module:Class``
    task: str     #: ``reid`` | ``span`` | ``foreground`` | ``attributes``
    #: constructor arguments filled from the run configuration, not options
    structural: tuple = ("backbone", "weights", "last_stride")
    #: built on a trained SPAN (step 1, eq. 6) passed to its constructor as ``span``: SPAN's part
    #: features are pooled with SPAN's masks (Sec. 3.2), so training one needs that SPAN first
    needs_span: bool = False


MODELS: dict[str, ModelSpec] = {
    "baseline": ModelSpec("baseline", "reidlib.models.baseline:StrongBaseline", "reid"),
    "span": ModelSpec("span", "reidlib.models.part_features:SPANReID", "reid", needs_span=True),
    "musp": ModelSpec("musp", "reidlib.models.musp:MUSP", "reid", ("backbone", "weights", "output_stride")),
    "span-masks": ModelSpec("span-masks", "reidlib.models.span:SPAN", "span", ("backbone", "weights")),
    "foreground": ModelSpec("foreground", "reidlib.models.foreground:ForegroundNet", "foreground",
                            ("backbone", "weights")),
    "attributes": ModelSpec("attributes", "reidlib.models.attributes:AttributeNet", "attributes"),
}
REID_MODELS = tuple(n for n, s in MODELS.items() if s.task == "reid")
#: constructor arguments that are never options (given by the task, or objects)
_NOT_OPTIONS = {"self", "num_classes", "span"}


def available_models() -> list[str]:
    return sorted(MODELS)


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def model_class(name: str) -> type:
    module, cls = _spec(name).target.split(":")
    return getattr(importlib.import_module(module), cls)


def _module(name: str):
    return importlib.import_module(_spec(name).target.split(":")[0])


def model_options(name: str) -> dict[str, tuple[Any, Any]]:
    """``{option: (type, default)}`` of model ``name``, read off its constructor."""
    spec = _spec(name)
    cls = model_class(name)
    hints = typing.get_type_hints(cls.__init__)
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in _NOT_OPTIONS or p.name in spec.structural or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = (hints.get(p.name, Any), None if p.default is inspect.Parameter.empty else p.default)
    return out


def check_options(name: str, options: Mapping[str, Any]) -> dict:
    """``options`` coerced to the types model ``name`` declares; ConfigError for an unknown option
    (listing the valid ones) or a value that does not fit its type (naming the option)."""
    known = model_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"model.kwargs: unknown option(s) {unknown} for model {name!r}; valid options: "
                          + ", ".join(f"{k} ({_type_name(t)}, default {d!r})" for k, (t, d) in known.items()))
    return {k: coerce(v, known[k][0], f"model.kwargs.{k}") for k, v in options.items()}


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def default_run(name: str) -> dict[str, Any]:
    """The run-configuration defaults (dotted keys) declared beside model ``name`` (``DEFAULT_RUN``)."""
    return dict(getattr(_module(name), "DEFAULT_RUN", {}))


def constructor_kwargs(name: str, backbone: str, weights: Any, last_stride: int,
                       options: Mapping[str, Any]) -> dict:
    """Keyword arguments of model ``name``'s constructor from the run configuration's structural
    fields and its (checked) options. MUSP calls its stride *output stride*: last stride 1 = 16."""
    spec = _spec(name)
    kw = dict(check_options(name, options))
    shared = {"backbone": backbone, "weights": weights, "last_stride": int(last_stride),
              "output_stride": 16 if int(last_stride) == 1 else 32}
    for arg in spec.structural:
        kw[arg] = shared[arg]
    return kw


def build_model(name: str, num_classes: int, **kwargs):
    """Instantiate a re-ID model by name (``baseline``, ``span``, ``musp``) with constructor kwargs."""
    spec = _spec(name)
    if spec.task != "reid":
        raise ConfigError(f"build_model builds re-ID models ({', '.join(REID_MODELS)}); {name!r} is a "
                          f"{spec.task} model: use model_class({name!r})")
    return model_class(name)(num_classes=num_classes, **kwargs)
