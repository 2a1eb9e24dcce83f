"""End to end: the Claude planner plans 3 subtasks, Claude agents edit files with the tools in real git
worktrees, the engine merges them — all against the fake API through the real SDK over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.agents import make_agent_factory
from ci_swarm.llm.factory import claude_backend, claude_planner
from ci_swarm.models import AgentSpec, MergeStatus, Request, RunReport, SubtaskStatus
from ci_swarm.run import RunOptions, run_plan
from tests.anthropic_helpers import SAMPLE_FILES, arun, serve_fake, session_for, three_subtask_script
from tests.fixtures import make_repo

CLAUDE = AgentSpec("claude")


def swarm(repo: Path, tmp: Path, name: str, **overrides: Any) -> tuple[RunReport, dict[str, Any]]:
    with serve_fake(three_subtask_script()) as fake:
        session = session_for(fake, **overrides)

        async def go() -> RunReport:
            try:
                request = Request("Add a greet() function with a test and docs")
                plan = await claude_planner(session).plan(request, repo)
                agents = make_agent_factory(CLAUDE, extra={"claude": claude_backend(session)})
                options = RunOptions(
                    repo=repo,
                    max_agents=overrides.get("max_concurrency", 3),
                    default_agent=CLAUDE,
                    workdir=tmp / name,
                )
                return await run_plan(plan, options, agents, request=request)
            finally:
                await session.aclose()

        report = arun(go())
    return report, {"session": session, "requests": fake.requests}


def test_task_run_plans_three_subtasks_edits_and_merges(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    report, seen = swarm(repo, tmp_path, "run")
    assert [s.id for s in report.subtasks] == ["code", "tests", "docs"]
    assert all(s.status is SubtaskStatus.SUCCEEDED for s in report.subtasks), [
        s.error for s in report.subtasks
    ]
    assert all(m.status is MergeStatus.CLEAN for m in report.merges)
    tip = report.integration_commit
    assert git.try_read_blob(repo, tip, "src/greet.py") == b"def greet(name):\n    return f'hello {name}'\n"
    assert b"def test_greet" in (git.try_read_blob(repo, tip, "tests/test_greet.py") or b"")
    assert b"Call `greet(name)`" in (git.try_read_blob(repo, tip, "docs/index.md") or b"")
    assert report.rationale.startswith("Split by concern")
    by_subtask = {s.id: s for s in report.subtasks}
    assert by_subtask["code"].summary == "added greet()"
    assert by_subtask["code"].usage.turns == 3 and by_subtask["code"].usage.cost_usd > 0
    assert by_subtask["code"].files == ("src/greet.py",)
    session = seen["session"]
    assert set(session.usage_by_subtask()) == {"planner", "code", "tests", "docs"}
    assert session.usage().requests == len(seen["requests"]) == 1 + 3 + 2 + 2
    assert session.usage().cache_read_tokens > 0
    assert not report.budget_stopped


def test_the_budget_stops_the_run_and_finished_work_is_still_merged(tmp_path: Path) -> None:
    measured, _ = swarm(make_repo(tmp_path / "a", SAMPLE_FILES), tmp_path, "measure", max_concurrency=1)
    first = {s.id: s.usage.tokens for s in measured.subtasks}
    planner_tokens = _planner_tokens(tmp_path)
    budget = planner_tokens + first["code"]  # used up exactly when `code` finishes
    repo = make_repo(tmp_path / "b", SAMPLE_FILES)
    report, seen = swarm(repo, tmp_path, "budget", max_concurrency=1, max_tokens=budget)
    status = {s.id: s.status for s in report.subtasks}
    assert status["code"] is SubtaskStatus.SUCCEEDED
    assert [m.subtask for m in report.merges] == ["code"]
    assert git.try_read_blob(repo, report.integration_commit, "src/greet.py") is not None
    stopped = [s for s in report.subtasks if s.id != "code"]
    assert all(s.status is SubtaskStatus.FAILED and "stopped by the swarm budget" in s.error for s in stopped)
    assert all(s.usage.turns == 0 for s in stopped)  # no new turn started once the budget was used up
    assert report.budget_stopped
    assert seen["session"].budget_stopped


def _planner_tokens(tmp: Path) -> int:
    """The planner's tokens for the same request (the report holds the subtasks' usage, not the planner's)."""
    repo = make_repo(tmp / "planner-only", SAMPLE_FILES)
    with serve_fake(three_subtask_script()) as fake:
        session = session_for(fake)

        async def go() -> int:
            try:
                await claude_planner(session).plan(
                    Request("Add a greet() function with a test and docs"), repo
                )
                return session.usage().tokens
            finally:
                await session.aclose()

        return arun(go())
