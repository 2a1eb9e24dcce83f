"""Hostile or broken input is refused fast, on one line, with exit 4 and nothing left behind: deep
YAML/JSON nesting, alias bombs, non-finite numbers, run ids git cannot name, unknown agent kinds and
missing executables — plus the per-subtask timeout that applies when nothing sets one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.action import plan_from_text
from ci_swarm.cli import main
from ci_swarm.config import DEFAULT_TIMEOUT, config_from_text
from ci_swarm.errors import ConfigError, PlanError
from ci_swarm.plan import plan_from_dict
from ci_swarm.safeyaml import MAX_DEPTH, load_yaml
from tests.fixtures import make_repo

DEEP = 100_000
PLAN_HEAD = "subtasks:\n  - id: a\n    agent:\n      kind: scripted\n"
BOMB = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)
)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``ci-swarm ARGS`` in this process: (exit code, stderr)."""
    try:
        main(list(args))
        code: object = 0  # a command that succeeds returns
    except SystemExit as done:
        code = done.code
    return code if isinstance(code, int) else 1, capsys.readouterr().err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, err = cli(capsys, *args)
    assert code == 4, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    return err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n", "src/a.py": "a = 1\n"})


def branches(repo: Path) -> list[str]:
    return git.out(repo, "for-each-ref", "--format=%(refname)", "refs/heads").split()


# --- nesting depth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("flow.yml", "[" * DEEP),
        ("block.yml", "- " * DEEP + "x\n"),
        ("options.yml", PLAN_HEAD + "      edits: " + "[" * DEEP + "\n"),
        ("deep.json", "[" * DEEP + "]" * DEEP),
        ("options.json", '{"subtasks": [{"id": "a", "agent": {"edits": ' + "[" * DEEP + "]" * DEEP + "}}]}"),
    ],
)
def test_deep_plan_files_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str
) -> None:
    plan = tmp_path / name
    plan.write_text(text)
    err = refused(capsys, "plan", "--plan", str(plan))
    assert f"nested deeper than {MAX_DEPTH} levels" in err and name in err


def test_a_deep_swarm_plan_block_is_refused() -> None:
    with pytest.raises(PlanError, match=f"issue #3:1: malformed YAML: nested deeper than {MAX_DEPTH}"):
        plan_from_text("[" * DEEP, "issue #3")


def test_a_deep_config_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "ci-swarm.yml"
    config.write_text("role_prompts:\n  x: " + "{a: " * DEEP + "\n")
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a}]\n")
    err = refused(capsys, "plan", "--plan", str(plan), "--config", str(config))
    assert f"ci-swarm.yml:2: malformed YAML: nested deeper than {MAX_DEPTH} levels" in err


def test_nesting_up_to_the_limit_is_read() -> None:
    assert load_yaml("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)) is not None
    with pytest.raises(Exception, match="nested deeper"):
        load_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


# --- aliases ----------------------------------------------------------------------------------------


def test_an_alias_bomb_in_agent_options_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = tmp_path / "bomb.yml"
    plan.write_text(PLAN_HEAD + "      edits:\n" + "".join(f"        {line}\n" for line in BOMB.splitlines()))
    err = refused(capsys, "plan", "--plan", str(plan))
    assert "aliases expand this document by more than 100,000 nodes" in err


def test_an_alias_bomb_in_the_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="aliases expand this document"):
        config_from_text("role_prompts:\n" + "".join(f"  {line}\n" for line in BOMB.splitlines()))


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(PlanError, match=r"alias \*a inside its own anchor"):
        plan_from_text("subtasks: &a [*a]\n", "issue #3")


def test_plain_anchors_and_aliases_still_work() -> None:
    text = (
        "subtasks:\n"
        "  - {id: a, agent: &slow {kind: scripted, delay: 0.5}}\n"
        "  - {id: b, agent: *slow, paths: &src [src/a.py]}\n"
        "  - {id: c, paths: *src, depends_on: [b]}\n"
    )
    plan = plan_from_text(text, "p.yml")
    assert [s.agent.options["delay"] if s.agent else None for s in plan.subtasks] == [0.5, 0.5, None]
    assert plan.subtasks[2].paths == ("src/a.py",)


# --- non-finite numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [("--timeout", "nan"), ("--timeout", "inf"), ("--max-usd", "inf")])
def test_non_finite_flags_are_refused(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path, flag: tuple[str, str]
) -> None:
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a}]\n")
    before = branches(repo)
    err = refused(capsys, "run", "--plan", str(plan), "--repo", str(repo), *flag)
    assert flag[0] in err and "not a finite number" in err
    assert branches(repo) == before


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("inf.yml", PLAN_HEAD + "      delay: .inf\n", "'.inf' is not a finite number"),
        ("nan.yml", PLAN_HEAD + "      delay: .NaN\n", "'.NaN' is not a finite number"),
        ("huge.yml", PLAN_HEAD + "      delay: 1.0e+999\n", "'1.0e+999' is not a finite number"),
        ("nan.json", '{"subtasks": [{"id": "a", "agent": {"delay": NaN}}]}', "NaN is not a finite number"),
        ("inf.json", '{"subtasks": [{"id": "a", "agent": {"delay": 1e999}}]}', "1e999 is not a finite"),
    ],
)
def test_non_finite_numbers_in_plans_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str, message: str
) -> None:
    plan = tmp_path / name
    plan.write_text(text)
    assert message in refused(capsys, "plan", "--plan", str(plan))


def test_non_finite_numbers_from_a_planner_are_refused() -> None:
    data: dict[str, Any] = {"subtasks": [{"id": "a", "agent": {"kind": "scripted", "delay": float("inf")}}]}
    with pytest.raises(PlanError, match=r"subtask 'a': agent\.delay: inf is not a finite number"):
        plan_from_dict(data)


@pytest.mark.parametrize("text", ["timeout: .inf\n", "budget:\n  usd: .nan\n", "max_agents: .inf\n"])
def test_non_finite_numbers_in_the_config_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a finite number"):
        config_from_text(text)


# --- run ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_id", "rule"),
    [
        ("a/b", "contains '/'"),
        ("a b", "contains ' '"),
        ("a..b", "contains '..'"),
        ("x@{1", "contains '@{'"),
        ("nightly.lock", "ends with '.lock'"),
        (".hidden", "starts with '.'"),
        ("a~1", "contains '~'"),
    ],
)
def test_run_ids_follow_gits_ref_rules(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path, run_id: str, rule: str
) -> None:
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a}]\n")
    before = branches(repo)
    err = refused(capsys, "run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--run-id", run_id)
    assert "--run-id" in err and f"run id {run_id!r} cannot name a git branch" in err and rule in err
    assert branches(repo) == before  # no stray branch


def test_a_bad_branch_prefix_is_refused(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a}]\n")
    err = refused(capsys, "run", "--plan", str(plan), "--repo", str(repo), "--branch-prefix", "bots/x..y")
    assert "contains '..'" in err


# --- default timeout --------------------------------------------------------------------------------


def test_a_run_without_config_gets_the_default_timeout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, repo: Path, tmp_path: Path
) -> None:
    seen: list[float | None] = []

    def stop(request: Any, wiring: Any) -> None:
        seen.append(request.options.timeout)
        raise SystemExit(0)

    monkeypatch.setattr("ci_swarm.cli.run_request", stop)
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a}]\n")
    assert not (repo / ".github").exists()
    cli(capsys, "run", "--plan", str(plan), "--repo", str(repo), "--quiet")
    cli(capsys, "run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--timeout", "7")
    assert seen == [DEFAULT_TIMEOUT, 7.0]


# --- agent kinds and executables --------------------------------------------------------------------


def test_plan_refuses_an_unknown_agent_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a, agent: {kind: scripten}}]\n")
    err = refused(capsys, "plan", "--plan", str(plan))
    assert "unknown agent kind 'scripten' (did you mean 'scripted'?)" in err and "subtask 'a'" in err


def test_plan_refuses_a_missing_executable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    subs = [
        {"id": f"s{i}", "agent": {"kind": "command", "run": ["no-such-tool-xyz", "{paths}"]}}
        for i in range(3)
    ]
    plan.write_text(json.dumps({"subtasks": subs}))
    err = refused(capsys, "plan", "--plan", str(plan))
    assert "subtask 's0': executable 'no-such-tool-xyz' is not found on PATH" in err  # once, not per subtask


def test_run_refuses_a_missing_executable_before_any_agent(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "p.yml"
    plan.write_text("subtasks: [{id: a, agent: {kind: command, run: [/nonexistent/tool, x]}}]\n")
    before = branches(repo)
    err = refused(capsys, "run", "--plan", str(plan), "--repo", str(repo), "--quiet")
    assert "executable '/nonexistent/tool' is not an executable file" in err
    assert branches(repo) == before


def test_agent_command_names_a_missing_program(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    args = ("--shard", "src/*.py", "--task", "t", "--agent", "command", "--repo", str(repo))
    err = refused(capsys, "plan", *args, "--agent-command", "no-such-tool-xyz {paths}")
    assert "--agent-command" in err and "'no-such-tool-xyz' is not found on PATH" in err
    code, err = cli(capsys, "plan", *args, "--agent-command", f"{sys.executable} -c pass {{paths}}")
    assert code == 0, err


def test_the_report_says_which_timeout_applied(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    plan, report = tmp_path / "p.yml", tmp_path / "r.json"
    plan.write_text("subtasks: [{id: a, agent: {kind: scripted, edits: [{write: a.txt, content: 'a'}]}}]\n")
    code, err = cli(
        capsys, "run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--report", str(report)
    )
    assert code == 0, err
    assert json.loads(report.read_text())["timeout_seconds"] == DEFAULT_TIMEOUT
