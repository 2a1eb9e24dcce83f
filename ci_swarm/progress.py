"""Progress on the terminal: a rich live table in a terminal, plain timestamped lines otherwise.

Plain lines may land in a CI log that GitHub's runner reads for workflow commands: each is one line
(:func:`ci_swarm.logtext.one_line` folds line breaks in titles, roles and reasons) printed without wrapping,
so untrusted text never starts a line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ci_swarm.logtext import one_line
from ci_swarm.models import Subtask
from ci_swarm.ports import ProgressEvent

ICONS = {
    "pending": "⏳ pending",
    "running": "🔄 running",
    "succeeded": "✅ done",
    "failed": "❌ failed",
    "timed_out": "⏱️ timed out",
    "skipped": "⏭️ skipped",
    "cancelled": "🚫 cancelled",
    "clean": "🔀 merged",
    "conflicted": "⚠️ merged with conflicts",
}


class TerminalProgress:
    """A ProgressListener; use as a context manager around the run."""

    def __init__(self, console: Console, subtasks: Sequence[Subtask], *, live: bool | None = None) -> None:
        self.console = console
        self.subtasks = list(subtasks)
        self.state = {s.id: "pending" for s in subtasks}
        self.merge = {s.id: "" for s in subtasks}
        self.started = time.monotonic()
        self.use_live = console.is_terminal if live is None else live
        self._live: Live | None = None

    def __enter__(self) -> TerminalProgress:
        if self.use_live:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(et, ev, tb)
            self._live = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("subtask_started", "subtask_finished") and event.subtask in self.state:
            self.state[event.subtask] = event.status or "running"
        elif event.kind == "merge_finished" and event.subtask in self.merge:
            self.merge[event.subtask] = event.status
        if self._live is not None:
            self._live.update(self._table())
        else:
            self._line(event)

    def _line(self, event: ProgressEvent) -> None:
        elapsed = time.monotonic() - self.started
        if event.kind == "subtask_started":
            text = f"{event.subtask} started: {event.message}"
        elif event.kind == "subtask_finished":
            text = f"{event.subtask} {event.status}" + (f": {event.message}" if event.message else "")
        elif event.kind == "merge_finished":
            text = f"merged {event.subtask} ({event.status}, {event.message})"
        else:
            return
        line = f"[dim][{elapsed:6.2f}s][/] {escape(one_line(text))}"
        self.console.print(line, highlight=False, markup=True, soft_wrap=True)

    def _table(self) -> Table:
        table = Table(title=f"ci-swarm · {time.monotonic() - self.started:.1f}s")
        for col in ("subtask", "role", "agent", "merge"):
            table.add_column(col)
        for s in self.subtasks:
            table.add_row(
                s.id,
                s.role,
                ICONS.get(self.state[s.id], self.state[s.id]),
                ICONS.get(self.merge[s.id], self.merge[s.id]),
            )
        return table
