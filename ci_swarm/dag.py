"""The DAG questions asked of a plan: cycles, waves, topological order, critical path, dependents, and
which subtasks may run at the same time.

Two shapes: functions taking a ``Plan`` (plan order matters: it breaks ties), and ``dag_*`` / graph
functions taking ``{node: its dependencies}`` (the scheduler's jobs are not subtasks). Pure.

Everything runs in time linear in nodes + edges (times log n for the stable order), iteratively (a
10,000-long chain needs no recursion); "may these two run at the same time" is answered from
:class:`Reach`, one bitset of ancestors per node, instead of a set of all concurrent pairs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence

from ci_swarm.errors import PlanError
from ci_swarm.models import Plan

Deps = Mapping[str, Sequence[str]]


def deps_of(plan: Plan) -> dict[str, tuple[str, ...]]:
    """The plan as a graph: ``{subtask id: the ids it depends on}`` (plan order)."""
    return {sub.id: sub.depends_on for sub in plan.subtasks}


# --- cycles -------------------------------------------------------------------------------------


def find_cycle(deps: Deps) -> tuple[str, ...]:
    """A dependency cycle as ``(a, b, a)`` (a depends on b depends on a), or ``()``.

    A depth-first search in the order of ``deps`` and of each node's dependencies, with an explicit stack."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in deps:
        if root in state:
            continue
        state[root] = 1
        path: list[str] = [root]
        todo: list[Iterator[str]] = [iter(deps.get(root, ()))]
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                todo.pop()
                state[path.pop()] = 2
            elif state.get(dep) == 1:
                return (*path[path.index(dep) :], dep)
            elif dep in deps and dep not in state:
                state[dep] = 1
                path.append(dep)
                todo.append(iter(deps.get(dep, ())))
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
    layers: list[list[str]] = [[] for _ in range(depth)]
    for sub in plan.subtasks:
        layers[level[sub.id]].append(sub.id)
    return tuple(tuple(layer) for layer in layers)


def levels(deps: Deps) -> dict[str, int]:
    """Each node's wave: 0 without dependencies, else one more than its deepest dependency."""
    level: dict[str, int] = {}
    for node in dag_topological_order(deps):
        level[node] = 1 + max((level[d] for d in deps[node] if d in deps), default=-1)
    return {node: level[node] for node in deps}


def topological_order(plan: Plan) -> tuple[str, ...]:
    """Plan order, except that a subtask always comes after its dependencies (stable)."""
    return dag_topological_order(deps_of(plan))


def dag_topological_order(deps: Deps) -> tuple[str, ...]:
    """The nodes in their given order, except that a node always comes after its dependencies (stable):
    each step places the earliest node whose dependencies are placed (Kahn's algorithm over a heap of
    positions)."""
    check_acyclic(deps)
    position = {node: i for i, node in enumerate(deps)}
    waiting = {node: len({d for d in deps[node] if d in deps}) for node in deps}
    users: dict[str, list[str]] = {node: [] for node in deps}
    for node in deps:
        for dep in {d for d in deps[node] if d in deps}:
            users[dep].append(node)
    ready = [position[node] for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = list(deps)
    placed: list[str] = []
    while ready:
        node = order[heapq.heappop(ready)]
        placed.append(node)
        for user in users[node]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, position[user])
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


class Reach:
    """Who (transitively) depends on whom, as one bitset of ancestors per node (a Python int): building it
    costs one OR per edge, a question costs one bit test. 10,000 nodes take at most 12.5 MB.

    ``add_edge`` keeps it exact while edges are added (``serialize_overlaps``). Nodes are ``order``'s; a
    dependency outside it has no dependencies of its own. On a cyclic graph the answers are those of a
    depth-first search that ignores the edge closing each cycle."""

    def __init__(self, deps: Deps, order: Sequence[str] | None = None) -> None:
        self._nodes = list(dict.fromkeys([*(order if order is not None else ()), *deps]))
        self._pos = {node: i for i, node in enumerate(self._nodes)}
        self._deps = {node: list(deps.get(node, ())) for node in self._nodes}
        self._anc: dict[str, int] = {}
        self._desc: dict[str, int] | None = None
        for node in _postorder(self._deps, self._nodes):
            bits = 0
            for dep in self._deps[node]:
                if dep in self._pos:
                    bits |= self._anc.get(dep, 0) | self._bit(dep)
            self._anc[node] = bits

    def depends(self, node: str, on: str) -> bool:
        """Whether ``node`` (transitively) depends on ``on``."""
        return on in self._pos and bool(self._anc.get(node, 0) >> self._pos[on] & 1)

    def concurrent(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` may run at the same time: neither depends on the other."""
        return a != b and not self.depends(a, b) and not self.depends(b, a)

    def ancestors(self, node: str) -> frozenset[str]:
        return frozenset(self._decode(self._anc.get(node, 0)))

    def add_edge(self, node: str, on: str) -> None:
        """``node`` now also depends on ``on`` (the caller keeps the graph acyclic)."""
        desc = self._descendants()
        above = self._anc[on] | self._bit(on)
        below = desc[node] | self._bit(node)
        for x in self._decode(below):
            self._anc[x] |= above
        for y in self._decode(above):
            desc[y] |= below
        self._deps[node].append(on)

    def _descendants(self) -> dict[str, int]:
        if self._desc is None:
            desc = dict.fromkeys(self._nodes, 0)
            for node in reversed(list(_postorder(self._deps, self._nodes))):
                for dep in self._deps[node]:
                    if dep in desc:
                        desc[dep] |= desc[node] | self._bit(node)
            self._desc = desc
        return self._desc

    def _bit(self, node: str) -> int:
        return 1 << self._pos[node]

    def _decode(self, bits: int) -> Iterator[str]:
        while bits:
            low = bits & -bits
            yield self._nodes[low.bit_length() - 1]
            bits ^= low


def _postorder(deps: Mapping[str, Sequence[str]], nodes: Sequence[str]) -> Iterator[str]:
    """Every node after its dependencies (depth-first, explicit stack; an edge closing a cycle ignored)."""
    seen: set[str] = set()
    for root in nodes:
        if root in seen:
            continue
        seen.add(root)
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(deps.get(root, ())))]
        while stack:
            node, todo = stack[-1]
            dep = next(todo, None)
            if dep is None:
                stack.pop()
                yield node
            elif dep in deps and dep not in seen:
                seen.add(dep)
                stack.append((dep, iter(deps.get(dep, ()))))


def reachability(deps: Deps) -> dict[str, frozenset[str]]:
    """For each node, every node it (transitively) depends on (quadratic output: for tests and small
    graphs; ask :class:`Reach` instead)."""
    out: dict[str, frozenset[str]] = {}
    for node in _postorder(deps, list(deps)):
        found: set[str] = set()
        for dep in deps[node]:
            found.add(dep)
            found |= out.get(dep, frozenset())
        out[node] = frozenset(found)
    return {node: out[node] for node in deps}


def dependents(plan: Plan, subtask_id: str) -> frozenset[str]:
    """Every subtask that (transitively) depends on ``subtask_id``."""
    return dag_dependents(deps_of(plan), subtask_id)


def dag_dependents(deps: Deps, node: str) -> frozenset[str]:
    """Every node that (transitively) depends on ``node`` (a breadth-first walk of the reversed edges)."""
    users: dict[str, list[str]] = {}
    for other, before in deps.items():
        for dep in before:
            users.setdefault(dep, []).append(other)
    found: set[str] = set()
    todo = [node]
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in found:
                found.add(user)
                todo.append(user)
    found.discard(node)
    return frozenset(found)


def concurrent_pairs(plan: Plan) -> set[frozenset[str]]:
    """Pairs of subtasks that may run at the same time: neither (transitively) depends on the other."""
    return dag_concurrent_pairs(deps_of(plan), [s.id for s in plan.subtasks])


def dag_concurrent_pairs(deps: Deps, order: Sequence[str]) -> set[frozenset[str]]:
    """Pairs of ``order``'s nodes of which neither (transitively) depends on the other (quadratic output:
    for tests and small graphs; ask :meth:`Reach.concurrent` instead)."""
    reach = Reach(deps, order)
    return {frozenset((a, b)) for i, a in enumerate(order) for b in order[i + 1 :] if reach.concurrent(a, b)}
