"""concurrency.py: blocking work in threads under cancellation, deferred tasks, calls onto the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ci_swarm.concurrency import Deferred, Emitter, in_thread, use_worker_threads
from ci_swarm.ports import ProgressEvent


def test_cancelled_git_work_that_never_started_is_dropped_and_started_work_is_finished() -> None:

    from concurrent.futures import ThreadPoolExecutor

    from ci_swarm.concurrency import in_thread as _in_thread

    ran: list[str] = []
    gate = threading.Event()

    def busy_work() -> None:
        gate.wait(5)
        ran.append("busy")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        busy = asyncio.create_task(_in_thread(busy_work))
        await asyncio.sleep(0.05)  # the only worker is now inside `busy`
        queued = asyncio.create_task(_in_thread(lambda: ran.append("queued")))
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 2)  # returns at once: nothing to wait for
        busy.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await busy  # cancelled while running: it is finished before the cancel propagates
        assert ran == ["busy"]

    asyncio.run(scenario())
    assert ran == ["busy"]  # the queued work never ran


def test_work_cancelled_before_it_started_never_runs_and_is_not_undone() -> None:
    ran: list[str] = []
    undone: list[str] = []
    inside: list[str] = []
    gate = threading.Event()

    def block() -> str:
        inside.append("in")
        gate.wait(30)
        return "block"

    def queued_work() -> str:
        ran.append("queued")
        return "queued"

    async def scenario() -> None:
        use_worker_threads(0)  # the smallest pool: 4 workers
        blockers = [asyncio.create_task(in_thread(block)) for _ in range(4)]
        while len(inside) < 4:  # every worker is busy now
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(in_thread(queued_work, undo=undone.append))
        await asyncio.sleep(0)  # submitted behind the four blockers
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()
        assert await asyncio.gather(*blockers) == ["block"] * 4

    asyncio.run(scenario())
    assert ran == [] and undone == []


def test_work_cancelled_while_running_is_finished_and_its_result_undone() -> None:
    undone: list[str] = []
    inside, gate = threading.Event(), threading.Event()

    def make_thing() -> str:
        inside.set()
        gate.wait(30)
        return "thing"

    async def scenario() -> None:
        task = asyncio.create_task(in_thread(make_thing, undo=undone.append))
        await asyncio.to_thread(inside.wait, 30)
        task.cancel()
        threading.Thread(target=gate.set).start()  # the cancelled caller blocks until the work is done
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert undone == ["thing"]  # made after its caller gave up: handed to undo, not leaked


def test_in_thread_returns_the_result_and_raises_the_error() -> None:
    def fail() -> None:
        raise ValueError("broken")

    async def scenario() -> str:
        with pytest.raises(ValueError, match="broken"):
            await in_thread(fail)
        return await in_thread(lambda a, b: a + b, "x", "y")

    assert asyncio.run(scenario()) == "xy"


def test_deferred_waits_for_tasks_started_meanwhile_and_keeps_their_errors_to_themselves() -> None:
    done: list[str] = []
    later = Deferred()

    async def second() -> None:
        done.append("second")

    async def first() -> None:
        await asyncio.sleep(0)
        later.start(second())  # started while wait() is already waiting
        raise RuntimeError("not the waiter's problem")

    async def scenario() -> None:
        later.start(first())
        later.start_in_thread(done.append, "thread")
        await later.wait()

    asyncio.run(scenario())
    assert sorted(done) == ["second", "thread"]


def test_emitter_delivers_on_the_loop_thread_and_survives_a_broken_listener() -> None:
    seen: list[tuple[str, bool]] = []
    loop_thread: list[int] = []

    def listener(event: ProgressEvent) -> None:
        seen.append((event.kind, threading.get_ident() == loop_thread[0]))
        if event.kind == "boom":
            raise RuntimeError("display gone")

    emit = Emitter(listener)

    async def scenario() -> None:
        loop_thread.append(threading.get_ident())
        emit.bind()
        emit("on_loop")
        await asyncio.to_thread(emit, "from_thread")
        await asyncio.sleep(0)  # the handed-over call runs on the loop
        emit("boom")
        emit("boom")
        emit("after")

    asyncio.run(scenario())
    assert seen == [("on_loop", True), ("from_thread", True), ("boom", True), ("boom", True), ("after", True)]
    assert emit.failure == "progress display failed and was ignored: RuntimeError: display gone"


def test_an_emitter_without_listener_is_silent() -> None:
    emit = Emitter(None)
    emit("anything")
    assert emit.failure == ""
