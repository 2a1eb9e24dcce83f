"""The orchestrator end to end on real repositories with scripted agents."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.agents import make_agent_factory
from ci_swarm.errors import PlanError, RepoError, exit_code
from ci_swarm.models import (
    AgentOutcome,
    AgentSpec,
    MergeOrder,
    MergeStatus,
    Plan,
    RunReport,
    Subtask,
    SubtaskStatus,
)
from ci_swarm.ports import Agent, AgentContext, AgentFactory, ProgressEvent
from ci_swarm.run import RunOptions, run_plan_sync
from ci_swarm.workspace import Workspace
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, parents, plan_of, scripted, show, snapshot

BASE_FILES = {
    "README.md": "# proj\n\nintro\n\n## Usage\n\nuse it\n\n## Notes\n\nnone\n",
    "settings.toml": "[service]\nreplicas = 1\ntimeout = 30\n",
    "src/app.py": "print('app')\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", BASE_FILES)


SCRIPTED = make_agent_factory(AgentSpec("scripted"))


def run(
    repo: Path,
    plan: Plan,
    tmp_path: Path,
    agents: AgentFactory = SCRIPTED,
    listen: Callable[[ProgressEvent], None] = lambda event: None,
    **opts: object,
) -> tuple[RunReport, list[ProgressEvent]]:
    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        events.append(event)
        listen(event)

    options = RunOptions(repo=repo, base="main", workdir=tmp_path / "wt", **opts)  # type: ignore[arg-type]
    report = run_plan_sync(plan, options, agents, record)
    return report, events


class _Before:
    """A scripted agent that first awaits ``before(subtask)``."""

    def __init__(self, sub: Subtask, before: Callable[[Subtask], Awaitable[None]]) -> None:
        self.inner, self.before = SCRIPTED(sub), before

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome:
        await self.before(subtask)
        return await self.inner.run(subtask, workspace, ctx)


def waiting(before: Callable[[Subtask], Awaitable[None]]) -> AgentFactory:
    """Scripted agents that wait for something first: orders agents by events, never by timing."""

    def factory(subtask: Subtask) -> Agent:
        return _Before(subtask, before)

    return factory


class AfterEvent:
    """Agents named in ``waits`` run only once the listener heard (kind, subtask) of another one."""

    def __init__(self, waits: dict[str, tuple[str, str]]) -> None:
        self.waits = waits
        self.heard: dict[tuple[str, str], asyncio.Event] = {}

    def _event(self, key: tuple[str, str]) -> asyncio.Event:
        return self.heard.setdefault(key, asyncio.Event())

    def listen(self, event: ProgressEvent) -> None:
        self._event((event.kind, event.subtask)).set()

    async def before(self, sub: Subtask) -> None:
        if sub.id in self.waits:
            async with asyncio.timeout(60):  # a broken order fails the test instead of hanging it
                await self._event(self.waits[sub.id]).wait()


def test_parallel_disjoint_work_is_merged_as_two_parent_merges(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(
        scripted("a", delay=0.2, edits=[{"write": "a.txt", "content": "A\n"}]),
        scripted("b", "tester", delay=0.2, edits=[{"write": "b.txt", "content": "B\n"}]),
        scripted("c", "documenter", delay=0.2, edits=[{"append": "README.md", "text": "more\n"}]),
    )
    before = snapshot(repo)
    together = asyncio.Barrier(3)  # passes only while all three agents are running at once

    async def all_three_running(sub: Subtask) -> None:
        async with asyncio.timeout(60):
            await together.wait()

    report, events = run(repo, plan, tmp_path, waiting(all_three_running), max_agents=3)

    assert exit_code(report) == 0
    assert [s.status for s in report.subtasks] == [SubtaskStatus.SUCCEEDED] * 3
    tip = report.integration_commit
    assert git.rev_parse(repo, report.integration_branch) == tip
    assert show(repo, tip, "a.txt") == "A\n" and show(repo, tip, "b.txt") == "B\n"
    assert show(repo, tip, "README.md").endswith("none\nmore\n")
    # a chain of real two-parent merges whose second parents are the untouched agent branches
    commit = tip
    for merge in reversed(report.merges):
        first, second = parents(repo, commit)
        sub = next(s for s in report.subtasks if s.id == merge.subtask)
        assert second == sub.commit == git.rev_parse(repo, sub.branch)
        assert git.trailer(repo, sub.commit, "Swarm-Subtask") == sub.id
        commit = first
    assert commit == report.base
    assert snapshot(repo) == before  # the user's checkout and index are untouched
    assert git.out(repo, "worktree", "list").count("\n") == 0  # worktrees removed
    assert report.stats.max_in_flight == 3
    assert [e.kind for e in events].count("subtask_started") == 3
    # parallel, not one after the other: every agent's [start, finish] overlaps every other's
    spans = [(s.started_at, s.finished_at) for s in report.subtasks]
    assert all(a is not None and b is not None for a, b in spans)
    assert max(a for a, _ in spans if a is not None) <= min(b for _, b in spans if b is not None)


def test_dependent_starts_from_the_tip_after_its_dependency_is_merged(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(
        scripted("code", delay=0.1, edits=[{"write": "src/greet.py", "content": "def greet(): ...\n"}]),
        scripted("other", delay=0.3, edits=[{"write": "other.txt", "content": "x\n"}]),
        scripted(
            "tests",
            "tester",
            depends_on=("code",),
            edits=[{"replace": "src/greet.py", "old": "...", "new": "return 'hi'"}],
        ),
    )
    # "other" cannot finish (and be merged) before "tests" has started from the tip
    order = AfterEvent({"other": ("subtask_started", "tests")})
    report, _ = run(repo, plan, tmp_path, waiting(order.before), order.listen, max_agents=3)
    subs = {s.id: s for s in report.subtasks}
    code_merge = next(m for m in report.merges if m.subtask == "code")
    assert subs["tests"].status is SubtaskStatus.SUCCEEDED
    assert subs["tests"].start_commit == code_merge.commit
    assert subs["code"].start_commit == report.base
    assert show(repo, report.integration_commit, "src/greet.py") == "def greet(): return 'hi'\n"
    assert subs["tests"].started_at is not None and subs["code"].finished_at is not None
    assert subs["tests"].started_at >= subs["code"].finished_at


def test_failure_and_timeout_are_isolated_and_their_work_is_kept(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(
        scripted("ok", edits=[{"write": "ok.txt", "content": "ok\n"}]),
        scripted("bad", edits=[{"write": "partial.txt", "content": "half\n"}], fail="tests do not pass"),
        scripted("after-bad", depends_on=("bad",)),
        scripted("slow", hang=True),
    )
    # the timeout stops only the agent that never returns: "ok" has seconds of room under any load
    report, _ = run(repo, plan, tmp_path, max_agents=4, timeout=5.0)
    subs = {s.id: s for s in report.subtasks}
    assert subs["ok"].status is SubtaskStatus.SUCCEEDED
    assert subs["bad"].status is SubtaskStatus.FAILED and "tests do not pass" in subs["bad"].error
    assert subs["after-bad"].status is SubtaskStatus.SKIPPED and "bad" in subs["after-bad"].error
    assert subs["slow"].status is SubtaskStatus.TIMED_OUT
    assert exit_code(report) == 3
    # the failed agent's work is committed on its branch, but never merged
    assert show(repo, subs["bad"].branch, "partial.txt") == "half\n"
    assert "[failed]" in git.commit_message(repo, subs["bad"].commit)
    assert [m.subtask for m in report.merges] == ["ok"]
    assert git.try_read_blob(repo, report.integration_commit, "partial.txt") is None
    assert git.branch_exists(repo, subs["slow"].branch.removeprefix("refs/heads/"))


def test_same_lines_are_a_recorded_conflict_and_disjoint_hunks_auto_merge(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(
        scripted(
            "first",
            "researcher",
            delay=0.05,
            edits=[
                {"replace": "settings.toml", "old": "replicas = 1", "new": "replicas = 2"},
                {"replace": "README.md", "old": "use it", "new": "use it well"},
            ],
        ),
        scripted(
            "second",
            "deployer",
            delay=0.4,
            edits=[
                {"replace": "settings.toml", "old": "replicas = 1", "new": "replicas = 3"},
                {"replace": "README.md", "old": "none", "new": "deploy notes"},
            ],
        ),
    )
    # "second" finishes after "first" was merged, so "first" wins the conflict whatever the load
    order = AfterEvent({"second": ("merge_finished", "first")})
    report, _ = run(repo, plan, tmp_path, waiting(order.before), order.listen, max_agents=2)
    assert exit_code(report) == 2
    tip = report.integration_commit
    readme = show(repo, tip, "README.md")
    assert "use it well" in readme and "deploy notes" in readme  # disjoint hunks both landed
    settings = show(repo, tip, "settings.toml")
    assert "replicas = 2" in settings and "<<<<<<<" not in settings
    [conflict] = report.conflicts
    assert (conflict.path, conflict.kept_subtask, conflict.subtask) == ("settings.toml", "first", "second")
    assert "replicas = 3" in conflict.other_text
    assert report.merges[1].status is MergeStatus.CONFLICTED
    assert "settings.toml" in report.merges[1].predicted_conflicts


def test_plan_order_merges_in_plan_order(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(
        scripted("slow", edits=[{"write": "s.txt", "content": "s\n"}]),
        scripted("fast", edits=[{"write": "f.txt", "content": "f\n"}]),
        merge={"order": "plan"},
    )
    # "slow" finishes only after "fast" is done (settled), whatever the machine's load
    order = AfterEvent({"slow": ("subtask_finished", "fast")})
    report, _ = run(repo, plan, tmp_path, waiting(order.before), order.listen, max_agents=2)
    assert [m.subtask for m in report.merges] == ["slow", "fast"]
    order = AfterEvent({"slow": ("subtask_finished", "fast")})
    completion, _ = run(
        repo,
        plan,
        tmp_path / "2",
        waiting(order.before),
        order.listen,
        max_agents=2,
        merge_order=MergeOrder.COMPLETION,
    )
    assert [m.subtask for m in completion.merges] == ["fast", "slow"]


def test_cap_is_never_exceeded(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(
        *[scripted(f"s{i}", delay=0.05, edits=[{"write": f"f{i}.txt", "content": "x\n"}]) for i in range(8)]
    )
    report, _ = run(repo, plan, tmp_path, max_agents=3)
    assert report.stats.max_in_flight == 3
    assert len(report.merges) == 8


def test_existing_branch_is_never_overwritten(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(scripted("a", edits=[{"write": "a.txt", "content": "A\n"}]))
    first, _ = run(repo, plan, tmp_path, run_id="fixed")
    with pytest.raises(RepoError, match="already exists"):
        run(repo, plan, tmp_path / "2", run_id="fixed")
    assert git.rev_parse(repo, "swarm/fixed") == first.integration_commit


def test_bad_repository_and_base(tmp_path: Path, repo: Path) -> None:
    plan = plan_of(scripted("a"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepoError, match="not a git repository"):
        run(tmp_path / "plain", plan, tmp_path)
    with pytest.raises(RepoError, match="unknown revision 'nope'"):
        run_plan_sync(plan, RunOptions(repo=repo, base="nope"), make_agent_factory(AgentSpec("scripted")))


def test_escaping_edits_are_refused(tmp_path: Path) -> None:
    for bad in ("../escape.txt", "/etc/passwd", ".git/config"):
        with pytest.raises(PlanError, match=r"escape|absolute|leaves|\.git"):
            plan_of(scripted("a", edits=[{"write": bad, "content": "x"}]))


def test_symlink_escape_at_run_time_is_a_recorded_failure(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = make_repo(tmp_path / "repo", {"f.txt": "f\n"})
    (repo / "link").symlink_to(outside)
    git.commit_all(repo, "add link\n", git.SWARM_IDENTITY)
    plan = plan_of(
        scripted("a", edits=[{"write": "link/pwned.txt", "content": "x"}]),
        scripted("b", edits=[{"write": "b.txt", "content": "b\n"}]),
    )
    report, _ = run(repo, plan, tmp_path)
    subs = {s.id: s for s in report.subtasks}
    assert subs["a"].status is SubtaskStatus.FAILED and "outside the worktree" in subs["a"].error
    assert subs["b"].status is SubtaskStatus.SUCCEEDED
    assert not (outside / "pwned.txt").exists()


def test_many_concurrent_worktrees_all_land(repo: Path, tmp_path: Path) -> None:
    # regression: concurrent `git worktree add` races on .git/worktrees/*; every subtask must still land
    plan = plan_of(
        *[scripted(f"w{i}", edits=[{"write": f"w/{i}.txt", "content": f"{i}\n"}]) for i in range(24)]
    )
    report, _ = run(repo, plan, tmp_path, max_agents=12)
    assert {s.status for s in report.subtasks} == {SubtaskStatus.SUCCEEDED}
    assert len(report.merges) == 24
    assert len(git.tree_files(repo, report.integration_commit)) == len(BASE_FILES) + 24


def test_markup_in_progress_text_is_printed_literally_and_a_broken_listener_never_stops_the_run(
    repo: Path, tmp_path: Path
) -> None:
    import io

    from rich.console import Console

    from ci_swarm.progress import TerminalProgress

    plan = plan_of(
        {
            **scripted("fix", edits=[{"write": "p.txt", "content": "p\n"}]),
            "title": "fix the [/] parser [bold]",
        },
        scripted("bad", fail="list[str] broke [/]"),
        scripted("after", depends_on=("fix",), edits=[{"write": "q.txt", "content": "q\n"}]),
    )
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    options = RunOptions(repo=repo, base="main", workdir=tmp_path / "wt")
    with TerminalProgress(console, plan.subtasks, live=False) as progress:
        report = run_plan_sync(plan, options, make_agent_factory(AgentSpec("scripted")), progress)
    assert "fix the [/] parser [bold]" in out.getvalue()
    assert "list[str] broke [/]" in out.getvalue()
    assert {s.id: s.status for s in report.subtasks}["after"] is SubtaskStatus.SUCCEEDED

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("display gone")

    report = run_plan_sync(plan, RunOptions(repo=repo, base="main", workdir=tmp_path / "wt2"),
                           make_agent_factory(AgentSpec("scripted")), broken)  # fmt: skip
    assert [m.subtask for m in report.merges if m.subtask != "bad"] == ["fix", "after"]
    assert any("progress display failed" in note for note in report.notes)
    assert git.out(repo, "worktree", "list").count("\n") == 0


def test_a_timed_out_agent_keeps_its_partial_work_on_its_branch(repo: Path, tmp_path: Path) -> None:

    code = "open('partial.txt', 'w').write('half\\n'); import time; time.sleep(60)"
    plan = plan_of({**scripted("slow"), "agent": {"kind": "command", "run": [SANDBOX_PY, "-c", code]}})
    report, _ = run(repo, plan, tmp_path, timeout=8.0)  # room for the interpreter to start under load
    (sub,) = report.subtasks
    assert sub.status is SubtaskStatus.TIMED_OUT
    assert show(repo, sub.branch, "partial.txt") == "half\n"
    assert "[timed out]" in git.commit_message(repo, sub.commit)
    assert report.merges == ()  # never merged
