"""ledger.py: one state per subtask, and settle — the one place every path of a subtask ends, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ci_swarm.agents import make_agent_factory
from ci_swarm.ledger import Ledger, Settlement, SubtaskState
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask, SubtaskStatus, Usage
from ci_swarm.ports import ProgressEvent
from ci_swarm.run import RunOptions, run_plan_sync
from ci_swarm.schedule import JobResult
from tests.fixtures import make_repo
from tests.helpers import plan_of, scripted

S = SubtaskStatus


def test_a_subtask_settles_once_and_wakes_its_waiter() -> None:
    told: list[tuple[str, Settlement]] = []
    ledger = Ledger(["a", "b"], lambda sub_id, s: told.append((sub_id, s)))

    async def scenario() -> tuple[Settlement, bool, bool]:
        waiter = asyncio.create_task(ledger.settled("a"))
        await asyncio.sleep(0)
        first = ledger.settle("a", Settlement(S.SUCCEEDED, True))
        second = ledger.settle("a", Settlement(S.FAILED, False, "too late"))
        return await waiter, first, second

    settled, first, second = asyncio.run(scenario())
    assert (first, second) == (True, False)
    assert settled == Settlement(S.SUCCEEDED, True)
    assert told == [("a", Settlement(S.SUCCEEDED, True))]  # the follow-up ran once


def test_settle_rest_settles_only_the_unsettled() -> None:
    told: list[str] = []
    ledger = Ledger(["a", "b", "c"], lambda sub_id, s: told.append(f"{sub_id}:{s.status.value}"))
    ledger.settle("b", Settlement(S.FAILED, False, "broke"))
    ledger.settle_rest(Settlement(S.CANCELLED, False, "run over"))
    assert told == ["b:failed", "a:cancelled", "c:cancelled"]


def test_state_transitions_become_the_record() -> None:
    sub = Subtask("a", "builder", "do a", "instructions")
    outcome = AgentOutcome(ok=True, summary="did it", usage=Usage(input_tokens=3))
    state = (
        SubtaskState()
        .placed("swarm/r-agents/a", "base")
        .running(100.0)
        .stopped(102.5)
        .returned(outcome)
        .committed("c0ffee", ("a.txt",))
    )
    record = state.record(sub, JobResult("a", S.SUCCEEDED, outcome))
    assert (record.branch, record.start_commit, record.commit) == ("swarm/r-agents/a", "base", "c0ffee")
    assert (record.started_at, record.finished_at, record.seconds) == (100.0, 102.5, 2.5)
    assert (record.status, record.summary, record.files) == (S.SUCCEEDED, "did it", ("a.txt",))
    assert record.usage.input_tokens == 3
    never_ran = SubtaskState().record(sub, None)
    assert (never_ran.status, never_ran.started_at, never_ran.error) == (S.CANCELLED, None, "")


@pytest.mark.parametrize("fail_fast", [False, True])
def test_every_path_of_a_run_settles_each_subtask_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_fast: bool
) -> None:
    """success, failure, crash, timeout, skip (and with fail-fast: cancel in flight and unstarted)."""
    settles: list[tuple[str, bool, str]] = []
    original = Ledger.settle

    def counting(self: Ledger, sub_id: str, settlement: Settlement) -> bool:
        took = original(self, sub_id, settlement)
        settles.append((sub_id, took, settlement.reason))
        return took

    monkeypatch.setattr(Ledger, "settle", counting)
    repo = make_repo(tmp_path / "repo", {"f.txt": "f\n"})
    plan = plan_of(
        scripted("ok", edits=[{"write": "ok.txt", "content": "ok\n"}]),
        scripted("bad", edits=[{"write": "half.txt", "content": "h\n"}], fail="no"),
        scripted("boom", crash=True),
        scripted("slow", hang=True),
        scripted("after", depends_on=("bad",)),
        scripted("later", depends_on=("ok",)),
    )
    events: list[ProgressEvent] = []

    def listen(event: ProgressEvent) -> None:
        events.append(event)

    options = RunOptions(
        repo=repo, base="main", workdir=tmp_path / "wt", max_agents=4, timeout=5.0, fail_fast=fail_fast
    )
    report = run_plan_sync(plan, options, make_agent_factory(AgentSpec("scripted")), listen)

    ids = [s.id for s in plan.subtasks]
    assert sorted(sub_id for sub_id, took, _ in settles if took) == sorted(ids)  # each exactly once
    backstop = [sub_id for sub_id, took, reason in settles if took and "ended before it settled" in reason]
    assert backstop == []  # every path settled its subtask itself
    finished = [(e.subtask, e.status) for e in events if e.kind == "subtask_finished"]
    assert sorted(sub_id for sub_id, _ in finished) == sorted(ids)
    statuses = {s.id: s.status for s in report.subtasks}
    assert dict(finished) == {sub_id: status.value for sub_id, status in statuses.items()}
    if fail_fast:
        assert statuses["bad"] in (S.FAILED, S.CANCELLED) and S.CANCELLED in statuses.values()
    else:
        assert statuses == {
            "ok": S.SUCCEEDED,
            "bad": S.FAILED,
            "boom": S.FAILED,
            "slow": S.TIMED_OUT,
            "after": S.SKIPPED,
            "later": S.SUCCEEDED,
        }
