"""The orchestrator: plan → parallel agents in worktrees → sequential merge queue → RunReport.

Two concurrent loops share one event loop:

* the **scheduler** starts a subtask once every dependency is *merged*, from the integration tip at that
  moment, on its own branch and worktree, with at most ``max_agents`` in flight;
* the **merge consumer** merges finished branches one at a time (completion or plan order) in the object
  database and then releases the subtask so its dependents may start.

Agent work is committed on its branch whatever happens (also partial work of a failed, timed-out or
cancelled agent, marked as such); branches are never deleted; worktrees are always removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from ci_swarm import git
from ci_swarm.concurrency import in_thread
from ci_swarm.errors import RepoError, SwarmError
from ci_swarm.merge import MergeQueue
from ci_swarm.models import (
    AgentOutcome,
    AgentSpec,
    MergeOrder,
    MergeRecord,
    MergeStatus,
    Plan,
    Request,
    RunReport,
    Subtask,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
)
from ci_swarm.naming import agent_branch, agent_identity, commit_message, integration_branch, new_run_id
from ci_swarm.plan import serialize_overlaps, validate
from ci_swarm.ports import AgentContext, AgentFactory, ProgressEvent, ProgressListener
from ci_swarm.runtime import run_sync
from ci_swarm.schedule import Job, JobResult, SchedEvent, Scheduler
from ci_swarm.workspace import Workspace

T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    repo: Path
    base: str = "HEAD"
    max_agents: int = 4
    timeout: float | None = None
    merge_order: MergeOrder | None = None
    fail_fast: bool = False
    serialize_overlaps: bool = False
    run_id: str | None = None
    branch_prefix: str = "swarm"
    workdir: Path | None = None
    default_agent: AgentSpec = field(default_factory=lambda: AgentSpec("scripted"))


class AgentFailed(Exception):
    """Raised inside a scheduler job so the scheduler records the subtask as failed."""


@dataclass
class _Progress:
    """Mutable per-run bookkeeping owned by the orchestrator (never exposed)."""

    branch: dict[str, str] = field(default_factory=dict)
    start: dict[str, str] = field(default_factory=dict)
    commit: dict[str, str] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    outcome: dict[str, AgentOutcome] = field(default_factory=dict)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    merges: list[MergeRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Orchestrator:
    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        agents: AgentFactory,
        listener: ProgressListener | None = None,
        request: Request | None = None,
    ) -> None:
        self.repo = git.open_repo(options.repo)
        self.base = git.rev_parse(self.repo, options.base)
        warnings = validate(plan)
        if options.serialize_overlaps:
            plan = serialize_overlaps(plan)
        if options.merge_order is not None:
            plan = replace(plan, merge=replace(plan.merge, order=options.merge_order))
        self.plan = plan
        self.options = options
        self.agents = agents
        self.listener = listener or (lambda event: None)
        self.request = request
        self.run_id = self._claim_run_id(options.run_id)
        self.integration = integration_branch(options.branch_prefix, self.run_id)
        self.p = _Progress(notes=list(warnings))
        self.roles = {s.id: s.role for s in plan.subtasks}
        self.queue = MergeQueue(self.repo, self.integration, self.base, plan.merge, self.roles)
        self.cleanups: list[asyncio.Task[None]] = []
        # concurrent `git worktree add/remove` read each other's half-written .git/worktrees/* entries
        self.worktree_lock = threading.Lock()
        self.landings: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listener_failed = False
        self.loop_thread = threading.get_ident()
        self.resolved = {s.id: asyncio.Event() for s in plan.subtasks}
        self.ok: dict[str, bool] = {}
        self.merge_inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.scheduler: Scheduler[AgentOutcome] | None = None

    # --- setup -----------------------------------------------------------------------------------

    def _claim_run_id(self, wanted: str | None) -> str:
        """Create the integration branch at the base; never overwrite an existing branch."""
        prefix = self.options.branch_prefix
        if wanted:
            git.create_branch(self.repo, integration_branch(prefix, wanted), self.base)
            return wanted
        for _ in range(5):
            run_id = new_run_id()
            try:
                git.create_branch(self.repo, integration_branch(prefix, run_id), self.base)
            except RepoError:
                continue
            return run_id
        raise RepoError("could not find a free run id (swarm branches keep colliding)")

    def emit(self, kind: str, subtask: str = "", status: str = "", message: str = "") -> None:
        """Tell the listener, always on the event loop's thread (merges run in a worker thread)."""
        event = ProgressEvent(kind, subtask, status, message, time.time())
        if self.loop is not None and threading.get_ident() != self.loop_thread:
            self.loop.call_soon_threadsafe(self._tell, event)
        else:
            self._tell(event)

    def _tell(self, event: ProgressEvent) -> None:
        """A listener is a display: if it breaks, the run goes on (and says so once in the report)."""
        try:
            self.listener(event)
        except Exception as exc:
            if not self.listener_failed:
                self.listener_failed = True
                self.p.notes.append(f"progress display failed and was ignored: {type(exc).__name__}: {exc}")

    # --- one subtask -----------------------------------------------------------------------------

    async def work(self, subtask_id: str) -> AgentOutcome:
        sub = self.plan.subtask(subtask_id)
        try:
            return await self._work(sub)
        except BaseException:
            self.resolved[sub.id].set()
            raise

    async def _work(self, sub: Subtask) -> AgentOutcome:
        start = self.queue.tip
        branch = agent_branch(self.options.branch_prefix, self.run_id, sub.id)
        tree = self.workdir / sub.id
        self.p.branch[sub.id], self.p.start[sub.id] = branch, start
        job_started = time.monotonic()  # the scheduler's timeout covers the worktree add too
        ws = Workspace(tree, branch, start, sub.id, sub.paths)
        try:
            await in_thread(self._add_worktree, tree, branch, start)
        except (
            asyncio.CancelledError
        ):  # cancelled while the worktree was being made: it was finished, drop it
            self._remove_worktree(ws)
            raise
        ctx = AgentContext(self.run_id, self.plan.task, self.plan, self.options.timeout)
        self.p.started_at[sub.id] = time.time()
        self.emit("subtask_started", sub.id, "running", sub.title)
        try:
            outcome = await self.agents(sub).run(sub, ws, ctx)
        except asyncio.CancelledError:
            self._stop_clock(sub)
            limit = self.options.timeout
            timed_out = limit is not None and time.monotonic() - job_started >= limit * 0.99
            note = "timed out" if timed_out else "interrupted"
            self._commit(sub, ws, note)  # synchronously: it must land even while cancelled
            self._remove_worktree(ws)
            raise
        except BaseException:
            self._stop_clock(sub)
            await in_thread(self._commit, sub, ws, "crashed")
            self._defer_removal(ws)
            raise
        self._stop_clock(sub)
        self.p.outcome[sub.id] = outcome
        if not outcome.ok:
            await in_thread(self._commit, sub, ws, "failed")
            self._defer_removal(ws)
            raise AgentFailed(outcome.error or "agent reported failure")
        # the agent's slot is free now; committing and queueing for the merge happen beside the next agent
        self.landings.append(asyncio.create_task(self._land(sub, ws)))
        return outcome

    async def _land(self, sub: Subtask, ws: Workspace) -> None:
        """Commit a finished agent's work, queue it for the merge, remove its worktree."""
        await in_thread(self._commit, sub, ws, "")
        self._defer_removal(ws)
        self.ok[sub.id] = sub.id in self.p.commit
        if self.ok[sub.id]:
            await self.merge_inbox.put(sub.id)
        elif self.scheduler is not None:
            self.scheduler.release(sub.id, False, f"the work of {sub.id} could not be committed")
        self.resolved[sub.id].set()

    def _stop_clock(self, sub: Subtask) -> None:
        now = time.time()
        self.p.finished_at[sub.id] = now
        self.p.seconds[sub.id] = now - self.p.started_at[sub.id]

    def _commit(self, sub: Subtask, ws: Workspace, note: str) -> None:
        """Commit whatever the agent left on its branch: nothing is lost, also when it failed."""
        try:
            commit = git.commit_all(ws.root, commit_message(sub, self.run_id, note), agent_identity(sub))
            tip = commit or git.rev_parse(self.repo, f"refs/heads/{ws.branch}")
            self.p.commit[sub.id] = tip
            self.p.files[sub.id] = git.changed_files(self.repo, ws.start_commit, tip)
        except SwarmError as exc:
            self.p.notes.append(f"{sub.id}: could not commit the agent's work: {exc}")

    def _defer_removal(self, ws: Workspace) -> None:
        """Remove the worktree off the critical path (the slot is free for the next agent meanwhile)."""
        self.cleanups.append(asyncio.create_task(asyncio.to_thread(self._remove_worktree, ws)))

    def _add_worktree(self, tree: Path, branch: str, start: str) -> None:
        with self.worktree_lock:
            git.worktree_add_new_branch(self.repo, tree, branch, start)

    def _remove_worktree(self, ws: Workspace) -> None:
        """Delete the worktree's files; its admin entry goes with the one `git worktree prune` at the end
        (so removals never race with, or wait for, the adds of other agents)."""
        shutil.rmtree(ws.root, ignore_errors=True)

    # --- the merge queue -------------------------------------------------------------------------

    def _merge_one(self, sub_id: str, order: int) -> None:
        self.emit("merge_started", sub_id)
        try:
            record = self.queue.merge(sub_id, self.p.commit[sub_id], self.p.start[sub_id], order)
        except SwarmError as exc:
            record = MergeRecord(sub_id, order, MergeStatus.SKIPPED)
            self.p.notes.append(f"merge of {sub_id} failed: {exc}")
        self.p.merges.append(record)
        merged = record.status is not MergeStatus.SKIPPED
        self.emit("merge_finished", sub_id, record.status.value, f"{len(record.conflicts)} conflict(s)")
        assert self.scheduler is not None
        self.scheduler.release(sub_id, merged, "" if merged else f"merge of {sub_id} failed")

    async def merge_consumer(self) -> None:
        if self.plan.merge.order is MergeOrder.PLAN:
            await self._merge_in_plan_order()
            return
        order = 0
        while (sub_id := await self.merge_inbox.get()) is not None:
            order += 1
            await asyncio.to_thread(self._merge_one, sub_id, order)

    async def _merge_in_plan_order(self) -> None:
        order = 0
        for sub_id in topological_order(self.plan):
            await self.resolved[sub_id].wait()
            if self.ok.get(sub_id):
                order += 1
                await asyncio.to_thread(self._merge_one, sub_id, order)

    def _on_sched(self, event: SchedEvent) -> None:
        """A job ended (any status): wake whoever waits on it and on its doomed dependents."""
        if event.kind not in ("finished", "skipped", "cancelled"):
            return
        if event.status is not SubtaskStatus.SUCCEEDED:  # a success resolves once its work is committed
            self.resolved[event.job].set()
            for dep in self._dependents(event.job):
                self.resolved[dep].set()
        self.emit("subtask_finished", event.job, event.status.value, event.message)

    def _dependents(self, sub_id: str) -> set[str]:
        found: set[str] = set()
        frontier = [sub_id]
        while frontier:
            cur = frontier.pop()
            for s in self.plan.subtasks:
                if cur in s.depends_on and s.id not in found:
                    found.add(s.id)
                    frontier.append(s.id)
        return found

    # --- the whole run ---------------------------------------------------------------------------

    async def run(self) -> RunReport:
        own_dir = self.options.workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"ci-swarm-{self.run_id}-"))
            if own_dir
            else Path(self.options.workdir or ".").resolve()
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.loop, self.loop_thread = asyncio.get_running_loop(), threading.get_ident()
        # git work of every agent in flight, the merge and deferred clean-ups run in threads at once
        self.loop.set_default_executor(ThreadPoolExecutor(max_workers=2 * self.options.max_agents + 4))
        jobs = [Job(s.id, s.depends_on) for s in self.plan.subtasks]
        self.scheduler = Scheduler(
            jobs,
            max_parallel=self.options.max_agents,
            timeout=self.options.timeout,
            fail_fast=self.options.fail_fast,
            work=self.work,
            on_event=self._on_sched,
        )
        self.emit("run_started", message=self.plan.task)
        started = time.time()
        consumer = asyncio.create_task(self.merge_consumer())
        interrupted = False
        try:
            results = await self.scheduler.run()
        except asyncio.CancelledError:
            interrupted = True
            results = self.scheduler.results
        finally:
            await asyncio.gather(*self.landings, return_exceptions=True)
            await self.merge_inbox.put(None)
            for event in self.resolved.values():
                event.set()
            if interrupted:
                consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            await asyncio.gather(*self.cleanups, return_exceptions=True)
            if own_dir:
                _rmtree_quiet(self.workdir)
            # last: every worktree directory is gone now, so prune drops all of this run's entries
            await asyncio.to_thread(git.worktree_prune, self.repo)
        wall = time.time() - started
        report = self._report(results, wall, interrupted)
        self.emit("run_finished", status="interrupted" if interrupted else "done", message=report.run_id)
        return report

    def _report(
        self, results: dict[str, JobResult[AgentOutcome]], wall: float, interrupted: bool
    ) -> RunReport:
        records = tuple(self._record(s, results.get(s.id)) for s in self.plan.subtasks)
        durations = {r.id: r.seconds for r in records if r.started_at is not None}
        assert self.scheduler is not None
        stats = self.scheduler.run_stats(wall, durations)
        usage = sum((r.usage for r in records), Usage())
        notes = list(self.p.notes)
        if interrupted:
            notes.append("interrupted: unfinished subtasks were cancelled; their partial work is committed")
        return RunReport(
            run_id=self.run_id,
            task=self.plan.task,
            repo=str(self.repo),
            base=self.base,
            integration_branch=self.integration,
            integration_commit=self.queue.tip,
            stats=stats,
            subtasks=records,
            merges=tuple(self.p.merges),
            overlap=self.queue.overlaps,
            merge_policy=self.plan.merge,
            rationale=self.plan.rationale,
            usage=usage,
            budget_stopped=any(o.budget_stopped for o in self.p.outcome.values()),
            interrupted=interrupted,
            notes=tuple(notes),
            request=self.request,
        )

    def _record(self, sub: Subtask, result: JobResult[AgentOutcome] | None) -> SubtaskRecord:
        outcome = self.p.outcome.get(sub.id, AgentOutcome(ok=False))
        status = result.status if result else SubtaskStatus.CANCELLED
        error = (result.error if result else "") or outcome.error
        return SubtaskRecord(
            id=sub.id,
            role=sub.role,
            title=sub.title,
            status=status,
            branch=self.p.branch.get(sub.id, ""),
            start_commit=self.p.start.get(sub.id, ""),
            commit=self.p.commit.get(sub.id, ""),
            started_at=self.p.started_at.get(sub.id),
            finished_at=self.p.finished_at.get(sub.id),
            seconds=self.p.seconds.get(sub.id, 0.0),
            files=self.p.files.get(sub.id, ()),
            error=error,
            summary=outcome.summary,
            log=outcome.log,
            usage=outcome.usage,
            outside_paths=outcome.outside_paths,
        )


def topological_order(plan: Plan) -> tuple[str, ...]:
    """Plan order, except that a subtask always comes after its dependencies (stable)."""
    placed: list[str] = []
    remaining = list(plan.subtasks)
    while remaining:
        ready = next(s for s in remaining if all(d in placed for d in s.depends_on))
        placed.append(ready.id)
        remaining.remove(ready)
    return tuple(placed)


def _rmtree_quiet(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


async def run_plan(
    plan: Plan,
    options: RunOptions,
    agents: AgentFactory,
    listener: ProgressListener | None = None,
    request: Request | None = None,
) -> RunReport:
    return await Orchestrator(plan, options, agents, listener, request).run()


def run_plan_sync(
    plan: Plan,
    options: RunOptions,
    agents: AgentFactory,
    listener: ProgressListener | None = None,
    request: Request | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> RunReport:
    """Run a plan in a fresh event loop; SIGINT / SIGTERM cancel the run cleanly and still return a report."""
    return run_sync(lambda: run_plan(plan, options, agents, listener, request), on_interrupt)
