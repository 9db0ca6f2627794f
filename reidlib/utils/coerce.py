"""Typed values from text: the one place that turns ``"1e-4"``, ``"[10, 20]"`` or ``"none"`` into the
type a configuration field or a model option declares (used by :mod:`reidlib.config` and
:mod:`reidlib.models.registry`). No torch import."""
from __future__ import annotations

import os
import types
import typing
from typing import Any, Iterable, Literal, Mapping, Union

from reidlib.errors import ConfigError

__all__ = ["coerce", "parse_yaml_value", "split_pairs"]

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
_NONE = {"none", "null", "~", ""}


def parse_yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (often a string from a command line or YAML) as type ``tp``, or ConfigError naming
    ``key``. Understands bool, int, float, str, list, dict, tuple, ``Optional[X]``, ``X | None``,
    ``Literal[...]`` and ``str | os.PathLike`` (as str)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):  # Optional[X], X | None, str | os.PathLike
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp) and (
                value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        if all(a is str or a is os.PathLike or typing.get_origin(a) is os.PathLike for a in args):
            return coerce(value, str, key)
        return coerce(value, args[0], key)
    if origin is Literal:
        options = typing.get_args(tp)
        for option in options:
            try:
                candidate = coerce(value, type(option), key)
            except ConfigError:
                continue
            if candidate == option:
                return option
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, options))}")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value  # iteration counts stay integers
            if isinstance(value, str):
                s = value.strip()
                if s.lstrip("+-").isdigit():
                    return int(s)
            return float(value)
        if tp is str:
            return "" if value is None else str(value)
        if tp is list or origin is list:
            if isinstance(value, str):
                value = parse_yaml_value(value) if value.strip() else []
            if value is None:
                return []
            if isinstance(value, (int, float)):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [v for v in value]
        if tp is tuple or origin is tuple:
            items = coerce(value, list, key)
            args = typing.get_args(tp)
            if args and args[-1] is not Ellipsis:
                if len(items) != len(args):
                    raise ValueError
                return tuple(coerce(v, a, key) for v, a in zip(items, args))
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce(v, args[0], key) for v in items)
            return tuple(items)
        if tp is dict or origin is dict:
            if isinstance(value, str):
                value = parse_yaml_value(value) if value.strip() else {}
            if value is None:
                return {}
            if not isinstance(value, Mapping):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: cannot use {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


def split_pairs(pairs: Iterable[str], example: str = "key=value") -> list[tuple[str, str]]:
    """``["a=1", "b.c= x"]`` -> ``[("a", "1"), ("b.c", "x")]``: the one parser of ``key=value``
    overrides (run configurations, notebook parameters); :class:`ConfigError` naming a pair without
    ``=`` (``example`` shows the expected form)."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{pair!r} is not of the form key=value (e.g. {example})")
        key, value = pair.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out
