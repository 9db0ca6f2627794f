"""Resuming a run only with the configuration it was started with: :func:`check_resumable` refuses
a checkpoint whose run configuration differs from the new one outside :data:`RESUME_MAY_CHANGE`
(:func:`config_changes`, the diff)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from reidlib.config import Config, resume_may_change
from reidlib.engine.checkpoint import jsonable_config

__all__ = ["RESUME_MAY_CHANGE", "config_changes", "check_resumable"]


def _may_change() -> tuple[str, ...]:
    """:func:`reidlib.config.resume_may_change`, and ``<section>.*`` for every section all of whose
    fields are in it (``eval``): such a section's keys of older releases are free too."""
    keys = resume_may_change()
    return keys + tuple(f"{sec}.*" for sec, fields in Config().to_dict().items()
                        if fields and all(f"{sec}.{k}" in keys for k in fields))


#: run-configuration keys a resumed run may change (derived from :mod:`reidlib.config`): those that
#: do not shape the weights (where files and logs go, how data are loaded, how the model is
#: evaluated), the device, and ``optim.max_iters`` (a longer run extends the shorter one)
RESUME_MAY_CHANGE = _may_change()


def config_changes(saved: Any, now: Any, allowed: tuple = RESUME_MAY_CHANGE,
                   defaults: Optional[Mapping[str, Any]] = None) -> list[tuple[str, Any, Any]]:
    """``[(dotted key, saved value, new value)]`` where two run configurations differ outside
    ``allowed``. ``defaults`` (dotted key -> value): a key the saved configuration lacks (it was
    written before the key existed) is no change when its new value is this default."""
    if not isinstance(saved, Mapping) or not isinstance(now, Mapping):
        return []

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping) and prefix == "":
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    def free(key):
        return any(key == a or (a.endswith(".*") and key.startswith(a[:-1])) for a in allowed)

    a, b = flat(saved), flat(now)
    defaults = defaults or {}

    def older_default(k):
        return k not in a and k in defaults and b.get(k) == defaults[k]

    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if not free(k) and a.get(k) != b.get(k) and not older_default(k)]


def _config_defaults() -> dict:
    """The dataclass defaults of :class:`reidlib.config.Config` as dotted keys."""
    return {f"{sec}.{k}": v for sec, d in Config().to_dict().items() for k, v in d.items()}


def check_resumable(state: Mapping[str, Any], config: Any) -> None:
    """Raise :class:`reidlib.errors.ConfigError` when checkpoint ``state`` was written with a run
    configuration that differs from ``config`` outside :data:`RESUME_MAY_CHANGE`."""
    saved = state.get("config")
    reidlib_config = isinstance(saved, Mapping) and {"model", "train"} <= set(saved)
    changed = config_changes(saved, jsonable_config(config), defaults=_config_defaults() if reidlib_config else None)
    if changed:
        from reidlib.errors import ConfigError

        raise ConfigError(f"{state.get('path')}: cannot resume with a changed configuration: "
                          + "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, a, b in changed)
                          + ". Resume with the checkpoint's configuration, or start a fresh run in another "
                          "out_dir (without resume)")
