"""Scripted and command agents in real git worktrees, with real executables (no shell in the agent)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.agents import check_agent_kinds, make_agent_factory
from ci_swarm.agents.command import LOG_HEAD, LOG_TAIL, CommandAgent, check_options
from ci_swarm.agents.scripted import ScriptedAgent
from ci_swarm.errors import PlanError, SwarmError, UsageError
from ci_swarm.models import AgentOutcome, AgentSpec, Plan, Subtask, SubtaskStatus
from ci_swarm.plan import freeze
from ci_swarm.ports import Agent, AgentContext
from ci_swarm.sandbox import SandboxPolicy
from ci_swarm.schedule import Job, Scheduler
from ci_swarm.workspace import Workspace
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY

PY = SANDBOX_PY


@pytest.fixture
def ws(open_dir: Path) -> Workspace:
    """A real repository with one commit and a worktree on its own branch, outside the checkout (in a
    directory the sandbox accounts can reach, as the run's 0711 workspace directory is)."""
    repo = make_repo(open_dir / "repo", {"README.md": "# demo\n\nhello world\n", "old.py": "print('old')\n"})
    base = git.head_commit(repo)
    git.create_branch(repo, "swarm/t/a", base)
    tree = open_dir / "worktrees" / "a"
    git.worktree_add(repo, tree, "swarm/t/a")
    return Workspace(tree, "swarm/t/a", base, "a", ("src/**", "README.md"))


def subtask(agent: AgentSpec | None = None, **kw: Any) -> Subtask:
    fields: dict[str, Any] = {"id": "a", "role": "builder", "title": "Write greet()", **kw}
    return Subtask(agent=agent, **fields)


def context(lines: list[str] | None = None, timeout: float | None = None) -> AgentContext:
    sink = lines.append if lines is not None else (lambda line: None)
    return AgentContext("run1", "Add a greeting", Plan("Add a greeting", (subtask(),)), timeout, sink)


def scripted(**options: Any) -> AgentSpec:
    return AgentSpec("scripted", freeze(options))


def command(*argv: str, **options: Any) -> AgentSpec:
    return AgentSpec("command", freeze({"run": list(argv), **options}))


def run(
    agent: Agent, ws: Workspace, sub: Subtask | None = None, lines: list[str] | None = None
) -> AgentOutcome:
    return asyncio.run(agent.run(sub or subtask(), ws, context(lines)))


def status(ws: Workspace) -> list[str]:
    return sorted(git.run(ws.root, "status", "--porcelain", "--untracked-files=all").text.splitlines())


# --- scripted ---------------------------------------------------------------------------------


def test_scripted_edits_land_in_the_worktree_uncommitted(ws: Workspace) -> None:
    spec = scripted(
        delay=0.01,
        edits=[
            {"write": "src/greet.py", "content": "def greet(n):\n    return n\n"},
            {"replace": "README.md", "old": "hello world", "new": "hello swarm"},
            {"append": "README.md", "text": "\n## greet\n"},
            {"append": "src/NEW.md", "text": "created\n"},
            {"delete": "old.py"},
        ],
    )
    lines: list[str] = []
    outcome = run(ScriptedAgent(spec), ws, lines=lines)
    assert outcome.ok, outcome.error
    assert (ws.root / "src/greet.py").read_text() == "def greet(n):\n    return n\n"
    assert (ws.root / "README.md").read_text() == "# demo\n\nhello swarm\n\n## greet\n"
    assert (ws.root / "src/NEW.md").read_text() == "created\n"
    assert not (ws.root / "old.py").exists()
    assert status(ws) == [" D old.py", " M README.md", "?? src/NEW.md", "?? src/greet.py"]
    assert git.head_commit(ws.root) == ws.start_commit  # the agent never commits
    assert outcome.outside_paths == ("old.py",)  # not in the subtask's paths
    assert "a: wrote src/greet.py" in lines
    assert "a: deleted old.py" in lines
    assert "5 scripted edit(s)" in outcome.summary


def test_replace_miss_fails_naming_file_and_text(ws: Workspace) -> None:
    spec = scripted(edits=[{"replace": "README.md", "old": "goodbye", "new": "x"}])
    outcome = run(ScriptedAgent(spec), ws)
    assert not outcome.ok
    assert outcome.error == "replace in README.md: text 'goodbye' not found"
    assert status(ws) == []


def test_edits_of_missing_files_fail(ws: Workspace) -> None:
    outcome = run(ScriptedAgent(scripted(edits=[{"delete": "nope.py"}])), ws)
    assert outcome.error == "delete nope.py: no such file in the worktree"
    outcome = run(ScriptedAgent(scripted(edits=[{"replace": "nope.py", "old": "a", "new": "b"}])), ws)
    assert outcome.error == "replace nope.py: no such file in the worktree"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "'../x' leaves the worktree"),
        ("src/../../x", "leaves the worktree"),
        ("/etc/x", "absolute path '/etc/x' refused"),
        (".git/config", "is under .git/"),
    ],
)
def test_escaping_edits_are_recorded_failures(ws: Workspace, path: str, message: str) -> None:
    before = (ws.root.parent.parent / "repo" / ".git" / "config").read_text()
    outcome = run(ScriptedAgent(scripted(edits=[{"write": path, "content": "pwned"}])), ws)
    assert not outcome.ok
    assert message in outcome.error
    assert not (ws.root.parent / "x").exists()
    assert (ws.root.parent.parent / "repo" / ".git" / "config").read_text() == before


def test_symlink_leaving_the_worktree_is_refused(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws.root / "link").symlink_to(outside, target_is_directory=True)
    for edit in ({"write": "link/x.txt", "content": "pwned"}, {"append": "link/x.txt", "text": "pwned"}):
        outcome = run(ScriptedAgent(scripted(edits=[edit])), ws)
        assert not outcome.ok
        assert "resolves outside the worktree (symlink?)" in outcome.error
    assert list(outside.iterdir()) == []


def test_fail_reports_the_reason_after_delay_and_edits(ws: Workspace) -> None:
    spec = scripted(delay=0.01, fail="tests do not pass", edits=[{"write": "src/partial.py", "content": "x"}])
    outcome = run(ScriptedAgent(spec), ws)
    assert not outcome.ok
    assert outcome.error == "tests do not pass"
    assert (ws.root / "src/partial.py").exists()  # partial work stays for the orchestrator to commit


def test_crash_raises(ws: Workspace) -> None:
    with pytest.raises(SwarmError, match=r"scripted agent for 'a' crashed"):
        run(ScriptedAgent(scripted(crash=True)), ws)


def test_malformed_edits_at_run_time_are_failures(ws: Workspace) -> None:
    outcome = run(ScriptedAgent(scripted(edits=[{"write": "a.txt"}])), ws)
    assert not outcome.ok
    assert "needs 'content'" in outcome.error


def test_hang_is_stopped_by_the_scheduler_timeout(ws: Workspace) -> None:
    agent = ScriptedAgent(scripted(hang=True))

    async def work(job: str) -> AgentOutcome:
        return await agent.run(subtask(), ws, context())

    sched = Scheduler([Job("a"), Job("b")], max_parallel=2, timeout=0.1, fail_fast=False, work=work)
    results = asyncio.run(sched.run())
    assert results["a"].status is SubtaskStatus.TIMED_OUT
    assert results["a"].error == "timed out after 0.1s"


# --- the factory ------------------------------------------------------------------------------


def test_factory_picks_subtask_agent_or_default() -> None:
    factory = make_agent_factory(scripted(delay=0))
    assert isinstance(factory(subtask()), ScriptedAgent)
    chosen = factory(subtask(command("true")))
    assert isinstance(chosen, CommandAgent)
    assert chosen.spec.options["run"] == ("true",)


def test_factory_extra_backends_and_unknown_kind() -> None:
    class Echo:
        def __init__(self, spec: AgentSpec) -> None:
            self.spec = spec

        async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome:
            return AgentOutcome(ok=True, summary=self.spec.kind)

    factory = make_agent_factory(AgentSpec("claude"), {"claude": Echo})
    assert isinstance(factory(subtask()), Echo)
    plain = make_agent_factory(AgentSpec("claude"))
    with pytest.raises(
        UsageError, match=r"unknown agent kind 'claude' for subtask 'a' \(available: command, scripted\)"
    ):
        plain(subtask())
    plan = Plan("t", (subtask(), subtask(AgentSpec("codex"), id="b")))
    with pytest.raises(UsageError, match="unknown agent kind 'codex' for subtask 'b'"):
        check_agent_kinds(plan, AgentSpec("scripted"))
    check_agent_kinds(Plan("t", (subtask(),)), AgentSpec("claude"), {"claude": Echo})


# --- command ----------------------------------------------------------------------------------

ECHO_ARGS = "import json, sys; print(json.dumps(sys.argv[1:]))"


def test_command_substitutes_per_element_without_a_shell(ws: Workspace) -> None:
    sub = subtask(
        instructions="Do it; $(touch pwned) {title} `id` > out",
        paths=("src/a.py", "src/b.py"),
        role="tester",
    )
    spec = command(
        PY,
        "-c",
        ECHO_ARGS,
        "{instructions}",
        "id={id}/{role}",
        "{task}",
        "{paths}",
        "in {paths}",
        "{unknown}",
    )
    outcome = run(CommandAgent(spec), ws, sub)
    assert outcome.ok, outcome.error
    assert json.loads(outcome.log) == [
        "Do it; $(touch pwned) {title} `id` > out",  # substituted text is not re-expanded
        "id=a/tester",
        "Add a greeting",
        "src/a.py",  # a whole-argument {paths} is one argument per path (issue #11)
        "src/b.py",
        "in src/a.py src/b.py",  # inside a larger argument: joined by spaces
        "{unknown}",
    ]
    assert not (ws.root / "pwned").exists()
    assert not (ws.root / "out").exists()
    assert outcome.summary.endswith("exited 0")


def test_command_runs_in_the_worktree_with_no_stdin(ws: Workspace) -> None:
    code = "import os, sys; open('made.txt', 'w').write(os.getcwd()); print(repr(sys.stdin.read()))"
    lines: list[str] = []
    outcome = run(CommandAgent(command(PY, "-c", code)), ws, lines=lines)
    assert outcome.ok, outcome.error
    assert Path((ws.root / "made.txt").read_text()).resolve() == ws.root.resolve()
    assert outcome.log == "''\n"
    assert lines[0].startswith(f"a: $ {PY} -c")
    assert "a: ''" in lines
    assert git.head_commit(ws.root) == ws.start_commit


def test_nested_command_form(ws: Workspace) -> None:
    spec = AgentSpec("command", freeze({"command": {"run": [PY, "-c", "print('nested {id}')"]}}))
    outcome = run(CommandAgent(spec), ws)
    assert outcome.log == "nested a\n"


def test_non_zero_exit_names_code_and_last_line(ws: Workspace) -> None:
    code = "import sys; print('working'); print('boom: no tests', file=sys.stderr); print(); sys.exit(3)"
    outcome = run(CommandAgent(command(PY, "-c", code)), ws)
    assert not outcome.ok
    assert outcome.error == "exited 3: boom: no tests"
    assert "working" in outcome.log
    assert "boom: no tests" in outcome.log  # stderr captured too
    quiet = run(CommandAgent(command(PY, "-c", "raise SystemExit(9)")), ws)
    assert quiet.error == "exited 9"


def test_killed_by_signal(ws: Workspace) -> None:
    outcome = run(
        CommandAgent(command(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")), ws
    )
    assert not outcome.ok
    assert outcome.error.endswith("killed by signal 9")


def test_missing_or_unexecutable_program(ws: Workspace) -> None:
    outcome = run(CommandAgent(command("no-such-agent-cli-xyz", "--help")), ws)
    assert outcome.error == "executable 'no-such-agent-cli-xyz' not found"
    script = ws.root / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    outcome = run(CommandAgent(command(str(script))), ws)
    assert outcome.error == f"{str(script)!r} is not executable"


def _dead(pid: int, within: float = 5.0) -> bool:
    """Gone, or a zombie waiting for a reaper (it runs no more), within ``within`` seconds of the kill."""
    deadline = time.monotonic() + within
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


SPAWN_AND_SLEEP = (
    "import subprocess, sys, time;"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "open('pids.txt', 'w').write(str(child.pid));"
    "print('started', flush=True);"
    "time.sleep(60)"
)


def test_command_timeout_kills_the_process_group(ws: Workspace) -> None:
    # 2 s leaves the child time to start its grandchild even on a loaded machine
    outcome = run(CommandAgent(command(PY, "-c", SPAWN_AND_SLEEP, timeout=2.0)), ws)
    assert not outcome.ok
    assert outcome.error.startswith("timed out after 2s: killed")
    assert "started" in outcome.log
    grandchild = int((ws.root / "pids.txt").read_text())
    assert _dead(grandchild)


def test_scheduler_timeout_cancels_and_kills_the_command(ws: Workspace) -> None:
    agent = CommandAgent(command(PY, "-c", SPAWN_AND_SLEEP))

    async def work(job: str) -> AgentOutcome:
        return await agent.run(subtask(), ws, context())

    async def scenario() -> SubtaskStatus:
        sched = Scheduler([Job("a")], max_parallel=1, timeout=2.0, fail_fast=False, work=work)
        results = await sched.run()
        return results["a"].status

    assert asyncio.run(scenario()) is SubtaskStatus.TIMED_OUT
    grandchild = int((ws.root / "pids.txt").read_text())
    assert _dead(grandchild)


def test_secrets_are_scrubbed_and_extra_env_passed(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_parent_secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-parent-secret")
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "hunter2")
    monkeypatch.setenv("CI_SWARM_VISIBLE", "yes")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    outcome = run(CommandAgent(command(PY, "-c", code, env={"AGENT_MODE": "fast"})), ws)
    assert outcome.ok, outcome.error
    env = json.loads(outcome.log)
    assert "GITHUB_TOKEN" not in env
    assert "ANTHROPIC_API_KEY" not in env
    assert "MY_SERVICE_PASSWORD" not in env
    for value in ("ghs_parent_secret", "sk-ant-parent-secret", "hunter2"):
        assert value not in outcome.log
    assert "CI_SWARM_VISIBLE" not in env  # an allow-list: nothing of ci-swarm's environment by default
    assert env["AGENT_MODE"] == "fast"
    assert "PATH" in env


def pass_env_context(allowed: tuple[str, ...]) -> AgentContext:
    return replace(context(), pass_env=allowed)


def test_pass_env_hands_over_only_what_the_config_allows(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-for-the-agent-cli")
    monkeypatch.setenv("OTHER_KEY", "not-for-the-agent")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    agent = CommandAgent(command(PY, "-c", code, pass_env=["ANTHROPIC_API_KEY"]))
    outcome = asyncio.run(agent.run(subtask(), ws, pass_env_context(("ANTHROPIC_API_KEY",))))
    assert outcome.ok, outcome.error
    env = json.loads(outcome.log)
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-for-the-agent-cli" and "OTHER_KEY" not in env
    refused = asyncio.run(agent.run(subtask(), ws, pass_env_context(())))
    assert not refused.ok and "pass_env ANTHROPIC_API_KEY is not allowed" in refused.error
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    unset = asyncio.run(agent.run(subtask(), ws, pass_env_context(("ANTHROPIC_API_KEY",))))
    assert not unset.ok and "pass_env ANTHROPIC_API_KEY is not set" in unset.error
    with pytest.raises(PlanError, match="'pass_env' must be a list of variable names"):
        check_options({"run": ["x"], "pass_env": "ANTHROPIC_API_KEY"}, "subtask 'a'")
    with pytest.raises(PlanError, match="invalid variable name"):
        check_options({"run": ["x"], "pass_env": ["A-B"]}, "subtask 'a'")


def test_the_agent_runs_as_a_sandbox_account_and_its_files_come_back(ws: Workspace) -> None:
    code = (
        "import os; os.makedirs('src/new', exist_ok=True);"
        "open('src/new/f.txt', 'w').write(str(os.getuid()));"
        "os.chmod('src/new/f.txt', 0); os.chmod('src/new', 0o500)"
    )
    outcome = run(CommandAgent(command(PY, "-c", code)), ws)
    assert outcome.ok, outcome.error
    made = ws.root / "src" / "new" / "f.txt"
    assert made.stat().st_uid == os.geteuid() and made.parent.stat().st_uid == os.geteuid()  # given back
    assert int(made.read_text()) != os.geteuid()  # written by the sandbox account
    assert made.stat().st_mode & 0o600 == 0o600  # readable and writable by ci-swarm again


def test_sandbox_none_runs_as_ci_swarms_user(ws: Workspace) -> None:
    agent = CommandAgent(command(PY, "-c", "import os; print(os.getuid())"))
    outcome = asyncio.run(agent.run(subtask(), ws, replace(context(), sandbox=SandboxPolicy(backend="none"))))
    assert outcome.ok and outcome.log == f"{os.geteuid()}\n"


def test_secret_looking_extra_env_is_refused(ws: Workspace) -> None:
    outcome = run(CommandAgent(command(PY, "-c", "print(1)", env={"GH_TOKEN": "x"})), ws)
    assert not outcome.ok
    assert "may not pass secrets to an agent: GH_TOKEN" in outcome.error


def test_output_is_captured_bounded(ws: Workspace) -> None:
    code = "import sys; sys.stdout.write('H' * 20000 + 'x' * 200000 + '\\nEND-LINE\\n'); sys.exit(1)"
    outcome = run(CommandAgent(command(PY, "-c", code)), ws)
    assert outcome.error == "exited 1: END-LINE"
    assert len(outcome.log) < LOG_HEAD + LOG_TAIL + 200
    assert outcome.log.startswith("H" * LOG_HEAD)
    assert outcome.log.endswith("x\nEND-LINE\n")
    assert "bytes of output dropped" in outcome.log


def test_command_options_errors_are_failures(ws: Workspace) -> None:
    outcome = run(CommandAgent(AgentSpec("command", freeze({"run": "ls -l"}))), ws)
    assert not outcome.ok
    assert "command agent needs 'run'" in outcome.error


def test_parallel_commands_in_separate_worktrees(ws: Workspace) -> None:
    repo = ws.root.parent.parent / "repo"
    spaces = []
    for sid in ("b", "c", "d"):
        git.create_branch(repo, f"swarm/t/{sid}", ws.start_commit)
        git.worktree_add(repo, ws.root.parent / sid, f"swarm/t/{sid}")
        spaces.append(Workspace(ws.root.parent / sid, f"swarm/t/{sid}", ws.start_commit, sid))
    agent = CommandAgent(
        command(PY, "-c", "import time; time.sleep(0.2); open('{id}.txt', 'w').write('{id}')")
    )

    async def all_three() -> list[AgentOutcome]:
        return list(
            await asyncio.gather(*(agent.run(subtask(id=w.subtask_id), w, context()) for w in spaces))
        )

    outcomes = asyncio.run(all_three())
    assert all(o.ok for o in outcomes)
    for w in spaces:
        assert status(w) == [f"?? {w.subtask_id}.txt"]
    assert status(ws) == []
    assert os.path.exists(spaces[0].root / "b.txt")
