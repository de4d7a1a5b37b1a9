"""The one config reader: a dataclass built from a plain mapping (a YAML/JSON section).

    cfg = from_mapping(SamplerConfig, {"batch_size": 8}, "train.sampler")

- an unknown key is one `ConfigError` naming it as `where.key` and listing the valid keys;
- a value of the wrong type (`int`, `float`, `bool`, `str`, `None`, unions, literals and
  tuples are checked; anything else is left to the dataclass) is a `ConfigError` naming
  `where.key` and the type it must be;
- YAML/JSON lists become tuples where the field is a tuple;
- a field whose type is a dataclass and whose value is a mapping is built the same way,
  recursively (`where.field` in its messages); `nested={field: builder}` overrides that
  for the fields named;
- an error of the dataclass's own checks (`__post_init__`: AssertionError, ValueError,
  TypeError) becomes a `ConfigError` prefixed with `where`.

Layer 0: imports nothing from `m3dt`, so every config (training, experts, collection,
sampler) can use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def check_keys(cls: type, d: Mapping[str, Any], where: str, also: Iterable[str] = ()) -> None:
    """Raise one `ConfigError` if `d` is not a mapping or has keys that are neither fields of
    the dataclass `cls` nor in `also`."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)} | set(also)
    unknown = sorted(set(d) - names, key=str)
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{where}.{k}' for k in unknown]}; valid: {sorted(names)}")


def from_mapping(cls: type[T], d: Mapping[str, Any] | None, where: str,
                 nested: Mapping[str, Callable[[Any, str], Any]] | None = None, **extra: Any) -> T:
    """`cls(**d, **extra)` after checking keys and types (see the module docstring).

    `d` None means all defaults. `nested` maps a field name to `builder(value, where)`;
    `extra` are fields given already built (not checked, e.g. a section built elsewhere).
    """
    if d is None:
        d = {}
    check_keys(cls, d, where)
    d = dict(d)
    hints = typing.get_type_hints(cls)
    nested = dict(nested or {})
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v, hint, at = d[f.name], hints[f.name], f"{where}.{f.name}"
        if f.name in nested:
            d[f.name] = nested[f.name](v, at)
            continue
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if isinstance(v, Mapping):
                d[f.name] = from_mapping(hint, v, at)
            elif not isinstance(v, hint):
                raise ConfigError(f"{at} must be a mapping of {hint.__name__} fields, got {v!r}")
            continue
        if isinstance(v, list) and _is_tuple(hint):  # YAML/JSON give lists where dataclasses hold tuples
            v = d[f.name] = tuple(v)
        if not has_type(v, hint):
            raise ConfigError(f"{at} must be {type_name(hint)}, got {v!r}")
    try:
        return cls(**d, **extra)
    except ConfigError:
        raise
    except (AssertionError, ValueError, TypeError) as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _is_tuple(hint: Any) -> bool:
    """Whether `hint` is a tuple type, or a union with one (`tuple[int, ...] | None`)."""
    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        return True
    return origin in (typing.Union, types.UnionType) and any(_is_tuple(a) for a in typing.get_args(hint))


def has_type(value: Any, hint: Any) -> bool:
    """Whether `value` fits the annotation `hint` (plain scalars, unions, literals, tuples;
    anything else is left to the dataclass's own checks)."""
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(has_type(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(has_type(v, args[0]) for v in value)
        return len(args) == len(value) and all(has_type(v, a) for v, a in zip(value, args))
    return True


def type_name(hint: Any) -> str:
    """`hint` in words, for error messages ("a number", "an integer or null", ...)."""
    if isinstance(hint, type):
        return {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string",
                "NoneType": "null"}.get(hint.__name__, hint.__name__)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "a list"
    return str(hint)
