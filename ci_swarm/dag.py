"""The DAG questions asked of a plan: cycles, waves, topological order, critical path, dependents, and
which subtasks may run at the same time.

Two shapes: functions taking a ``Plan`` (plan order matters: it breaks ties), and ``dag_*`` / graph
functions taking ``{node: its dependencies}`` (the scheduler's jobs are not subtasks). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ci_swarm.errors import PlanError
from ci_swarm.models import Plan

Deps = Mapping[str, Sequence[str]]


def deps_of(plan: Plan) -> dict[str, tuple[str, ...]]:
    """The plan as a graph: ``{subtask id: the ids it depends on}`` (plan order)."""
    return {sub.id: sub.depends_on for sub in plan.subtasks}


# --- cycles -------------------------------------------------------------------------------------


def find_cycle(deps: Deps) -> tuple[str, ...]:
    """A dependency cycle as ``(a, b, a)`` (a depends on b depends on a), or ``()``."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> tuple[str, ...]:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, ()):
            if state.get(dep) == 1:
                return (*stack[stack.index(dep) :], dep)
            if dep in deps and dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return ()

    for node in deps:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return ()


def check_acyclic(deps: Deps) -> None:
    """PlanError naming the cycle, if there is one."""
    cycle = find_cycle(deps)
    if cycle:
        raise PlanError(f"dependency cycle: {' -> '.join(cycle)}")


# --- ordering -----------------------------------------------------------------------------------


def waves(plan: Plan) -> tuple[tuple[str, ...], ...]:
    """Topological layers: wave 0 depends on nothing; wave k on something in wave k-1 (plan order)."""
    level = levels(deps_of(plan))
    depth = max(level.values(), default=-1) + 1
    return tuple(tuple(s.id for s in plan.subtasks if level[s.id] == k) for k in range(depth))


def levels(deps: Deps) -> dict[str, int]:
    """Each node's wave: 0 without dependencies, else one more than its deepest dependency."""
    check_acyclic(deps)
    level: dict[str, int] = {}

    def of(node: str) -> int:
        if node not in level:
            level[node] = 1 + max((of(d) for d in deps[node] if d in deps), default=-1)
        return level[node]

    for node in deps:
        of(node)
    return level


def topological_order(plan: Plan) -> tuple[str, ...]:
    """Plan order, except that a subtask always comes after its dependencies (stable)."""
    return dag_topological_order(deps_of(plan))


def dag_topological_order(deps: Deps) -> tuple[str, ...]:
    """The nodes in their given order, except that a node always comes after its dependencies (stable)."""
    check_acyclic(deps)
    placed: list[str] = []
    done: set[str] = set()
    remaining = list(deps)
    while remaining:
        ready = next(n for n in remaining if all(d in done or d not in deps for d in deps[n]))
        placed.append(ready)
        done.add(ready)
        remaining.remove(ready)
    return tuple(placed)


def critical_path(plan: Plan, durations: Mapping[str, float]) -> tuple[tuple[str, ...], float]:
    """The longest chain of dependencies weighted by ``durations`` (missing → 0), and its length."""
    return dag_critical_path(deps_of(plan), durations)


def dag_critical_path(deps: Deps, durations: Mapping[str, float]) -> tuple[tuple[str, ...], float]:
    """Longest weighted path through a DAG given as ``{node: its dependencies}``."""
    level = levels(deps)
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for node in sorted(deps, key=lambda n: level[n]):
        before = [d for d in deps[node] if d in deps]
        prev = max(before, key=lambda d: finish[d], default=None)
        finish[node] = (finish[prev] if prev is not None else 0.0) + float(durations.get(node, 0.0))
        via[node] = prev
    if not finish:
        return (), 0.0
    end: str | None = max(deps, key=lambda n: finish[n])
    length = finish[end] if end else 0.0
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = via[end]
    return tuple(reversed(path)), length


# --- reachability -------------------------------------------------------------------------------


def reachability(deps: Deps) -> dict[str, frozenset[str]]:
    """For each node, every node it (transitively) depends on."""
    memo: dict[str, frozenset[str]] = {}

    def reach(node: str) -> frozenset[str]:
        if node not in memo:
            memo[node] = frozenset()  # guards against cycles
            found: set[str] = set()
            for dep in deps.get(node, ()):
                found.add(dep)
                found |= reach(dep)
            memo[node] = frozenset(found)
        return memo[node]

    return {node: reach(node) for node in deps}


def dependents(plan: Plan, subtask_id: str) -> frozenset[str]:
    """Every subtask that (transitively) depends on ``subtask_id``."""
    return dag_dependents(deps_of(plan), subtask_id)


def dag_dependents(deps: Deps, node: str) -> frozenset[str]:
    """Every node that (transitively) depends on ``node``."""
    return frozenset(other for other, before in reachability(deps).items() if node in before)


def concurrent_pairs(plan: Plan) -> set[frozenset[str]]:
    """Pairs of subtasks that may run at the same time: neither (transitively) depends on the other."""
    return dag_concurrent_pairs(deps_of(plan), [s.id for s in plan.subtasks])


def dag_concurrent_pairs(deps: Deps, order: Sequence[str]) -> set[frozenset[str]]:
    """Pairs of ``order``'s nodes of which neither (transitively) depends on the other."""
    reach = reachability(deps)
    return {
        frozenset((a, b))
        for i, a in enumerate(order)
        for b in order[i + 1 :]
        if a not in reach[b] and b not in reach[a]
    }
