"""The Claude agent checks its own work (issue #12): ``run_checks`` runs the run's checks on the worktree
through the sandbox and hands a failure back with its output; what a check creates is removed; ``finish``
is held back once while the checks fail on changed work; the runs are bounded. Real clones, the real
sandbox, and the real SDK against the fake Anthropic API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.agents import checktool
from ci_swarm.agents.tools import TOOL_SCHEMAS, ToolBox
from ci_swarm.clones import GitClones
from ci_swarm.llm.factory import claude_backend
from ci_swarm.models import AgentOutcome, AgentSpec, Check, Plan, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.sandbox import resolve_policy
from ci_swarm.testing.anthropic_script import Conversation, Script, subtask_match, write_file_call
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from ci_swarm.workspace import Workspace
from tests.anthropic_helpers import session_for, tool_results
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY

SCRIPT = "open('made-by-check.txt', 'w').write('x'); import lib; assert lib.X == 1, 'X is ' + repr(lib.X)"
CHECK = Check("unit", (SANDBOX_PY, "-c", SCRIPT), timeout=60)
SUB = Subtask("fix", "builder", "make X one", "set X = 1 in lib.py", paths=("lib.py",))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    repo = make_repo(tmp_path / "repo", {"lib.py": "X = 0\n"})
    spaces = GitClones(repo, None, "checktool")
    ws = spaces.make(SUB, "swarm/checktool-agents/fix", git.head_commit(repo))
    yield ws
    spaces.dispose(ws)
    spaces.close()


def _box(ws: Workspace, *checks: Check) -> ToolBox:
    return ToolBox(ws, checks=checks, sandbox=resolve_policy(None))


def test_run_checks_hands_a_failure_back_and_leaves_nothing_behind(workspace: Workspace) -> None:
    box = _box(workspace, CHECK)
    assert [t["name"] for t in box.schemas] == [*(t["name"] for t in TOOL_SCHEMAS), "run_checks"]
    failed = asyncio.run(box.run("run_checks", {}))
    assert failed.is_error and failed.content.startswith("check unit: FAILED (exit 1)")
    assert "AssertionError: X is 0" in failed.content
    assert not (workspace.root / "made-by-check.txt").exists()  # what the check made is gone
    assert not (workspace.root / "__pycache__").exists()
    asyncio.run(box.run("write_file", {"path": "lib.py", "content": "X = 1\n"}))
    ok = asyncio.run(box.run("run_checks", {}))
    assert not ok.is_error and ok.content == "check unit: passed\nall checks pass"
    assert sorted(p.name for p in workspace.root.iterdir() if p.name != ".git") == ["lib.py"]


def test_finish_is_held_back_once_while_the_checks_fail(workspace: Workspace) -> None:
    box = _box(workspace, CHECK)
    held = asyncio.run(box.run("finish", {"summary": "done"}))
    assert held.is_error and not held.finished and "not finished: the checks fail" in held.content
    again = asyncio.run(box.run("finish", {"summary": "done anyway"}))
    assert again.finished and again.content == "done anyway"  # once only: the integration is verified later
    assert box.checks.runs == 1


def test_finish_after_passing_checks_runs_nothing_more(workspace: Workspace) -> None:
    box = _box(workspace, CHECK)
    asyncio.run(box.run("write_file", {"path": "lib.py", "content": "X = 1\n"}))
    assert not asyncio.run(box.run("run_checks", {})).is_error
    assert asyncio.run(box.run("finish", {"summary": "done"})).finished
    assert box.checks.runs == 1


def test_the_check_runs_are_bounded(workspace: Workspace) -> None:
    box = _box(workspace, Check("quick", ("true",), timeout=30))
    for _ in range(checktool.MAX_RUNS):
        assert not asyncio.run(box.run("run_checks", {})).is_error
    over = asyncio.run(box.run("run_checks", {}))
    assert over.is_error and f"already ran {checktool.MAX_RUNS} times" in over.content


def test_without_checks_the_tool_is_not_offered(workspace: Workspace) -> None:
    box = _box(workspace)
    assert box.schemas == TOOL_SCHEMAS
    result = asyncio.run(box.run("run_checks", {}))
    assert result.is_error and result.content == "no checks are configured for this run"
    assert asyncio.run(box.run("finish", {"summary": "done"})).finished


def test_the_claude_agent_is_told_and_its_failing_finish_comes_back(workspace: Workspace) -> None:
    replies = (
        write_file_call("lib.py", "X = 2\n"),  # still wrong
        {"tool": "finish", "input": {"summary": "done"}},
        write_file_call("lib.py", "X = 1\n"),
        {"tool": "run_checks", "input": {}},
        {"tool": "finish", "input": {"summary": "fixed"}},
    )
    script = Script(conversations=(Conversation("fix", subtask_match("fix"), replies),), min_cache_tokens=64)
    ctx = AgentContext("run1", "the task", Plan("the task", (SUB,)), checks=(CHECK,))
    with FakeAnthropic(script) as fake:
        session = session_for(fake)

        async def go() -> AgentOutcome:
            try:
                return await claude_backend(session)(AgentSpec("claude")).run(SUB, workspace, ctx)
            finally:
                await session.aclose()

        outcome = asyncio.run(go())
        first = fake.requests[0].body
        assert first is not None
        assert "run_checks" in [t["name"] for t in first["tools"]]
        assert "Checks that judge your work: unit" in str(first["messages"][0]["content"])
        held = tool_results(fake.requests[2])[0]
        assert held["is_error"] and "AssertionError: X is 2" in str(held["content"])
        passed = tool_results(fake.requests[4])[0]
        assert "all checks pass" in str(passed["content"])
    assert outcome.ok and outcome.summary == "fixed"
    assert (workspace.root / "lib.py").read_text() == "X = 1\n"


HOSTILE = """
import os, sys
os.symlink('/', 'up')
os.symlink('..', 'parent')
os.symlink(sys.argv[1], 'outside')
os.makedirs('locked/deep')
open('locked/deep/f', 'w').write('x')
os.chmod('locked/deep', 0)
os.chmod('locked', 0)
open(os.fsdecode(b'odd\\xff\\n name'), 'w').write('x')
"""


def test_what_a_hostile_check_creates_is_removed_without_following_its_links(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Symlinks to /, to the clone's parent and to a directory outside are removed as links (nothing
    behind them is touched), a directory the check locked is removed whole, an odd name too."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    outside.chmod(0o755)
    check = Check("hostile", (SANDBOX_PY, "-c", HOSTILE, str(outside)), timeout=60)
    result = asyncio.run(_box(workspace, check).run("run_checks", {}))
    assert not result.is_error, result.content
    assert sorted(p.name for p in workspace.root.iterdir() if p.name != ".git") == ["lib.py"]
    assert (outside / "keep.txt").read_text() == "keep\n"
    assert (workspace.root.parent).is_dir() and Path("/etc").is_dir()
