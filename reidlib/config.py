"""Run configuration: dataclasses with per-model defaults, YAML files and ``key=value`` overrides.

>>> cfg = load_config(model="musp", overrides=["optim.lr=1e-4", "data.root=data/synth"])
>>> cfg.optim.lr, cfg.loss.triplet_on
(0.0001, 'per_part')

Precedence: the model's defaults (:func:`default_config`) < the YAML file < the overrides.
Overrides use dotted keys and are coerced to the type of the field they set (``"1e-4"`` ->
``float``, ``"[10, 20]"`` -> ``list[int]``, ``"true"`` -> ``bool``, ``"none"`` -> ``None`` for
optional fields). ``model.kwargs`` holds the model's own options, checked against the model's
constructor when the configuration is built (:func:`reidlib.models.registry.check_options`). An
unknown key or option raises :class:`reidlib.errors.ConfigError` naming it and the valid ones.
Building a configuration imports the model's module (and so torch); parsing ``--help`` does not.

Schedules are in ``optim.unit``: ``"iter"`` (optimiser steps) or ``"epoch"`` (passes over the
P x K batches of the training set, converted to iterations once the data are loaded); this lets
MUSP's "90 epochs, / 10 at 30 and 60, 10 warm-up epochs" (Sec. 5.2) be written as in the paper.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from reidlib.errors import ConfigError
from reidlib.data.registry import DATASETS as _DATASET_TABLE
from reidlib.models.registry import MODELS as _MODEL_TABLE, REID_MODELS
from reidlib.utils.coerce import coerce, parse_yaml_value, split_pairs

#: model names (the table is :data:`reidlib.models.registry.MODELS`; importing it does not import torch)
MODELS = tuple(_MODEL_TABLE)
#: dataset names (the table is :data:`reidlib.data.registry.DATASETS`)
DATASETS = tuple(_DATASET_TABLE)
#: choices that belong to the run configuration itself (:mod:`reidlib.engine.optim` uses them)
OPTIMIZERS = ("adam", "adamw", "sgd")
WARMUP_METHODS = ("linear", "constant")
SCHEDULE_UNITS = ("iter", "epoch")
LOADERS = ("auto", "cache", "files")
SYNC_BN = ("auto", "on", "off", "true", "false")
#: which vectors a re-ID model ranks at test time (``eval.features``; "" = the model's own default)
EVAL_FEATURES = ("", "post_bn", "post_bn_l2", "pre_bn_l2")


def neutral(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A field that cannot change the trained weights (where files go, how fast data are read, how
    a run reports or is evaluated): left out of a run's cache key (:func:`weight_neutral_keys`) and
    free to change when a run resumes (:func:`resume_may_change`)."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"weights": False})
    return field(default=default, metadata={"weights": False})


@dataclass
class DataConfig:
    root: str = ""  #: dataset folder (VeRi-776 layout for SynthVeRi)
    dataset: str = "veri776"  #: veri776 | vehicleid | veriwild
    test_size: str = ""  #: VehicleID 800|1600|2400, VERI-Wild 3000|5000|10000 ("" = the smallest)
    height: int = 256
    width: int = 256
    p: int = 16  #: identities per P x K batch
    k: int = 4  #: images per identity
    batch_size: int = 32  #: for the non-re-ID tasks (span-masks, foreground)
    num_workers: int = neutral(4)
    transforms: dict = field(default_factory=dict)  #: extra keyword arguments of build_transforms
    #: how training images reach the model: "cache" (decoded once into a uint8 tensor cache,
    #: augmented in batches in the main process), "files" (decoded per image by DataLoader
    #: workers) or "auto" (cache when the split fits cache_max_gb)
    loader: str = "auto"
    cache_dir: str = neutral("")  #: the image cache; "" = <home>/data/image-cache, never the dataset folder
    cache_max_gb: float = 4.0
    #: training identities held out as a validation split (query / gallery,
    #: :func:`reidlib.data.validation.validation_split`) and never trained on; 0 = none
    val_ids: int = 0


@dataclass
class ModelConfig:
    name: str = "baseline"  #: baseline | span | musp | span-masks | foreground
    backbone: str = "resnet50"
    weights: Optional[str] = None  #: local ImageNet state-dict file (never downloaded)
    last_stride: int = 1
    #: the model's options (its constructor's keyword arguments, typed by its annotations; checked
    #: by :func:`reidlib.models.registry.check_options` when the configuration is built)
    kwargs: dict = field(default_factory=dict)
    span_checkpoint: Optional[str] = None  #: SPAN re-ID: the trained SPAN (`train --model span-masks`)


@dataclass
class LossConfig:
    label_smoothing: float = 0.1
    margin: float = 0.3
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_on: str = ""  #: concat | per_part | global | cpdm (each re-ID model's DEFAULT_RUN sets its own)
    #: how the ID losses of several heads combine: mean (weight independent of the number of heads)
    #: or sum (MUSP eq. 12: summed over the n heads, as its triplet losses are, eq. 13)
    id_reduction: str = "mean"


@dataclass
class OptimConfig:
    name: str = "adam"  #: adam | adamw | sgd
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9  #: SGD momentum / Adam beta1
    unit: str = "iter"  #: iter | epoch: the unit of max_iters, milestones and warmup_iters
    max_iters: float = 1000
    milestones: list = field(default_factory=list)
    gamma: float = 0.1
    warmup_iters: float = 0
    warmup_factor: float = 0.1
    warmup_method: str = "linear"
    grad_clip: Optional[float] = None
    #: learning-rate multipliers by parameter-name prefix, e.g. ``{"attn": 10.0}``: MUSP's attention
    #: convolution (eq. 3) at ten times ``lr`` (:func:`reidlib.engine.optim.parameter_groups`); a
    #: prefix that names no trainable parameter is refused when the run starts
    lr_mult: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    out_dir: str = neutral("")  #: "" = runs/<model>
    checkpoint_every: int = neutral(1000)  #: iterations; a killed run loses at most this many
    keep_last: int = neutral(1)  #: iter_*.pt files kept besides last.pt
    log_every: int = neutral(20)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  #: auto (bf16 where the CPU/GPU computes it natively) | bf16 | fp16 | off
    channels_last: bool = True  #: with autocast (CPU) and on CUDA
    deterministic: bool = True
    progress: bool = neutral(True)
    #: BatchNorm statistics over the global batch under torchrun (reidlib.engine.distributed):
    #: auto (on with CUDA ranks, off on the CPU) | on | off; no effect in a single process
    sync_bn: str = "auto"


@dataclass
class EvalConfig:
    """How a trained model is evaluated: none of it changes the weights."""
    batch_size: int = neutral(128)
    num_workers: int = neutral(4)
    distance: str = neutral("")  #: "" = the model's own (model.distance); see reidlib.metrics.distance.build_distance
    chunk_size: int = neutral(0)  #: queries per distance-matrix chunk (0 = chosen from a memory budget)
    amp: str = neutral("auto")  #: autocast for feature extraction (as train.amp); features are stored in float32
    #: which vectors are ranked at test time: "post_bn" (after the BNNeck, un-normalised: SPAN's
    #: text), "post_bn_l2" (after the BNNeck, L2-normalised: Luo et al.'s strong-baseline code),
    #: "pre_bn_l2" (before the BNNeck, L2-normalised: MUSP's code), "" = the model's own default
    features: str = neutral("")


@dataclass
class SpanConfig:
    """SPAN step 1 (Sec. 3.1, 3.4; eq. 6) and its data."""
    size: int = 192  #: input height = width (SPAN's public code: 192)
    mask_size: int = 0  #: 0 = SPAN's own output size
    per_view: int = 0  #: view-balanced subset: images per view class (0 = as many as the rarest view)
    fg_source: str = "auto"  #: auto | gt (= synth) | grabcut[:<cache dir>] | foreground:<checkpoint>
    lambda_recon: float = 1.0
    lambda_area: float = 0.5
    lambda_div: float = 1.0
    use_recon: bool = True
    use_area: bool = True
    use_div: bool = True
    area_mode: str = "paper"  #: paper (a = 0.7 for both visible views) | code ([0.7,0,0.4] / [0,0.7,0.4])
    #: eq. (2) over the three parts: sum (as written) | mean (SPAN's public code: a third of the sum)
    area_reduction: str = "sum"
    a: float = 0.7  #: max area ratio of a visible view in a two-view image (eq. 2; paper: 0.7)
    margin: float = 0.04  #: tolerated overlap m of adjacent views F.S and R.S (eq. 3); F.R stays 0
    flip: bool = True
    #: "weak" (eq. 6, the paper) | "true_parts" (SynthVeRi's true part masks: the ground-truth row,
    #: :func:`reidlib.losses.span.true_part_mask_loss`)
    supervision: str = "weak"
    #: probability that a side image is warped to imitate an oblique view (SPAN's public code: 0.5;
    #: :class:`reidlib.data.masks.MaskDataset`'s ``side_aug``); 0 = off
    side_aug: float = 0.0


@dataclass
class ForegroundConfig:
    size: int = 192
    source: str = "auto"  #: auto (= grabcut) | grabcut[:<cache dir>] | gt (= synth): the training masks


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    span: SpanConfig = field(default_factory=SpanConfig)
    foreground: ForegroundConfig = field(default_factory=ForegroundConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        """Strict: unknown keys raise ConfigError. Missing keys keep the defaults of ``d['model']['name']``."""
        name = (d.get("model") or {}).get("name") if isinstance(d.get("model"), Mapping) else None
        cfg = default_config(name or "baseline")
        apply_mapping(cfg, d)
        return validate(cfg)

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    def override(self, *pairs: str, **dotted: Any) -> "Config":
        """A copy with ``"key=value"`` strings and/or ``**{"optim.lr": 1e-4}`` applied, checked."""
        cfg = self.copy()
        apply_overrides(cfg, list(pairs))
        for k, v in dotted.items():
            set_value(cfg, k.replace("__", "."), v)
        return validate(cfg)


#: settings a resumed run may change although they can change the weights: the device it continues
#: on, and the schedule's length (a longer run extends the shorter one)
RESUME_MAY_ALSO_CHANGE = ("train.device", "optim.max_iters")


#: settings added after runs were cached, at the value that reproduces those runs: a run's cache
#: key (:meth:`reidlib.study.Study.run_dir`) leaves them out while they hold it, so the runs cached
#: before the setting existed keep their folders
KEY_NEUTRAL_DEFAULTS: dict[str, Any] = {"span.side_aug": 0.0, "optim.lr_mult": {}}


def weight_neutral_keys() -> tuple[str, ...]:
    """The dotted keys of every field declared with :func:`neutral`: the one list of settings that
    cannot change the trained weights (a run's cache key leaves them out)."""
    cfg = Config()
    return tuple(f"{sec.name}.{f.name}" for sec in dataclasses.fields(cfg)
                 for f in dataclasses.fields(getattr(cfg, sec.name)) if f.metadata.get("weights") is False)


def resume_may_change() -> tuple[str, ...]:
    """What a resumed run may change: :func:`weight_neutral_keys` and :data:`RESUME_MAY_ALSO_CHANGE`."""
    return weight_neutral_keys() + RESUME_MAY_ALSO_CHANGE


def default_config(model: str = "baseline") -> Config:
    """The defaults for ``model`` (one of :data:`MODELS`): the dataclass defaults below, then the
    run defaults declared beside the model (``DEFAULT_RUN``, :func:`reidlib.models.registry.default_run`)."""
    from reidlib.models.registry import default_run

    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")
    cfg = Config()
    cfg.model.name = model
    for key, value in default_run(model).items():
        set_value(cfg, key, copy.deepcopy(value))
    return cfg


# ------------------------------------------------------------------------------------------------
# setting values
# ------------------------------------------------------------------------------------------------

def _section_fields(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def valid_keys(cfg: Optional[Config] = None) -> list[str]:
    """Every dotted key a config accepts (``model.kwargs.*`` is free-form)."""
    cfg = cfg or Config()
    keys = []
    for sec, _ in _section_fields(cfg).items():
        for name in _section_fields(getattr(cfg, sec)):
            keys.append(f"{sec}.{name}")
    return keys


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set dotted ``key`` (``optim.lr``, ``model.kwargs.num_attentions``) with type coercion."""
    parts = key.strip().split(".")
    sections = _section_fields(cfg)
    if parts[0] not in sections:
        raise ConfigError(f"unknown config key {key!r}: no section {parts[0]!r}; valid sections: "
                          f"{', '.join(sections)}; valid keys: {', '.join(valid_keys(cfg))}")
    section = getattr(cfg, parts[0])
    if len(parts) == 1:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: a section needs a mapping of its keys, got {value!r}")
        for k, v in value.items():
            set_value(cfg, f"{key}.{k}", v)
        return
    fields = _section_fields(section)
    name = parts[1]
    if name not in fields:
        raise ConfigError(f"unknown config key {key!r}; valid keys of {parts[0]!r}: "
                          f"{', '.join(f'{parts[0]}.{n}' for n in fields)}")
    tp = fields[name]
    if len(parts) > 2:  # into a free-form dict: model.kwargs.num_attentions=4
        if not (tp is dict or typing.get_origin(tp) is dict):
            raise ConfigError(f"unknown config key {key!r}: {parts[0]}.{name} has no sub-keys")
        d = getattr(section, name)
        for p in parts[2:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = parse_yaml_value(value) if isinstance(value, str) else value
        return
    value = coerce(value, tp, key)
    if isinstance(value, dict):  # free-form dicts merge
        merged = dict(getattr(section, name))
        merged.update(value)
        value = merged
    setattr(section, name, value)


def apply_mapping(cfg: Config, mapping: Mapping[str, Any]) -> Config:
    """Apply a nested (``{"optim": {"lr": 1e-4}}``) and/or flat dotted (``{"optim.lr": 1e-4}``) mapping.
    Free-form dicts (``model.kwargs``, ``data.transforms``) are merged, not replaced."""
    for key, value in mapping.items():
        set_value(cfg, str(key), value)
    return cfg


def parse_overrides(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """``key=value`` strings as pairs (:func:`reidlib.utils.coerce.split_pairs`); the error lists the valid keys."""
    try:
        return split_pairs(pairs, "optim.lr=1e-4")
    except ConfigError as err:
        raise ConfigError(f"override {err}; valid keys: {', '.join(valid_keys())}") from None


def apply_overrides(cfg: Config, pairs: Iterable[str]) -> Config:
    for k, v in parse_overrides(pairs):
        set_value(cfg, k, v)
    return cfg


def load_yaml(path: str | os.PathLike) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, optim, ...)")
    return dict(data)


def load_config(path: Optional[str | os.PathLike] = None, model: Optional[str] = None,
                overrides: Iterable[str] = (), **dotted: Any) -> Config:
    """Defaults of the model < YAML ``path`` < ``overrides`` (``"key=value"``) < ``dotted`` keywords
    (``**{"optim.lr": 1e-4}``). The model is ``model`` if given, else ``model.name`` from the
    overrides or the file, else ``baseline``."""
    overrides = list(overrides)
    file_data = load_yaml(path) if path else {}
    name = model
    if name is None:
        for k, v in parse_overrides(overrides):
            if k == "model.name":
                name = v
        if name is None:
            name = dotted.get("model.name")
    if name is None:
        m = file_data.get("model")
        name = m.get("name") if isinstance(m, Mapping) else file_data.get("model.name")
    cfg = default_config(name or "baseline")
    try:
        apply_mapping(cfg, file_data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    apply_overrides(cfg, overrides)
    for k, v in dotted.items():
        set_value(cfg, k, v)
    if model is not None:
        cfg.model.name = model
    validate(cfg)
    return cfg


def as_config(cfg: Any = None, **dotted: Any) -> Config:
    """Accept a :class:`Config`, a (nested or dotted) dict, a YAML path or None (defaults).

    A :class:`Config` was checked when it was built (:func:`load_config`, :meth:`Config.override`,
    :meth:`Config.from_dict`): without ``dotted`` it comes back as a copy, not checked again, so a
    run's options are checked once."""
    if cfg is None:
        out = default_config(dotted.get("model.name", "baseline"))
    elif isinstance(cfg, Config):
        if not dotted:
            return cfg.copy()
        out = cfg.copy()
    elif isinstance(cfg, (str, os.PathLike)):
        out = load_config(cfg)
    elif isinstance(cfg, Mapping):
        name = None
        if isinstance(cfg.get("model"), Mapping):
            name = cfg["model"].get("name")
        name = name or cfg.get("model.name") or dotted.get("model.name")
        out = apply_mapping(default_config(name or "baseline"), cfg)
    else:
        raise ConfigError(f"expected a Config, a dict or a YAML path, got {type(cfg).__name__}")
    for k, v in dotted.items():
        set_value(out, k, v)
    validate(out)
    return out


def validate(cfg: Config) -> Config:
    def one_of(key: str, value: Any, options: Iterable[str]) -> None:
        options = list(options)
        if value not in options:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, options))}")

    # the choices of the modules that own them (the losses import torch, as check_options does)
    from reidlib.losses.reid import ID_REDUCTIONS, TRIPLET_MODES
    from reidlib.losses.span import AREA_MODES, AREA_REDUCTIONS, SUPERVISION
    from reidlib.models.registry import check_options

    one_of("model.name", cfg.model.name, MODELS)
    one_of("data.dataset", cfg.data.dataset, DATASETS)
    one_of("optim.name", cfg.optim.name.lower(), OPTIMIZERS)
    one_of("optim.unit", cfg.optim.unit, SCHEDULE_UNITS)
    one_of("data.loader", cfg.data.loader, LOADERS)
    one_of("loss.id_reduction", cfg.loss.id_reduction, ID_REDUCTIONS)
    one_of("train.sync_bn", str(cfg.train.sync_bn).strip().lower(), SYNC_BN)
    one_of("optim.warmup_method", cfg.optim.warmup_method, WARMUP_METHODS)
    one_of("eval.features", cfg.eval.features, EVAL_FEATURES)
    if cfg.data.val_ids < 0:
        raise ConfigError(f"data.val_ids must be >= 0 (training identities held out for validation), got {cfg.data.val_ids}")
    if cfg.model.name in REID_MODELS:
        one_of("loss.triplet_on", cfg.loss.triplet_on, TRIPLET_MODES)
    cfg.model.kwargs = check_options(cfg.model.name, cfg.model.kwargs)
    one_of("span.area_mode", cfg.span.area_mode, AREA_MODES)
    one_of("span.area_reduction", cfg.span.area_reduction, AREA_REDUCTIONS)
    one_of("span.supervision", cfg.span.supervision, SUPERVISION)
    for key in ("data.p", "data.k", "data.height", "data.width", "data.batch_size", "train.log_every"):
        sec, name = key.split(".")
        if getattr(getattr(cfg, sec), name) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(getattr(cfg, sec), name)}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    bad = {k: v for k, v in cfg.optim.lr_mult.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0}
    if bad:
        raise ConfigError(f"optim.lr_mult: multipliers must be numbers > 0 (parameter-name prefix: factor), got {bad}")
    if cfg.optim.max_iters < 0:
        raise ConfigError(f"optim.max_iters must be >= 0, got {cfg.optim.max_iters}")
    ms = list(cfg.optim.milestones)
    if any(not isinstance(m, (int, float)) or isinstance(m, bool) for m in ms) or ms != sorted(ms):
        raise ConfigError(f"optim.milestones must be increasing numbers, got {ms}")
    return cfg


def to_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
