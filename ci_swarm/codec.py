"""Frozen dataclass values to and from JSON-ready data, driven by their type hints.

:func:`to_data` turns a value (dataclasses, tuples, enums, mappings, plain scalars) into lists, dicts and
scalars; :func:`from_data` reads such data back as the given type — nested dataclasses, ``tuple[X, ...]``
and fixed tuples, ``X | None``, string enums, ``Mapping[str, X]`` — and raises ``ValueError`` naming the
field when the data does not fit. Fields missing from the data take their defaults, so a value written
by an older ci-swarm (fewer fields) still reads. Used for what a fan-out land job keeps between waves.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")


def to_data(value: Any) -> Any:
    """``value`` as lists, dicts and scalars (enums by their value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_data(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): to_data(item) for key, item in value.items()}
    return value


def from_data(kind: type[T], data: Any) -> T:
    """``data`` read back as ``kind`` (a dataclass); ValueError naming the field that does not fit."""
    value: T = _read(kind, data, kind.__name__)
    return value


def _read(hint: Any, data: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(hint, data, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _read(inner, data, where)
    if origin is tuple:
        return _tuple(args, data, where)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} is not an object")
        return MappingProxyType({str(k): _read(args[1], v, f"{where}.{k}") for k, v in data.items()})
    return _scalar(hint, data, where)


def _dataclass(kind: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} is not an object")
    hints = typing.get_type_hints(kind)
    values = {
        f.name: _read(hints[f.name], data[f.name], f"{where}.{f.name}")
        for f in dataclasses.fields(kind)
        if f.name in data
    }
    try:
        return kind(**values)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _tuple(args: tuple[Any, ...], data: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(data, list | tuple):
        raise ValueError(f"{where} is not a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_read(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
    if len(args) != len(data):
        raise ValueError(f"{where} has {len(data)} items, not {len(args)}")
    return tuple(_read(a, item, f"{where}[{i}]") for i, (a, item) in enumerate(zip(args, data, strict=True)))


def _scalar(hint: Any, data: Any, where: str) -> Any:
    if hint is Any:
        return data
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(data)
        except ValueError:
            raise ValueError(f"{where}: {data!r} is not a {hint.__name__}") from None
    if hint is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if hint in (str, int, bool) and type(data) is hint:
        return data
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(data).__name__}")
