"""Plan files (YAML or JSON), their validation, and the DAG questions the rest asks of a plan.

``load_plan`` reads and fully validates a file; ``plan_from_dict`` does the structural checks (types,
keys, scripted edit paths) and names the subtask and key at fault; ``validate`` does the graph checks
(ids, dependencies, cycles, size) and returns warnings (ownership overlap between subtasks that may run
at the same time). Everything here is pure except reading the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ci_swarm.errors import PathEscapeError, PlanError
from ci_swarm.models import AgentSpec, MergeOrder, MergePolicy, Plan, Subtask
from ci_swarm.workspace import check_relative, glob_to_regex, matches_any, scrub_env

SUPPORTED_VERSIONS = (1,)
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
EDIT_OPS = ("write", "replace", "append", "delete")

_PLAN_KEYS = frozenset({"version", "task", "merge", "subtasks", "rationale"})
_SUBTASK_KEYS = frozenset({"id", "role", "title", "instructions", "paths", "depends_on", "agent"})
_MERGE_KEYS = frozenset({"order", "prefer"})
_EDIT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "write": ("content",),
    "replace": ("old", "new"),
    "append": ("text",),
    "delete": (),
}


# --- reading ------------------------------------------------------------------------------------


def load_plan(path: Path) -> Plan:
    """Read, parse and validate a plan file (``.json`` → JSON, anything else → YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot read plan: {exc}") from exc
    data = _parse(text, path)
    if not isinstance(data, Mapping):
        raise PlanError(f"{path}: a plan must be a mapping with 'subtasks', got {_kind(data)}")
    plan = plan_from_dict(data, source=str(path))
    try:
        validate(plan)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from exc
    return plan


def _parse(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or "syntax error"
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
        raise PlanError(f"{where}: malformed YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: malformed YAML: {exc}") from exc


# --- structure ----------------------------------------------------------------------------------


def plan_from_dict(data: Mapping[str, Any], *, source: str = "<plan>") -> Plan:
    """Build a Plan from parsed YAML/JSON, checking every key's type; PlanError names the key."""
    _no_unknown_keys(data, _PLAN_KEYS, source)
    version = data.get("version", 1)
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise PlanError(f"{source}: unsupported plan version {version!r} (supported: 1)")
    raw_subtasks = data.get("subtasks")
    if raw_subtasks is None or raw_subtasks == []:
        raise PlanError(f"{source}: the plan has no subtasks")
    if not isinstance(raw_subtasks, list):
        raise PlanError(f"{source}: 'subtasks' must be a list, got {_kind(raw_subtasks)}")
    subtasks = tuple(_subtask(raw, i, source) for i, raw in enumerate(raw_subtasks, 1))
    return Plan(
        task=_opt_str(data, "task", source),
        subtasks=subtasks,
        merge=_merge_policy(data.get("merge"), source),
        version=int(version),
        rationale=_opt_str(data, "rationale", source),
    )


def _subtask(raw: Any, index: int, source: str) -> Subtask:
    if not isinstance(raw, Mapping):
        raise PlanError(f"{source}: subtask #{index} must be a mapping, got {_kind(raw)}")
    sid = raw.get("id")
    if not isinstance(sid, str) or not sid:
        raise PlanError(f"{source}: subtask #{index} has no 'id' (a string)")
    where = f"{source}: subtask {sid!r}"
    _no_unknown_keys(raw, _SUBTASK_KEYS, where)
    return Subtask(
        id=sid,
        role=_opt_str(raw, "role", where) or "builder",
        title=_opt_str(raw, "title", where) or sid,
        instructions=_opt_str(raw, "instructions", where),
        paths=_str_list(raw, "paths", where),
        depends_on=_str_list(raw, "depends_on", where),
        agent=_agent(raw.get("agent"), where),
    )


def _agent(raw: Any, where: str) -> AgentSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: 'agent' must be a mapping, got {_kind(raw)}")
    kind = raw.get("kind", "scripted")
    if not isinstance(kind, str) or not kind:
        raise PlanError(f"{where}: 'agent.kind' must be a string, got {_kind(kind)}")
    options = {str(k): v for k, v in raw.items() if k != "kind"}
    spec = AgentSpec(kind=kind, options=freeze(options))
    check_agent(spec, where)
    return spec


def check_agent(spec: AgentSpec, where: str) -> None:
    """Static checks of the options of the built-in agent kinds (other kinds are the backend's job)."""
    if spec.kind == "scripted":
        _number(spec.options, "delay", where)
        parse_edits(spec.options.get("edits"), where)
        if not isinstance(spec.options.get("fail", ""), str):
            raise PlanError(f"{where}: 'agent.fail' must be a string (the failure reason)")
    elif spec.kind == "command":
        command_argv(spec.options, where)
        _number(spec.options, "timeout", where)
        command_env(spec.options, where)


def _merge_policy(raw: Any, source: str) -> MergePolicy:
    if raw is None:
        return MergePolicy()
    if not isinstance(raw, Mapping):
        raise PlanError(f"{source}: 'merge' must be a mapping, got {_kind(raw)}")
    _no_unknown_keys(raw, _MERGE_KEYS, f"{source}: merge")
    order = raw.get("order", MergeOrder.COMPLETION.value)
    if order not in [o.value for o in MergeOrder]:
        raise PlanError(f"{source}: merge.order must be 'completion' or 'plan', got {order!r}")
    return MergePolicy(order=MergeOrder(order), prefer=_prefer(raw.get("prefer", "first"), source))


def _prefer(raw: Any, source: str) -> tuple[str, ...]:
    if raw == "first":
        return ()
    if isinstance(raw, list) and raw and all(isinstance(r, str) and r for r in raw):
        return tuple(raw)
    raise PlanError(f'{source}: merge.prefer must be "first" or a non-empty list of roles, got {raw!r}')


# --- scripted edits and command options -----------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One scripted edit: op is write | replace | append | delete."""

    op: str
    path: str
    content: str = ""  # write: the new content; append: the text
    old: str = ""  # replace only
    new: str = ""  # replace only


def parse_edits(raw: Any, where: str = "<agent>") -> tuple[Edit, ...]:
    """Scripted ``edits`` → Edit values; PlanError names the edit, key or path at fault."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PlanError(f"{where}: 'agent.edits' must be a list, got {_kind(raw)}")
    return tuple(_edit(item, n, where) for n, item in enumerate(raw, 1))


def _edit(raw: Any, n: int, where: str) -> Edit:
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: edit #{n} must be a mapping, got {_kind(raw)}")
    ops = [op for op in EDIT_OPS if op in raw]
    if len(ops) != 1:
        raise PlanError(f"{where}: edit #{n} needs exactly one of {', '.join(EDIT_OPS)}")
    op = ops[0]
    path = raw[op]
    if not isinstance(path, str):
        raise PlanError(f"{where}: edit #{n} '{op}' must be a path string, got {_kind(path)}")
    extra = set(raw) - {op, *_EDIT_FIELDS[op]}
    if extra:
        raise PlanError(f"{where}: edit #{n} ({op} {path}) has unknown key {sorted(map(str, extra))[0]!r}")
    values = {}
    for key in _EDIT_FIELDS[op]:
        value = raw.get(key)
        if not isinstance(value, str):
            raise PlanError(f"{where}: edit #{n} ({op} {path}) needs '{key}' (a string)")
        values[key] = value
    try:
        check_edit_path(path)
    except PathEscapeError as exc:
        raise PlanError(f"{where}: edit #{n}: {exc}") from exc
    if op == "replace" and not values["old"]:
        raise PlanError(f"{where}: edit #{n} (replace {path}) has an empty 'old'")
    return Edit(
        op=op,
        path=path,
        content=values.get("content", values.get("text", "")),
        old=values.get("old", ""),
        new=values.get("new", ""),
    )


def check_edit_path(path: str) -> None:
    """Refuse an edit path that is absolute, climbs out with ``..`` or lies under ``.git/``."""
    if str(check_relative(path)) == ".":
        raise PathEscapeError(f"path {path!r} names the worktree itself, not a file")


def command_argv(options: Mapping[str, Any], where: str = "<agent>") -> tuple[str, ...]:
    """The command agent's argv (``run:`` or ``command: {run: ...}``): a non-empty list of strings."""
    run = options.get("run")
    nested = options.get("command")
    if run is None and isinstance(nested, Mapping):
        run = nested.get("run")
    if not isinstance(run, Sequence) or isinstance(run, str) or not run:
        raise PlanError(f"{where}: command agent needs 'run': a non-empty list of arguments (no shell)")
    if not all(isinstance(a, str) for a in run):
        raise PlanError(f"{where}: command agent 'run' must contain only strings")
    return tuple(run)


def command_env(options: Mapping[str, Any], where: str = "<agent>") -> dict[str, str]:
    """Extra environment for the command agent; names that look like secrets are refused."""
    env = options.get("env") or {}
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        raise PlanError(f"{where}: command agent 'env' must map names to strings")
    env = {str(k): v for k, v in env.items()}
    secret = sorted(set(env) - set(scrub_env(env)))
    if secret:
        raise PlanError(f"{where}: command agent 'env' may not pass secrets to an agent: {secret[0]}")
    return env


# --- graph checks -------------------------------------------------------------------------------


def validate(plan: Plan, *, max_subtasks: int | None = None) -> tuple[str, ...]:
    """Raise PlanError for a plan that cannot run; return warnings (ownership overlaps)."""
    if not plan.subtasks:
        raise PlanError("the plan has no subtasks")
    if plan.version not in SUPPORTED_VERSIONS:
        raise PlanError(f"unsupported plan version {plan.version!r} (supported: 1)")
    if max_subtasks is not None and len(plan.subtasks) > max_subtasks:
        raise PlanError(f"too many subtasks: {len(plan.subtasks)} (the limit is {max_subtasks})")
    _check_ids(plan)
    _check_deps(plan)
    _check_acyclic(plan)
    for sub in plan.subtasks:
        if sub.agent is not None:
            check_agent(sub.agent, f"subtask {sub.id!r}")
    return tuple(overlap_warning(a, b, pats) for a, b, pats in ownership_overlaps(plan))


def overlap_warning(a: str, b: str, patterns: Sequence[str]) -> str:
    return (
        f"subtasks {a!r} and {b!r} may run at the same time and both own {', '.join(patterns)}: "
        "the merge queue will resolve their edits hunk by hunk (or use --serialize-overlaps)"
    )


def _check_ids(plan: Plan) -> None:
    seen: dict[str, int] = {}
    for n, sub in enumerate(plan.subtasks, 1):
        if not ID_PATTERN.fullmatch(sub.id):
            raise PlanError(f"malformed subtask id {sub.id!r}: use lowercase letters, digits and '-'")
        if sub.id in seen:
            raise PlanError(f"duplicate subtask id {sub.id!r} (subtasks #{seen[sub.id]} and #{n})")
        seen[sub.id] = n


def _check_deps(plan: Plan) -> None:
    ids = {sub.id for sub in plan.subtasks}
    for sub in plan.subtasks:
        for dep in sub.depends_on:
            if dep == sub.id:
                raise PlanError(f"subtask {sub.id!r} depends on itself")
            if dep not in ids:
                raise PlanError(f"subtask {sub.id!r} depends on unknown {dep!r}")


def _check_acyclic(plan: Plan) -> None:
    cycle = find_cycle(_deps(plan))
    if cycle:
        raise PlanError(f"dependency cycle: {' -> '.join(cycle)}")


def find_cycle(deps: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
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


def _deps(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {sub.id: sub.depends_on for sub in plan.subtasks}


# --- ordering -----------------------------------------------------------------------------------


def waves(plan: Plan) -> tuple[tuple[str, ...], ...]:
    """Topological layers: wave 0 depends on nothing; wave k on something in wave k-1 (plan order)."""
    level = _levels(_deps(plan))
    depth = max(level.values(), default=-1) + 1
    return tuple(tuple(s.id for s in plan.subtasks if level[s.id] == k) for k in range(depth))


def _levels(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    cycle = find_cycle(deps)
    if cycle:
        raise PlanError(f"dependency cycle: {' -> '.join(cycle)}")
    level: dict[str, int] = {}

    def of(node: str) -> int:
        if node not in level:
            level[node] = 1 + max((of(d) for d in deps[node] if d in deps), default=-1)
        return level[node]

    for node in deps:
        of(node)
    return level


def critical_path(plan: Plan, durations: Mapping[str, float]) -> tuple[tuple[str, ...], float]:
    """The longest chain of dependencies weighted by ``durations`` (missing → 0), and its length."""
    return dag_critical_path(_deps(plan), durations)


def dag_critical_path(
    deps: Mapping[str, Sequence[str]], durations: Mapping[str, float]
) -> tuple[tuple[str, ...], float]:
    """Longest weighted path through a DAG given as ``{node: its dependencies}``."""
    level = _levels(deps)
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


def reachability(deps: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
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


def concurrent_pairs(plan: Plan) -> set[frozenset[str]]:
    """Pairs of subtasks that may run at the same time: neither (transitively) depends on the other."""
    return _concurrent(_deps(plan), [s.id for s in plan.subtasks])


def _concurrent(deps: Mapping[str, Sequence[str]], order: Sequence[str]) -> set[frozenset[str]]:
    reach = reachability(deps)
    return {
        frozenset((a, b))
        for i, a in enumerate(order)
        for b in order[i + 1 :]
        if a not in reach[b] and b not in reach[a]
    }


# --- ownership overlap --------------------------------------------------------------------------


def ownership_overlaps(plan: Plan) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``(a, b, patterns)`` for each concurrent pair (plan order) whose ``paths`` globs may overlap."""
    concurrent = concurrent_pairs(plan)
    found = []
    subs = plan.subtasks
    for i, a in enumerate(subs):
        for b in subs[i + 1 :]:
            if frozenset((a.id, b.id)) not in concurrent:
                continue
            shared = _shared_patterns(a.paths, b.paths)
            if shared:
                found.append((a.id, b.id, shared))
    return tuple(found)


def _shared_patterns(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for pa in a:
        for pb in b:
            if globs_may_overlap(pa, pb):
                label = pa if pa == pb else f"{pa} ~ {pb}"
                if label not in out:
                    out.append(label)
    return tuple(out)


def globs_may_overlap(a: str, b: str) -> bool:
    """Whether some path could match both globs (conservative: when unsure, True).

    A glob without wildcards also covers everything under it (a directory), as in ``matches_any``.
    """
    a, b = a.strip("/"), b.strip("/")
    if a == b or matches_any(a, [b]) or matches_any(b, [a]):
        return True
    return _segments_overlap(tuple(a.split("/")), tuple(b.split("/")), not _has_wild(a), not _has_wild(b))


def _segments_overlap(a: tuple[str, ...], b: tuple[str, ...], a_dir: bool, b_dir: bool) -> bool:
    """Segment-wise glob intersection; ``*_dir``: that pattern is literal, so it covers its subtree."""
    if not a or not b:
        rest, covers = (b, a_dir) if not a else (a, b_dir)
        return covers or all(seg == "**" for seg in rest)
    if a[0] == "**":
        return _segments_overlap(a[1:], b, a_dir, b_dir) or _segments_overlap(a, b[1:], a_dir, b_dir)
    if b[0] == "**":
        return _segments_overlap(a, b[1:], a_dir, b_dir) or _segments_overlap(a[1:], b, a_dir, b_dir)
    return _segment_overlap(a[0], b[0]) and _segments_overlap(a[1:], b[1:], a_dir, b_dir)


def _has_wild(text: str) -> bool:
    return "*" in text or "?" in text


def _segment_overlap(a: str, b: str) -> bool:
    if not _has_wild(a) and not _has_wild(b):
        return a == b
    if not _has_wild(a):
        return re.fullmatch(glob_to_regex(b), a) is not None
    if not _has_wild(b):
        return re.fullmatch(glob_to_regex(a), b) is not None
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    sa, sb = _literal_prefix(a[::-1]), _literal_prefix(b[::-1])
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.startswith(sb) or sb.startswith(sa))


def _literal_prefix(text: str) -> str:
    match = re.match(r"[^*?]*", text)
    return match.group(0) if match else ""


def serialize_overlaps(plan: Plan) -> Plan:
    """Add ``depends_on`` edges (later in plan order waits for earlier) between overlapping concurrent
    subtasks, re-checking concurrency after each edge so no cycle can appear."""
    deps = {s.id: list(s.depends_on) for s in plan.subtasks}
    order = [s.id for s in plan.subtasks]
    pairs = sorted(
        ((a, b) for a, b, _ in ownership_overlaps(plan)),
        key=lambda p: (order.index(p[1]), -order.index(p[0])),
    )
    for a, b in pairs:  # nearest earlier subtask first: a chain, not a fan of redundant edges
        if frozenset((a, b)) in _concurrent(deps, order):
            deps[b].append(a)
    subtasks = tuple(replace(s, depends_on=tuple(deps[s.id])) for s in plan.subtasks)
    return replace(plan, subtasks=subtasks)


# --- small helpers ------------------------------------------------------------------------------


def freeze(value: Any) -> Any:
    """Deep-freeze parsed YAML/JSON: mappings → MappingProxyType, lists → tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def _no_unknown_keys(data: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise PlanError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PlanError(f"{where}: '{key}' must be a string, got {_kind(value)}")
    return value


def _str_list(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PlanError(f"{where}: '{key}' must be a list of strings, got {value!r}")
    return tuple(value)


def _number(options: Mapping[str, Any], key: str, where: str) -> None:
    value = options.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PlanError(f"{where}: 'agent.{key}' must be a non-negative number of seconds, got {value!r}")


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )
