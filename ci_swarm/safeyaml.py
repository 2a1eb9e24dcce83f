"""Bounded YAML and JSON for what ci-swarm reads from users: plan files, ``swarm-plan`` blocks, the config.

Limits, each refused with one line naming where, and fast:

- nesting at most :data:`MAX_DEPTH` levels, checked while composing, before PyYAML's composer (or the
  constructors and walkers after it) recurse; JSON's own ``RecursionError`` mapped;
- aliases may add at most :data:`MAX_ALIAS_NODES` nodes to a document (a "billion laughs" alias bomb is
  refused while its first layers are composed, long before anything expands it), and an alias inside the
  node it names (a recursive document) is refused; anchors and aliases themselves stay allowed;
- no non-finite number (``.inf``, ``.nan``, ``1e999``; JSON's ``NaN``/``Infinity``): a timeout, delay or
  budget read from a file is always a real number.

YAML errors are ``yaml.MarkedYAMLError`` (callers already turn those into a line-numbered error); JSON
errors are :class:`JSONLimitError`, a ``ValueError``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_ALIAS_NODES = 100_000

__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "BoundedLoader", "JSONLimitError", "load_json", "load_yaml"]


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the limits above (depth, alias expansion, finite numbers)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0  # distinct nodes composed so far
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) → (expanded size, expanded depth)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._shape:
                problem = f"alias *{event.anchor} inside its own anchor"
                raise yaml.composer.ComposerError(None, None, problem, mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, _too_deep(), mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._composed += 1
            self._measure(node, mark)
        return node

    def _measure(self, node: yaml.Node, mark: Any) -> None:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        shapes = [self._shape[id(child)] for child in children]
        size = 1 + sum(s for s, _ in shapes)
        depth = 1 + max((d for _, d in shapes), default=0)
        if size > self._composed + MAX_ALIAS_NODES:
            problem = f"aliases expand this document by more than {MAX_ALIAS_NODES:,} nodes"
            raise yaml.composer.ComposerError(None, None, problem, mark)
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, _too_deep("through aliases"), mark)
        self._shape[id(node)] = (size, depth)

    def construct_finite_float(self, node: yaml.ScalarNode) -> float:
        value = float(self.construct_yaml_float(node))
        if not math.isfinite(value):
            problem = f"{node.value!r} is not a finite number"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return value


BoundedLoader.add_constructor("tag:yaml.org,2002:float", BoundedLoader.construct_finite_float)


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
