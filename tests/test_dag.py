from __future__ import annotations

from typing import Any

import pytest

from ci_swarm.dag import (
    dag_critical_path,
    dag_dependents,
    dag_topological_order,
    dependents,
    find_cycle,
    topological_order,
    waves,
)
from ci_swarm.errors import PlanError
from ci_swarm.models import Plan
from ci_swarm.plan import plan_from_dict


def plan(*subtasks: tuple[str, tuple[str, ...]]) -> Plan:
    data: dict[str, Any] = {"subtasks": [{"id": i, "depends_on": list(d)} for i, d in subtasks]}
    return plan_from_dict(data)


def test_topological_order_keeps_plan_order_where_it_can() -> None:
    p = plan(("docs", ("code",)), ("code", ()), ("tests", ("code",)), ("lint", ()))
    assert topological_order(p) == ("code", "docs", "tests", "lint")
    assert waves(p) == (("code", "lint"), ("docs", "tests"))


def test_dependents_are_transitive() -> None:
    p = plan(("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ()))
    assert dependents(p, "a") == frozenset({"b", "c"})
    assert dependents(p, "c") == frozenset()
    assert dag_dependents({"x": (), "y": ("x",)}, "x") == frozenset({"y"})


def test_cycles_are_named_and_refused() -> None:
    deps = {"a": ("c",), "b": ("a",), "c": ("b",)}
    assert find_cycle(deps) == ("a", "c", "b", "a")
    with pytest.raises(PlanError, match="dependency cycle: a -> c -> b -> a"):
        dag_topological_order(deps)


def test_critical_path_over_plain_graphs() -> None:
    path, length = dag_critical_path({"a": (), "b": ("a",), "c": ()}, {"a": 2, "b": 3, "c": 4})
    assert (path, length) == (("a", "b"), 5.0)
