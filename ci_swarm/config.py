"""The repository's configuration, ``.github/ci-swarm.yml``: load, defaults, validation.

The JSON schema shipped in ``ci_swarm/data/ci-swarm.schema.json`` is the one source of truth for what is
valid: the file is parsed into YAML nodes (which keep their line numbers), validated against the schema with
``jsonschema``, and every error names the key and the line (``.github/ci-swarm.yml:7: merge.order: ...``).
The YAML is read within :mod:`ci_swarm.safeyaml`'s limits (depth, alias expansion, finite numbers).
Then the plain values become a frozen :class:`Config`.
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from ci_swarm.errors import ConfigError, PlanError
from ci_swarm.models import (
    DEFAULT_CHECK_TIMEOUT,
    EMPTY,
    AgentSpec,
    Check,
    Insertions,
    Judge,
    MergeOrder,
    MergePolicy,
    OnConflict,
    ReviewPolicy,
)
from ci_swarm.plan import review_policy
from ci_swarm.safeyaml import BoundedLoader
from ci_swarm.workspace import matches_any

DEFAULT_PATH = ".github/ci-swarm.yml"
DEFAULT_MODEL = "claude-sonnet-4-6"  # the same as ci_swarm.llm.session.DEFAULT_MODEL
DEFAULT_TRUSTED = ("OWNER", "MEMBER", "COLLABORATOR")  # deprecated key, kept readable; decides nothing
# repository permissions, weakest first (what the collaborator-permission API answers, as role names)
PERMISSIONS = ("read", "triage", "write", "maintain", "admin")
# workflows, local actions, CODEOWNERS, dependabot …; and every action definition: CI runs them with secrets
DEFAULT_PROTECTED = (".github/**", "**/action.yml", "**/action.yaml")
DEFAULT_TIMEOUT = 1800.0  # seconds per subtask, also when there is no config file

KeyPath = tuple[str | int, ...]
# `success:` as written: exit codes, "changes", or None (unset: exit 0); see ci_swarm.agents.success
SuccessRule = tuple[int, ...] | str | None


@dataclass(frozen=True)
class Budget:
    """Limits for the whole swarm; None means unlimited."""

    usd: float | None = None
    tokens: int | None = None


@dataclass(frozen=True)
class Shard:
    """Split the files matching ``pattern`` across ``agents`` subtasks, each doing ``task`` on its share."""

    pattern: str
    task: str
    agents: int = 4


@dataclass(frozen=True)
class MaintenanceJob:
    """A scheduled job: exactly one of ``task`` (planner), ``plan`` (plan file) or ``shard``."""

    name: str
    cron: str
    task: str = ""
    plan: str = ""
    shard: Shard | None = None
    agent: AgentSpec | None = None  # a command agent carries the job's (or the config's) `success`
    success: SuccessRule = None  # the job's `success:`, else the config's


@dataclass(frozen=True)
class Config:
    model: str = DEFAULT_MODEL
    planner_model: str = ""  # "" → model
    max_agents: int = 4
    max_subtasks: int = 8
    timeout: float = DEFAULT_TIMEOUT  # seconds per subtask
    budget: Budget = Budget()
    label: str = "swarm"
    command: str = "/swarm"
    trusted_associations: tuple[str, ...] = DEFAULT_TRUSTED
    min_permission: str = "write"  # one of PERMISSIONS
    allowed_bots: tuple[str, ...] = ()
    allowed_commands: tuple[tuple[str, ...], ...] = ()
    sandbox: str = ""  # "user" | "none"; "" = user where available (ci_swarm.sandbox.resolve_policy)
    pass_env: tuple[str, ...] = ()  # variables a command agent's pass_env may name
    check_command: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()  # judge the integration and command agents' work (issue #12)
    merge_failing: bool = False  # merge a command agent whose own checks fail
    best_of: int = 1  # issue #14: N attempts for every subtask that names none (`run --best-of` replaces it)
    judge: Judge | None = None  # issue #14: the attempts' judge when the plan and subtask name none
    weights: Mapping[str, float] = field(default_factory=lambda: EMPTY)  # the weighted judge's roles
    speculate_checks: bool = False  # checks on intermediate tips while agents run (ci_swarm.speculate)
    merge: MergePolicy = field(default_factory=MergePolicy)
    review: ReviewPolicy | None = None  # a review panel on the result (None: none; a plan's replaces it)
    role_prompts: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    protected_paths: tuple[str, ...] = DEFAULT_PROTECTED
    branch_prefix: str = "swarm"
    agent: AgentSpec | None = None  # None: claude when an API key is set, else scripted
    success: SuccessRule = None  # command agents' default `success` (also folded into `agent`)
    maintenance: tuple[MaintenanceJob, ...] = ()
    source: str = ""  # the file it was read from ("" = defaults)

    @property
    def effective_planner_model(self) -> str:
        return self.planner_model or self.model

    def is_protected(self, path: str) -> bool:
        """A ``protected_paths`` glob matches, or ``path`` is the config file this was read from (always
        protected: it says which commands a plan may run)."""
        return matches_any(path, self.protected_paths) or (bool(self.source) and path == self.source)

    def jobs_for_cron(self, cron: str) -> tuple[MaintenanceJob, ...]:
        wanted = " ".join(cron.split())
        return tuple(job for job in self.maintenance if " ".join(job.cron.split()) == wanted)


# --------------------------------------------------------------------------------------------- loading


def load_config(path: Path, *, missing_ok: bool = True) -> Config:
    """Read and validate ``path``; a missing file gives the defaults when ``missing_ok``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return Config()
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    return config_from_text(text, source=str(path))


def config_from_text(text: str, *, source: str = DEFAULT_PATH) -> Config:
    """Parse, validate against the schema, and build a :class:`Config`; errors name key and line."""
    data, lines = _parse(text, source)
    _validate(data, lines, source)
    return _build(data, source)


def schema() -> dict[str, Any]:
    """The shipped JSON schema (a fresh copy)."""
    copy: dict[str, Any] = json.loads(json.dumps(_schema()))
    return copy


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("ci_swarm").joinpath("data/ci-swarm.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# ----------------------------------------------------------------------------------- YAML with lines


def _parse(text: str, source: str) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return {}, {}
        lines: dict[KeyPath, int] = {}
        data = _to_python(loader, root, (), lines, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: malformed YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:{root.start_mark.line + 1}: the config must be a mapping of keys")
    return data, lines


def _to_python(
    loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], source: str
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError(f"{source}:{line}: {_dotted(path) or '(top level)'}: keys must be text")
            if key in out:
                raise ConfigError(f"{source}:{line}: {_dotted((*path, key))}: duplicate key")
            lines[(*path, key)] = line
            out[key] = _to_python(loader, value_node, (*path, key), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(loader, item, (*path, i), lines, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


# ---------------------------------------------------------------------------------------- validation


def _validate(data: dict[str, Any], lines: Mapping[KeyPath, int], source: str) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: _line_of(tuple(e.absolute_path), lines))
    if errors:
        path, message = _explain(errors[0])
        raise ConfigError(f"{source}:{_line_of(path, lines)}: {_dotted(path) or '(top level)'}: {message}")
    commands: list[tuple[KeyPath, Any]] = [(("check_command",), data.get("check_command"))]
    commands += [(("allowed_commands", i), c) for i, c in enumerate(data.get("allowed_commands", ()))]
    commands += [(("checks", i, "run"), c.get("run")) for i, c in enumerate(data.get("checks", ()))]
    for path, value in commands:
        if isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ConfigError(f"{source}:{_line_of(path, lines)}: {_dotted(path)}: {exc}") from exc
    if "review" in data:  # approve ≤ voters: one rule with plans' review:
        try:
            review_policy(data["review"], "review")
        except PlanError as exc:
            raise ConfigError(f"{source}:{_line_of(('review',), lines)}: {exc}") from exc


def _explain(error: jsonschema.ValidationError) -> tuple[KeyPath, str]:
    """The key path an error is about and a one-line message a person can act on."""
    path: KeyPath = tuple(error.absolute_path)
    kind = error.validator
    custom = error.schema.get("x-error") if isinstance(error.schema, dict) else None
    if custom and not _is_one_of_required(error):
        return path, f"{custom}, got {_describe(error.instance)}"
    if kind == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in known)
        hint = difflib.get_close_matches(unknown[0], known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(known)})"
        return (*path, unknown[0]), f"unknown key{suggestion}"
    if kind == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return path, f"missing required key {missing[0]!r}"
    if kind == "oneOf":
        return _explain_one_of(error)
    if kind == "type":
        return path, f"expected {_type_words(error.validator_value)}, got {_describe(error.instance)}"
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return path, f"{_describe(error.instance)} is not one of: {allowed}"
    if kind in _BOUNDS:
        return path, _explain_bound(kind, error)
    if kind == "uniqueItems":
        return path, "items must be unique"
    return path, error.message


_BOUNDS = (
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "minLength",
    "minItems",
    "minProperties",
    "pattern",
    "const",
)


def _explain_one_of(error: jsonschema.ValidationError) -> tuple[KeyPath, str]:
    path: KeyPath = tuple(error.absolute_path)
    branches: Sequence[Mapping[str, Any]] = error.validator_value
    if _is_one_of_required(error):
        names = [b["required"][0] for b in branches]
        found = [n for n in names if n in error.instance]
        detail = f" (found {' and '.join(found)})" if found else ""
        return path, f"needs exactly one of {', '.join(names[:-1])} or {names[-1]}{detail}"
    matching = [i for i, b in enumerate(branches) if _json_type_matches(b.get("type"), error.instance)]
    inner = [e for e in error.context if matching and e.relative_schema_path[0] == matching[0]]
    if len(matching) == 1 and inner:
        return _explain(inner[0])
    kinds = [_type_words(b["type"]) for b in branches if "type" in b]
    return path, f"expected {' or '.join(kinds)}, got {_describe(error.instance)}"


def _is_one_of_required(error: jsonschema.ValidationError) -> bool:
    branches = error.validator_value if error.validator == "oneOf" else None
    return isinstance(branches, list) and all(set(b) == {"required"} for b in branches)


def _explain_bound(kind: str, error: jsonschema.ValidationError) -> str:
    value = error.validator_value
    words = {
        "minimum": f"must be at least {value}",
        "exclusiveMinimum": f"must be greater than {value}",
        "maximum": f"must be at most {value}",
        "minLength": "must not be empty",
        "minItems": "must not be empty",
        "minProperties": "must not be empty",
        "pattern": f"{_describe(error.instance)} does not match {value}",
        "const": f"must be {value!r}",
    }
    return words[kind] + (
        f", got {error.instance!r}" if kind in ("minimum", "exclusiveMinimum", "maximum") else ""
    )


def _json_type_matches(kind: Any, value: Any) -> bool:
    checks = {
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }
    return bool(checks.get(kind, False)) if isinstance(kind, str) else False


def _type_words(kind: Any) -> str:
    names = {"string": "text", "array": "a list", "object": "a mapping", "integer": "an integer"}
    names |= {"number": "a number", "boolean": "true or false", "null": "nothing"}
    if isinstance(kind, list):
        return " or ".join(names.get(str(k), str(k)) for k in kind)
    return names.get(kind, str(kind))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _line_of(path: KeyPath, lines: Mapping[KeyPath, int]) -> int:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# ------------------------------------------------------------------------------------------ building


def _build(data: Mapping[str, Any], source: str) -> Config:
    budget = data.get("budget", {})
    merge = data.get("merge", {})
    success = _success(data.get("success"))
    return Config(
        model=data.get("model", DEFAULT_MODEL),
        planner_model=data.get("planner_model", ""),
        max_agents=data.get("max_agents", 4),
        max_subtasks=data.get("max_subtasks", 8),
        timeout=float(data.get("timeout", DEFAULT_TIMEOUT)),
        budget=Budget(
            usd=float(budget["usd"]) if "usd" in budget else None,
            tokens=budget.get("tokens"),
        ),
        label=data.get("label", "swarm"),
        command=data.get("command", "/swarm"),
        trusted_associations=tuple(data.get("trusted_associations", DEFAULT_TRUSTED)),
        min_permission=data.get("min_permission", "write"),
        allowed_bots=tuple(data.get("allowed_bots", ())),
        allowed_commands=tuple(_argv(c) for c in data.get("allowed_commands", ())),
        sandbox=data.get("sandbox", ""),
        pass_env=tuple(data.get("pass_env", ())),
        check_command=_argv(data["check_command"]) if "check_command" in data else (),
        checks=tuple(_check(c) for c in data.get("checks", ())),
        merge_failing=bool(data.get("merge_failing", False)),
        best_of=int(data.get("best_of", 1)),
        judge=Judge(data["judge"]) if "judge" in data else None,
        weights=MappingProxyType({k: float(v) for k, v in data.get("weights", {}).items()}),
        speculate_checks=bool(data.get("speculate_checks", False)),
        merge=merge_policy(merge),
        review=review_policy(data["review"], "review") if "review" in data else None,
        role_prompts=MappingProxyType(dict(data.get("role_prompts", {}))),
        protected_paths=tuple(data.get("protected_paths", DEFAULT_PROTECTED)),
        branch_prefix=data.get("branch_prefix", "swarm"),
        agent=with_success(agent_spec(data["agent"]), success) if "agent" in data else None,
        success=success,
        maintenance=tuple(_job(j, success) for j in data.get("maintenance", ())),
        source=source,
    )


def merge_policy(merge: Mapping[str, Any]) -> MergePolicy:
    """The validated ``merge:`` section → :class:`MergePolicy` (defaults for the keys it does not set)."""
    prefer = merge.get("prefer", "first")
    resolver = merge.get("resolver")
    return MergePolicy(
        order=MergeOrder(merge.get("order", "completion")),
        prefer=() if isinstance(prefer, str) else tuple(prefer),
        insertions=Insertions(merge.get("insertions", "both")),
        on_conflict=OnConflict(merge.get("on_conflict", "keep")),
        resolver=agent_spec(resolver) if resolver is not None else None,
    )


def agent_spec(value: str | Mapping[str, Any]) -> AgentSpec:
    """``claude`` or ``{kind: command, run: [...]}`` → AgentSpec (options frozen)."""
    if isinstance(value, str):
        return AgentSpec(kind=value)
    options = {k: _freeze(v) for k, v in value.items() if k != "kind"}
    return AgentSpec(kind=str(value["kind"]), options=MappingProxyType(options))


def with_success(spec: AgentSpec, success: SuccessRule) -> AgentSpec:
    """A command agent's spec with ``success`` as its default (its own ``success`` option wins); other
    kinds unchanged."""
    if spec.kind != "command" or success is None or "success" in spec.options:
        return spec
    return AgentSpec(spec.kind, MappingProxyType({**spec.options, "success": success}))


def _success(value: Any) -> SuccessRule:
    return None if value is None else value if isinstance(value, str) else tuple(value)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _argv(value: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)


def _check(data: Mapping[str, Any]) -> Check:
    timeout = data.get("timeout", DEFAULT_CHECK_TIMEOUT)
    return Check(name=str(data["name"]), run=_argv(data["run"]), timeout=float(timeout))


def _job(data: Mapping[str, Any], default_success: SuccessRule = None) -> MaintenanceJob:
    shard = data.get("shard")
    success = _success(data["success"]) if "success" in data else default_success
    return MaintenanceJob(
        name=data["name"],
        cron=data["cron"],
        task=data.get("task", ""),
        plan=data.get("plan", ""),
        shard=Shard(shard["pattern"], shard["task"], shard.get("agents", 4)) if shard else None,
        agent=with_success(agent_spec(data["agent"]), success) if "agent" in data else None,
        success=success,
    )


def iter_keys() -> Iterator[str]:
    """Top-level keys the schema knows (for docs and error hints)."""
    yield from _schema()["properties"]
