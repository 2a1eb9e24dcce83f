"""The GitHub Action's settings: its inputs (the ``CI_SWARM_*`` variables ``action.yml`` sets through the
step's ``env:``), the runner's environment, and the repository config with the inputs applied.

Parsing only: a bad input is a UsageError naming the input; nothing here talks to GitHub.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci_swarm.config import DEFAULT_PATH, Budget, Config, config_from_text
from ci_swarm.errors import ConfigError, PathEscapeError, UsageError
from ci_swarm.models import AgentSpec
from ci_swarm.workspace import check_relative

_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off", ""})


@dataclass(frozen=True)
class Inputs:
    """The action's inputs, parsed. Empty text / None means "not given: the config or the default"."""

    config: str = DEFAULT_PATH
    label: str = ""
    command: str = ""
    max_agents: int | None = None
    model: str = ""
    agent: str = ""
    budget_usd: float | None = None
    base_branch: str = ""
    branch_prefix: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything the action reads from its environment."""

    workspace: Path
    event_name: str
    event_path: Path | None
    repository: str
    api_url: str
    server_url: str
    run_url: str
    ref: str
    token: str
    has_anthropic_key: bool
    inputs: Inputs

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repository = env.get("GITHUB_REPOSITORY", "")
        run_id = env.get("GITHUB_RUN_ID", "")
        return cls(
            workspace=Path(env.get("GITHUB_WORKSPACE") or os.getcwd()),
            event_name=env.get("GITHUB_EVENT_NAME", ""),
            event_path=Path(env["GITHUB_EVENT_PATH"]) if env.get("GITHUB_EVENT_PATH") else None,
            repository=repository,
            api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            server_url=server,
            run_url=f"{server}/{repository}/actions/runs/{run_id}" if repository and run_id else "",
            ref=env.get("GITHUB_REF", ""),
            token=env.get("CI_SWARM_GITHUB_TOKEN") or env.get("GITHUB_TOKEN", ""),
            has_anthropic_key=bool(env.get("ANTHROPIC_API_KEY")),
            inputs=parse_inputs(env),
        )


def parse_inputs(env: Mapping[str, str]) -> Inputs:
    """The ``CI_SWARM_*`` variables action.yml sets; UsageError names the input at fault."""

    def text(name: str) -> str:
        return env.get(f"CI_SWARM_{name.upper()}", "").strip()

    return Inputs(
        config=text("config") or DEFAULT_PATH,
        label=text("label"),
        command=text("command"),
        max_agents=_positive_int("max_agents", text("max_agents")),
        model=text("model"),
        agent=_choice("agent", text("agent"), ("claude", "scripted", "command")),
        budget_usd=_positive_float("budget_usd", text("budget_usd")),
        base_branch=text("base_branch"),
        branch_prefix=text("branch_prefix"),
        dry_run=_flag("dry_run", text("dry_run")),
    )


def _positive_int(name: str, value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"input {name}: expected a positive whole number, got {value!r}")
    return int(value)


def _positive_float(name: str, value: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise UsageError(f"input {name}: expected a positive number of US dollars, got {value!r}")
    return number


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value and value not in allowed:
        raise UsageError(f"input {name}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in _TRUE | _FALSE:
        raise UsageError(f"input {name}: expected true or false, got {value!r}")
    return lowered in _TRUE


def apply_inputs(config: Config, inputs: Inputs) -> Config:
    """Inputs that were given win over the config file."""
    budget = config.budget
    if inputs.budget_usd is not None:
        budget = Budget(usd=inputs.budget_usd, tokens=config.budget.tokens)
    agent = config.agent
    if inputs.agent and (agent is None or agent.kind != inputs.agent):
        agent = AgentSpec(inputs.agent)
    return dataclasses.replace(
        config,
        label=inputs.label or config.label,
        command=inputs.command or config.command,
        model=inputs.model or config.model,
        branch_prefix=inputs.branch_prefix or config.branch_prefix,
        max_agents=config.max_agents if inputs.max_agents is None else inputs.max_agents,
        budget=budget,
        agent=agent,
    )


def default_agent(config: Config, has_key: bool) -> AgentSpec:
    """The agent of subtasks that name none: the configured one, else Claude when a key is set."""
    return config.agent or AgentSpec("claude" if has_key else "scripted")


def load_repo_config(settings: Settings) -> Config:
    """The repository config at the ``config`` input (built-in defaults when the default path is absent),
    with the inputs applied."""
    relative = settings.inputs.config
    try:
        check_relative(relative)
    except PathEscapeError as exc:
        raise ConfigError(f"input config: {exc}") from exc
    path = settings.workspace / relative
    if relative == DEFAULT_PATH and not path.exists():
        return apply_inputs(Config(), settings.inputs)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{relative}: config file not found (input config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{relative}: cannot read config: {exc}") from exc
    return apply_inputs(config_from_text(text, source=relative), settings.inputs)
