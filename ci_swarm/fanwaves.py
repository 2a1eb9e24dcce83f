"""A fan-out run's waves: which wave a subtask is in, which of a wave's subtasks run (every dependency
landed and succeeded) and which are skipped with the reason, and what each landed wave left behind.

Wave ``k`` (0-based here; ``wave=<k+1>`` in the job outputs, as ``ci-swarm plan`` prints them) holds the
subtasks at depth ``k`` of the plan's DAG (:func:`ci_swarm.dag.waves`). Its agents start from
:attr:`RunState.start` — the integration tip wave ``k-1`` produced — so a dependent starts from its
dependencies' merged work, as on one machine. A landed wave's records (subtasks, merges, notes) are kept
as ``wave-<k>.json`` beside the state (:class:`WaveLanding`, through :mod:`ci_swarm.codec`), so the land
job of the last wave reports the whole run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ci_swarm import runstate
from ci_swarm.codec import from_data, to_data
from ci_swarm.dag import waves
from ci_swarm.errors import RunStateError
from ci_swarm.models import MergeRecord, Plan, Subtask, SubtaskRecord, SubtaskStatus, Usage
from ci_swarm.naming import agent_branch
from ci_swarm.runstate import RunState


def wave_of(plan: Plan, subtask_id: str) -> int:
    """The 0-based wave of ``subtask_id`` (KeyError when the plan has no such subtask)."""
    for index, wave in enumerate(waves(plan)):
        if subtask_id in wave:
            return index
    raise KeyError(subtask_id)


def blocked(state: RunState, subtask_id: str) -> str:
    """Why ``subtask_id`` cannot run (a dependency did not succeed, or has not landed); "" when it can."""
    for dep in state.plan.subtask(subtask_id).depends_on:
        status = state.done.get(dep)
        if status is None:
            return f"dependency {dep!r} has not landed"
        if status != SubtaskStatus.SUCCEEDED.value:
            return f"dependency {dep!r} {status}"
    return ""


def runnable(state: RunState, wave: int) -> tuple[str, ...]:
    """The subtasks of ``wave`` whose dependencies all landed and succeeded, in plan order."""
    all_waves = waves(state.plan)
    ids = all_waves[wave] if wave < len(all_waves) else ()
    return tuple(sub for sub in ids if not blocked(state, sub))


def blank_record(state: RunState, sub: Subtask) -> SubtaskRecord:
    """A record of ``sub`` in the current wave before its result is known (``failed`` until then)."""
    return SubtaskRecord(
        id=sub.id,
        role=sub.role,
        title=sub.title,
        status=SubtaskStatus.FAILED,
        branch=agent_branch(state.policy.branch_prefix, state.run_id, sub.id),
        start_commit=state.start,
        paths=sub.paths,
    )


@dataclass(frozen=True)
class WaveLanding:
    """What landing one wave produced: its records in plan order, its merges, notes and the tip."""

    wave: int
    tip: str
    subtasks: tuple[SubtaskRecord, ...]
    merges: tuple[MergeRecord, ...]
    notes: tuple[str, ...] = ()

    @property
    def usage(self) -> Usage:
        return sum((r.usage for r in self.subtasks), Usage())


def attachment_name(wave: int) -> str:
    return f"wave-{wave}.json"


def encode(landing: WaveLanding) -> bytes:
    return (json.dumps(to_data(landing), indent=1, sort_keys=True) + "\n").encode()


def landed_waves(repo: Path, recorded: runstate.Recorded) -> tuple[WaveLanding, ...]:
    """Every landed wave's records, in wave order; RunStateError when one is missing or malformed."""
    found = []
    for wave in range(recorded.state.wave):
        data = runstate.attachment(repo, recorded, attachment_name(wave))
        if data is None:
            raise RunStateError(f"the state of run {recorded.state.run_id} has no record of wave {wave + 1}")
        try:
            found.append(from_data(WaveLanding, json.loads(data)))
        except (ValueError, RecursionError) as exc:
            raise RunStateError(f"the record of wave {wave + 1} is malformed: {exc}") from exc
    return tuple(found)
