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
from ci_swarm.errors import RepoError
from ci_swarm.merge import MergeQueue, Pending
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
    tip, merged, overlaps = _merge(repo, found, base_commit, branch, policy)
    wall = time.time() - started
    merges = tuple(m.record for m in merged)
    records = tuple(
        SubtaskRecord(
            id=m.record.subtask,
            role="agent",
            title=b.name,
            status=SubtaskStatus.SUCCEEDED,
            branch=b.name,
            start_commit=b.start,
            commit=b.commit,
            files=_files(m),
        )
        for b, m in zip(found, merged, strict=True)
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
    branches_ = _branches(repo, branches, base_commit)
    tip, merged, overlaps = _merge(repo, branches_, base_commit, integration_branch, policy)
    return tip, tuple(m.record for m in merged), overlaps


def _merge(
    repo: Path, branches: Sequence[_Branch], base_commit: str, integration_branch: str, policy: MergePolicy
) -> tuple[str, list[Pending], tuple[Overlap, ...]]:
    """The branches merged in order; each merge as it landed (its record, and the branch's changes)."""
    git.create_branch(repo, integration_branch, base_commit)
    roles = {b.subtask: b.role for b in branches}
    merged = []
    with MergeQueue(repo, integration_branch, base_commit, policy, roles) as queue:
        for order, b in enumerate(branches, start=1):
            pending = queue.attempt(b.subtask, b.commit, b.start, order)
            merged.append(pending if pending.landed else replace(pending, record=queue.land(pending)))
        return queue.tip, merged, queue.overlaps


def _files(merged: Pending) -> tuple[str, ...]:
    """The paths the branch changed (``git diff --name-only --no-renames``: both names of a rename), read
    from the diff the merge already made, in git's (byte) order."""
    return tuple(sorted(merged.changes, key=lambda p: p.encode("utf-8", "surrogateescape")))


def _branches(repo: Path, names: Sequence[str], base_commit: str) -> list[_Branch]:
    """Every branch read at once (see :func:`merge_branches`): its commit, start and trailers, three git
    processes for them all; RepoError naming an unknown branch or one that shares no history with the
    base. A colliding subtask id becomes the full name."""
    commits = git.resolve_commits(repo, names)
    unknown = next((name for name in names if commits[name] is None), None)
    if unknown is not None:
        raise RepoError(f"unknown branch {unknown!r} in {repo}")
    ids = [c for c in commits.values() if c is not None]
    starts = git.merge_bases_with(repo, base_commit, ids)
    labels = git.trailers(repo, ids, (TRAILER, ROLE_TRAILER))
    found: list[_Branch] = []
    for name in names:
        commit = commits[name] or ""
        start = starts[commit]
        if start is None:
            raise RepoError(f"branch {name!r} shares no history with the base {base_commit[:12]}")
        sub_id, role = labels.get(commit, (None, None))
        b = _Branch(name, sub_id or PurePosixPath(name).name, role or "agent", commit, start)
        found.append(replace(b, subtask=name) if b.subtask in {f.subtask for f in found} else b)
    return found


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
    queue.close()
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
