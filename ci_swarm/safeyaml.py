"""Bounded YAML and JSON for what ci-swarm reads from users: plan files, ``swarm-plan`` blocks, the config.

Limits, each refused with one line naming where, and fast:

- nesting at most :data:`MAX_DEPTH` levels, checked on the parser's events before PyYAML's composer (or
  the constructors and walkers after it) recurse; JSON's own ``RecursionError`` mapped;
- aliases may add at most :data:`MAX_ALIAS_NODES` nodes to a document (a "billion laughs" alias bomb is
  refused while its first layers are parsed, long before anything expands it), and an alias inside the
  node it names (a recursive document) is refused; anchors and aliases themselves stay allowed;
- no non-finite number (``.inf``, ``.nan``, ``1.0e+999``; JSON's ``NaN``/``Infinity``, ``1e999``): a
  timeout, delay or budget read from a file is always a real number.

YAML is parsed by libyaml when PyYAML has it (ten times faster than the pure-Python parser on a
10,000-subtask plan); the limits are checked on one pass over its events, then the document is composed.

YAML errors are ``yaml.MarkedYAMLError`` (callers already turn those into a line-numbered error); JSON
errors are :class:`JSONLimitError`, a ``ValueError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_ALIAS_NODES = 100_000

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "BoundedLoader",
    "JSONLimitError",
    "check_limits",
    "load_json",
    "load_yaml",
]


_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


class BoundedLoader(_Base):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's parser when present) with the limits above: before composing, one
    pass over the parser's events checks depth and alias expansion (nothing recursive, nothing expanded);
    numbers are checked as they are constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._text = stream

    def get_single_node(self) -> Any:
        check_limits(self._text)
        return super().get_single_node()

    def construct_finite_float(self, node: yaml.ScalarNode) -> float:
        value = float(self.construct_yaml_float(node))
        if not math.isfinite(value):
            problem = f"{node.value!r} is not a finite number"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return value


BoundedLoader.add_constructor("tag:yaml.org,2002:float", BoundedLoader.construct_finite_float)


def check_limits(text: str) -> None:
    """``yaml.composer.ComposerError`` at the first event where the document nests deeper than
    :data:`MAX_DEPTH`, aliases add more than :data:`MAX_ALIAS_NODES` nodes, or an alias names a node that
    contains it. Sizes are counted per anchor, never by expanding."""
    shapes: dict[str, tuple[int, int]] = {}  # anchor → (expanded size, expanded depth)
    stack: list[list[Any]] = []  # open collections: [size, deepest child, anchor]
    literal = 0
    for event in _events(text):
        mark: Any = event.start_mark
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, _too_deep(), mark)
            stack.append([1, 0, event.anchor])
            literal += 1
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size, deepest, anchor = stack.pop()
            shape = (size, deepest + 1)
        elif isinstance(event, yaml.ScalarEvent):
            if len(stack) >= MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, _too_deep(), mark)
            literal += 1
            shape, anchor = (1, 1), event.anchor
        elif isinstance(event, yaml.AliasEvent):
            name = str(event.anchor)
            if any(open_[2] == name for open_ in stack):
                problem = f"alias *{name} inside its own anchor"
                raise yaml.composer.ComposerError(None, None, problem, mark)
            shape, anchor = shapes.get(name, (1, 1)), None  # an undefined one: the composer says so
            if len(stack) + shape[1] > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, _too_deep("through aliases"), mark)
        else:
            continue
        if anchor is not None:
            shapes[anchor] = shape
        if stack:
            parent = stack[-1]
            parent[0] += shape[0]
            parent[1] = max(parent[1], shape[1])
            if parent[0] > literal + MAX_ALIAS_NODES:
                problem = f"aliases expand this document by more than {MAX_ALIAS_NODES:,} nodes"
                raise yaml.composer.ComposerError(None, None, problem, mark)


def _events(text: str) -> Iterator[yaml.Event]:
    """The parser's events; libyaml's own depth limit (deeper than ours) reported as ours."""
    try:
        yield from yaml.parse(text, Loader=_Base)
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" not in (exc.problem or ""):
            raise
        raise yaml.composer.ComposerError(None, None, _too_deep(), exc.problem_mark) from None


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` within the limits (``yaml.YAMLError`` otherwise)."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class JSONLimitError(ValueError):
    """JSON beyond the limits: too deep, or a non-finite number."""


def load_json(text: str) -> Any:
    """``json.loads`` within the limits (``json.JSONDecodeError`` for malformed text, else
    :class:`JSONLimitError`)."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise JSONLimitError(_too_deep()) from None
    if _depth(data) > MAX_DEPTH:
        raise JSONLimitError(_too_deep())
    return data


def _no_constant(name: str) -> float:
    raise JSONLimitError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONLimitError(f"{text} is not a finite number")
    return value


def _depth(data: Any) -> int:
    """How deeply lists and objects nest (iteratively: no recursion on hostile input)."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                todo.extend(
                    (item, depth + 1) for item in (value.values() if isinstance(value, dict) else value)
                )
    return deepest


def _too_deep(how: str = "") -> str:
    return f"nested deeper than {MAX_DEPTH} levels{' ' + how if how else ''} (the limit)"
