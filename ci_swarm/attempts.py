"""Competing attempts at one subtask (issue #14): N agents work on the same subtask from the same start,
each in its own clone on its own branch ``<agent branch>.<k>``; the judge (:mod:`ci_swarm.judge`) picks
the winner and the subtask's own branch is set to the winner's commit, so the merge, dependents and
verification see one commit as for any subtask. Losers' branches are kept.

Attempts share the run's cap: the subtask's scheduler slot runs one attempt at a time and every further
attempt borrows a slot (:meth:`ci_swarm.schedule.Scheduler.borrow`), so attempts queue like subtasks when
N exceeds the cap. No attempt starts once the run's budget is spent (what finished is judged); attempts
still running are stopped (their work committed, marked) once a winner is certain. Also here: the plan
helpers (``--best-of``, the agents a plan's attempts name, the reviewer a judge needs).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.concurrency import in_thread
from ci_swarm.diffstat import diffstat
from ci_swarm.errors import SwarmError, UsageError, WorkLeftOut
from ci_swarm.judge import NEEDS_REVIEWER, certain, default_judge, judge, passes, weighted_score
from ci_swarm.models import (
    EMPTY,
    AgentOutcome,
    AgentSpec,
    AttemptRecord,
    CheckResult,
    Diffstat,
    Judge,
    Judgement,
    Plan,
    Subtask,
    SubtaskStatus,
    Usage,
)
from ci_swarm.naming import agent_identity, commit_message
from ci_swarm.plan import MAX_ATTEMPTS
from ci_swarm.ports import AgentContext, AgentFactory, AttemptView, Reviewer, Score
from ci_swarm.verify import CheckRunner
from ci_swarm.workspace import Workspace
from ci_swarm.worktrees import Workspaces

CERTAIN = "stopped: a winner was certain"
MAX_ABSTENTION = 300  # characters of an abstaining reviewer's reason in the judgement's why


# --- plan helpers -------------------------------------------------------------------------------


def with_best_of(plan: Plan, n: int | None) -> Plan:
    """``--best-of N`` (or the config's ``attempts``): N attempts of its own agent for every subtask that
    names no attempts; N ≤ 1 changes nothing."""
    if n is None or n <= 1:
        return plan
    if n > MAX_ATTEMPTS:
        raise UsageError(f"--best-of must be at most {MAX_ATTEMPTS}, got {n}")
    subs = tuple(s if s.attempts else replace(s, attempts=(None,) * n) for s in plan.subtasks)
    return replace(plan, subtasks=subs)


def agents_view(plan: Plan) -> Plan:
    """The plan with one extra subtask per attempt that names its own agent (id ``<id>.<k>``), so every
    pre-run check of agents (kinds, options, allowed commands, sandbox, model) sees the attempts' agents."""
    extra = tuple(
        replace(s, id=f"{s.id}.{k}", agent=spec, attempts=())
        for s in plan.subtasks
        for k, spec in enumerate(s.attempts, 1)
        if spec is not None
    )
    return replace(plan, subtasks=plan.subtasks + extra) if extra else plan


def judge_of(sub: Subtask, plan: Plan, has_checks: bool) -> Judge:
    return default_judge(sub.judge, plan.judge, has_checks)


def with_judge(plan: Plan, kind: Judge | None, weights: Mapping[str, float]) -> Plan:
    """The config's ``judge:`` and ``weights:`` for a plan that sets neither itself (a plan's own win)."""
    return replace(plan, judge=plan.judge or kind, weights=plan.weights or weights)


def reviewer_judged(plan: Plan) -> UsageError | None:
    """The refusal (exit 4, one line naming the subtask and its judge) a run gets when its first subtask
    with attempts judged by ``reviewer`` or ``weighted`` has no reviewer; None when no judge needs one (the
    default judge never does)."""
    for sub in plan.subtasks:
        kind = judge_of(sub, plan, has_checks=False)
        if sub.attempts and kind in NEEDS_REVIEWER:
            return UsageError(
                f"subtask {sub.id!r} is judged by {kind.value!r}, which needs a reviewer, and none is "
                "available (set ANTHROPIC_API_KEY, or use judge: checks or vote)"
            )
    return None


def require_reviewer(plan: Plan, has_checks: bool, reviewer: Reviewer | None) -> None:
    """UsageError (exit 4) before the run starts when a subtask's judge needs a reviewer and none is
    available."""
    refusal = None if reviewer is not None else reviewer_judged(plan)
    if refusal is not None:
        raise refusal


def describe(spec: AgentSpec) -> str:
    """An attempt's agent in one phrase: its kind, and its model when it names one."""
    model = spec.options.get("model")
    return f"{spec.kind} ({model})" if model else spec.kind


# --- running the attempts -------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptKit:
    """What a contest needs from the run."""

    repo: Path
    run_id: str
    spaces: Workspaces
    agents: AgentFactory
    ctx: AgentContext
    default_agent: AgentSpec
    borrow: Callable[[], AbstractAsyncContextManager[None]]  # one more slot under the run's cap
    check: CheckRunner | None = None
    reviewer: Reviewer | None = None
    weights: Mapping[str, float] = field(default_factory=lambda: EMPTY)
    budget: Callable[[], str | None] | None = None  # why the budget is spent (None: it is not)


@dataclass(frozen=True)
class Work:
    """An attempt's committed work, kept beside its record for the winner."""

    outcome: AgentOutcome
    files: tuple[str, ...] = ()
    stat: Diffstat = field(default_factory=Diffstat)


@dataclass(frozen=True)
class Verdict:
    judgement: Judgement
    outcome: AgentOutcome  # the winner's (every attempt's usage summed); failed when there is no winner
    commit: str = ""
    files: tuple[str, ...] = ()
    stat: Diffstat = field(default_factory=Diffstat)


class Contest:
    """One subtask's attempts: run (under the cap, budget and early stop), judged, the winner placed."""

    def __init__(self, kit: AttemptKit, sub: Subtask, branch: str, start: str, kind: Judge) -> None:
        self.kit, self.sub, self.branch, self.start, self.kind = kit, sub, branch, start, kind
        self.specs = [spec or sub.agent or kit.default_agent for spec in sub.attempts]
        self.records: dict[int, AttemptRecord] = {}
        self.work: dict[int, Work] = {}
        self._queue = deque(range(1, len(self.specs) + 1))
        self._done = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    @property
    def total(self) -> int:
        return len(self.specs)

    def attempts(self) -> tuple[AttemptRecord, ...]:
        return tuple(self.records[k] for k in sorted(self.records))

    async def run(self) -> Verdict:
        self._workers = [asyncio.create_task(self._drain())]
        self._workers += [asyncio.create_task(self._borrowed()) for _ in range(self.total - 1)]
        try:
            await self._done.wait()
        finally:
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        return await self._judged()

    # --- workers

    async def _borrowed(self) -> None:
        async with self.kit.borrow():
            await self._drain()

    async def _drain(self) -> None:
        while self._queue:
            spent = self._spent()
            if spent:
                self._drop_queue(f"not started: {spent}")
                return
            k = self._queue.popleft()
            try:
                record = await self._attempt(k)
            except asyncio.CancelledError:
                if k not in self.records:  # stopped before its agent ran, or during its checks
                    spec = self.specs[k - 1]
                    self._finish(AttemptRecord(k, describe(spec), SubtaskStatus.CANCELLED, reason=CERTAIN))
                raise
            except Exception as exc:  # never leave the contest waiting for an attempt that cannot end
                spec = self.specs[k - 1]
                record = AttemptRecord(k, describe(spec), SubtaskStatus.FAILED, reason=f"crashed: {exc}")
            self._finish(record)
            if certain(self.kind, self.attempts(), self.total):
                self._drop_queue(f"not started: {CERTAIN.removeprefix('stopped: ')}")
                self._stop_others()

    def _spent(self) -> str:
        if any(w.outcome.budget_stopped for w in self.work.values()):
            return "the budget stopped an attempt"
        reason = self.kit.budget() if self.kit.budget is not None else None
        return f"the budget is spent ({reason})" if reason else ""

    def _finish(self, record: AttemptRecord) -> None:
        self.records[record.index] = record
        if len(self.records) == self.total:
            self._done.set()

    def _drop_queue(self, reason: str) -> None:
        while self._queue:
            k = self._queue.popleft()
            spec = self.specs[k - 1]
            self._finish(AttemptRecord(k, describe(spec), SubtaskStatus.SKIPPED, reason=reason))

    def _stop_others(self) -> None:
        me = asyncio.current_task()
        for worker in self._workers:
            if worker is not me:
                worker.cancel()

    # --- one attempt

    async def _attempt(self, k: int) -> AttemptRecord:
        kit, spec = self.kit, self.specs[k - 1]
        sub = replace(self.sub, agent=spec, attempts=())
        branch = f"{self.branch}.{k}"
        began = time.monotonic()
        place = replace(sub, id=f"{sub.id}.{k}")  # its own clone directory
        ws = await in_thread(kit.spaces.make, place, branch, self.start, undo=kit.spaces.dispose)
        record = AttemptRecord(k, describe(spec), SubtaskStatus.RUNNING, branch=branch)
        try:
            outcome = await kit.agents(sub).run(sub, ws, kit.ctx)
        except asyncio.CancelledError:
            stopped = replace(record, status=SubtaskStatus.CANCELLED, reason=CERTAIN)
            try:
                self._finish(self._collected(stopped, sub, ws, "stopped", AgentOutcome(ok=False), began))
            finally:  # whatever the collection raised, the workspace goes back
                kit.spaces.dispose(ws)
            raise
        except Exception as exc:  # one attempt's crash never stops its siblings
            outcome = AgentOutcome(ok=False, error=f"crashed: {exc}")
        status = SubtaskStatus.SUCCEEDED if outcome.ok else SubtaskStatus.FAILED
        record = replace(record, status=status, reason=outcome.error)
        note = "" if outcome.ok else "failed"
        record = await in_thread(self._collected, record, sub, ws, note, outcome, began)
        await in_thread(kit.spaces.dispose, ws)
        if record.status is SubtaskStatus.SUCCEEDED and record.commit and kit.check is not None:
            try:
                record = replace(record, checks=await kit.check(record.commit))
            except asyncio.CancelledError:  # stopped during its checks: its branch and commit stay listed
                self._finish(replace(record, status=SubtaskStatus.CANCELLED, reason=CERTAIN))
                raise
        return replace(record, seconds=round(time.monotonic() - began, 3))

    def _collected(
        self,
        record: AttemptRecord,
        sub: Subtask,
        ws: Workspace,
        note: str,
        outcome: AgentOutcome,
        began: float,
    ) -> AttemptRecord:
        """Commit the attempt's work on its branch (blocking); work that cannot be committed fails it."""
        repo = self.kit.repo
        message = commit_message(
            sub, self.kit.run_id, f"attempt {record.index}" + (f", {note}" if note else "")
        )
        lost = ""
        try:
            tip, files = self.kit.spaces.collect(ws, message, agent_identity(sub))
        except WorkLeftOut as exc:
            tip, files, lost = exc.tip, exc.files, str(exc)
        except SwarmError as exc:
            tip, files, lost = "", (), f"could not commit the attempt's work: {exc}"
        stat = _stat(repo, self.start, tip)
        self.work[record.index] = Work(outcome, files, stat)
        if lost and record.status is SubtaskStatus.SUCCEEDED:
            record = replace(record, status=SubtaskStatus.FAILED, reason=lost)
        return replace(
            record,
            commit=tip,
            tree=git.tree_of(repo, tip) if tip else "",
            diff_lines=stat.insertions + stat.deletions,
            usage=outcome.usage,
            seconds=round(time.monotonic() - began, 3),
        )

    # --- judging

    async def _judged(self) -> Verdict:
        records, abstained = await self._scored(self.attempts())
        judgement = judge(self.kind, records)
        if abstained:  # the abstentions are part of why: the fallback, or the roles that had no say
            judgement = replace(judgement, why=f"{judgement.why}; {'; '.join(abstained)}")
        if self.kind in NEEDS_REVIEWER and self.kit.reviewer is not None:
            judgement = replace(judgement, usage=self.kit.reviewer.usage(self.sub.id))
        usage = sum((w.outcome.usage for w in self.work.values()), Usage())
        if judgement.winner is None:
            return Verdict(judgement, AgentOutcome(ok=False, error=judgement.why, usage=usage))
        winner = next(a for a in judgement.attempts if a.index == judgement.winner)
        work = self.work[winner.index]
        await in_thread(git.create_branch, self.kit.repo, self.branch, winner.commit)
        outcome = replace(work.outcome, usage=usage)
        return Verdict(judgement, outcome, winner.commit, work.files, work.stat)

    async def _scored(
        self, records: tuple[AttemptRecord, ...]
    ) -> tuple[tuple[AttemptRecord, ...], list[str]]:
        """The records with the reviewers' scores and reasons, and one line per reviewer that abstained."""
        reviewer = self.kit.reviewer
        if self.kind not in NEEDS_REVIEWER or reviewer is None:
            return records, []
        alive = [a for a in records if passes(a)]
        if not alive:
            return records, []
        views = [
            AttemptView(a.index, await in_thread(self._diff, a.commit), _check_text(a.checks)) for a in alive
        ]
        roles = sorted(self.kit.weights) if self.kind is Judge.WEIGHTED and self.kit.weights else [""]
        by_role: dict[str, dict[int, float | None]] = {}
        reasons: dict[int, str] = {}
        abstained: list[str] = []
        for role in roles:
            scores = await reviewer.score(self.sub, views, role)
            said = {s.index: (None if s.abstained else s.score) for s in scores}
            by_role[role] = said
            abstained += _abstention(role, scores)
            for s in scores:
                if s.reason and not s.abstained:
                    reasons[s.index] = "; ".join(r for r in (reasons.get(s.index, ""), s.reason) if r)
        weights = self.kit.weights if self.kind is Judge.WEIGHTED else {}
        out = []
        for a in records:
            if a not in alive:
                out.append(a)
                continue
            score = weighted_score({role: by_role[role].get(a.index) for role in roles}, weights)
            out.append(replace(a, score=score, reason=reasons.get(a.index, a.reason)))
        return tuple(out), abstained

    def _diff(self, commit: str) -> str:
        return git.diff(self.kit.repo, self.start, commit, context=3, text=True)


def _stat(repo: Path, start: str, tip: str) -> Diffstat:
    if not tip:
        return Diffstat()
    try:
        return diffstat(repo, start, tip)
    except SwarmError:
        return Diffstat()


def _abstention(role: str, scores: Sequence[Score]) -> list[str]:
    """One line when the reviewer (of ``role``) abstained on an attempt, with its reason (clipped: it may
    quote the model's answer)."""
    why = next((s.reason for s in scores if s.abstained), None)
    if why is None:
        return []
    who = f"the {role} reviewer" if role else "the reviewer"
    text = why if len(why) <= MAX_ABSTENTION else why[: MAX_ABSTENTION - 1] + "…"
    return [f"{who} abstained: {text}"]


def _check_text(checks: tuple[CheckResult, ...]) -> str:
    return "\n".join(f"{c.name}: {'passed' if c.ok else 'failed'}\n{c.output_tail}".strip() for c in checks)
