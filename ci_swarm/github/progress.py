"""The live progress comment: one comment on the issue or PR, edited as the run goes.

:class:`ProgressComment` is a :class:`~ci_swarm.ports.ProgressListener`. It is called on the asyncio event
loop's thread, so ``__call__`` only updates in-memory state and wakes a worker thread; the worker edits the
comment at most once per ``min_interval`` seconds (so a 16-agent swarm does not hit GitHub's secondary rate
limits), and :meth:`finish` always makes one final edit with the end state. A failed edit is logged and
never stops the run. Subtask ids, roles, titles and failure messages are untrusted: they go through
:mod:`ci_swarm.neutral`; ``extra`` is Markdown the publisher built the same way.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ci_swarm import neutral
from ci_swarm.models import Subtask, Usage
from ci_swarm.ports import ProgressEvent

log = logging.getLogger(__name__)
MARKER = "<!-- ci-swarm:progress run={run_id} -->"
_MARKER_UNSAFE = re.compile(r"[^\w.-]|-(?=-)")  # the run id in the marker cannot end the HTML comment
MAX_COMMENT = 65_000
ICONS = {
    "pending": "⏳",
    "running": "🏃",
    "succeeded": "✅",
    "failed": "❌",
    "timed_out": "⏱️",
    "skipped": "⏭️",
    "cancelled": "🚫",
}


@dataclass(frozen=True)
class Row:
    id: str
    role: str = ""
    title: str = ""
    status: str = "pending"
    merge: str = ""  # "", "merging", "clean", "conflicted", "skipped"
    started: float | None = None
    finished: float | None = None
    message: str = ""


@dataclass(frozen=True)
class State:
    run_id: str
    rows: tuple[Row, ...]
    started: float
    run_url: str = ""
    phase: str = "starting"  # starting | running | finished | interrupted
    cost_usd: float = 0.0
    tokens: int = 0
    extra: str = ""  # Markdown appended at the end (links, final summary)

    def row(self, sub_id: str) -> Row | None:
        return next((r for r in self.rows if r.id == sub_id), None)


def _rows(subtasks: Iterable[Subtask | str]) -> tuple[Row, ...]:
    return tuple(Row(s) if isinstance(s, str) else Row(s.id, s.role, s.title) for s in subtasks)


def initial_state(run_id: str, subtasks: Iterable[Subtask | str], run_url: str = "") -> State:
    return State(run_id, _rows(subtasks), time.time(), run_url)


def _set_row(state: State, sub_id: str, **changes: Any) -> State:
    rows = state.rows if state.row(sub_id) else (*state.rows, Row(sub_id))
    return replace(state, rows=tuple(replace(r, **changes) if r.id == sub_id else r for r in rows))


def apply(state: State, event: ProgressEvent) -> State:
    """The state after ``event`` (pure)."""
    at = event.at or time.time()
    kind = event.kind
    if kind == "run_started":
        return replace(state, phase="running")
    if kind == "subtask_started":
        return _set_row(state, event.subtask, status="running", started=at, message="")
    if kind == "subtask_finished":
        return _set_row(
            state, event.subtask, status=event.status or "succeeded", finished=at, message=event.message
        )
    if kind == "merge_started":
        return _set_row(state, event.subtask, merge="merging")
    if kind == "merge_finished":
        return _set_row(state, event.subtask, merge=event.status or "clean")
    if kind == "run_finished":
        return replace(state, phase="interrupted" if event.status == "interrupted" else "finished")
    return state


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _row_line(row: Row, now: float) -> str:
    done = row.status == "succeeded" and row.merge in ("clean", "conflicted", "")
    box = "[x]" if done and row.status == "succeeded" else "[ ]"
    label = neutral.code_span(row.id)
    label += (f" ({neutral.inline(row.role)})" if row.role else "") + (
        f" {neutral.inline(row.title)}" if row.title else ""
    )
    status = f"{ICONS.get(row.status, '•')} {row.status.replace('_', ' ')}"
    if row.status == "running" and row.started is not None:
        status += f" {_duration(now - row.started)}"
    elif row.started is not None and row.finished is not None:
        status += f" in {_duration(row.finished - row.started)}"
    if row.merge:
        status += {
            "merging": " · merging",
            "clean": " · merged",
            "conflicted": " · merged with conflicts",
        }.get(row.merge, f" · {row.merge}")
    if row.message and row.status not in ("running", "succeeded"):
        first = neutral.clean(row.message).strip().split("\n")[0]
        status += f" — {neutral.inline(first[:200])}"
    return f"- {box} {label} — {status}"


def render(state: State, now: float | None = None) -> str:
    """The comment's Markdown for ``state`` (pure but for the clock)."""
    now = time.time() if now is None else now
    done = sum(r.status not in ("pending", "running") for r in state.rows)
    title = {
        "starting": "starting",
        "running": f"running ({done}/{len(state.rows)} done)",
        "finished": "finished",
        "interrupted": "interrupted",
    }[state.phase]
    facts = [f"elapsed {_duration(now - state.started)}"]
    if state.run_url:
        facts.insert(0, f"[workflow run]({state.run_url})")
    if state.cost_usd or state.tokens:
        facts.append(f"cost ${state.cost_usd:.4f} ({state.tokens} tokens)")
    lines = [
        MARKER.format(run_id=_MARKER_UNSAFE.sub("_", state.run_id)),
        f"### 🐝 ci-swarm run {neutral.code_span(state.run_id)} — {title}",
        "",
        " · ".join(facts),
        "",
        *(_row_line(r, now) for r in state.rows),
    ]
    text = "\n".join(lines)
    if state.extra:
        text += "\n\n" + state.extra
    return neutral.clip(text, MAX_COMMENT, "… (truncated: the full report is in the job summary)")


def workflow_run_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    server, repo, run = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""


@dataclass
class _Shared:
    state: State
    dirty: bool = False
    closing: bool = False
    edits: int = 0
    failures: list[str] = field(default_factory=list)


class ProgressComment:
    """A throttled, thread-backed progress comment. ``edit`` posts the new body (an HTTP PATCH)."""

    def __init__(
        self,
        edit: Callable[[str], None],
        run_id: str,
        subtasks: Iterable[Subtask | str],
        *,
        min_interval: float = 5.0,
        run_url: str = "",
        usage: Callable[[], Usage] | None = None,
        url: str = "",
        comment_id: int | None = None,
    ) -> None:
        self._edit = edit
        self._usage = usage
        self.min_interval = min_interval
        self.url = url
        self.comment_id = comment_id
        self._shared = _Shared(initial_state(run_id, subtasks, run_url))
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=f"progress-{run_id}", daemon=True)
        self._thread.start()

    @property
    def state(self) -> State:
        with self._cond:
            return self._shared.state

    @property
    def edits(self) -> int:
        return self._shared.edits

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(self._shared.failures)

    def __call__(self, event: ProgressEvent) -> None:
        with self._cond:
            self._shared.state = apply(self._shared.state, event)
            self._shared.dirty = True
            self._cond.notify()

    def _with_usage(self, state: State) -> State:
        if self._usage is None:
            return state
        try:
            u = self._usage()
        except Exception:  # a probe must never break progress reporting
            return state
        return replace(state, cost_usd=u.cost_usd, tokens=u.tokens)

    def _post(self, state: State) -> None:
        try:
            self._edit(render(self._with_usage(state)))
            self._shared.edits += 1
        except Exception as exc:  # best effort: the run goes on; the failure is reported at the end
            log.warning("progress comment edit failed: %s", exc)
            self._shared.failures.append(str(exc))

    def _next(self, last: float) -> State | None:
        """Wait until an edit is due; the state to post, or None once closing."""
        with self._cond:
            while True:
                if self._shared.closing:
                    return None
                wait = last + self.min_interval - time.monotonic()
                if not self._shared.dirty or wait > 0:
                    self._cond.wait(wait if self._shared.dirty else None)
                    continue
                self._shared.dirty = False
                return self._shared.state

    def _work(self) -> None:
        last = float("-inf")
        while (state := self._next(last)) is not None:
            self._post(state)
            last = time.monotonic()

    def finish(self, extra: str = "", *, usage: Usage | None = None, phase: str = "finished") -> None:
        """Stop the worker and make the final edit (synchronously) with ``extra`` Markdown appended."""
        with self._cond:
            self._shared.closing = True
            self._cond.notify()
        self._thread.join()
        state = replace(self._shared.state, phase=phase, extra=extra)
        if usage is not None:
            state = replace(state, cost_usd=usage.cost_usd, tokens=usage.tokens)
            self._usage = None
        self._post(state)
