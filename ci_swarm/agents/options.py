"""Shared pieces of the backends' option validators (``plan.OptionsValidator``): the options each kind
accepts, unknown options named with the closest known one, and typed checks naming ``agent.<option>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ci_swarm.errors import PlanError
from ci_swarm.plan import kind_of, no_unknown_keys


def known_options(options: Mapping[str, Any], kind: str, allowed: Iterable[str], where: str) -> None:
    """PlanError for an option the ``kind`` backend does not know (with "did you mean")."""
    no_unknown_keys(options, allowed, f"{where}: agent kind {kind!r}", what="option")


def seconds(options: Mapping[str, Any], key: str, where: str) -> None:
    """``agent.<key>``, when given, is a non-negative number of seconds."""
    value = options.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PlanError(f"{where}: 'agent.{key}' must be a non-negative number of seconds, got {value!r}")


def positive_int(options: Mapping[str, Any], key: str, where: str) -> None:
    """``agent.<key>``, when given, is a whole number above zero."""
    value = options.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlanError(f"{where}: 'agent.{key}' must be a whole number above 0, got {value!r}")


def text(options: Mapping[str, Any], key: str, where: str, what: str = "a string") -> None:
    """``agent.<key>``, when given, is a string."""
    value = options.get(key)
    if value is not None and not isinstance(value, str):
        raise PlanError(f"{where}: 'agent.{key}' must be {what}, got {kind_of(value)}")


def flag(options: Mapping[str, Any], key: str, where: str) -> None:
    """``agent.<key>``, when given, is true or false."""
    value = options.get(key)
    if value is not None and not isinstance(value, bool):
        raise PlanError(f"{where}: 'agent.{key}' must be true or false, got {value!r}")
