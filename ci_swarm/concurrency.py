"""Thread and cancellation mechanics of a run, so the orchestrator only says *what* runs where.

Blocking git work runs in worker threads (a pool sized to the agent cap) and cancellation never leaves
that work half-done (:func:`in_thread`); work started now and waited for later (committing a finished
agent, removing a worktree) goes into a :class:`Deferred`; calls made from a worker thread reach the event
loop's thread through :class:`LoopBridge`, and progress events through :class:`Emitter`. Every piece works
the same with one agent (the serial mode) as with many.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ci_swarm.ports import ProgressEvent, ProgressListener

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, undo: Callable[[T], None] | None = None) -> T:
    """Run blocking work in the loop's executor. If cancelled meanwhile, wait for the work anyway when it
    had started, so that a branch, clone or commit is never left half-made (and ``undo`` its result, which
    nobody will receive); work that had not started yet is simply dropped (it never runs)."""
    loop = asyncio.get_running_loop()
    job: concurrent.futures.Future[T] = concurrent.futures.Future()

    def call() -> None:
        if not job.set_running_or_notify_cancel():
            return  # cancelled before it started
        try:
            job.set_result(fn(*args))
        except BaseException as exc:
            job.set_exception(exc)

    loop.run_in_executor(None, call)
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        if not job.cancelled():  # it was running: let it finish (its result is not needed)
            concurrent.futures.wait([job])
            if undo is not None and job.exception() is None:
                undo(job.result())
        raise


def use_worker_threads(cap: int) -> None:
    """Size the running loop's executor for ``cap`` agents: the git work of every agent in flight, the
    merge and deferred clean-ups all run in threads at once."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * cap + 4)
    asyncio.get_running_loop().set_default_executor(pool)


class Deferred:
    """Tasks started now and waited for together later; their errors are the tasks' own business."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        self._tasks.append(asyncio.create_task(work))

    def start_in_thread(self, fn: Callable[..., None], *args: Any) -> None:
        self.start(asyncio.to_thread(fn, *args))

    async def wait(self) -> None:
        """Until every task has ended, also those started while waiting."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)


class LoopBridge:
    """Calls onto the event loop's thread, from any thread (directly when already on it)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()

    def bind(self) -> None:
        """Bind to the running loop (call from inside it)."""
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(fn, *args)
        else:
            fn(*args)


class Emitter:
    """Progress events to a listener, always on the loop's thread. A listener is a display: if it breaks,
    the run goes on, and :attr:`failure` says so once."""

    def __init__(self, listener: ProgressListener | None) -> None:
        self._listener = listener
        self._bridge = LoopBridge()
        self.failure = ""

    def bind(self) -> None:
        """Deliver on the running loop's thread from now on (call from inside it)."""
        self._bridge.bind()

    def __call__(self, kind: str, subtask: str = "", status: str = "", message: str = "") -> None:
        self._bridge.call(self._tell, ProgressEvent(kind, subtask, status, message, time.time()))

    def _tell(self, event: ProgressEvent) -> None:
        if self._listener is None:
            return
        try:
            self._listener(event)
        except Exception as exc:
            if not self.failure:
                self.failure = f"progress display failed and was ignored: {type(exc).__name__}: {exc}"
