"""``land --all-remaining``: every wave not landed yet run inside the land job, on its one machine.

The workflow fans out a fixed number of waves; the last land job runs the rest itself. The remaining
subtasks (those whose dependencies did not succeed are ``skipped`` first, transitively) go through the
service's own run (:func:`service.run_request`: the orchestrator, same backends, command policy, sandbox)
as one plan from the integration tip the landed waves produced, merged in plan order, under a scratch
branch prefix; the integration branch is then fast-forwarded to its tip and each agent branch set where
the fanned-out jobs' would be. The result is one :class:`WaveLanding` for the first remaining wave (every
record and merge) and an empty one for each later wave, all at the final tip.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.dag import topological_order, waves
from ci_swarm.fanwaves import WaveLanding, blank_record
from ci_swarm.models import MergeOrder, MergeRecord, OnConflict, Request, SubtaskRecord, SubtaskStatus
from ci_swarm.naming import agent_branch, integration_branch
from ci_swarm.run import RunOptions
from ci_swarm.runstate import RunState
from ci_swarm.service import RunRequest, ServiceOptions, run_request

SCRATCH_PREFIX = "ci-swarm-land-job"  # the one-machine run's own branches, deleted when it ends
RAN_HERE = "waves {first}-{last} ran in the land job on one machine (land --all-remaining)"


def skipped_ahead(state: RunState) -> dict[str, str]:
    """Subtasks not landed that cannot run — a dependency failed or was skipped — with the reason."""
    skipped: dict[str, str] = {}
    for sub_id in topological_order(state.plan):
        if sub_id in state.done:
            continue
        for dep in state.plan.subtask(sub_id).depends_on:
            status = "skipped" if dep in skipped else state.done.get(dep, SubtaskStatus.SUCCEEDED.value)
            if status != SubtaskStatus.SUCCEEDED.value:
                skipped[sub_id] = f"dependency {dep!r} {status}"
                break
    return skipped


def run_rest(
    repo: Path, state: RunState, wiring: ServiceOptions, secrets: tuple[str, ...], merged: int
) -> tuple[WaveLanding, ...]:
    """Every remaining wave run here from ``state.start``; ``merged`` merges landed before them."""
    skipped = skipped_ahead(state)
    todo = [s for s in state.plan.subtasks if s.id not in state.done and s.id not in skipped]
    records = [
        replace(blank_record(state, state.plan.subtask(i)), status=SubtaskStatus.SKIPPED, error=why)
        for i, why in skipped.items()
    ]
    tip, merges = state.start, tuple[MergeRecord, ...]()
    if todo:
        ids = {s.id for s in todo}
        subs = tuple(replace(s, depends_on=tuple(d for d in s.depends_on if d in ids)) for s in todo)
        keep = replace(state.plan.merge, on_conflict=OnConflict.KEEP)
        plan = replace(state.plan, subtasks=subs, checks=(), merge=keep, review=None)  # checked at the end
        policy = state.policy
        order = MergeOrder(policy.merge_order) if policy.merge_order else None
        options = RunOptions(
            repo=repo,
            base=state.start,
            max_agents=policy.max_agents,
            timeout=policy.timeout,
            merge_order=order,
            run_id=state.run_id,
            branch_prefix=SCRATCH_PREFIX,
            default_agent=policy.default_agent,
            secrets=secrets,
        )
        job = RunRequest(Request(task=state.plan.task, source="cli"), options, plan)
        try:
            report = run_request(job, replace(wiring, sandbox=policy.sandbox or wiring.sandbox)).report
        finally:
            _drop(repo, _scratch_branches(state, [s.id for s in todo]))
        tip = report.integration_commit
        git.update_ref(repo, f"refs/heads/{state.integration_branch}", tip, old=state.start)
        records += [_moved(repo, state, rec) for rec in report.subtasks]
        merges = tuple(replace(m, order=merged + m.order) for m in report.merges)
    count = len(waves(state.plan))
    note = RAN_HERE.format(first=state.wave + 1, last=count)
    first = WaveLanding(state.wave, tip, tuple(records), merges, (note,))
    return (first, *(WaveLanding(w, tip, (), ()) for w in range(state.wave + 1, count)))


def _scratch_branches(state: RunState, ids: list[str]) -> tuple[str, ...]:
    """The one-machine run's branch names: its integration branch and each agent's."""
    names = (agent_branch(SCRATCH_PREFIX, state.run_id, sub) for sub in ids)
    return (integration_branch(SCRATCH_PREFIX, state.run_id), *names)


def _moved(repo: Path, state: RunState, rec: SubtaskRecord) -> SubtaskRecord:
    """``rec`` on the agent branch a fanned-out job would have set (set here at its commit)."""
    branch = agent_branch(state.policy.branch_prefix, state.run_id, rec.id)
    if rec.commit and rec.commit != rec.start_commit:
        git.create_branch(repo, branch, rec.commit)
    return replace(rec, branch=branch)


def _drop(repo: Path, scratch: tuple[str, ...]) -> None:
    for name in scratch:
        tip = git.try_ref(repo, f"refs/heads/{name}")
        if tip is not None:
            git.delete_ref(repo, f"refs/heads/{name}", tip)
