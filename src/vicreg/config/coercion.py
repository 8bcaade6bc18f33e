"""Plain dicts to typed dataclasses and back: each value checked against its field's type hint, converted where
that loses nothing ("64,64" -> [64, 64], "1e-3" -> 0.001), else a one-line :class:`ConfigError` naming the key,
the value and the type expected."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

import yaml

from .schema import ConfigError

INT_LIMIT = 2**63 - 1  # the largest integer a config field holds


class Unrepresentable(ConfigError):
    """A number of the right type that no field holds: an integer beyond 64 bits, a float that is not finite."""


def config_to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict of YAML-friendly values (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    return obj


def _plural(described: str) -> str:
    """ "an integer" -> "integers", "a number" -> "numbers" (the other descriptions as they are)."""
    for article in ("an ", "a "):
        if described.startswith(article):
            return described[len(article):] + "s"
    return described


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is dict:
        return "a mapping of argument names to values"
    if origin is list:
        return f"a comma-separated list of {_plural(_describe(args[0]))}"
    if origin is tuple:
        return f"{len(args)} comma-separated {_plural(_describe(args[0]))}"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a one-line message, cut to about ``limit`` characters (a 400-digit number, a pasted
    file)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}...({len(text)} characters)"


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint``; convert where it is lossless; else ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def bad() -> ConfigError:
        return ConfigError(f"{key}={shown(value)} is not valid: expected {_describe(hint)}")

    if origin is Literal:
        if value in args:
            return value
        raise bad()
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except Unrepresentable:  # the right type, but no field can hold it: said as it is
                raise
            except ConfigError:
                pass
        raise bad()
    if origin is dict:
        return _mapping(value, key, bad)
    if origin in (list, tuple):
        if isinstance(value, str):  # "64,64" or "[64, 64]"
            text = value.strip().removeprefix("[").removesuffix("]") if value.strip().startswith("[") else value
            try:
                value = [yaml.safe_load(v) for v in text.split(",")] if text.strip() else []
            except yaml.YAMLError:
                raise bad() from None
        elif not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple:
            if len(value) != len(args):
                raise bad()
            return tuple(coerce(v, a, key) for v, a in zip(value, args))
        return [coerce(v, args[0], key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint in (int, float) and isinstance(value, str):
        try:
            value = float(value) if hint is float else int(value)
        except ValueError:
            raise bad() from None
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > INT_LIMIT:  # beyond a 64-bit integer: torch, numpy and the OS refuse it
                raise Unrepresentable(f"{key}={shown(value)} is not valid: expected an integer between "
                                      f"-(2**63 - 1) and 2**63 - 1")
            return value
        raise bad()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond any float
                number = math.inf
            if not math.isfinite(number):
                raise Unrepresentable(f"{key}={shown(value)} is not valid: expected a finite number")
            return number
        raise bad()
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise bad()


def _mapping(value: Any, key: str, bad) -> dict:
    """A mapping of names to YAML scalars or lists of them (keyword arguments), from a dict or its YAML text."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError:
            raise bad() from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad()
    for k, v in value.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise ConfigError(f"{key}: {k!r} is not valid: an argument's name must be an identifier")
        items = v if isinstance(v, list) else [v]
        if not all(x is None or isinstance(x, (bool, int, str)) or (isinstance(x, float) and math.isfinite(x))
                   for x in items):
            raise ConfigError(f"{key}.{k}={v!r} is not valid: expected a finite number, a string, true/false, null "
                              f"or a list of them")
    return dict(value)


def from_dict(cls: type, data: dict, prefix: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(data, dict):
        section = prefix.removesuffix(".")
        if not section:
            raise ConfigError(f"a config must be a mapping of its sections ({', '.join(names)}), got {shown(data)}")
        raise ConfigError(f"{section}={shown(data)} is not valid: {section} is a section, expected a mapping of its "
                          f"keys ({', '.join(names)})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                f"unknown config key '{path}' (known keys{' in ' + prefix[:-1] if prefix else ''}: {', '.join(names)})"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, path + ".")
        else:
            kwargs[key] = coerce(value, hint, path)
    return cls(**kwargs)
