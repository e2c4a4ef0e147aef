"""Strict configuration objects.

Every cmakit entry point (notebooks, command line, profiles) is driven by frozen dataclasses.
Parameters arrive as flat JSON-typed mappings (a papermill ``parameters`` cell, a JSON file,
command-line flags); :func:`from_dict` turns such a mapping into a dataclass and rejects any
key the dataclass does not know, naming the closest valid key. Nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter is unknown or has a value of the wrong type or range."""


def field_names(cls: type) -> list[str]:
    """Names of the fields of a config dataclass, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def defaults(cls: type) -> dict[str, Any]:
    """Default value of every field of a config dataclass (fields without one are skipped)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def check_keys(cls: type, keys: typing.Iterable[str], *, where: str = "") -> None:
    """Raise :class:`ConfigError` for the first key that is not a field of ``cls``."""
    valid = field_names(cls)
    for key in keys:
        if key not in valid:
            hint = difflib.get_close_matches(key, valid, n=1)
            near = f" Did you mean {hint[0]!r}?" if hint else ""
            place = f" in {where}" if where else ""
            raise ConfigError(
                f"Unknown parameter {key!r}{place} for {cls.__name__}.{near} "
                f"Valid parameters: {', '.join(valid)}."
            )


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a type hint; allow int -> float and list -> tuple only."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{name}={value!r} has the wrong type")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(choices)}.")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r} must be a list.")
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        items = [_coerce(f"{name}[{i}]", v, args[0]) if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else list(items)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}={value!r} must be a number.")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}={value!r} must be an integer.")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be true or false.")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} must be a string.")
        return value
    return value


def from_dict(cls: type[T], params: Mapping[str, Any] | None = None, **overrides: Any) -> T:
    """Build the config dataclass ``cls`` from a flat mapping, strictly.

    Args:
        cls: A (frozen) dataclass type.
        params: Parameter values; keys must be field names of ``cls``.
        **overrides: More values, applied after ``params``.

    Returns:
        An instance of ``cls``; missing keys take the dataclass defaults. Lists are turned into
        tuples where the field is annotated as a tuple, ints into floats for float fields.

    Raises:
        ConfigError: on an unknown key (naming the closest valid one) or a value of the wrong
            type. The dataclass's own ``__post_init__`` checks run too.
    """
    merged = {**(params or {}), **overrides}
    check_keys(cls, merged)
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(k, v, hints[k]) for k, v in merged.items()}
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready flat dict of a config dataclass (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
