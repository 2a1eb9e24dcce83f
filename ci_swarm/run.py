"""The orchestrator: plan → parallel agents in clones → sequential merge queue → RunReport.

Two concurrent loops share one event loop:

* the **scheduler** starts a subtask once every dependency is *merged*, from the integration tip at that
  moment, on its own branch and clone, with at most ``max_agents`` in flight;
* the **merge consumer** merges finished branches one at a time (completion or plan order) in the object
  database and then releases the subtask so its dependents may start.

Agent work is committed on its branch whatever happens (also partial work of a failed, timed-out or
cancelled agent, marked as such) by ci-swarm itself (:mod:`ci_swarm.collection`); work that cannot be
committed fails its subtask; branches are never deleted; clones are always reset or removed. Every path
of a subtask ends in one settlement (:mod:`ci_swarm.ledger`). A subtask with competing attempts runs them
through :mod:`ci_swarm.attempts` inside its scheduler job and settles with the winner's commit; the
thread and cancellation mechanics live in :mod:`ci_swarm.concurrency`, the agents' clones in
:mod:`ci_swarm.clones`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.attempts import AttemptKit, Contest, judge_of, require_reviewer
from ci_swarm.clones import GitClones
from ci_swarm.concurrency import Deferred, Emitter, in_thread, use_worker_threads
from ci_swarm.diffstat import diffstat
from ci_swarm.errors import RepoError, SwarmError, WorkLeftOut
from ci_swarm.ledger import Ledger, Settlement
from ci_swarm.merge import MergeQueue
from ci_swarm.merge_consumer import MergeConsumer, Repairer
from ci_swarm.models import (
    AgentOutcome,
    AgentSpec,
    Check,
    Diffstat,
    Judgement,
    MergeOrder,
    OnConflict,
    Plan,
    Request,
    RunReport,
    Subtask,
    SubtaskStatus,
    Usage,
)
from ci_swarm.naming import agent_branch, agent_identity, commit_message, integration_branch, new_run_id
from ci_swarm.outputtail import Redactor
from ci_swarm.paths import serialize_overlaps
from ci_swarm.plan import validate
from ci_swarm.ports import AgentContext, AgentFactory, ProgressListener, Reviewer
from ci_swarm.repair import RepairKit, repairer
from ci_swarm.runtime import run_sync
from ci_swarm.sandbox import SandboxPolicy
from ci_swarm.schedule import Job, JobResult, SchedEvent, Scheduler
from ci_swarm.speculate import Speculation
from ci_swarm.verify import CheckRunner
from ci_swarm.workspace import Workspace


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
    sandbox: SandboxPolicy | None = None  # how agents' commands run (None: whatever is available)
    pass_env: tuple[str, ...] = ()  # variables a command agent's pass_env may name (the config's list)
    secrets: tuple[str, ...] = ()  # values the report redacts from agents' output (with token formats)
    check: CheckRunner | None = None  # the checks gating conflict repairs (merge.on_conflict redo/resolve)
    checks: tuple[Check, ...] = ()  # the run's checks, given to agents (the Claude agent's run_checks tool)
    speculation: Speculation | None = None  # checks on intermediate tips while agents run (issue #12)
    # and judging competing attempts (issue #14)
    reviewer: Reviewer | None = None  # scores attempts for the reviewer / weighted judges (issue #14)
    budget: Callable[[], str | None] | None = None  # why the run's budget is spent (None: it is not)


@dataclass(frozen=True)
class Phases:
    """The run's own fixed costs: before the scheduler started, and after it ended."""

    setup: float
    cleanup: float


class AgentFailed(Exception):
    """Raised inside a scheduler job so the scheduler records the subtask as failed."""


class Orchestrator:
    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        agents: AgentFactory,
        listener: ProgressListener | None = None,
        request: Request | None = None,
    ) -> None:
        self.clock = time.monotonic()  # the run's wall time starts here: validation and setup count
        self.repo = git.open_repo(options.repo)
        self.base = git.rev_parse(self.repo, options.base)
        self.notes = list(validate(plan))
        if options.serialize_overlaps:
            plan = serialize_overlaps(plan)
        if options.merge_order is not None:
            plan = replace(plan, merge=replace(plan.merge, order=options.merge_order))
        self.plan, self.options, self.agents, self.request = plan, options, agents, request
        require_reviewer(plan, options.check is not None, options.reviewer)
        self.scheduler: Scheduler[AgentOutcome] = Scheduler(
            [Job(s.id, s.depends_on) for s in plan.subtasks],
            max_parallel=options.max_agents,
            timeout=options.timeout,
            fail_fast=options.fail_fast,
            work=self.work,
            on_event=self._on_sched,
        )
        self.run_id = self._claim_run_id(options.run_id)
        integration = integration_branch(options.branch_prefix, self.run_id)
        roles = {s.id: s.role for s in plan.subtasks}
        self.queue = queue = MergeQueue(self.repo, integration, self.base, plan.merge, roles)
        self.emit = Emitter(listener)
        self.ledger = Ledger([s.id for s in plan.subtasks], self._on_settle)
        self.spaces = GitClones(self.repo, options.workdir, self.run_id, pool=options.max_agents)
        self.repairs = GitClones(self.repo, options.workdir, f"{self.run_id}-repair")
        release = self.scheduler.release
        repair = self._repairer()
        told = options.speculation.offer if options.speculation is not None else None
        self.merger = MergeConsumer(plan, queue, self.ledger, release, self.emit, self.notes, repair, told)
        self.later = Deferred()  # landings of finished agents, removals of workspaces

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

    def agent_context(self) -> AgentContext:
        """What every agent of the run gets besides its subtask and workspace."""
        opts = self.options
        return AgentContext(
            self.run_id,
            self.plan.task,
            self.plan,
            opts.timeout,
            sandbox=opts.sandbox,
            pass_env=opts.pass_env,
            checks=opts.checks,
        )

    def _repairer(self) -> Repairer | None:
        """The merge consumer's repair hook when ``merge.on_conflict`` asks for one (and checks gate it)."""
        opts = self.options
        if self.plan.merge.on_conflict is OnConflict.KEEP or opts.check is None:
            return None
        kit = RepairKit(
            self.repo,
            self.plan,
            self.run_id,
            opts.branch_prefix,
            self.repairs,
            self.agents,
            self.agent_context(),
            opts.check,
            opts.default_agent,
            opts.timeout,
        )
        return repairer(kit)

    # --- one subtask -----------------------------------------------------------------------------

    async def work(self, subtask_id: str) -> AgentOutcome:
        sub = self.plan.subtask(subtask_id)
        if sub.attempts:
            return await self._compete(sub)
        branch, start = agent_branch(self.options.branch_prefix, self.run_id, sub.id), self.queue.tip
        self.ledger.update(sub.id, lambda s: s.placed(branch, start))
        job_started = time.monotonic()  # the scheduler's timeout covers making the workspace too
        ws = await in_thread(self.spaces.make, sub, branch, start, undo=self.spaces.dispose)
        set_up = time.monotonic() - job_started
        self.ledger.update(sub.id, lambda s: s.set_up(set_up).running(time.time()))
        self.emit("subtask_started", sub.id, "running", sub.title)
        try:
            outcome = await self.agents(sub).run(sub, ws, self.agent_context())
        except asyncio.CancelledError:
            self._stop_clock(sub)
            limit = self.options.timeout
            timed_out = limit is not None and time.monotonic() - job_started >= limit * 0.99
            self._collect(sub, ws, "timed out" if timed_out else "interrupted")  # lands while cancelled
            self.spaces.dispose(ws)
            raise
        except BaseException:
            self._stop_clock(sub)
            await self._abandon(sub, ws, "crashed")
            raise
        self._stop_clock(sub)
        self.ledger.update(sub.id, lambda s: s.returned(outcome))
        if not outcome.ok:
            await self._abandon(sub, ws, "failed")
            raise AgentFailed(outcome.error or "agent reported failure")
        # the agent's slot is free now; committing and queueing for the merge happen beside the next agent
        self.later.start(self._land(sub, ws))
        return outcome

    async def _compete(self, sub: Subtask) -> AgentOutcome:
        """Competing attempts (issue #14): judged, the winner's commit on the subtask's branch, settled."""
        branch, start = agent_branch(self.options.branch_prefix, self.run_id, sub.id), self.queue.tip
        self.ledger.update(sub.id, lambda s: s.placed(branch, start).running(time.time()))
        self.emit("subtask_started", sub.id, "running", sub.title)
        kind = judge_of(sub, self.plan, self.options.check is not None)
        contest = Contest(self._attempt_kit(), sub, branch, start, kind)
        try:
            verdict = await contest.run()
        except asyncio.CancelledError:
            self._stop_clock(sub)
            stopped = Judgement(kind, None, "the subtask was stopped before its attempts were judged")
            self.ledger.update(sub.id, lambda s: s.judged(replace(stopped, attempts=contest.attempts())))
            raise
        self._stop_clock(sub)
        self.ledger.update(sub.id, lambda s: s.judged(verdict.judgement).returned(verdict.outcome))
        if verdict.judgement.winner is None:
            self.ledger.update(sub.id, lambda s: s.placed("", start))
            raise AgentFailed(verdict.judgement.why)
        self.ledger.update(
            sub.id, lambda s: s.committed(verdict.commit, verdict.files).collected(0.0, verdict.stat)
        )
        self.later.start(self._won(sub.id))
        return verdict.outcome

    async def _won(self, sub_id: str) -> None:
        self.ledger.settle(sub_id, Settlement(SubtaskStatus.SUCCEEDED, True))

    def _attempt_kit(self) -> AttemptKit:
        opts = self.options
        kit = AttemptKit(
            self.repo,
            self.run_id,
            self.spaces,
            self.agents,
            self.agent_context(),
            opts.default_agent,
            self.scheduler.borrow,
        )
        return replace(
            kit, check=opts.check, reviewer=opts.reviewer, weights=self.plan.weights, budget=opts.budget
        )

    def _stop_clock(self, sub: Subtask) -> None:
        self.ledger.update(sub.id, lambda s: s.stopped(time.time()))

    async def _abandon(self, sub: Subtask, ws: Workspace, note: str) -> None:
        """Keep the work of an agent that failed on its branch (marked, never merged)."""
        await in_thread(self._collect, sub, ws, note)
        self.later.start_in_thread(self.spaces.dispose, ws)

    async def _land(self, sub: Subtask, ws: Workspace) -> None:
        """Commit a finished agent's work, settle it (to be merged if committed), remove its workspace."""
        await in_thread(self._collect, sub, ws, "")
        self.later.start_in_thread(self.spaces.dispose, ws)
        state = self.ledger.states[sub.id]
        if state.lost or not state.commit:
            reason = state.lost or f"the work of {sub.id} could not be committed"
            self.ledger.settle(sub.id, Settlement(SubtaskStatus.FAILED, False, reason))
        else:
            self.ledger.settle(sub.id, Settlement(SubtaskStatus.SUCCEEDED, True))

    def _collect(self, sub: Subtask, ws: Workspace, note: str) -> None:
        """Commit whatever the agent left on its branch, also when it failed (blocking). Work that cannot be
        committed fails the subtask, naming what was left out; whatever can be saved is committed."""
        message, identity = commit_message(sub, self.run_id, note), agent_identity(sub)
        began = time.monotonic()
        try:
            tip, files = self.spaces.collect(ws, message, identity)
        except WorkLeftOut as exc:
            lost, saved, saved_files = str(exc), exc.tip, exc.files
            self.ledger.update(sub.id, lambda s: s.committed(saved, saved_files).dropped(lost))
            self._measure(sub, ws.start_commit, saved, began)
            return
        except SwarmError as exc:
            lost = f"could not commit the agent's work: {exc}"
            self.ledger.update(sub.id, lambda s: s.dropped(lost))
            self._measure(sub, ws.start_commit, "", began)
            return
        self.ledger.update(sub.id, lambda s: s.committed(tip, files))
        self._measure(sub, ws.start_commit, tip, began)

    def _measure(self, sub: Subtask, start: str, tip: str, began: float) -> None:
        """The committed work's diffstat, and the collection's time (blocking)."""
        try:
            stat = diffstat(self.repo, start, tip)
        except SwarmError:
            stat = Diffstat()  # a figure for the report; never fails the subtask
        seconds = time.monotonic() - began
        self.ledger.update(sub.id, lambda s: s.collected(seconds, stat))

    def _on_sched(self, event: SchedEvent) -> None:
        """A job ended without success: settle it (a success is settled once its work is committed)."""
        if event.kind in ("finished", "skipped", "cancelled") and event.status is not SubtaskStatus.SUCCEEDED:
            self.ledger.settle(event.job, Settlement(event.status, False, event.message))

    def _on_settle(self, sub_id: str, settled: Settlement) -> None:
        """The one follow-up of every settlement: tell the listener, then queue for the merge or release."""
        self.emit("subtask_finished", sub_id, settled.status.value, settled.reason)
        if not settled.ok:
            self.scheduler.release(sub_id, False, settled.reason)
        else:
            self.merger.offer(sub_id)

    # --- the whole run ---------------------------------------------------------------------------

    async def run(self) -> RunReport:
        self.emit.bind()
        use_worker_threads(self.options.max_agents)
        self.emit("run_started", message=self.plan.task)
        scheduled = time.monotonic()
        consumer = asyncio.create_task(self.merger.run())
        interrupted = False
        try:
            results = await self.scheduler.run()
        except asyncio.CancelledError:
            interrupted = True
            results = self.scheduler.results
        finally:
            ended = time.monotonic()
            await self._wind_down(consumer, interrupted)
        phases = Phases(scheduled - self.clock, time.monotonic() - ended)
        report = self._report(results, phases, interrupted)
        self.emit("run_finished", status="interrupted" if interrupted else "done", message=report.run_id)
        return report

    async def _wind_down(self, consumer: asyncio.Task[None], interrupted: bool) -> None:
        """Every agent's work committed and settled, the merges done (or cancelled), the workspaces moved into
        a trash directory that is deleted in the background (``clones.close``): not on the run's wall."""
        await self.later.wait()
        self.ledger.settle_rest(Settlement(SubtaskStatus.CANCELLED, False, "the run ended before it settled"))
        self.merger.close()
        if interrupted:
            consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await self.later.wait()
        await asyncio.to_thread(self.spaces.close)
        await asyncio.to_thread(self.repairs.close)
        await asyncio.to_thread(self.queue.close)  # its long-lived git processes

    def _report(
        self, results: dict[str, JobResult[AgentOutcome]], phases: Phases, interrupted: bool
    ) -> RunReport:
        states, redactor = self.ledger.states, Redactor(self.options.secrets)
        records = tuple(states[s.id].record(s, results.get(s.id), redactor) for s in self.plan.subtasks)
        durations = {r.id: r.seconds for r in records if r.started_at is not None}
        merges = tuple(self.merger.merges)
        wall = time.monotonic() - self.clock  # from the start of the run to this report
        notes = [*self.notes, *([self.emit.failure] if self.emit.failure else [])]
        if interrupted:
            notes.append("interrupted: unfinished subtasks were cancelled; their partial work is committed")
        return RunReport(
            run_id=self.run_id,
            task=self.plan.task,
            repo=str(self.repo),
            base=self.base,
            integration_branch=self.queue.integration_branch,
            integration_commit=git.rev_parse(self.repo, f"refs/heads/{self.queue.integration_branch}"),
            stats=replace(
                self.scheduler.run_stats(wall, durations),
                run_setup_seconds=round(phases.setup, 3),
                cleanup_seconds=round(phases.cleanup, 3),
                setup_seconds_sum=round(sum(r.setup_seconds for r in records), 3),
                collect_seconds_sum=round(sum(r.collect_seconds for r in records), 3),
                merge_seconds_sum=round(sum(m.seconds for m in merges), 3),
            ),
            subtasks=records,
            merges=merges,
            overlap=self.queue.overlaps,
            merge_policy=self.plan.merge,
            rationale=self.plan.rationale,
            timeout_seconds=self.options.timeout,
            usage=sum((r.usage for r in records), Usage())
            + sum((m.repair.usage for m in merges if m.repair), Usage()),
            budget_stopped=any(s.outcome.budget_stopped for s in states.values() if s.outcome),
            interrupted=interrupted,
            notes=tuple(notes),
            request=self.request,
        )


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
