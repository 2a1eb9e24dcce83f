"""The process around a run, shared by every entry point: one event loop per command, and signals.

``run_sync`` runs a coroutine in a fresh event loop in which SIGINT / SIGTERM cancel it (the orchestrator
turns that cancellation into a report of what was done; anywhere else it becomes :class:`Interrupted`).
``sigterm_interrupts`` covers the time outside that loop (reading the event, publishing): SIGTERM raises
:class:`Interrupted` there, so the runner's cancel always ends in a one-line error and exit 130.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, TypeVar

from ci_swarm.errors import Interrupted

T = TypeVar("T")


def run_sync(main: Callable[[], Awaitable[T]], on_interrupt: Callable[[], None] | None = None) -> T:
    """Run ``main()`` in a fresh event loop; SIGINT / SIGTERM cancel it."""

    async def wrapper() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        installed = []
        if threading.current_thread() is threading.main_thread() and task is not None:
            stop = _Stop(task, on_interrupt)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, stop)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        try:
            return await main()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(wrapper())
    except asyncio.CancelledError as exc:
        raise Interrupted(
            "interrupted before the run could report (committed agent work stays on its branches)"
        ) from exc
    finally:
        _restore_sigterm()


class _Stop:
    """The signal handler: the first SIGINT/SIGTERM cancels the run, which then winds down (every agent's work
    committed, merges finished, clones removed, the report written). Later signals — a runner sends SIGINT
    and then SIGTERM — are ignored: cancelling again would abort that clean-up half-way."""

    def __init__(self, task: asyncio.Task[Any], on_interrupt: Callable[[], None] | None) -> None:
        self._task, self._on_interrupt, self.signalled = task, on_interrupt, 0

    def __call__(self) -> None:
        self.signalled += 1
        if self.signalled > 1:
            return
        if self._on_interrupt:
            self._on_interrupt()
        self._task.cancel()


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("cancelled (SIGTERM)")


_sigterm_depth = 0


def _restore_sigterm() -> None:
    """asyncio resets the SIGTERM handler it borrowed to the default: put ours back if it was active."""
    if _sigterm_depth:
        catch_sigterm()


def catch_sigterm() -> None:
    """SIGTERM raises Interrupted (outside the run's own event loop)."""
    with suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _raise_interrupted)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Interrupted`; the previous handler is restored on exit."""
    global _sigterm_depth
    previous = signal.getsignal(signal.SIGTERM)
    catch_sigterm()
    _sigterm_depth += 1
    try:
        yield
    finally:
        _sigterm_depth -= 1
        with suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous)
