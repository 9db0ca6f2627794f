"""Every model of the registry (``reidlib.models.registry.MODELS``), in the spirit of timm's
``tests/test_models.py``: the tests are parametrized over the table itself, so a model added there
is tested here without a line written for it.

For each model, at the smallest size (resnet18, 64 x 64 images, tiny feature sizes, no weights):
a forward pass in train and eval mode meets its task's output contract (re-ID models: the dict of
``reidlib/models/output.py``, keys and shapes); every trainable parameter gets a gradient; the
model saved with the metadata training writes comes back through ``load_model`` with the same
state-dict keys and bit-identical eval outputs; and its ``DEFAULT_RUN`` (beside the model class)
is a valid run configuration through ``load_config(model=name)`` that builds the model.
"""
from __future__ import annotations

import functools
import inspect

import pytest
import torch

from reidlib.config import load_config
from reidlib.engine.artifacts import MODEL_FILE, load_model, model_meta, rebuild, save_model_file
from reidlib.metrics.distance import DISTANCES
from reidlib.models.output import KEYS
from reidlib.models.registry import (MODELS, REID_MODELS, build_model, check_options, constructor_kwargs,
                                     default_run, model_class, model_options)

NAMES = list(MODELS)
TASKS = ("reid", "span", "foreground", "attributes")
BACKBONE = "resnet18"
B, C, SIZE = 2, 5, 64      # batch, classes, input side
#: tiny values for the size options a model may declare (applied only where it declares them)
TINY = {"dim": 16, "neck_dim": 16, "num_attentions": 3, "ese_hidden": 8, "width": 8}


def _spec_task(task: str) -> str:
    """The registry's model for ``task`` (one per task besides re-ID)."""
    names = [n for n, s in MODELS.items() if s.task == task]
    assert len(names) == 1, f"expected one {task!r} model in the registry, got {names}"
    return names[0]


def needs_span(name: str) -> bool:
    """Whether re-ID model ``name`` is built around a frozen SPAN: the registry's ``needs_span``
    field where it has one, else the constructor's ``span`` argument."""
    spec = MODELS[name]
    flag = getattr(spec, "needs_span", None)
    if flag is not None:
        return bool(flag)
    return spec.task == "reid" and "span" in inspect.signature(model_class(name).__init__).parameters


def tiny_kwargs(name: str) -> dict:
    options = {k: v for k, v in TINY.items() if k in model_options(name)}
    return constructor_kwargs(name, BACKBONE, None, 1, options)


def tiny_span() -> torch.nn.Module:
    name = _spec_task("span")
    return model_class(name)(**tiny_kwargs(name))


def build(name: str) -> tuple[torch.nn.Module, dict]:
    """``(model, rebuild metadata)`` as the training tasks make them (``reidlib.engine.training``)."""
    torch.manual_seed(0)
    spec, kwargs = MODELS[name], tiny_kwargs(name)
    if spec.task != "reid":
        return model_class(name)(**kwargs), model_meta(name, kwargs)
    span = tiny_span() if needs_span(name) else None
    model = build_model(name, C, span=span, **kwargs) if span is not None else build_model(name, C, **kwargs)
    meta = model_meta(name, kwargs, num_classes=C, distance=getattr(model, "distance", "euclidean"),
                      num_parts=getattr(model, "num_parts", 1),
                      span_kwargs=dict(span.config) if span is not None else None)
    return model, meta


@functools.lru_cache(maxsize=None)
def _images() -> torch.Tensor:
    return torch.randn(B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def check_output(name: str, model: torch.nn.Module, out, training: bool) -> None:
    """The output contract of the model's task."""
    task = MODELS[name].task
    if task == "span":                                     # masks M [B, 3, h, w] in [0, 1]
        assert isinstance(out, torch.Tensor) and out.shape[:2] == (B, 3) and out.dim() == 4
        assert out.shape[-1] == SIZE // model.mask_stride and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
        return
    if task == "foreground":                               # logits [B, 1, H/4, W/4]
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (B, 1, SIZE // 4, SIZE // 4)
        return
    if task == "attributes":                               # logits [B, sum of the heads' classes]
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (B, sum(model.heads.values()))
        return
    assert isinstance(out, dict) and tuple(out) == KEYS, f"keys {tuple(out)} != {KEYS}"
    feats, bn = out["feats"], out["bn_feats"]
    P = model.num_parts
    assert feats.dim() == 3 and feats.shape[:2] == (B, P) and bn.shape == feats.shape
    assert torch.isfinite(feats).all() and torch.isfinite(bn).all()
    if training:
        lg = out["logits"]
        assert lg is not None and lg.dim() == 3 and lg.shape[0] == B and lg.shape[1] in (1, P) and lg.shape[2] == C
    else:
        assert out["logits"] is None, "no ID logits at inference"
    ar = out["area_ratios"]
    assert ar is None or tuple(ar.shape) == (B, P)
    if ar is not None:
        assert (ar >= 0).all() and torch.all(ar[:, 0] == 1), "column 0 is the global part (AR_0 = 1)"
    maps = out["maps"]
    assert maps is None or (maps.dim() == 4 and maps.shape[:2] == (B, P - 1))
    assert isinstance(out["aux_losses"], dict)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out["aux_losses"].values())
    assert model.distance in DISTANCES


def _loss(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.float().mean()
    total = out["feats"].mean() + out["bn_feats"].mean() + sum(out["aux_losses"].values())
    return total + (out["logits"].mean() if out["logits"] is not None else 0.0)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [v for k in KEYS if isinstance(v := out[k], torch.Tensor)] + list(out["aux_losses"].values())


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------

def test_registry_entries_resolve():
    assert NAMES, "empty model registry"
    for name, spec in MODELS.items():
        assert spec.name == name and spec.task in TASKS
        assert inspect.isclass(model_class(name)) and issubclass(model_class(name), torch.nn.Module)
    assert set(REID_MODELS) == {n for n, s in MODELS.items() if s.task == "reid"}


# ------------------------------------------------------------------------------------------------
# every model
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_forward_train_and_eval(name):
    model, _ = build(name)
    out = model.train()(_images())
    check_output(name, model, out, training=True)
    _loss(out).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"trainable parameters without a gradient: {missing[:5]}"
    if needs_span(name):
        assert not any(p.requires_grad for p in model.span.parameters()), "the SPAN inside is frozen"
    with torch.no_grad():
        check_output(name, model, model.eval()(_images()), training=False)


@pytest.mark.parametrize("name", NAMES)
def test_rebuilt_from_saved_metadata(name, tmp_path):
    model, meta = build(name)
    model.train()(_images())                 # move the BN statistics off their initial values
    model.eval()
    fresh = rebuild(meta)                    # the architecture alone, from the metadata
    want = model.state_dict()
    assert list(fresh.state_dict()) == list(want)
    assert all(fresh.state_dict()[k].shape == v.shape for k, v in want.items())

    path = save_model_file(tmp_path, model, meta, {"model": {"name": name}}, iteration=0)
    assert path.name == MODEL_FILE
    loaded, state = load_model(path)
    assert state["meta"]["model_name"] == name and not loaded.training
    got = loaded.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    if MODELS[name].task == "reid":
        assert loaded.distance == model.distance
    with torch.no_grad():
        a, b = _tensors(model(_images())), _tensors(loaded(_images()))
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", NAMES)
def test_default_run_is_a_valid_configuration(name):
    run = default_run(name)
    cfg = load_config(model=name)
    assert cfg.model.name == name
    for key, value in run.items():
        got = functools.reduce(getattr, key.split("."), cfg)
        assert got == value, f"{name}: DEFAULT_RUN[{key!r}] = {value!r} but the configuration has {got!r}"
    check_options(name, cfg.model.kwargs)
    kwargs = constructor_kwargs(name, BACKBONE, None, cfg.model.last_stride, cfg.model.kwargs)
    if MODELS[name].task != "reid":
        model_class(name)(**kwargs)
    elif needs_span(name):
        build_model(name, C, span=tiny_span(), **kwargs)
    else:
        build_model(name, C, **kwargs)
