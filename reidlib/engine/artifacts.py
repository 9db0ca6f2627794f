"""What a training run leaves behind, and the one way back from it to a model.

A finished run writes ``model.pt`` (:func:`save_model_file`): the weights, the run configuration
and the *metadata* needed to rebuild the model — the model's name in
:data:`reidlib.models.registry.MODELS`, its constructor keyword arguments, the number of classes
and, for SPAN's part-feature model, the frozen SPAN's own arguments. :func:`rebuild` turns that
metadata into an untrained model of the same architecture; :func:`load_model` rebuilds and loads
the weights. Every file is read with ``torch.load(weights_only=True)``: a checkpoint can hold
tensors, numbers, strings, lists and dicts, never code. A file whose metadata builds no model, or
whose weights do not fit the model it describes, is refused before any weight is loaded
(:class:`reidlib.errors.CheckpointError`, one line naming the file and what does not fit).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from reidlib.engine.checkpoint import FORMAT, VERSION, jsonable_config, load_checkpoint, to_bytes
from reidlib.errors import CheckpointError, ConfigError
from reidlib.utils.io import atomic_write_bytes, safe_torch_load

__all__ = ["MODEL_FILE", "save_model_file", "model_meta", "rebuild", "load_model", "load_span"]

MODEL_FILE = "model.pt"

#: the training task of each model family (``meta["task"]``)
_TASKS = {"reid", "span", "foreground", "attributes"}


def model_meta(name: str, kwargs: Mapping[str, Any], **extra: Any) -> dict:
    """Rebuild metadata: ``{"task", "model_name", "model_kwargs", **extra}``. ``kwargs`` are the
    constructor's keyword arguments (``weights`` is dropped: the checkpoint holds every weight)."""
    from reidlib.models.registry import MODELS

    kw = {k: v for k, v in dict(kwargs).items() if k != "weights"}
    return {"task": MODELS[name].task, "model_name": name, "model_kwargs": kw, **extra}


def save_model_file(out_dir: str | os.PathLike, model: torch.nn.Module, meta: Mapping[str, Any],
                    run_config: Mapping[str, Any], iteration: int) -> Path:
    """``<out_dir>/model.pt``: weights + rebuild metadata + the whole run configuration, atomically."""
    state = {"format": FORMAT, "version": VERSION, "kind": "model", "iteration": int(iteration),
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "meta": jsonable_config(dict(meta)), "run_config": jsonable_config(dict(run_config))}
    return atomic_write_bytes(Path(out_dir) / MODEL_FILE, to_bytes(state))


def _span_from(kwargs: Mapping[str, Any]):
    from reidlib.models.span import SPAN

    kw = dict(kwargs)
    kw.pop("weights", None)
    if kw.get("out_size") is not None:
        kw["out_size"] = tuple(kw["out_size"])
    return SPAN(**kw)


def rebuild(meta: Mapping[str, Any]) -> torch.nn.Module:
    """An untrained model with the architecture ``meta`` describes (see :func:`model_meta`)."""
    from reidlib.models.registry import MODELS, build_model, model_class

    task = meta.get("task")
    if task not in _TASKS:
        raise ConfigError(f"unknown task {task!r} in the checkpoint's metadata; expected one of {sorted(_TASKS)}")
    name = meta.get("model_name")
    kwargs = dict(meta.get("model_kwargs") or {})
    kwargs.pop("weights", None)
    for key in ("span_input_size", "out_size"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    if task == "reid":
        needs_span = name in MODELS and MODELS[name].needs_span
        span = _span_from(meta.get("span_kwargs") or {}) if needs_span else None
        model = build_model(name, int(meta["num_classes"]), span=span, **kwargs) if span is not None \
            else build_model(name, int(meta["num_classes"]), **kwargs)
        if meta.get("distance"):
            model.distance = meta["distance"]
        return model
    if task == "span":
        return _span_from(kwargs)
    if task == "attributes":
        return model_class(name)(**kwargs)
    return model_class("foreground")(**kwargs)


def _rebuilt(meta: Mapping[str, Any], path: str | os.PathLike) -> torch.nn.Module:
    """:func:`rebuild`, with any failure (unknown task or model, missing ``num_classes``, options the
    model does not take) as a CheckpointError naming the file."""
    try:
        return rebuild(meta)
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        reason = f"no {err}" if isinstance(err, KeyError) else (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: its metadata builds no model ({reason}); expected the 'meta' a reidlib "
                              "run writes (task, model_name, model_kwargs; num_classes for re-ID models)") from None


def _with_weights(model: torch.nn.Module, weights: Any, path: str | os.PathLike, what: str) -> torch.nn.Module:
    """``model`` (eval mode) with the state dict ``weights`` loaded, or a CheckpointError naming the
    file when they do not fit it (before ``load_state_dict``'s traceback)."""
    from reidlib.models.backbones import state_dict_misfit

    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path}: holds no state dict of weights (found {type(weights).__name__}); "
                              f"expected the weights of {what}")
    misfit = state_dict_misfit(model.state_dict(), weights)
    if misfit:
        raise CheckpointError(f"{path}: its weights do not fit {what}: {misfit}; expected the weights of that "
                              "model (the file edited, or its metadata from another run)")
    model.load_state_dict(weights)
    return model.eval()


def _described(meta: Mapping[str, Any]) -> str:
    classes = f", {meta['num_classes']} classes" if "num_classes" in meta else ""
    return (f"the model its metadata describes ({meta.get('model_name')} {dict(meta.get('model_kwargs') or {})}"
            f"{classes})")


def load_model(checkpoint: str | os.PathLike, map_location: Any = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a training run from ``model.pt`` / ``last.pt`` (or the run folder) and
    load its weights. Returns ``(model in eval mode, the checkpoint dict)``."""
    state = load_checkpoint(checkpoint, map_location=map_location)
    path = state.get("path", checkpoint)
    meta = state.get("meta") or {}
    return _with_weights(_rebuilt(meta, path), state.get("model"), path, _described(meta)), state


def load_span(path: str | os.PathLike, map_location: Any = "cpu"):
    """A trained SPAN (eval mode) from the output of a ``span-masks`` run (``model.pt`` /
    ``last.pt`` / the run folder), or from a plain file holding its state dict (optionally as
    ``{"state_dict" | "model": ..., "config": {"backbone": ..., "out_size": ...}}``)."""
    path = Path(path)
    raw = safe_torch_load(path, map_location=map_location) if path.is_file() else None
    if raw is None or (isinstance(raw, dict) and raw.get("format") == FORMAT):
        state = raw if raw is not None else load_checkpoint(path, map_location=map_location)   # a reidlib run
        meta = state.get("meta") or {}
        if meta.get("task") != "span":
            raise CheckpointError(f"{path}: not a SPAN checkpoint (task {meta.get('task')!r}); expected the "
                                  "output of `reidlib train --model span-masks`")
        return _with_weights(_rebuilt(meta, path), state.get("model"), path, _described(meta))
    config, weights = {}, raw                                      # a plain state-dict file
    if isinstance(raw, dict):
        config = dict(raw.get("config") or {})
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), dict):
                weights = raw[key]
                break
    try:
        span = _span_from(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its config {config} builds no SPAN ({err}); expected SPAN's "
                              "arguments (backbone, out_size, stride, decoder)") from None
    return _with_weights(span, weights, path, f"SPAN({', '.join(f'{k}={v!r}' for k, v in span.config.items())})")
