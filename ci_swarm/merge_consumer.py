"""The merge consumer: takes subtasks whose work was settled ok, one at a time, in merge order (as they
complete, like a merge queue, or in plan order with dependencies first), hands each to the
:class:`~ci_swarm.merge.MergeQueue` in a worker thread, and then releases it to the scheduler: merged, its
dependents may start; not merged, they are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from ci_swarm.concurrency import in_thread
from ci_swarm.dag import topological_order
from ci_swarm.errors import SwarmError
from ci_swarm.ledger import Ledger
from ci_swarm.merge import MergeQueue
from ci_swarm.models import MergeOrder, MergeRecord, MergeStatus, Plan

Release = Callable[[str, bool, str], None]


class MergeConsumer:
    def __init__(
        self,
        plan: Plan,
        queue: MergeQueue,
        ledger: Ledger,
        release: Release,
        emit: Callable[..., None],
        notes: list[str],
    ) -> None:
        self.merges: list[MergeRecord] = []
        self._plan, self._queue, self._ledger = plan, queue, ledger
        self._release, self._emit, self._notes = release, emit, notes
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()

    def offer(self, sub_id: str) -> None:
        """``sub_id`` was settled ok (on the loop's thread)."""
        if self._plan.merge.order is not MergeOrder.PLAN:
            self._inbox.put_nowait(sub_id)

    def close(self) -> None:
        """Nothing more will be offered."""
        self._inbox.put_nowait(None)

    async def run(self) -> None:
        order = 0
        async for sub_id in self._in_merge_order():
            order += 1
            await in_thread(self._merge_one, sub_id, order)  # cancelled mid-merge: the merge still finishes

    async def _in_merge_order(self) -> AsyncIterator[str]:
        if self._plan.merge.order is MergeOrder.PLAN:
            for sub_id in topological_order(self._plan):
                if (await self._ledger.settled(sub_id)).ok:
                    yield sub_id
            return
        while (offered := await self._inbox.get()) is not None:
            yield offered

    def _merge_one(self, sub_id: str, order: int) -> None:
        self._emit("merge_started", sub_id)
        state = self._ledger.states[sub_id]
        try:
            record = self._queue.merge(sub_id, state.commit, state.start, order)
        except SwarmError as exc:
            record = MergeRecord(sub_id, order, MergeStatus.SKIPPED)
            self._notes.append(f"merge of {sub_id} failed: {exc}")
        self.merges.append(record)
        merged = record.status is not MergeStatus.SKIPPED
        self._emit("merge_finished", sub_id, record.status.value, f"{len(record.conflicts)} conflict(s)")
        self._release(sub_id, merged, "" if merged else f"merge of {sub_id} failed")
