"""The run's bookkeeping per subtask: one immutable :class:`SubtaskState` each, turned into the report's
:class:`SubtaskRecord` at the end, and the one place where a subtask is *settled*.

A subtask is settled when its agent phase has a verdict: its work is committed and may be merged (ok), or it
will never be merged (it failed, crashed, timed out, was cancelled or skipped, or its work could not be
committed). Work that could not be committed, in whole or in part, makes a succeeded agent's subtask
*failed* (:meth:`SubtaskState.status`): a run never reports success while agent work was dropped. Every
path goes through :meth:`Ledger.settle`; only the first settlement counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ci_swarm.diffstat import outside_paths
from ci_swarm.models import AgentOutcome, Diffstat, Judgement, Subtask, SubtaskRecord, SubtaskStatus
from ci_swarm.outputtail import Redactor
from ci_swarm.schedule import JobResult


@dataclass(frozen=True)
class SubtaskState:
    """What the run knows about one subtask so far."""

    branch: str = ""
    start: str = ""
    commit: str = ""
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    seconds: float = 0.0  # agent time
    outcome: AgentOutcome | None = None
    files: tuple[str, ...] = ()
    lost: str = ""  # why (part of) the agent's work could not be committed: the subtask failed
    setup_seconds: float = 0.0  # making its workspace
    collect_seconds: float = 0.0  # committing its work and measuring its diffstat
    diffstat: Diffstat = field(default_factory=Diffstat)
    judgement: Judgement | None = None  # competing attempts (issue #14): how the winner was chosen

    def placed(self, branch: str, start: str) -> SubtaskState:
        return replace(self, branch=branch, start=start)

    def running(self, at: float) -> SubtaskState:
        return replace(self, started_at=at)

    def stopped(self, at: float) -> SubtaskState:
        began = self.started_at if self.started_at is not None else at
        return replace(self, finished_at=at, seconds=at - began)

    def returned(self, outcome: AgentOutcome) -> SubtaskState:
        return replace(self, outcome=outcome)

    def committed(self, commit: str, files: tuple[str, ...]) -> SubtaskState:
        return replace(self, commit=commit, files=files)

    def dropped(self, reason: str) -> SubtaskState:
        return replace(self, lost=reason)

    def judged(self, judgement: Judgement) -> SubtaskState:
        return replace(self, judgement=judgement)

    def set_up(self, seconds: float) -> SubtaskState:
        return replace(self, setup_seconds=seconds)

    def collected(self, seconds: float, stat: Diffstat) -> SubtaskState:
        return replace(self, collect_seconds=self.collect_seconds + seconds, diffstat=stat)

    def status(self, result: JobResult[AgentOutcome] | None) -> SubtaskStatus:
        """The agent's status, except that a success whose work was (partly) lost is a failure."""
        status = result.status if result else SubtaskStatus.CANCELLED
        return SubtaskStatus.FAILED if self.lost and status is SubtaskStatus.SUCCEEDED else status

    def record(
        self, sub: Subtask, result: JobResult[AgentOutcome] | None, redactor: Redactor | None = None
    ) -> SubtaskRecord:
        """The report's record; the output tail through ``redactor`` (token formats only when None)."""
        outcome = self.outcome or AgentOutcome(ok=False)
        redact = redactor or Redactor()
        return SubtaskRecord(
            id=sub.id,
            role=sub.role,
            title=sub.title,
            status=self.status(result),
            branch=self.branch,
            start_commit=self.start,
            commit=self.commit,
            started_at=self.started_at,
            finished_at=self.finished_at,
            seconds=self.seconds,
            files=self.files,
            error="; ".join(e for e in ((result.error if result else "") or outcome.error, self.lost) if e),
            summary=outcome.summary,
            log=outcome.log,
            usage=outcome.usage,
            outside_paths=outside_paths(self.files, sub.paths, outcome.outside_paths),
            paths=sub.paths,
            command=tuple(redact.text(arg) for arg in outcome.command),
            exit_status=outcome.exit_status,
            output_tail=redact.tail(outcome.log),
            diffstat=self.diffstat,
            setup_seconds=self.setup_seconds,
            collect_seconds=self.collect_seconds,
            judgement=self.judgement,
        )


@dataclass(frozen=True)
class Settlement:
    """A subtask's verdict: the agent's ``status``; ``ok`` when its committed work is to be merged."""

    status: SubtaskStatus
    ok: bool
    reason: str = ""


class Ledger:
    """One SubtaskState per subtask, and their settlements (settle and wait on the event loop's thread)."""

    def __init__(self, ids: Sequence[str], on_settle: Callable[[str, Settlement], None]) -> None:
        self.states = {sub_id: SubtaskState() for sub_id in ids}
        self._on_settle = on_settle
        self._settled: dict[str, Settlement] = {}
        self._events = {sub_id: asyncio.Event() for sub_id in ids}

    def update(self, sub_id: str, change: Callable[[SubtaskState], SubtaskState]) -> None:
        """``sub_id``'s state becomes ``change(state)`` (one writer per subtask at a time, any thread)."""
        self.states[sub_id] = change(self.states[sub_id])

    def settle(self, sub_id: str, settlement: Settlement) -> bool:
        """Settle ``sub_id`` (wakes whoever waits for it, then ``on_settle``); False if it already was."""
        if sub_id in self._settled:
            return False
        self._settled[sub_id] = settlement
        self._events[sub_id].set()
        self._on_settle(sub_id, settlement)
        return True

    def settle_rest(self, settlement: Settlement) -> None:
        """Settle every subtask that is not settled yet (the run is ending)."""
        for sub_id in self.states:
            self.settle(sub_id, settlement)

    async def settled(self, sub_id: str) -> Settlement:
        await self._events[sub_id].wait()
        return self._settled[sub_id]
