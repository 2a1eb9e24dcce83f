"""The merge queue run over commits that already exist: ``ci-swarm merge`` and publishing's re-merge.

* :func:`merge_report` / :func:`merge_branches` — ``ci-swarm merge BRANCH... --base REV``: the merge phase
  alone, on existing branches, with the run's report.
* :func:`remerge` — a finished run's merges re-run, in their order, onto a new tip (publishing calls it,
  through the :class:`ci_swarm.ports.Remerge` it is given, when the target branch moved while the swarm ran).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ci_swarm import git
from ci_swarm.errors import GitError, RepoError
from ci_swarm.merge import MergeQueue
from ci_swarm.models import (
    MergePolicy,
    MergeRecord,
    MergeStatus,
    Overlap,
    Resolved,
    RunReport,
    RunStats,
    SubtaskRecord,
    SubtaskStatus,
)
from ci_swarm.naming import ROLE_TRAILER, TRAILER, new_run_id


@dataclass(frozen=True)
class _Branch:
    name: str
    subtask: str
    role: str
    commit: str
    start: str  # its merge base with the base


def merge_report(
    repo: Path, branches: Sequence[str], base: str, integration: str | None, policy: MergePolicy
) -> RunReport:
    base_commit = git.rev_parse(repo, base)
    run_id = new_run_id()
    branch = integration or f"swarm/merge-{run_id}"
    started = time.time()
    found = _branches(repo, branches, base_commit)
    tip, merges, overlaps = _merge(repo, found, base_commit, branch, policy)
    wall = time.time() - started
    records = tuple(
        SubtaskRecord(
            id=m.subtask,
            role="agent",
            title=b.name,
            status=SubtaskStatus.SUCCEEDED,
            branch=b.name,
            start_commit=b.start,
            commit=b.commit,
            files=git.changed_files(repo, b.start, b.commit),
        )
        for b, m in zip(found, merges, strict=True)
    )
    stats = RunStats(wall, 0.0, 0.0, 0.0, 0.0, 1, 1)
    return RunReport(
        run_id=run_id,
        task=f"merge {len(branches)} branch(es) onto {base}",
        repo=str(repo),
        base=base_commit,
        integration_branch=branch,
        integration_commit=tip,
        stats=stats,
        subtasks=records,
        merges=merges,
        overlap=overlaps,
        merge_policy=policy,
    )


def merge_branches(
    repo: Path, branches: Sequence[str], base: str, integration_branch: str, policy: MergePolicy
) -> tuple[str, tuple[MergeRecord, ...], tuple[Overlap, ...]]:
    """Create ``integration_branch`` at ``base`` and merge ``branches`` onto it in order.

    A branch's subtask id is its tip's ``Swarm-Subtask`` trailer, else the last component of its name
    (made unique with the full name when two collide); its role the ``Swarm-Role`` trailer, else
    "agent"; its start the merge base with ``base``. Returns (tip, merge records, overlap rows).
    """
    base_commit = git.rev_parse(repo, base)
    return _merge(repo, _branches(repo, branches, base_commit), base_commit, integration_branch, policy)


def _merge(
    repo: Path, branches: Sequence[_Branch], base_commit: str, integration_branch: str, policy: MergePolicy
) -> tuple[str, tuple[MergeRecord, ...], tuple[Overlap, ...]]:
    git.create_branch(repo, integration_branch, base_commit)
    queue = MergeQueue(repo, integration_branch, base_commit, policy, {b.subtask: b.role for b in branches})
    records = tuple(
        queue.merge(b.subtask, b.commit, b.start, order) for order, b in enumerate(branches, start=1)
    )
    return queue.tip, records, queue.overlaps


def _branches(repo: Path, names: Sequence[str], base_commit: str) -> list[_Branch]:
    """Each branch read once (see :func:`merge_branches`); a colliding subtask id becomes the full name."""
    found: list[_Branch] = []
    for name in names:
        b = _branch(repo, name, base_commit)
        found.append(replace(b, subtask=name) if b.subtask in {f.subtask for f in found} else b)
    return found


def _branch(repo: Path, name: str, base_commit: str) -> _Branch:
    """One branch's subtask id, role, commit and start; RepoError naming an unknown one."""
    commit = git.try_rev_parse(repo, name)
    if commit is None:
        raise RepoError(f"unknown branch {name!r} in {repo}")
    try:
        start = git.merge_base(repo, base_commit, commit)
    except GitError as exc:
        raise RepoError(f"branch {name!r} shares no history with the base {base_commit[:12]}") from exc
    sub_id = git.trailer(repo, commit, TRAILER) or PurePosixPath(name).name
    role = git.trailer(repo, commit, ROLE_TRAILER) or "agent"
    return _Branch(name, sub_id, role, commit, start)


def remerge(repo: Path, report: RunReport, tip: str) -> RunReport:
    """``report``'s merges re-run, in their order, onto ``tip`` on the branch
    ``<integration branch>-onto-<tip[:10]>`` (created at ``tip`` if missing); skipped merges stay out.
    A merge an agent repaired (``on_conflict``) is re-run with the repair's commit — the redone work, or the
    resolver's commit on the conflicted merge — so the repair is not lost; it is not re-judged by the
    checks here (the note says so)."""
    branch = f"{report.integration_branch}-onto-{tip[:10]}"
    if not git.branch_exists(repo, branch):
        git.create_branch(repo, branch, tip)
    roles = {s.id: s.role for s in report.subtasks}
    queue = MergeQueue(repo, branch, tip, report.merge_policy, roles)
    subs = {s.id: s for s in report.subtasks}
    merges = []
    for order, m in enumerate(sorted(report.merges, key=lambda m: m.order), 1):
        sub = subs.get(m.subtask)
        if sub is None or not sub.commit or m.status is MergeStatus.SKIPPED:
            continue
        commit, start = sub.commit, sub.start_commit
        if m.repair is not None and m.resolution in (Resolved.REDONE, Resolved.RESOLVED):
            commit, start = m.repair.commit, m.repair.onto  # the repaired work, not the half it replaced
        merges.append(queue.merge(sub.id, commit, start, order))
    note = f"re-merged onto {tip[:10]} (the target branch moved while the swarm ran)"
    if any(m.resolution in (Resolved.REDONE, Resolved.RESOLVED) for m in report.merges):
        note += "; agents' conflict repairs were re-merged as they landed, not checked again on the new tip"
    return replace(
        report,
        integration_branch=branch,
        integration_commit=queue.tip,
        merges=tuple(merges),
        overlap=queue.overlaps,
        notes=(*report.notes, note),
    )
