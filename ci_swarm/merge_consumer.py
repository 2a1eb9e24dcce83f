"""The merge consumer: takes subtasks whose work was settled ok, one at a time, in merge order (as they
complete, like a merge queue, or in plan order with dependencies first), hands each to the
:class:`~ci_swarm.merge.MergeQueue` in a worker thread, and then releases it to the scheduler: merged, its
dependents may start; not merged, they are skipped.

With a ``repair`` hook (``merge.on_conflict: redo | resolve``, :mod:`ci_swarm.repair`) a conflicted merge
is computed first (:meth:`MergeQueue.attempt`), the hook runs while the integration branch waits, and then
the repair's commit — or, refused, the policy's keep-one-side merge — lands. Cancelled during the repair,
the keep result still lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from ci_swarm.concurrency import in_thread
from ci_swarm.dag import topological_order
from ci_swarm.errors import SwarmError
from ci_swarm.ledger import Ledger
from ci_swarm.merge import MergeQueue, Pending
from ci_swarm.models import MergeOrder, MergeRecord, MergeStatus, Plan, Repair

Release = Callable[[str, bool, str], None]
Repairer = Callable[[Pending], Awaitable[tuple[Repair, str]]]  # see ci_swarm.repair.repairer


class MergeConsumer:
    def __init__(
        self,
        plan: Plan,
        queue: MergeQueue,
        ledger: Ledger,
        release: Release,
        emit: Callable[..., None],
        notes: list[str],
        repair: Repairer | None = None,
        on_merged: Callable[[str], None] | None = None,
    ) -> None:
        self.merges: list[MergeRecord] = []
        self._plan, self._queue, self._ledger = plan, queue, ledger
        self._release, self._emit, self._notes = release, emit, notes
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._repair = repair
        self._on_merged = on_merged  # told each new integration tip (speculative checks), on the loop

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
            if self._repair is None:
                await in_thread(
                    self._merge_one, sub_id, order
                )  # cancelled mid-merge: the merge still finishes
            else:
                await self._merge_repairing(sub_id, order, self._repair)
            if self._on_merged is not None:
                self._on_merged(self._queue.tip)

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
            self._failed(sub_id, order, exc)
            return
        self._finished(record)

    async def _merge_repairing(self, sub_id: str, order: int, repair: Repairer) -> None:
        """Attempt, repair a conflicted merge, land (see the module doc)."""
        self._emit("merge_started", sub_id)
        state = self._ledger.states[sub_id]
        opened: list[Pending] = []

        def attempt() -> Pending | None:
            try:
                pending = self._queue.attempt(sub_id, state.commit, state.start, order)
            except SwarmError as exc:
                self._failed(sub_id, order, exc)
                return None
            if pending.landed or not pending.record.conflicts:
                self._landed(pending)
                return None
            opened.append(pending)  # a cancelled caller still finds it and lands the keep result
            return pending

        try:
            pending = await in_thread(attempt)
            if pending is None:
                return
            fixed, landing = await repair(pending)
        except asyncio.CancelledError:
            if opened:
                self._landed(opened[0])
            raise
        await in_thread(self._landed, pending, fixed, landing)

    def _landed(self, pending: Pending, repair: Repair | None = None, landing: str = "") -> None:
        sub_id = pending.record.subtask
        try:
            record = pending.record if pending.landed else self._queue.land(pending, repair, landing)
        except SwarmError as exc:
            self._failed(sub_id, pending.record.order, exc)
            return
        self._finished(record)

    def _failed(self, sub_id: str, order: int, exc: SwarmError) -> None:
        self._notes.append(f"merge of {sub_id} failed: {exc}")
        self._finished(MergeRecord(sub_id, order, MergeStatus.SKIPPED))

    def _finished(self, record: MergeRecord) -> None:
        self.merges.append(record)
        sub_id, merged = record.subtask, record.status is not MergeStatus.SKIPPED
        self._emit("merge_finished", sub_id, record.status.value, f"{len(record.conflicts)} conflict(s)")
        self._release(sub_id, merged, "" if merged else f"merge of {sub_id} failed")
