"""The process around a run (ci_swarm/runtime.py): signals cancel a run once, and only once."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from ci_swarm.errors import Interrupted
from ci_swarm.runtime import run_sync


def test_the_first_signal_cancels_later_ones_do_not_abort_the_wind_down() -> None:
    """A runner's cancel sends SIGINT and then SIGTERM: the second must not cancel the clean-up the first
    started (the orchestrator's wind-down awaits its merges and clones)."""
    steps: list[str] = []
    told: list[str] = []

    async def run() -> str:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            steps.append("cancelled")
            os.kill(os.getpid(), signal.SIGTERM)  # lands while winding down
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)  # the clean-up awaits: a second cancel would abort it here
            steps.append("wound down")
        return "report"

    assert run_sync(run, on_interrupt=lambda: told.append("stop")) == "report"
    assert steps == ["cancelled", "wound down"] and told == ["stop"]


def test_a_cancel_nobody_handles_is_interrupted() -> None:
    async def run() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(60)

    with pytest.raises(Interrupted, match="committed agent work stays on its branches"):
        run_sync(run)
