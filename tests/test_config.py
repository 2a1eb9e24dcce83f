"""Repository config: defaults, the full set of keys, and errors that name the key and the line."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jsonschema
import pytest

from ci_swarm.config import (
    DEFAULT_PATH,
    Budget,
    Config,
    MaintenanceJob,
    Shard,
    config_from_text,
    load_config,
    schema,
)
from ci_swarm.errors import ConfigError
from ci_swarm.models import AgentSpec, MergeOrder, MergePolicy, OnConflict

FULL = """\
model: claude-opus-4-1
planner_model: claude-sonnet-4-5
max_agents: 6
max_subtasks: 12
timeout: 600
budget: {usd: 2.5, tokens: 400000}
label: agents
command: /agents
trusted_associations: [OWNER, MEMBER]
allowed_bots: ["renovate[bot]"]
allowed_commands:
  - pytest
  - [npm, test]
  - "ruff check"
check_command: "pytest -q tests"
merge:
  order: plan
  prefer: [tester, builder]
role_prompts:
  tester: "Write failing tests first."
protected_paths: [".github/**", "deploy/**"]
branch_prefix: bots/swarm
agent:
  kind: command
  run: [aider, --message, "{instructions}"]
maintenance:
  - name: deps
    cron: "0 3 * * 1"
    task: "Update the pinned dependencies"
  - name: nightly
    cron: "30 2 * * *"
    plan: .github/swarm/nightly.yml
  - name: typing
    cron: "0 4 * * 0"
    shard: {pattern: "src/**/*.py", agents: 3, task: "Add type hints"}
    agent: claude
"""


def test_defaults_when_the_file_is_missing(tmp_path: Path) -> None:
    config = load_config(tmp_path / DEFAULT_PATH)
    assert config == Config()
    assert config.trusted_associations == ("OWNER", "MEMBER", "COLLABORATOR")
    assert config.protected_paths == (".github/**", "**/action.yml", "**/action.yaml")
    assert config.label == "swarm"
    assert config.command == "/swarm"
    assert config.agent is None
    assert config.effective_planner_model == config.model


def test_missing_file_is_an_error_when_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"other\.yml: config file not found"):
        load_config(tmp_path / "other.yml", missing_ok=False)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ci-swarm.yml"
    path.write_text("# nothing configured yet\n")
    assert dataclasses.replace(load_config(path), source="") == Config()


def test_every_key_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ci-swarm.yml"
    path.write_text(FULL)
    config = load_config(path)
    assert config.source == str(path)
    assert config.model == "claude-opus-4-1"
    assert config.effective_planner_model == "claude-sonnet-4-5"
    assert (config.max_agents, config.max_subtasks, config.timeout) == (6, 12, 600.0)
    assert config.budget == Budget(usd=2.5, tokens=400000)
    assert (config.label, config.command) == ("agents", "/agents")
    assert config.trusted_associations == ("OWNER", "MEMBER")
    assert config.allowed_bots == ("renovate[bot]",)
    assert config.allowed_commands == (("pytest",), ("npm", "test"), ("ruff", "check"))
    assert config.check_command == ("pytest", "-q", "tests")
    assert config.merge.order is MergeOrder.PLAN
    assert config.merge.prefer == ("tester", "builder")
    assert dict(config.role_prompts) == {"tester": "Write failing tests first."}
    assert config.is_protected(".github/ci-swarm.yml")
    assert config.is_protected("deploy/prod/values.yml")
    assert not config.is_protected("src/app.py")
    assert config.branch_prefix == "bots/swarm"
    assert config.agent == AgentSpec("command", {"run": ("aider", "--message", "{instructions}")})
    assert config.maintenance == (
        MaintenanceJob(name="deps", cron="0 3 * * 1", task="Update the pinned dependencies"),
        MaintenanceJob(name="nightly", cron="30 2 * * *", plan=".github/swarm/nightly.yml"),
        MaintenanceJob(
            name="typing",
            cron="0 4 * * 0",
            shard=Shard(pattern="src/**/*.py", task="Add type hints", agents=3),
            agent=AgentSpec("claude"),
        ),
    )


def test_config_values_are_immutable() -> None:
    config = config_from_text(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_agents = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.role_prompts["x"] = "y"  # type: ignore[index]
    assert config.agent is not None
    with pytest.raises(TypeError):
        config.agent.options["run"] = ()  # type: ignore[index]


def test_jobs_for_cron_ignores_spacing() -> None:
    config = config_from_text(FULL)
    assert [j.name for j in config.jobs_for_cron("0  3 * * 1")] == ["deps"]
    assert config.jobs_for_cron("0 5 * * *") == ()


def test_default_merge_prefer_first() -> None:
    config = config_from_text("merge: {prefer: first}\n")
    assert config.merge.prefer == ()
    assert config.merge.prefer_label == "first"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_agent: 3\n", r":1: max_agent: unknown key \(did you mean 'max_agents'\?\)"),
        ("model: x\nzzz: 1\n", r":2: zzz: unknown key \(known: .*max_agents.*\)"),
        ("model: x\nmax_agents: four\n", r":2: max_agents: expected an integer, got text 'four'"),
        ("max_agents: true\n", r":1: max_agents: expected an integer, got boolean true"),
        ("max_agents: 0\n", r":1: max_agents: must be at least 1, got 0"),
        ("timeout: 0\n", r":1: timeout: must be greater than 0, got 0"),
        ("timeout: 30m\n", r":1: timeout: expected a number, got text '30m'"),
        ("merge:\n  order: random\n", r":2: merge\.order: text 'random' is not one of: completion, plan"),
        ("merge:\n  prefer: last\n", r":2: merge\.prefer: must be \"first\" or a list of roles"),
        ("merge:\n  strategy: ours\n", r":2: merge\.strategy: unknown key"),
        ("budget:\n  usd: -1\n", r":2: budget\.usd: must be greater than 0, got -1"),
        ("budget:\n  tokens: 1.5\n", r":2: budget\.tokens: expected an integer, got number 1\.5"),
        ("budget: 5\n", r":1: budget: expected a mapping, got number 5"),
        ("label: ''\n", r":1: label: must not be empty"),
        ("command: /swarm now\n", r":1: command: must be one word"),
        ("trusted_associations: [OWNER, ADMIN]\n", r":1: trusted_associations\[1\]: text 'ADMIN' is not"),
        ("allowed_bots: renovate\n", r":1: allowed_bots: expected a list, got text 'renovate'"),
        ("allowed_commands:\n  - pytest\n  - 3\n", r":3: allowed_commands\[1\]: must be a command"),
        ('check_command: "pytest \'x"\n', r":1: check_command: No closing quotation"),
        ("role_prompts:\n  builder: 3\n", r":2: role_prompts\.builder: expected text, got number 3"),
        ("protected_paths: .github/**\n", r":1: protected_paths: expected a list"),
        ("branch_prefix: 'a b'\n", r":1: branch_prefix: must be a branch name prefix"),
        ("agent: robot\n", r":1: agent: text 'robot' is not one of: claude, scripted, command"),
        ("agent:\n  kind: robot\n", r":2: agent\.kind: text 'robot' is not one of"),
        ("agent:\n  run: [x]\n", r":1: agent: missing required key 'kind'"),
        (
            "maintenance:\n  - name: deps\n    cron: '0 3 * * 1'\n",
            r":2: maintenance\[0\]: needs exactly one of task, plan or shard$",
        ),
        (
            "maintenance:\n  - name: deps\n    cron: '0 3 * * 1'\n    task: a\n    plan: b.yml\n",
            r":2: maintenance\[0\]: needs exactly one of task, plan or shard \(found task and plan\)",
        ),
        (
            "maintenance:\n  - name: deps\n    cron: daily\n    task: a\n",
            r":3: maintenance\[0\]\.cron: must be a five-field cron expression.*got text 'daily'",
        ),
        ("maintenance:\n  - cron: '0 3 * * 1'\n    task: a\n", r":2: maintenance\[0\]: missing required key"),
        (
            "maintenance:\n  - name: Deps Job\n    cron: '0 3 * * 1'\n    task: a\n",
            r":2: maintenance\[0\]\.name: must be lowercase",
        ),
        (
            "maintenance:\n  - name: t\n    cron: '0 3 * * 1'\n    shard: {pattern: x, agents: 0, task: x}\n",
            r":4: maintenance\[0\]\.shard\.agents: must be at least 1",
        ),
        ("label: swarm\nlabel: other\n", r":2: label: duplicate key"),
        ("label: [\n", r":2: malformed YAML"),
        ("- a\n- b\n", r":1: the config must be a mapping"),
        ("1: x\n", r":1: \(top level\): keys must be text"),
    ],
)
def test_errors_name_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text(text)
    message = str(info.value)
    assert message.startswith(DEFAULT_PATH + ":")
    assert "\n" not in message
    assert re.search(expected, message), message


def test_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ci-swarm.yml"
    path.write_text("model: x\n\n\nmax_agents: many\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:4: max_agents:")):
        load_config(path)


def test_schema_is_valid_and_its_defaults_match_the_dataclass() -> None:
    shipped = schema()
    jsonschema.Draft202012Validator.check_schema(shipped)
    props = shipped["properties"]
    defaults = Config()
    assert set(props) == {f.name for f in dataclasses.fields(Config)} - {"source"}
    for key, spec in props.items():
        if "default" in spec:
            value = getattr(defaults, key)
            assert (list(value) if isinstance(value, tuple) else value) == spec["default"], key


def test_schema_file_is_shipped_as_package_data() -> None:
    root = Path(__file__).resolve().parents[1]
    on_disk = json.loads((root / "ci_swarm/data/ci-swarm.schema.json").read_text())
    assert on_disk == schema()


def test_example_config_in_docs_is_valid() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "action.md"
    blocks = re.findall(r"```yaml\n# \.github/ci-swarm\.yml\n(.*?)```", docs.read_text(), re.S)
    assert blocks, "docs/action.md shows a complete .github/ci-swarm.yml example"
    for block in blocks:
        config_from_text(block)


def test_default_model_is_the_llm_default() -> None:
    from ci_swarm.llm.session import DEFAULT_MODEL as LLM_DEFAULT

    assert Config().model == LLM_DEFAULT


# --- merge.on_conflict and merge.resolver (issue #12) ----------------------------------------------


def test_merge_on_conflict_and_resolver_are_carried_by_the_merge_policy() -> None:
    text = "merge:\n  on_conflict: resolve\n  resolver: {kind: command, run: [mergiraf, '{instructions}']}\n"
    merge = config_from_text(text).merge
    assert merge.on_conflict is OnConflict.RESOLVE
    assert merge.resolver is not None and merge.resolver.kind == "command"
    assert merge.resolver.options["run"] == ("mergiraf", "{instructions}")
    assert config_from_text("merge:\n  on_conflict: redo\n  resolver: claude\n").merge == MergePolicy(
        on_conflict=OnConflict.REDO, resolver=AgentSpec("claude")
    )
    assert config_from_text("merge: {order: plan}\n").merge.on_conflict is OnConflict.KEEP  # the default
    assert Config().merge == MergePolicy()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model: x\nmerge:\n  on_conflict: redu\n",
            ".github/ci-swarm.yml:3: merge.on_conflict: text 'redu' is not one of: keep, redo, resolve",
        ),
        (
            "merge:\n  on_conflic: redo\n",
            ".github/ci-swarm.yml:2: merge.on_conflic: unknown key (did you mean 'on_conflict'?)",
        ),
        (
            "merge:\n  resolver: clod\n",
            ".github/ci-swarm.yml:2: merge.resolver: text 'clod' is not one of: claude, scripted, command",
        ),
        (
            "merge:\n  on_conflict: resolve\n  resolver:\n    kind: robot\n",
            ".github/ci-swarm.yml:4: merge.resolver.kind: text 'robot' is not one of: "
            "claude, scripted, command",
        ),
        (
            "merge:\n  resolver: [claude]\n",
            ".github/ci-swarm.yml:2: merge.resolver: expected text or a mapping, got a list",
        ),
    ],
)
def test_bad_on_conflict_and_resolver_name_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text(text)
    assert str(info.value) == expected
