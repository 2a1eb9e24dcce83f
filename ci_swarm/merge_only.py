"""`ci-swarm merge BRANCH... --base REV`: the merge phase alone, on existing branches, same report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ci_swarm import git
from ci_swarm.merge import merge_branches
from ci_swarm.models import MergePolicy, RunReport, RunStats, SubtaskRecord, SubtaskStatus
from ci_swarm.naming import new_run_id


def merge_report(
    repo: Path, branches: Sequence[str], base: str, integration: str | None, policy: MergePolicy
) -> RunReport:
    base_commit = git.rev_parse(repo, base)
    run_id = new_run_id()
    branch = integration or f"swarm/merge-{run_id}"
    started = time.time()
    tip, merges, overlaps = merge_branches(repo, branches, base_commit, branch, policy)
    wall = time.time() - started
    records = tuple(
        SubtaskRecord(
            id=m.subtask,
            role="agent",
            title=name,
            status=SubtaskStatus.SUCCEEDED,
            branch=name,
            start_commit=git.merge_base(repo, base_commit, name),
            commit=git.rev_parse(repo, name),
            files=git.changed_files(repo, git.merge_base(repo, base_commit, name), name),
        )
        for name, m in zip(branches, merges, strict=True)
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
