"""Deleting what runs leave behind: a run's branches (integration and agent branches) in the repository and
on a remote, and the temp directories of killed runs (:func:`ci_swarm.clones.remove_stale`).

**The rule: never lose work that is not ci-swarm's.** A branch is deleted only when every commit that
deleting it would lose is ci-swarm's. The commits it would lose are those reachable from its tip and from no
other ref — local branches, tags, remote-tracking refs, fetched tips — except the run's own branches (local,
remote-tracking or fetched: they go too). A commit is ci-swarm's when its author and committer are ci-swarm
(``git.SWARM_EMAIL``) and it is either a merge commit (the merge queue's) or carries the trailer
``Swarm-Run: <this run>`` (an agent's commit). Anything else — a person's commit, a commit ci-swarm made for
another run, more than :data:`LIMIT` commits to check — keeps the branch, and the verdict names the first
such commit. A branch checked out in any work tree, or of a run still in progress (a live process holds its
clone directories), is never deleted, nor anything outside ``<prefix>/<run>``
and ``<prefix>/<run>-agents/<id>`` (``<prefix>/maintenance/…`` is a job's branch, not a run's).

Runs are chosen by id, or by age: a generated run id (``naming.new_run_id``) carries its start time (UTC);
any other id is as old as the newest tip among its branches. Remote branches are fetched into
``refs/ci-swarm/cleanup/`` for the check (dropped afterwards) and deleted with a lease on the tip that was
checked, through a :class:`Remote` (:class:`ci_swarm.github.pushing.TokenRemote`, the only module that
pushes: by remote name with git's own credentials for the CLI, by URL with the token for the Action).
"""

from __future__ import annotations

import calendar
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ci_swarm import clones, git
from ci_swarm.errors import GitError, UsageError

LIMIT = 1000  # commits checked per branch; a branch that would lose more is kept
SCRATCH = "refs/ci-swarm/cleanup/"  # where remote tips are fetched for the check
_STAMP = re.compile(r"^(\d{8}-\d{6})-[0-9a-f]{4}$")
DAY = 86_400.0


@dataclass(frozen=True)
class RunBranch:
    name: str  # without refs/heads/
    run_id: str
    agent: bool  # an agent branch (else the integration branch)
    commit: str
    time: int  # the tip's committer date


@dataclass(frozen=True)
class Verdict:
    branch: str
    where: str  # "local" or the remote's name
    deleted: bool  # deleted (or, in a dry run, would be)
    why: str = ""  # why it was kept


@dataclass(frozen=True)
class Selection:
    """Which runs: one by id, or every run older than ``older_than`` days (at ``now``)."""

    run_id: str | None = None
    older_than: float | None = None
    now: float = 0.0

    def __post_init__(self) -> None:
        if (self.run_id is None) == (self.older_than is None):
            raise UsageError("cleanup needs exactly one of --run-id R or --older-than DAYS")
        if self.older_than is not None and not (math.isfinite(self.older_than) and self.older_than >= 0):
            raise UsageError(f"--older-than takes a finite number of days >= 0, got {self.older_than}")
        if self.run_id is not None and not self.run_id.strip():
            raise UsageError("--run-id must not be empty")

    def choose(self, branches: Sequence[RunBranch]) -> tuple[RunBranch, ...]:
        if self.run_id is not None:
            return tuple(b for b in branches if b.run_id == self.run_id)
        assert self.older_than is not None
        cutoff = (self.now or time.time()) - self.older_than * DAY
        runs: dict[str, list[RunBranch]] = {}
        for branch in branches:
            runs.setdefault(branch.run_id, []).append(branch)
        return tuple(b for rid, bs in runs.items() if run_started(rid, bs) < cutoff for b in bs)


def run_started(run_id: str, branches: Iterable[RunBranch]) -> float:
    """The run id's own time when it is a generated id, else the newest tip's commit date."""
    stamp = _STAMP.match(run_id)
    if stamp:
        return float(calendar.timegm(time.strptime(stamp.group(1), "%Y%m%d-%H%M%S")))
    return float(max((b.time for b in branches), default=0))


def parse_branch(prefix: str, name: str) -> tuple[str, bool] | None:
    """(run id, is an agent branch) for a run's branch name, else None."""
    rest = name.removeprefix(f"{prefix}/")
    if rest == name or not rest or rest.startswith("maintenance/"):
        return None
    run_id, sep, sub = rest.rpartition("-agents/")
    if sep:
        return (run_id, True) if run_id and sub else None
    return rest, False


def run_of_branch(prefix: str, name: str) -> str:
    """The run whose integration branch is ``name`` ("" when it is none)."""
    parsed = parse_branch(prefix, name)
    return parsed[0] if parsed is not None and not parsed[1] else ""


def _belongs(ref: str, prefix: str, run_id: str) -> bool:
    """Whether ``ref`` is one of the run's branches: local, fetched for the check, or remote-tracking."""
    for lead in ("refs/heads/", SCRATCH):
        if ref.startswith(lead):
            parsed = parse_branch(prefix, ref[len(lead) :])
            return parsed is not None and parsed[0] == run_id
    if ref.startswith("refs/remotes/"):
        at = ref.find(f"/{prefix}/", len("refs/remotes/") - 1)
        while at >= 0:
            parsed = parse_branch(prefix, ref[at + 1 :])
            if parsed is not None and parsed[0] == run_id:
                return True
            at = ref.find(f"/{prefix}/", at + 1)
    return False


def foreign(repo: Path, run_id: str, tip: str, hidden: Sequence[str]) -> str:
    """Why deleting a branch of ``run_id`` at ``tip`` would lose work that is not ci-swarm's ("" if not).
    ``hidden``: the commits of every ref that stays."""
    commits = git.exclusive_commits(repo, tip, hidden, LIMIT)
    if len(commits) > LIMIT:
        return f"more than {LIMIT} commits only on this branch"
    for c in commits:
        if c.committer_email.lower() != git.SWARM_EMAIL:
            return f"commit {c.commit[:10]} is not ci-swarm's (committed by {c.committer})"
        if c.author_email.lower() != git.SWARM_EMAIL:
            return f"commit {c.commit[:10]} is not ci-swarm's (authored by {c.author_email})"
        if c.parents < 2 and run_id not in c.runs:
            return f"commit {c.commit[:10]} has no 'Swarm-Run: {run_id}' trailer"
    return ""


def _staying(refs: Sequence[git.RefTip], prefix: str, run_id: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.commit for r in refs if not _belongs(r.ref, prefix, run_id)))


def _run_branches(refs: Iterable[git.RefTip], lead: str, prefix: str) -> tuple[RunBranch, ...]:
    found = []
    for ref in refs:
        parsed = parse_branch(prefix, ref.ref.removeprefix(lead)) if ref.ref.startswith(lead) else None
        if parsed is not None:
            found.append(RunBranch(ref.ref.removeprefix(lead), parsed[0], parsed[1], ref.commit, ref.time))
    return tuple(found)


# ----------------------------------------------------------------------------------------------- local


def clean_local(
    repo: Path, prefix: str, selection: Selection, *, dry_run: bool = False
) -> tuple[Verdict, ...]:
    """Delete the chosen runs' branches in ``repo`` by the rule above."""
    refs = git.list_refs(repo)
    checked_out = set(git.worktree_branches(repo))
    verdicts = []
    for branch in selection.choose(_run_branches(refs, "refs/heads/", prefix)):
        ref = f"refs/heads/{branch.name}"
        why = "checked out" if ref in checked_out else ""
        why = why or ("its run is in progress" if clones.in_progress(branch.run_id) else "")
        why = why or foreign(repo, branch.run_id, branch.commit, _staying(refs, prefix, branch.run_id))
        if not why and not dry_run:
            try:
                git.delete_ref(repo, ref, branch.commit)
            except GitError as err:
                why = f"not deleted: {err}"
        verdicts.append(Verdict(branch.name, "local", not why, why))
    return tuple(verdicts)


# ---------------------------------------------------------------------------------------------- remote


class Remote(Protocol):
    """A remote the run's branches are deleted on."""

    @property
    def name(self) -> str:
        """How verdicts name the remote."""
        ...

    def branches(self, prefix: str) -> Mapping[str, str]:
        """{branch name: commit} of the remote's branches under ``prefix/``."""
        ...

    def fetch(self, refspecs: Sequence[str]) -> None: ...

    def delete(self, branches: Mapping[str, str]) -> tuple[str, ...]:
        """Delete each branch while it still holds the given commit; the names deleted."""
        ...


def clean_remote(
    repo: Path,
    remote: Remote,
    prefix: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    agents_only: bool = False,
) -> tuple[Verdict, ...]:
    """Delete the chosen runs' branches on ``remote`` by the rule above (only agent branches with
    ``agents_only``): their tips are fetched, checked, and deleted with a lease on the tip checked."""
    listed = _listed(remote.branches(prefix), prefix, agents_only)
    if not listed:
        return ()
    remote.fetch([f"+refs/heads/{name}:{SCRATCH}{name}" for name in listed])
    try:
        refs = git.list_refs(repo)
        chosen = selection.choose(_run_branches(refs, SCRATCH, prefix))
        chosen = tuple(b for b in chosen if b.name in listed)
        verdicts = {b.name: Verdict(b.name, remote.name, True) for b in chosen}
        for b in chosen:
            why = "its run is in progress" if clones.in_progress(b.run_id) else ""
            why = why or foreign(repo, b.run_id, b.commit, _staying(refs, prefix, b.run_id))
            if why:
                verdicts[b.name] = Verdict(b.name, remote.name, False, why)
        doomed = {b.name: b.commit for b in chosen if verdicts[b.name].deleted}
        if doomed and not dry_run:
            gone = set(remote.delete(doomed))
            for name in doomed.keys() - gone:
                verdicts[name] = Verdict(
                    name, remote.name, False, "not deleted: the remote refused or it moved"
                )
        return tuple(verdicts[b.name] for b in chosen)
    finally:
        for ref in git.list_refs(repo, SCRATCH):
            git.delete_ref(repo, ref.ref, ref.commit)


def _listed(heads: Mapping[str, str], prefix: str, agents_only: bool) -> frozenset[str]:
    """The remote's branches that are runs' (agent branches only with ``agents_only``)."""
    parsed = {name: parse_branch(prefix, name) for name in heads}
    return frozenset(n for n, p in parsed.items() if p is not None and (p[1] or not agents_only))
