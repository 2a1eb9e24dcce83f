"""The asyncio DAG scheduler: which job runs when (and how many at once) is decided here alone; the
threads that blocking work runs in are :mod:`ci_swarm.concurrency`'s. Generic: it runs ``work(job_id)``
coroutines and knows nothing of git, agents or merges.

A job starts when every dependency was *released* ok (``release`` is called by the orchestrator once a
job's result is merged), at most ``max_parallel`` at a time, each under its own timeout. A failure never
stops its siblings; its dependents are skipped with the reason (transitively). ``fail_fast`` cancels the
rest on the first failure. Cancelling ``run()`` cancels the jobs in flight and marks everything unfinished
CANCELLED (``Scheduler.results`` keeps them) before the CancelledError propagates. ``max_parallel=1`` is
the serial mode: the same code path, one job at a time. A running job may *borrow* further slots under the
same cap (:meth:`Scheduler.borrow`: a subtask's competing attempts, issue #14); a borrowed slot counts as a
job in flight until it is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ci_swarm.dag import dag_critical_path
from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import RunStats, SubtaskStatus

R = TypeVar("R")

FAILURES = frozenset({SubtaskStatus.FAILED, SubtaskStatus.TIMED_OUT})
DONE = frozenset(
    {
        SubtaskStatus.SUCCEEDED,
        SubtaskStatus.FAILED,
        SubtaskStatus.TIMED_OUT,
        SubtaskStatus.SKIPPED,
        SubtaskStatus.CANCELLED,
    }
)


@dataclass(frozen=True)
class Job:
    id: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobResult(Generic[R]):
    id: str
    status: SubtaskStatus
    value: R | None = None
    error: str = ""
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    seconds: float = 0.0  # time in work (monotonic clock)


@dataclass(frozen=True)
class SchedEvent:
    """kind: started | finished | skipped | cancelled | released."""

    kind: str
    job: str
    status: SubtaskStatus
    message: str = ""
    at: float = 0.0  # unix seconds
    in_flight: int = 0


class Scheduler(Generic[R]):
    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        max_parallel: int,
        timeout: float | None,
        fail_fast: bool,
        work: Callable[[str], Awaitable[R]],
        on_event: Callable[[SchedEvent], None] | None = None,
        auto_release: bool = False,
        release_timeout: float | None = 600.0,
    ) -> None:
        """``auto_release``: a job whose work returned counts as released ok (no merge step).
        ``release_timeout``: when nothing runs and jobs wait only on releases, how long to wait for one
        before skipping them (None: wait as long as it takes)."""
        if max_parallel < 1:
            raise UsageError(f"max_parallel must be at least 1, got {max_parallel}")
        if timeout is not None and timeout <= 0:
            raise UsageError(f"timeout must be positive, got {timeout}")
        _check_jobs(jobs)
        self.jobs = tuple(jobs)
        self.max_parallel = max_parallel
        self.timeout = timeout
        self.fail_fast = fail_fast
        self.auto_release = auto_release
        self.release_timeout = release_timeout
        self._work = work
        self._on_event = on_event
        self._deps = {job.id: job.depends_on for job in jobs}
        self._results: dict[str, JobResult[R]] = {}
        self._released: dict[str, tuple[bool, str]] = {}
        self._pending: list[str] = [job.id for job in jobs]
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._stop_reason = ""
        self._borrowed = 0
        self._freed = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0

    # --- public ---------------------------------------------------------------------------------

    @property
    def results(self) -> dict[str, JobResult[R]]:
        """Results so far, in job order (complete after run() returned or was cancelled)."""
        return {job.id: self._results[job.id] for job in self.jobs if job.id in self._results}

    def release(self, job_id: str, ok: bool, reason: str = "") -> None:
        """The job's result was merged (``ok``) or cannot be used; dependents may start or are skipped.
        The first release of a job is final; later ones are ignored. Safe to call from another thread
        (a merge running in ``asyncio.to_thread``): it is then handed to the scheduler's event loop."""
        if job_id not in self._deps:
            raise KeyError(job_id)
        loop = self._event_loop
        if loop is not None and not _running_in(loop):
            loop.call_soon_threadsafe(self._release, job_id, ok, reason)
            return
        self._release(job_id, ok, reason)

    def _release(self, job_id: str, ok: bool, reason: str) -> None:
        if job_id in self._released:
            return
        self._released[job_id] = (ok, reason)
        result = self._results.get(job_id)
        status = result.status if result else SubtaskStatus.RUNNING
        self._emit("released", job_id, status, "ok" if ok else reason or "not ok")
        self._wake.set()

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[None]:
        """One more slot under the cap for a running job's extra work (waits until one is free; given back
        on exit). The job's own slot is not one of them: a job never waits for itself."""
        while len(self._running) + self._borrowed >= self.max_parallel:
            self._freed.clear()
            await self._freed.wait()
        self._borrowed += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight + self._borrowed)
        try:
            yield
        finally:
            self._borrowed -= 1
            self._slot_freed()

    def _slot_freed(self) -> None:
        self._freed.set()
        self._wake.set()

    async def run(self) -> dict[str, JobResult[R]]:
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()
        self._event_loop = asyncio.get_running_loop()
        try:
            await self._loop()
        except asyncio.CancelledError:
            await self._cancel_all("cancelled: the run was interrupted")
            raise
        except BaseException:
            await self._cancel_all("cancelled: the scheduler stopped on an error")
            raise
        return self.results

    def run_stats(self, wall: float, durations: Mapping[str, float] | None = None) -> RunStats:
        return stats(
            self.results,
            wall,
            self.max_parallel,
            self.jobs,
            max_in_flight=self.max_in_flight,
            durations=durations,
        )

    # --- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while self._pending or self._running:
            self._wake.clear()
            if self._stop_reason:
                await self._cancel_all(self._stop_reason)
                continue
            self._skip_blocked()
            self._start_ready()
            if self._running:
                await self._wake.wait()
            elif self._pending and not await self._wait_for_release():
                self._skip_stuck()

    def _start_ready(self) -> None:
        for job_id in list(self._pending):
            if len(self._running) + self._borrowed >= self.max_parallel:
                return
            if all(self._released.get(dep, (False, ""))[0] for dep in self._deps[job_id]):
                self._pending.remove(job_id)
                self._running[job_id] = asyncio.create_task(self._run_job(job_id), name=f"job:{job_id}")

    def _skip_blocked(self) -> None:
        """Skip (transitively) every pending job with a dependency that will never be released ok."""
        changed = True
        while changed:
            changed = False
            for job_id in list(self._pending):
                reason = self._blocked_reason(job_id)
                if reason:
                    self._finish_unstarted(job_id, SubtaskStatus.SKIPPED, reason)
                    changed = True

    def _blocked_reason(self, job_id: str) -> str:
        for dep in self._deps[job_id]:
            ok, why = self._released.get(dep, (True, ""))
            if ok:
                continue
            result = self._results.get(dep)
            if result is None or result.status is SubtaskStatus.SUCCEEDED:
                return f"dependency {dep!r} was not merged" + (f": {why}" if why else "")
            return f"dependency {dep!r} {_verb(result.status)}" + (
                f": {result.error}" if result.error else ""
            )
        return ""

    async def _wait_for_release(self) -> bool:
        """Nothing runs and nothing can start: wait for a release if one is still possible."""
        awaited = {d for j in self._pending for d in self._deps[j] if self._awaiting_release(d)}
        if not awaited:
            return False
        try:
            async with asyncio.timeout(self.release_timeout):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    def _awaiting_release(self, job_id: str) -> bool:
        result = self._results.get(job_id)
        return (
            result is not None and result.status is SubtaskStatus.SUCCEEDED and job_id not in self._released
        )

    def _skip_stuck(self) -> None:
        """No progress is possible: skip the jobs waiting on a release that did not come, or else one
        job of a dependency cycle; the loop then skips their dependents with the reason."""
        unreleased = [j for j in self._pending if any(self._awaiting_release(d) for d in self._deps[j])]
        for job_id in unreleased:
            dep = next(d for d in self._deps[job_id] if self._awaiting_release(d))
            reason = f"dependency {dep!r} finished but was never released (merged)"
            self._finish_unstarted(job_id, SubtaskStatus.SKIPPED, reason)
        if not unreleased:
            job_id = self._pending[0]
            dep = next(d for d in self._deps[job_id] if not self._released.get(d, (False, ""))[0])
            reason = f"dependency {dep!r} never finished (dependency cycle?)"
            self._finish_unstarted(job_id, SubtaskStatus.SKIPPED, reason)

    # --- one job --------------------------------------------------------------------------------

    async def _run_job(self, job_id: str) -> None:
        started_at, t0 = time.time(), time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight + self._borrowed)
        self._emit("started", job_id, SubtaskStatus.RUNNING)
        status, value, error = SubtaskStatus.FAILED, None, ""
        try:
            status, value, error = await self._attempt(job_id)
        except asyncio.CancelledError:
            status, error = SubtaskStatus.CANCELLED, self._stop_reason or "cancelled"
            raise
        finally:
            self.in_flight -= 1
            self._running.pop(job_id, None)
            self._results[job_id] = JobResult(
                job_id, status, value, error, started_at, time.time(), time.monotonic() - t0
            )
            if status is not SubtaskStatus.SUCCEEDED:
                self._released.setdefault(job_id, (False, error))
            elif self.auto_release:
                self._released.setdefault(job_id, (True, ""))
            if status in FAILURES and self.fail_fast and not self._stop_reason:
                self._stop_reason = f"cancelled: fail-fast after {job_id!r} {_verb(status)}"
            self._emit("finished", job_id, status, error)
            self._slot_freed()

    async def _attempt(self, job_id: str) -> tuple[SubtaskStatus, R | None, str]:
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                value = await self._work(job_id)
        except TimeoutError as exc:
            if deadline.expired():
                return SubtaskStatus.TIMED_OUT, None, f"timed out after {self.timeout:g}s"
            return SubtaskStatus.FAILED, None, _message(exc)
        except Exception as exc:  # one job's failure never stops its siblings
            return SubtaskStatus.FAILED, None, _message(exc)
        return SubtaskStatus.SUCCEEDED, value, ""

    # --- stopping -------------------------------------------------------------------------------

    async def _cancel_all(self, reason: str) -> None:
        self._stop_reason = self._stop_reason or reason
        for job_id in list(self._pending):
            self._finish_unstarted(job_id, SubtaskStatus.CANCELLED, self._stop_reason)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finish_unstarted(self, job_id: str, status: SubtaskStatus, reason: str) -> None:
        self._pending.remove(job_id)
        self._results[job_id] = JobResult(job_id, status, error=reason)
        self._released.setdefault(job_id, (False, reason))
        self._emit("skipped" if status is SubtaskStatus.SKIPPED else "cancelled", job_id, status, reason)

    def _emit(self, kind: str, job_id: str, status: SubtaskStatus, message: str = "") -> None:
        if self._on_event is not None:
            self._on_event(SchedEvent(kind, job_id, status, message, time.time(), self.in_flight))


def stats(
    results: Mapping[str, JobResult[Any]],
    wall: float,
    cap: int,
    jobs: Sequence[Job] = (),
    *,
    max_in_flight: int = 0,
    durations: Mapping[str, float] | None = None,
) -> RunStats:
    """Wall time, Σ agent seconds, parallelism = Σ/wall, the critical path, bound = max(critical path,
    Σ/cap), efficiency = bound/wall. ``durations`` defaults to each result's seconds."""
    times = dict(durations) if durations is not None else {k: r.seconds for k, r in results.items()}
    total = sum(times.values())
    deps = {job.id: job.depends_on for job in jobs} or dict.fromkeys(times, ())
    _, critical = dag_critical_path(deps, times)
    bound = max(critical, total / cap) if cap > 0 else critical
    return RunStats(
        wall_seconds=round(wall, 3),
        agent_seconds_sum=round(total, 3),
        parallelism=round(total / wall, 3) if wall > 0 else 0.0,
        bound_seconds=round(bound, 3),
        efficiency=round(bound / wall, 3) if wall > 0 else 0.0,
        max_agents=cap,
        max_in_flight=max_in_flight,
        critical_path_seconds=round(critical, 3),
    )


def _check_jobs(jobs: Sequence[Job]) -> None:
    ids = [job.id for job in jobs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PlanError(f"duplicate job id {dupes[0]!r}")
    known = set(ids)
    for job in jobs:
        for dep in job.depends_on:
            if dep not in known:
                raise PlanError(f"job {job.id!r} depends on unknown {dep!r}")


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _verb(status: SubtaskStatus) -> str:
    return {
        SubtaskStatus.FAILED: "failed",
        SubtaskStatus.TIMED_OUT: "timed out",
        SubtaskStatus.SKIPPED: "was skipped",
        SubtaskStatus.CANCELLED: "was cancelled",
    }.get(status, str(status))


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
