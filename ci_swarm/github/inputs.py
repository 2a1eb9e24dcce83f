"""The GitHub Action's settings: its inputs (the ``CI_SWARM_*`` variables ``action.yml`` sets through the
step's ``env:``), the runner's environment, and the repository config with the inputs applied.

Parsing only: a bad input is a UsageError naming the input; nothing here talks to GitHub.

Secrets arrive by **file**: ``action.yml`` writes the GitHub token and the Anthropic key to 0600 files in a
fresh directory under ``$RUNNER_TEMP`` and execs Python with ``CI_SWARM_GITHUB_TOKEN_FILE`` /
``CI_SWARM_ANTHROPIC_KEY_FILE`` naming them, so neither value is in the process's exec-time environment
(``/proc/<pid>/environ``). :meth:`Settings.from_env` reads each file and deletes it. The legacy forms,
``CI_SWARM_GITHUB_TOKEN`` (or ``GITHUB_TOKEN``) and ``ANTHROPIC_API_KEY`` in the environment, still work
(tests and ``act`` use them). :func:`secret_values` decides which other variables of the runner's
environment are secrets that a push must not carry.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from ci_swarm.config import DEFAULT_PATH, Budget, Config, config_from_text
from ci_swarm.errors import ConfigError, PathEscapeError, UsageError
from ci_swarm.models import AgentSpec
from ci_swarm.naming import check_run_id
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
    sandbox: str = ""  # user | none ("" = the config's, else user where available)
    fan_out: str = ""  # "" (one job runs everything) | plan | land (see docs/action.md, "Fan-out")
    run_id: str = ""  # fan_out: the run's id (plan: "" = a new one; land: the plan job's run_id output)
    bundles_dir: str = ""  # fan_out land: the directory holding the agent jobs' bundles
    wave: int | None = None  # fan_out land: the wave to land (1 = the first; None: the bundles' wave)
    all_remaining: bool = False  # fan_out land: then run every later wave in this job and publish


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
    token: str = field(repr=False)
    anthropic_key: str = field(repr=False)
    inputs: Inputs
    secrets: tuple[str, ...] = field(default=(), repr=False)  # every secret value pushes are scanned for

    @property
    def has_anthropic_key(self) -> bool:
        return bool(self.anthropic_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings; the secret files named by ``CI_SWARM_*_FILE`` are read and deleted."""
        token = (
            read_secret_file(env, TOKEN_FILE)
            or env.get("CI_SWARM_GITHUB_TOKEN")
            or env.get("GITHUB_TOKEN", "")
        )
        key = read_secret_file(env, KEY_FILE) or env.get("ANTHROPIC_API_KEY", "").strip()
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
            token=token,
            anthropic_key=key,
            inputs=parse_inputs(env),
            secrets=tuple(dict.fromkeys(v for v in (token, key, *secret_values(env)) if v)),
        )


TOKEN_FILE = "CI_SWARM_GITHUB_TOKEN_FILE"
KEY_FILE = "CI_SWARM_ANTHROPIC_KEY_FILE"
# Variables that hold a secret by the Action's own contract, removed from os.environ at start.
SECRET_VARIABLES = (
    "CI_SWARM_GITHUB_TOKEN",
    "GITHUB_TOKEN",
    "ANTHROPIC_API_KEY",
    "INPUT_GITHUB_TOKEN",
    "INPUT_ANTHROPIC_API_KEY",
)


def read_secret_file(env: Mapping[str, str], name: str) -> str:
    """The secret in the file ``env[name]`` names ("" when unset), deleted once read (and its directory,
    when that leaves it empty). UsageError when the file cannot be read."""
    where = env.get(name, "")
    if not where:
        return ""
    path = Path(where)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{name}: cannot read the secret file {where}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name}: the secret file {where} is not UTF-8 text") from None
    with suppress(OSError):
        path.unlink()
    with suppress(OSError):
        path.parent.rmdir()  # only when empty: the step's own mktemp -d directory
    return value


# A name is secret-looking when one of its _-separated words is one of these (OPENAI_API_KEY,
# AWS_SECRET_ACCESS_KEY, DOCKER_PASSWORD, SLACK_WEBHOOK_URL, SENTRY_DSN, NPM_TOKEN, ...).
SECRET_WORDS = frozenset(
    {
        *("TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "PASS", "KEY", "APIKEY"),
        *("PRIVATE", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "DSN", "WEBHOOK", "COOKIE"),
    }
)
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]+@")


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the environment that a push must not carry: variables with a secret-looking name
    (:data:`SECRET_WORDS`) and any URL with a password in it (``DATABASE_URL=postgres://u:pw@db/x``). Left
    out: absolute paths (``SSH_AUTH_SOCK``, ``*_KEY_FILE``: a path is not a secret, and pushed text names
    paths) and the secret files' own variables."""
    found: list[str] = []
    for name, value in env.items():
        value = value.strip()
        if not value or value.startswith("/") or name in (TOKEN_FILE, KEY_FILE):
            continue
        words = set(name.upper().split("_"))
        if words & SECRET_WORDS or _URL_PASSWORD.match(value):
            found.append(value)
    return tuple(found)


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
        sandbox=_choice("sandbox", text("sandbox"), ("user", "none")),
        fan_out=_choice("fan_out", text("fan_out"), ("plan", "land")),
        run_id=_run_id(text("run_id")),
        bundles_dir=text("bundles_dir"),
        wave=_positive_int("wave", text("wave")),
        all_remaining=_flag("all_remaining", text("all_remaining")),
    )


def _positive_int(name: str, value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"input {name}: expected a positive whole number, got {value!r}")
    return int(value)


def _run_id(value: str) -> str:
    if not value:
        return ""
    try:
        return check_run_id(value)
    except UsageError as exc:
        raise UsageError(f"input run_id: {exc}") from None


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
        sandbox=inputs.sandbox or config.sandbox,
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
