"""Plan files (YAML or JSON) and their validation, with errors naming the problem.

``load_plan`` reads and fully validates a file; ``plan_from_dict`` does the structural checks (types,
keys) and names the subtask and key at fault; ``validate`` does the graph checks (ids, dependencies,
cycles, size) and returns warnings (ownership overlap between subtasks that may run at the same time).

The core knows no agent backend: each backend checks its own ``agent:`` options through an
:class:`OptionsValidator`, and the caller passes the validators it has (``ci_swarm.agents`` provides the
mapping of the built-in kinds). Given validators, a kind none of them names is refused ("did you mean");
given none, kinds are not checked here. Files are read within :mod:`ci_swarm.safeyaml`'s limits (depth,
alias expansion, finite numbers). Everything here is pure except reading the file.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import yaml

from ci_swarm.dag import check_acyclic, deps_of
from ci_swarm.errors import PlanError
from ci_swarm.models import (
    DEFAULT_CHECK_TIMEOUT,
    AgentSpec,
    Check,
    Insertions,
    Judge,
    MergeOrder,
    MergePolicy,
    OnConflict,
    Plan,
    ReviewPolicy,
    Subtask,
)
from ci_swarm.paths import overlap_warning, ownership_overlaps
from ci_swarm.safeyaml import JSONLimitError, load_json, load_yaml

SUPPORTED_VERSIONS = (1,)
MAX_VOTERS = 9  # a review panel's voters (each one model call on the whole diff)
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")

_PLAN_KEYS = frozenset(
    {
        "version",
        "task",
        "merge",
        "subtasks",
        "rationale",
        "checks",
        "merge_failing",
        "review",
        "judge",
        "weights",
    }
)
_CHECK_KEYS = frozenset({"name", "run", "timeout"})
_SUBTASK_KEYS = frozenset(
    {"id", "role", "title", "instructions", "paths", "depends_on", "agent", "attempts", "judge"}
)
MAX_ATTEMPTS = 16
_MERGE_KEYS = frozenset({"order", "prefer", "insertions", "on_conflict", "resolver"})
_REVIEW_KEYS = frozenset({"voters", "approve", "roles"})


class OptionsValidator(Protocol):
    """A backend's check of its ``agent:`` options; PlanError naming ``where`` and the option at fault."""

    def __call__(self, options: Mapping[str, Any], where: str) -> None: ...


Validators = Mapping[str, OptionsValidator]
NO_VALIDATORS: Validators = MappingProxyType({})


# --- reading ------------------------------------------------------------------------------------


def load_plan(
    path: Path, *, validators: Validators = NO_VALIDATORS, default_merge: MergePolicy | None = None
) -> Plan:
    """Read, parse and validate a plan file (``.json`` → JSON, anything else → YAML). A plan without a
    ``merge:`` key gets ``default_merge`` (the repository config's policy) when given."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot read plan: {exc}") from exc
    data = _parse(text, path)
    if not isinstance(data, Mapping):
        raise PlanError(f"{path}: a plan must be a mapping with 'subtasks', got {kind_of(data)}")
    plan = plan_from_dict(data, source=str(path), validators=validators)
    if default_merge is not None and "merge" not in data:
        plan = replace(plan, merge=default_merge)
    try:
        validate(plan)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from exc
    return plan


def _parse(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return load_json(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from exc
        except JSONLimitError as exc:
            raise PlanError(f"{path}: refused JSON: {exc}") from exc
    try:
        return load_yaml(text)
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


def plan_from_dict(
    data: Mapping[str, Any], *, source: str = "<plan>", validators: Validators = NO_VALIDATORS
) -> Plan:
    """Build a Plan from parsed YAML/JSON, checking every key's type; PlanError names the key.
    ``validators`` check the options of the agent kinds they name."""
    no_unknown_keys(data, _PLAN_KEYS, source)
    version = data.get("version", 1)
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise PlanError(f"{source}: unsupported plan version {version!r} (supported: 1)")
    raw_subtasks = data.get("subtasks")
    if raw_subtasks is None or raw_subtasks == []:
        raise PlanError(f"{source}: the plan has no subtasks")
    if not isinstance(raw_subtasks, list):
        raise PlanError(f"{source}: 'subtasks' must be a list, got {kind_of(raw_subtasks)}")
    subtasks = tuple(_subtask(raw, i, source, validators) for i, raw in enumerate(raw_subtasks, 1))
    return Plan(
        task=_opt_str(data, "task", source),
        subtasks=subtasks,
        merge=_merge_policy(data.get("merge"), source, validators),
        version=int(version),
        rationale=_opt_str(data, "rationale", source),
        checks=_checks(data.get("checks"), source),
        merge_failing=_opt_bool(data, "merge_failing", source),
        review=review_policy(data["review"], f"{source}: review") if data.get("review") is not None else None,
        judge=judge_value(data.get("judge"), source),
        weights=weights_value(data.get("weights"), source),
    )


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON-able data that :func:`plan_from_dict` reads back into an equal plan."""
    data: dict[str, Any] = {
        "version": plan.version,
        "task": plan.task,
        "rationale": plan.rationale,
        "merge": {
            "order": plan.merge.order.value,
            "prefer": list(plan.merge.prefer) or "first",
            "insertions": plan.merge.insertions.value,
            "on_conflict": plan.merge.on_conflict.value,
        },
        "subtasks": [_subtask_to_dict(sub) for sub in plan.subtasks],
    }
    if plan.merge.resolver is not None:
        data["merge"]["resolver"] = agent_to_dict(plan.merge.resolver)
    if plan.checks:
        data["checks"] = [_check_to_dict(check) for check in plan.checks]
    if plan.merge_failing is not None:
        data["merge_failing"] = plan.merge_failing
    if plan.review is not None:
        review = plan.review
        data["review"] = {"voters": review.voters, "approve": review.approve, "roles": list(review.roles)}
    if plan.judge is not None:
        data["judge"] = plan.judge.value
    if plan.weights:
        data["weights"] = dict(plan.weights)
    return data


def _check_to_dict(check: Check) -> dict[str, Any]:
    data: dict[str, Any] = {"name": check.name, "run": list(check.run)}
    if check.timeout is not None:
        data["timeout"] = check.timeout
    return data


def _subtask_to_dict(sub: Subtask) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": sub.id,
        "role": sub.role,
        "title": sub.title,
        "instructions": sub.instructions,
        "paths": list(sub.paths),
        "depends_on": list(sub.depends_on),
    }
    if sub.agent is not None:
        data["agent"] = agent_to_dict(sub.agent)
    if sub.attempts:
        specs = sub.attempts
        data["attempts"] = (
            len(specs) if all(s is None for s in specs) else [agent_to_dict(s or AgentSpec()) for s in specs]
        )
    if sub.judge is not None:
        data["judge"] = sub.judge.value
    return data


def agent_to_dict(spec: AgentSpec) -> dict[str, Any]:
    """An agent spec as the ``agent:`` mapping of a plan file (options thawed to lists and dicts)."""
    return {"kind": spec.kind, **thaw(dict(spec.options))}


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: mappings → dicts, tuples → lists."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def _checks(raw: Any, source: str) -> tuple[Check, ...]:
    """A plan's ``checks``: ``[{name, run (argv or text), timeout?}]``; PlanError naming the check."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PlanError(f"{source}: 'checks' must be a list, got {kind_of(raw)}")
    return tuple(_check(item, f"{source}: checks[{i}]") for i, item in enumerate(raw))


def _check(raw: Any, where: str) -> Check:
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where} must be a mapping with 'name' and 'run', got {kind_of(raw)}")
    no_unknown_keys(raw, _CHECK_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise PlanError(f"{where}: 'name' must be a non-empty string")
    run = raw.get("run")
    try:
        argv = tuple(shlex.split(run)) if isinstance(run, str) else run
    except ValueError as exc:
        raise PlanError(f"{where}: 'run': {exc}") from exc
    if not isinstance(argv, list | tuple) or not argv or not all(isinstance(a, str) and a for a in argv):
        raise PlanError(f"{where}: 'run' must be a command (text or a list of words), got {run!r}")
    timeout = raw.get("timeout", DEFAULT_CHECK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise PlanError(f"{where}: 'timeout' must be a positive number of seconds, got {timeout!r}")
    return Check(name=name, run=tuple(argv), timeout=float(timeout))


def _opt_bool(data: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise PlanError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def _subtask(raw: Any, index: int, source: str, validators: Validators) -> Subtask:
    if not isinstance(raw, Mapping):
        raise PlanError(f"{source}: subtask #{index} must be a mapping, got {kind_of(raw)}")
    sid = raw.get("id")
    if not isinstance(sid, str) or not sid:
        raise PlanError(f"{source}: subtask #{index} has no 'id' (a string)")
    where = f"{source}: subtask {sid!r}"
    no_unknown_keys(raw, _SUBTASK_KEYS, where)
    return Subtask(
        id=sid,
        role=_opt_str(raw, "role", where) or "builder",
        title=_opt_str(raw, "title", where) or sid,
        instructions=_opt_str(raw, "instructions", where),
        paths=_str_list(raw, "paths", where),
        depends_on=_str_list(raw, "depends_on", where),
        agent=_agent(raw.get("agent"), where, validators),
        attempts=_attempts(raw.get("attempts"), where, validators),
        judge=judge_value(raw.get("judge"), where),
    )


def _attempts(raw: Any, where: str, validators: Validators) -> tuple[AgentSpec | None, ...]:
    """``attempts: N`` (the subtask's agent N times) or ``attempts: [agent, …]`` (each read and checked like
    ``agent:``); one attempt is the same as none."""
    if raw is None:
        return ()
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= MAX_ATTEMPTS:
            raise PlanError(f"{where}: 'attempts' must be between 1 and {MAX_ATTEMPTS}, got {raw}")
        return (None,) * raw if raw > 1 else ()
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"{where}: 'attempts' must be a number or a non-empty list of agents, got {raw!r}")
    if len(raw) > MAX_ATTEMPTS:
        raise PlanError(f"{where}: 'attempts' lists {len(raw)} agents (at most {MAX_ATTEMPTS})")
    specs = []
    for i, item in enumerate(raw):
        if not isinstance(item, str | Mapping):
            raise PlanError(f"{where}: attempts[{i}] must be an agent kind or a mapping, got {kind_of(item)}")
        specs.append(_agent(item, f"{where}: attempts[{i}]", validators))
    return tuple(specs) if len(specs) > 1 else ()


def judge_value(raw: Any, where: str) -> Judge | None:
    """``judge:`` — checks, vote, reviewer or weighted (None when absent)."""
    if raw is None:
        return None
    values = [j.value for j in Judge]
    if raw not in values:
        hint = did_you_mean(raw, values) if isinstance(raw, str) else ""
        raise PlanError(f"{where}: 'judge' must be one of {', '.join(values)}, got {raw!r}{hint}")
    return Judge(raw)


def weights_value(raw: Any, where: str) -> Mapping[str, float]:
    """``weights: {role: weight}`` for the ``weighted`` judge (non-negative finite numbers)."""
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping) or not raw:
        raise PlanError(f"{where}: 'weights' must be a non-empty mapping of role to weight, got {raw!r}")
    out: dict[str, float] = {}
    for role, weight in raw.items():
        ok = isinstance(weight, int | float) and not isinstance(weight, bool) and 0 <= weight < math.inf
        if not isinstance(role, str) or not role or not ok:
            raise PlanError(f"{where}: weights.{role} must be a non-negative number, got {weight!r}")
        out[role] = float(weight)
    return MappingProxyType(out)


def _agent(raw: Any, where: str, validators: Validators) -> AgentSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: 'agent' must be a mapping, got {kind_of(raw)}")
    kind = raw.get("kind", "scripted")
    if not isinstance(kind, str) or not kind:
        raise PlanError(f"{where}: 'agent.kind' must be a string, got {kind_of(kind)}")
    if validators and kind not in validators:
        known = ", ".join(sorted(validators))
        raise PlanError(
            f"{where}: unknown agent kind {kind!r}{did_you_mean(kind, validators)} (available: {known})"
        )
    options = {str(k): v for k, v in raw.items() if k != "kind"}
    _finite_numbers(options, f"{where}: agent")
    spec = AgentSpec(kind=kind, options=freeze(options))
    check_agent(spec, where, validators)
    return spec


def check_agent(spec: AgentSpec, where: str, validators: Validators = NO_VALIDATORS) -> None:
    """Check ``spec``'s options with the validator registered for its kind (none: nothing to check)."""
    validator = validators.get(spec.kind)
    if validator is not None:
        validator(spec.options, where)


def _merge_policy(raw: Any, source: str, validators: Validators = NO_VALIDATORS) -> MergePolicy:
    if raw is None:
        return MergePolicy()
    if not isinstance(raw, Mapping):
        raise PlanError(f"{source}: 'merge' must be a mapping, got {kind_of(raw)}")
    no_unknown_keys(raw, _MERGE_KEYS, f"{source}: merge")
    order = raw.get("order", MergeOrder.COMPLETION.value)
    if order not in [o.value for o in MergeOrder]:
        raise PlanError(f"{source}: merge.order must be 'completion' or 'plan', got {order!r}")
    insertions = raw.get("insertions", Insertions.BOTH.value)
    if insertions not in [i.value for i in Insertions]:
        raise PlanError(f"{source}: merge.insertions must be 'both' or 'keep', got {insertions!r}")
    prefer = _prefer(raw.get("prefer", "first"), source)
    return MergePolicy(
        order=MergeOrder(order),
        prefer=prefer,
        insertions=Insertions(insertions),
        on_conflict=_on_conflict(raw.get("on_conflict", OnConflict.KEEP.value), source),
        resolver=_resolver(raw.get("resolver"), source, validators),
    )


def _on_conflict(raw: Any, source: str) -> OnConflict:
    values = [o.value for o in OnConflict]
    if raw not in values:
        hint = did_you_mean(raw, values) if isinstance(raw, str) else ""
        raise PlanError(f"{source}: merge.on_conflict must be 'keep', 'redo' or 'resolve', got {raw!r}{hint}")
    return OnConflict(raw)


def _resolver(raw: Any, source: str, validators: Validators) -> AgentSpec | None:
    """``merge.resolver``: an agent spec, read and checked exactly like a subtask's ``agent:``."""
    where = f"{source}: merge.resolver"
    if raw is not None and not isinstance(raw, str | Mapping):
        raise PlanError(f"{where} must be an agent kind or a mapping with 'kind', got {kind_of(raw)}")
    return _agent(raw, where, validators)


def review_policy(raw: Any, where: str) -> ReviewPolicy:
    """``review: {voters, approve, roles}`` (a plan's or the config's) → :class:`ReviewPolicy`; PlanError
    naming ``where`` unless ``1 ≤ approve ≤ voters`` and ``roles`` is a list of non-empty strings."""
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where} must be a mapping with voters, approve and roles, got {kind_of(raw)}")
    no_unknown_keys(raw, _REVIEW_KEYS, where)
    default = ReviewPolicy()
    voters, approve = raw.get("voters", default.voters), raw.get("approve", default.approve)
    for key, value in (("voters", voters), ("approve", approve)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanError(f"{where}.{key} must be a whole number of at least 1, got {value!r}")
    if approve > voters:
        raise PlanError(f"{where}.approve ({approve}) must not exceed voters ({voters})")
    if voters > MAX_VOTERS:
        raise PlanError(f"{where}.voters must be at most {MAX_VOTERS}, got {voters}")
    roles = raw.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) and r.strip() for r in roles):
        raise PlanError(f"{where}.roles must be a list of role names (strings), got {roles!r}")
    return ReviewPolicy(voters=voters, approve=approve, roles=tuple(r.strip() for r in roles))


def _prefer(raw: Any, source: str) -> tuple[str, ...]:
    if raw == "first":
        return ()
    if isinstance(raw, list) and raw and all(isinstance(r, str) and r for r in raw):
        return tuple(raw)
    raise PlanError(f'{source}: merge.prefer must be "first" or a non-empty list of roles, got {raw!r}')


# --- graph checks -------------------------------------------------------------------------------


def validate(
    plan: Plan, *, max_subtasks: int | None = None, validators: Validators = NO_VALIDATORS
) -> tuple[str, ...]:
    """Raise PlanError for a plan that cannot run; return warnings (ownership overlaps).
    ``validators`` check the options of the agent kinds they name."""
    if not plan.subtasks:
        raise PlanError("the plan has no subtasks")
    if plan.version not in SUPPORTED_VERSIONS:
        raise PlanError(f"unsupported plan version {plan.version!r} (supported: 1)")
    if max_subtasks is not None and len(plan.subtasks) > max_subtasks:
        raise PlanError(f"too many subtasks: {len(plan.subtasks)} (the limit is {max_subtasks})")
    _check_ids(plan)
    _check_deps(plan)
    check_acyclic(deps_of(plan))
    for sub in plan.subtasks:
        if sub.agent is not None:
            check_agent(sub.agent, f"subtask {sub.id!r}", validators)
    if plan.merge.resolver is not None:
        check_agent(plan.merge.resolver, "merge.resolver", validators)
    return tuple(overlap_warning(a, b, pats) for a, b, pats in ownership_overlaps(plan))


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
                raise PlanError(f"subtask {sub.id!r} depends on unknown {dep!r}{did_you_mean(dep, ids)}")


# --- small helpers (also for the backends' validators) ------------------------------------------


def require_executable(program: str, where: str, path: str | None = None) -> None:
    """PlanError unless ``program`` (an argv[0]) can be started: found on ``path`` (default ``$PATH``)
    when it is a bare name, an executable file when it is absolute. A relative path (``./tool``) names a
    file in the agent's clone and is left to run time."""
    if "/" in program and not program.startswith("/"):
        return
    if shutil.which(program, path=path) is None:
        found = "is not an executable file" if "/" in program else "is not found on PATH"
        raise PlanError(f"{where}: executable {program!r} {found}")


def _finite_numbers(value: Any, where: str) -> None:
    """PlanError naming the option that holds a NaN or an infinity (plans may come from a model, not only
    from files, whose loader refuses them already)."""
    todo: list[tuple[Any, str]] = [(value, where)]
    while todo:
        item, at = todo.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise PlanError(f"{at}: {item!r} is not a finite number")
        if isinstance(item, Mapping):
            todo.extend((v, f"{at}.{k}") for k, v in item.items())
        elif isinstance(item, list | tuple):
            todo.extend((v, f"{at}[{i}]") for i, v in enumerate(item))


def freeze(value: Any) -> Any:
    """Deep-freeze parsed YAML/JSON: mappings → MappingProxyType, lists → tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def no_unknown_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str, what: str = "key") -> None:
    """PlanError for the first key of ``data`` not in ``allowed``, with the closest allowed one."""
    known = sorted(allowed)
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise PlanError(f"{where}: unknown {what} {unknown[0]!r}{hint} (allowed: {', '.join(known)})")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PlanError(f"{where}: '{key}' must be a string, got {kind_of(value)}")
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


def kind_of(value: Any) -> str:
    """What a parsed value is, in words: "a mapping", "a list", "a string", "nothing", or its type."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return {str: "a string", type(None): "nothing"}.get(type(value), type(value).__name__)
