"""The DAG scheduler with plain async work functions (no git: the scheduler knows none)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import SubtaskStatus
from ci_swarm.schedule import Job, JobResult, SchedEvent, Scheduler, stats

S = SubtaskStatus


class Recorder:
    """Work that sleeps per job, counts what is in flight and can fail, hang or raise per job."""

    def __init__(self, delays: dict[str, float] | None = None, default: float = 0.01) -> None:
        self.delays = delays or {}
        self.default = default
        self.fail: dict[str, BaseException] = {}
        self.hang: set[str] = set()
        self.in_flight = 0
        self.peak = 0
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.started_event: dict[str, asyncio.Event] = {}

    def event(self, job: str) -> asyncio.Event:
        return self.started_event.setdefault(job, asyncio.Event())

    async def __call__(self, job: str) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.started.append(job)
        self.event(job).set()
        try:
            if job in self.hang:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delays.get(job, self.default))
            if job in self.fail:
                raise self.fail[job]
            self.finished.append(job)
            return f"value-{job}"
        except asyncio.CancelledError:
            self.cancelled.append(job)
            raise
        finally:
            self.in_flight -= 1


def make(
    jobs: Sequence[Job],
    work: Callable[[str], Awaitable[Any]],
    *,
    cap: int = 4,
    timeout: float | None = None,
    fail_fast: bool = False,
    auto_release: bool = True,
    events: list[SchedEvent] | None = None,
    on_event: Callable[[SchedEvent], None] | None = None,
    **kw: Any,
) -> Scheduler[Any]:
    if events is not None:
        on_event = events.append
    return Scheduler(
        jobs,
        max_parallel=cap,
        timeout=timeout,
        fail_fast=fail_fast,
        work=work,
        on_event=on_event,
        auto_release=auto_release,
        **kw,
    )


def statuses(results: dict[str, JobResult[Any]]) -> dict[str, S]:
    return {k: r.status for k, r in results.items()}


# --- concurrency ------------------------------------------------------------------------------


def test_in_flight_never_exceeds_the_cap() -> None:
    work = Recorder(default=0.02)
    jobs = [Job(f"j{i}") for i in range(12)]
    events: list[SchedEvent] = []
    sched = make(jobs, work, cap=3, events=events)
    results = asyncio.run(sched.run())
    assert all(r.status is S.SUCCEEDED for r in results.values())
    assert work.peak == 3
    assert sched.max_in_flight == 3
    assert max(e.in_flight for e in events) <= 3
    assert [r.value for r in results.values()] == [f"value-j{i}" for i in range(12)]
    assert list(results) == [j.id for j in jobs]


def test_serial_mode_runs_one_at_a_time_in_order() -> None:
    work = Recorder()
    jobs = [Job("a"), Job("b"), Job("c", ("a",)), Job("d")]
    sched = make(jobs, work, cap=1)
    results = asyncio.run(sched.run())
    assert statuses(results) == dict.fromkeys("abcd", S.SUCCEEDED)
    assert work.peak == 1
    assert sched.max_in_flight == 1
    assert work.started == ["a", "b", "c", "d"]


def test_parallel_jobs_overlap_up_to_the_cap() -> None:
    together = asyncio.Barrier(4)  # lets jobs through only four at a time, all running at once

    async def work(job: str) -> str:
        async with asyncio.timeout(60):  # fewer than four at once fails the test instead of hanging it
            await together.wait()
        return job

    jobs = [Job(f"j{i}") for i in range(8)]
    sched = make(jobs, work, cap=4)
    results = asyncio.run(sched.run())
    assert statuses(results) == dict.fromkeys(results, S.SUCCEEDED)
    for wave in (jobs[:4], jobs[4:]):  # the [start, finish] intervals of each wave all overlap
        spans = [(results[j.id].started_at, results[j.id].finished_at) for j in wave]
        starts = [a for a, _ in spans if a is not None]
        finishes = [b for _, b in spans if b is not None]
        assert len(starts) == len(finishes) == 4
        assert max(starts) <= min(finishes)
    first_done = min(r.finished_at or 0.0 for r in results.values() if r.id in {"j0", "j1", "j2", "j3"})
    assert all((results[j.id].started_at or 0.0) >= first_done for j in jobs[4:])  # only when a slot is free
    wall = 10.0
    st = sched.run_stats(wall)
    total = sum(r.seconds for r in results.values())
    assert st.max_in_flight == 4
    assert st.max_agents == 4
    assert st.speedup == pytest.approx(total / wall, abs=0.001)  # computed from the jobs' own times
    assert st.efficiency == pytest.approx(st.bound_seconds / wall, abs=0.001)


# --- dependencies and releases ----------------------------------------------------------------


def test_dependents_wait_for_release_not_completion() -> None:
    work = Recorder()
    jobs = [Job("a"), Job("b", ("a",))]

    async def scenario() -> dict[str, JobResult[Any]]:
        sched = make(jobs, work, auto_release=False)
        runner = asyncio.create_task(sched.run())
        while "a" not in work.finished:
            await asyncio.sleep(0.005)
        for _ in range(10):  # plenty of loop turns: b must still be waiting for the merge of a
            await asyncio.sleep(0.005)
        assert "b" not in work.started
        assert "a" not in sched.results or sched.results["a"].status is S.SUCCEEDED
        sched.release("a", True)
        return await runner

    results = asyncio.run(scenario())
    assert statuses(results) == {"a": S.SUCCEEDED, "b": S.SUCCEEDED}
    assert work.started == ["a", "b"]
    a, b = results["a"], results["b"]
    assert a.finished_at is not None
    assert b.started_at is not None
    assert b.started_at >= a.finished_at


def test_release_not_ok_skips_dependents_transitively() -> None:
    work = Recorder()
    jobs = [Job("a"), Job("b", ("a",)), Job("c", ("b",)), Job("d")]
    events: list[SchedEvent] = []

    def on_event(event: SchedEvent) -> None:
        events.append(event)
        if event.kind == "finished" and event.job == "a":
            sched.release("a", False, "merge conflict nobody could resolve")
        elif event.kind == "finished":
            sched.release(event.job, True)

    sched = Scheduler(jobs, max_parallel=2, timeout=None, fail_fast=False, work=work, on_event=on_event)
    results = asyncio.run(sched.run())
    assert statuses(results) == {"a": S.SUCCEEDED, "b": S.SKIPPED, "c": S.SKIPPED, "d": S.SUCCEEDED}
    assert results["b"].error == "dependency 'a' was not merged: merge conflict nobody could resolve"
    assert results["c"].error.startswith("dependency 'b' was skipped: dependency 'a' was not merged")
    assert "b" not in work.started
    assert [e.job for e in events if e.kind == "skipped"] == ["b", "c"]
    assert any(e.kind == "released" and e.job == "a" and "nobody" in e.message for e in events)


def test_release_inside_work_and_first_release_is_final() -> None:
    jobs = [Job("a"), Job("b", ("a",))]
    seen: list[str] = []

    async def work(job: str) -> str:
        seen.append(job)
        if job == "a":
            sched.release("a", True)
            sched.release("a", False, "ignored")  # the first release stands
        return job

    sched = make(jobs, work, auto_release=False)
    results = asyncio.run(sched.run())
    assert statuses(results) == {"a": S.SUCCEEDED, "b": S.SUCCEEDED}
    assert seen == ["a", "b"]
    with pytest.raises(KeyError):
        sched.release("zzz", True)


def test_release_from_a_worker_thread_wakes_the_scheduler() -> None:
    """The orchestrator merges in asyncio.to_thread and releases from there."""
    work = Recorder()
    jobs = [Job("a"), Job("b", ("a",)), Job("c", ("b",))]
    threads: list[bool] = []

    async def scenario() -> dict[str, JobResult[Any]]:
        inbox: asyncio.Queue[str] = asyncio.Queue()

        def on_event(event: SchedEvent) -> None:
            if event.kind == "finished":
                inbox.put_nowait(event.job)

        def merge(job: str) -> None:
            threads.append(threading.current_thread() is not threading.main_thread())
            sched.release(job, True)

        async def merger() -> None:
            while True:
                await asyncio.to_thread(merge, await inbox.get())

        sched = make(jobs, work, auto_release=False, on_event=on_event, release_timeout=None)
        consumer = asyncio.create_task(merger())
        try:
            return await asyncio.wait_for(sched.run(), 10)
        finally:
            consumer.cancel()

    results = asyncio.run(scenario())
    assert statuses(results) == dict.fromkeys("abc", S.SUCCEEDED)
    # a's and b's releases (which gate b and c) came from worker threads; c has no dependents, so the
    # scheduler may return before the merger thread got to it
    assert len(threads) >= 2
    assert all(threads)


def test_finishes_when_leaves_are_never_released() -> None:
    work = Recorder()
    sched = make([Job("a"), Job("b")], work, auto_release=False)
    results = asyncio.run(sched.run())
    assert statuses(results) == {"a": S.SUCCEEDED, "b": S.SUCCEEDED}


def test_never_released_dependency_is_skipped_not_deadlocked() -> None:
    work = Recorder()
    jobs = [Job("a"), Job("b", ("a",)), Job("c", ("b",))]
    sched = make(jobs, work, auto_release=False, release_timeout=0.05)
    results = asyncio.run(sched.run())
    assert statuses(results) == {"a": S.SUCCEEDED, "b": S.SKIPPED, "c": S.SKIPPED}
    assert results["b"].error == "dependency 'a' finished but was never released (merged)"
    assert results["c"].error.startswith("dependency 'b' was skipped")


def test_late_release_within_the_wait_lets_dependents_run() -> None:
    work = Recorder()
    jobs = [Job("a"), Job("b", ("a",))]

    def on_event(event: SchedEvent) -> None:
        if event.kind == "finished" and event.job == "a":
            asyncio.get_running_loop().call_later(0.05, sched.release, "a", True)

    sched = Scheduler(
        jobs, max_parallel=2, timeout=None, fail_fast=False, work=work, on_event=on_event, release_timeout=10
    )
    results = asyncio.run(sched.run())
    assert statuses(results) == {"a": S.SUCCEEDED, "b": S.SUCCEEDED}


def test_cycle_among_jobs_cannot_deadlock() -> None:
    work = Recorder()
    jobs = [Job("a", ("b",)), Job("b", ("a",)), Job("c")]
    results = asyncio.run(make(jobs, work).run())
    assert statuses(results) == {"a": S.SKIPPED, "b": S.SKIPPED, "c": S.SUCCEEDED}
    assert results["a"].error == "dependency 'b' never finished (dependency cycle?)"
    assert (
        results["b"].error == "dependency 'a' was skipped: dependency 'b' never finished (dependency cycle?)"
    )


# --- failures, timeouts, fail-fast ------------------------------------------------------------


def test_failure_is_isolated_and_dependents_skipped_with_reason() -> None:
    work = Recorder(delays={"slow": 0.1})
    work.fail["bad"] = RuntimeError("the agent\nexploded")
    jobs = [
        Job("bad"),
        Job("slow"),
        Job("child", ("bad",)),
        Job("grandchild", ("child",)),
        Job("ok", ("slow",)),
    ]
    events: list[SchedEvent] = []
    results = asyncio.run(make(jobs, work, events=events).run())
    assert statuses(results) == {
        "bad": S.FAILED,
        "slow": S.SUCCEEDED,
        "child": S.SKIPPED,
        "grandchild": S.SKIPPED,
        "ok": S.SUCCEEDED,
    }
    assert results["bad"].error == "the agent exploded"
    assert results["child"].error == "dependency 'bad' failed: the agent exploded"
    assert results["grandchild"].error == (
        "dependency 'child' was skipped: dependency 'bad' failed: the agent exploded"
    )
    assert results["child"].started_at is None
    assert "slow" in work.finished
    finished = [e for e in events if e.kind == "finished"]
    assert {e.job: e.status for e in finished} == {"bad": S.FAILED, "slow": S.SUCCEEDED, "ok": S.SUCCEEDED}


def test_exception_without_message_names_its_type() -> None:
    work = Recorder()
    work.fail["a"] = KeyError()
    results = asyncio.run(make([Job("a")], work).run())
    assert results["a"].error == "KeyError"


def test_timeout_marks_timed_out_and_spares_siblings() -> None:
    work = Recorder(default=0.0)  # "fine" never races the timeout, however loaded the machine
    work.hang.add("stuck")
    jobs = [Job("stuck"), Job("fine"), Job("after", ("stuck",))]
    results = asyncio.run(make(jobs, work, timeout=0.1).run())
    assert statuses(results) == {"stuck": S.TIMED_OUT, "fine": S.SUCCEEDED, "after": S.SKIPPED}
    assert results["stuck"].error == "timed out after 0.1s"
    assert results["after"].error == "dependency 'stuck' timed out: timed out after 0.1s"
    assert work.cancelled == ["stuck"]


def test_timeout_error_raised_by_work_is_a_failure_not_a_timeout() -> None:
    work = Recorder()
    work.fail["a"] = TimeoutError("upstream API timed out")
    results = asyncio.run(make([Job("a")], work, timeout=5).run())
    assert results["a"].status is S.FAILED
    assert results["a"].error == "upstream API timed out"


def test_fail_fast_cancels_the_rest() -> None:
    work = Recorder(delays={"bad": 0.01})
    work.fail["bad"] = RuntimeError("nope")
    work.hang.add("long")
    jobs = [Job("bad"), Job("long"), Job("queued"), Job("child", ("long",))]
    results = asyncio.run(make(jobs, work, cap=2, fail_fast=True).run())
    assert statuses(results) == {
        "bad": S.FAILED,
        "long": S.CANCELLED,
        "queued": S.CANCELLED,
        "child": S.CANCELLED,
    }
    assert results["long"].error == "cancelled: fail-fast after 'bad' failed"
    assert results["queued"].error == "cancelled: fail-fast after 'bad' failed"
    assert work.cancelled == ["long"]
    assert "queued" not in work.started


def test_without_fail_fast_a_failure_stops_nothing() -> None:
    work = Recorder()
    work.fail["bad"] = RuntimeError("nope")
    jobs = [Job("bad"), *(Job(f"s{i}") for i in range(5))]
    results = asyncio.run(make(jobs, work, cap=2).run())
    assert sum(r.status is S.SUCCEEDED for r in results.values()) == 5


def test_cancelling_run_cancels_in_flight_and_marks_the_rest() -> None:
    work = Recorder(delays={"quick": 0.0})
    work.hang.update({"h1", "h2", "h3"})
    jobs = [Job("quick"), Job("h1"), Job("h2"), Job("h3"), Job("waiting"), Job("dep", ("h1",))]

    async def scenario() -> Scheduler[Any]:
        sched = make(jobs, work, cap=3)
        runner = asyncio.create_task(sched.run())
        await work.event("h3").wait()  # quick finished, its slot went to h3: all three slots hang
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        return sched

    sched = asyncio.run(scenario())
    results = sched.results
    assert statuses(results) == {
        "quick": S.SUCCEEDED,
        "h1": S.CANCELLED,
        "h2": S.CANCELLED,
        "h3": S.CANCELLED,
        "waiting": S.CANCELLED,
        "dep": S.CANCELLED,
    }
    assert sorted(work.cancelled) == ["h1", "h2", "h3"]
    assert work.in_flight == 0
    assert results["h1"].error == "cancelled: the run was interrupted"
    assert results["h1"].started_at is not None
    assert results["waiting"].started_at is None


# --- construction and stats -------------------------------------------------------------------


def test_bad_arguments() -> None:
    work = Recorder()
    with pytest.raises(UsageError, match="max_parallel must be at least 1, got 0"):
        make([Job("a")], work, cap=0)
    with pytest.raises(UsageError, match="timeout must be positive"):
        make([Job("a")], work, timeout=0)
    with pytest.raises(PlanError, match="job 'a' depends on unknown 'x'"):
        make([Job("a", ("x",))], work)
    with pytest.raises(PlanError, match="duplicate job id 'a'"):
        make([Job("a"), Job("a")], work)


def test_events_describe_the_run() -> None:
    work = Recorder()
    events: list[SchedEvent] = []
    asyncio.run(make([Job("a"), Job("b", ("a",))], work, events=events).run())
    assert [(e.kind, e.job, e.status) for e in events] == [
        ("started", "a", S.RUNNING),
        ("finished", "a", S.SUCCEEDED),
        ("started", "b", S.RUNNING),
        ("finished", "b", S.SUCCEEDED),
    ]
    assert events[0].in_flight == 1
    assert all(e.at > 0 for e in events)


def test_stats_bound_is_max_of_critical_path_and_sum_over_cap() -> None:
    results: dict[str, JobResult[None]] = {
        k: JobResult(k, S.SUCCEEDED, seconds=v) for k, v in {"a": 1.0, "b": 1.0, "c": 4.0}.items()
    }
    chain = [Job("a"), Job("b"), Job("c", ("a",))]
    st = stats(results, 5.0, 2, chain, max_in_flight=2)
    assert st.agent_seconds_sum == 6.0
    assert st.bound_seconds == 5.0  # critical path a -> c beats 6/2
    assert st.efficiency == 1.0
    assert st.speedup == 1.2
    assert st.max_in_flight == 2
    flat = stats(results, 4.0, 1, [Job("a"), Job("b"), Job("c")])
    assert flat.bound_seconds == 6.0  # Σt / cap with one agent
    custom = stats(results, 2.0, 4, chain, durations={"a": 0.5, "c": 0.5})
    assert custom.agent_seconds_sum == 1.0
    assert custom.bound_seconds == 1.0
    assert custom.efficiency == 0.5
