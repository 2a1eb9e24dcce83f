"""Thread bridging for the event loop: blocking git work runs in worker threads, and cancellation never
leaves that work half-done."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any


async def in_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run blocking work in the loop's executor. If cancelled meanwhile, wait for the work anyway when it
    had started, so that a branch, clone or commit is never left half-made; work that had not started yet
    is simply dropped (it never runs)."""
    loop = asyncio.get_running_loop()
    job: concurrent.futures.Future[None] = concurrent.futures.Future()

    def call() -> None:
        if not job.set_running_or_notify_cancel():
            return  # cancelled before it started
        try:
            fn(*args)
        except BaseException as exc:
            job.set_exception(exc)
        else:
            job.set_result(None)

    loop.run_in_executor(None, call)
    try:
        await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        if not job.cancelled():  # it was running: let it finish (its result is not needed)
            concurrent.futures.wait([job])
        raise
