"""Speculative checks (issue #12): while agents still run, the checks run on the integration tips the merge
queue produces, so that verification after the run finds most of what it needs already judged.

One check run at a time, always on the newest tip offered: a tip offered while a run is busy waits, and a
newer offer replaces it (the newest tip is the one verification checks first; older tips matter only to a
bisection, which remembers what it can). Results are kept by tree, as verification keeps its own, and
handed to :func:`ci_swarm.verify.verify_integration` (``known=``). :meth:`Speculation.drain` waits for
the running check and the waiting tip once the merge phase is over; :meth:`Speculation.cancel` stops
everything (an interrupted run).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ci_swarm import git
from ci_swarm.models import CheckResult
from ci_swarm.verify import CheckRunner

Results = tuple[CheckResult, ...]


class Speculation:
    """Checks on intermediate integration tips, one at a time (see the module doc). Used on the loop's
    thread only."""

    def __init__(self, repo: Path, run: CheckRunner) -> None:
        self._repo = repo
        self._run = run
        self._waiting: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.known: dict[str, Results] = {}  # tree → results
        self.runs = 0

    def offer(self, commit: str) -> None:
        """A new integration tip: checked next (replacing a tip that was still waiting)."""
        self._waiting = commit
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while self._waiting is not None:
            commit, self._waiting = self._waiting, None
            tree = await asyncio.to_thread(git.tree_of, self._repo, commit)
            if tree in self.known:
                continue
            self.runs += 1
            self.known[tree] = await self._run(commit)

    async def drain(self) -> None:
        """Wait until the running check and the waiting tip are judged."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def cancel(self) -> None:
        """Stop: nothing more starts, the running check is cancelled (its sandbox kills the process)."""
        self._waiting = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():  # the caller itself is being cancelled: pass it on
                    raise
