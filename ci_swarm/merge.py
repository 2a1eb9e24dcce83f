"""The merge queue and its policy: finished agent branches land on the integration branch one at a time.

Each merge is ``git merge-tree --write-tree`` (tip, branch) → ``git commit-tree`` with two parents (tip,
agent commit) → ``git update-ref`` (compare-and-swap on the old tip). No checkout, no working tree, never
the user's index. Agent branches are never moved or deleted. A conflicted merge is finished by
:func:`ci_swarm.resolve.resolve` (hunk level, nothing lost, no marker lands); this module says who wins and
keeps the records.

Before each merge the branch's diff is compared, path by path (:mod:`ci_swarm.overlap`), with the diffs of
the subtasks merged since the branch started — only those an index by path (:class:`ChangeIndex`) names,
not every one; the rows are kept (:attr:`MergeQueue.overlaps`) and the paths predicted to conflict are
recorded on the :class:`MergeRecord`.

Git processes per merge: ``merge-tree`` and ``commit-tree``; the diffs are answered by one long-lived
``diff-tree --stdin`` process per queue (:class:`ci_swarm.git.MergeDiffs`) and the branch moves through one
long-lived ``update-ref --stdin`` process (:class:`ci_swarm.git.RefUpdates`, a compare-and-swap
transaction per merge); a conflicted merge adds :mod:`ci_swarm.resolve`'s. :meth:`MergeQueue.close` (or
the ``with`` block, or garbage collection) ends the long-lived processes.

Which side wins is :class:`MergePolicy.prefer` (:meth:`MergeQueue.ours_wins`): ``()`` ("first") keeps what
is already on the integration branch; a role list keeps the side whose subtask's role comes first (unlisted
roles rank last; ties keep the integration side). Where both sides only insert at one point,
:class:`MergePolicy.insertions` ``both`` (the default) lands both sides, the integration side first, and
counts the region on :attr:`MergeRecord.joined` (no conflict is recorded); ``keep`` treats it like any
other conflicting region.

A branch whose commit equals its start commit (the agent changed nothing) is not merged: its record is
``SKIPPED`` with ``commit`` = the unchanged integration tip.

Note: merge-tree decides conflicts with histogram diffs, ``merge-file`` re-merges with myers diffs; on
rare inputs with many repeated lines a file git flags can re-merge without a conflicting region (then
nothing is recorded for it) or regions can be cut differently. Either way every hunk lands or is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from ci_swarm import git
from ci_swarm.errors import RepoError
from ci_swarm.models import Conflict, Insertions, MergePolicy, MergeRecord, MergeStatus, Overlap, Repair
from ci_swarm.naming import TRAILER
from ci_swarm.neutral import plain
from ci_swarm.overlap import ChangeIndex, FileChange, changes, conflicting, overlaps
from ci_swarm.resolve import Parties, Resolution, resolve


@dataclass(frozen=True)
class Pending:
    """A merge computed by :meth:`MergeQueue.attempt` whose commit has not landed on the branch yet."""

    record: MergeRecord  # as it will land (``commit`` is the merge commit object)
    commit: str  # the branch's commit
    start: str  # where the branch started
    tip: str  # the integration tip it was merged onto
    changes: Mapping[str, FileChange]
    rows: tuple[Overlap, ...]
    landed: bool = False  # a skipped branch: nothing to land


@dataclass(frozen=True)
class _Merged:
    subtask: str
    start: str
    commit: str
    merge: str
    changes: Mapping[str, FileChange]


class MergeQueue:
    """Sequential merges onto ``integration_branch`` (which the caller created); see the module doc."""

    def __init__(
        self,
        repo: Path,
        integration_branch: str,
        base_commit: str,
        policy: MergePolicy,
        roles: Mapping[str, str],
    ) -> None:
        self.repo = repo
        self.integration_branch = integration_branch
        self._ref = f"refs/heads/{integration_branch}"
        tip = git.try_rev_parse(repo, self._ref)
        if tip is None:
            raise RepoError(f"integration branch {integration_branch!r} does not exist in {repo}")
        self._tip = tip
        self._policy = policy
        self._roles = dict(roles)
        self._merged: list[_Merged] = []
        self._overlaps: list[Overlap] = []
        self._position = {base_commit: 0, tip: 0}  # integration commit -> merges it contains
        self._foreign: set[str] = set()  # starts that contain none of this queue's merges
        self._index = ChangeIndex()  # the merged changes by path: entry k is self._merged[k]
        self._diffs = git.MergeDiffs(repo)
        self._refs = git.RefUpdates(repo, f"ci-swarm: merge onto {integration_branch}")

    def close(self) -> None:
        """End the queue's long-lived git processes (a later merge starts them again)."""
        self._diffs.close()
        self._refs.close()

    def __enter__(self) -> MergeQueue:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def tip(self) -> str:
        """The current integration commit."""
        return self._tip

    @property
    def overlaps(self) -> tuple[Overlap, ...]:
        """Every (earlier merged, later merged, path, kind) row seen so far."""
        return tuple(self._overlaps)

    def merge(self, subtask_id: str, branch_commit: str, start_commit: str, order: int) -> MergeRecord:
        """Merge one finished branch onto the tip; see the module doc for conflicts and skips. The merge
        seconds are the merge's own (:meth:`attempt`): a repair between attempt and land counts apart."""
        pending = self.attempt(subtask_id, branch_commit, start_commit, order)
        return pending.record if pending.landed else self.land(pending)

    def attempt(self, subtask_id: str, branch_commit: str, start_commit: str, order: int) -> Pending:
        """The merge computed, its commit object written, the branch not moved yet: :meth:`land` (or
        :meth:`land` with a repair's commit) finishes it. A skipped branch comes back already ``landed``."""
        started = time.perf_counter()
        tip = self._tip
        if branch_commit == start_commit:
            record = MergeRecord(subtask_id, order, MergeStatus.SKIPPED, commit=tip)
            return Pending(record, branch_commit, start_commit, tip, {}, (), landed=True)
        mine = changes(self._diffs.diff(start_commit, branch_commit))
        first = self._merged_since(start_commit)
        since = self._merged[first:]
        rows = [
            row
            for m in (self._merged[k] for k in self._index.candidates(mine, first))
            for row in overlaps(m.changes, mine, m.subtask, subtask_id)
        ]
        predicted = self._predict(rows, start_commit, tip, mine, subtask_id)
        result = git.merge_tree(self.repo, tip, branch_commit)
        done = Resolution(result.tree, ()) if result.clean else self._resolve(result, subtask_id, since)
        tree, found = done.tree, done.conflicts
        message = _message(subtask_id, self._roles.get(subtask_id, ""), found, done.joined)
        new = git.commit_tree(self.repo, tree, [tip, branch_commit], message)
        status = MergeStatus.CONFLICTED if found else MergeStatus.CLEAN
        seconds = round(time.perf_counter() - started, 6)
        record = MergeRecord(subtask_id, order, status, new, predicted, found, seconds, done.joined)
        return Pending(record, branch_commit, start_commit, tip, mine, tuple(rows))

    def land(self, pending: Pending, repair: Repair | None = None, landing: str = "") -> MergeRecord:
        """Move the integration branch to the pending merge — or, for a repair that was accepted, to
        ``landing`` (a descendant of the tip: the redone merge, or the resolver's commit on the merge)."""
        if pending.landed:
            raise RepoError(f"the merge of {pending.record.subtask} has landed already")
        if pending.tip != self._tip:
            raise RepoError(f"the integration moved while {pending.record.subtask} was being merged")
        new = landing or pending.record.commit
        self._refs.update(self._ref, new, pending.tip)
        self._tip = new
        sub = pending.record.subtask
        self._merged.append(_Merged(sub, pending.start, pending.commit, new, pending.changes))
        self._index.add(pending.changes)
        self._position[new] = len(self._merged)
        self._overlaps += pending.rows
        record = replace(pending.record, commit=new, repair=repair)
        if repair is not None:
            conflicts = tuple(
                replace(c, resolution=repair.outcome, resolved_by=repair.by) for c in record.conflicts
            )
            record = replace(record, conflicts=conflicts)
        return record

    # --- prediction -----------------------------------------------------------------------------

    def _merged_since(self, start: str) -> int:
        """Where the merges ``start`` does not contain begin (``self._merged[k:]``). Known for the queue's
        own commits; otherwise the merges form a chain (each the previous one's child), so those ``start``
        contains are a prefix: found by bisection, and a start without the first one is remembered (it will
        not gain later ones)."""
        if start in self._position:
            return self._position[start]
        if start in self._foreign or not self._merged:
            return 0
        if not git.is_ancestor(self.repo, self._merged[0].merge, start):
            self._foreign.add(start)
            return 0
        low, high = 1, len(self._merged)  # merged[:low] are ancestors of start; merged[high:] are not
        while low < high:
            middle = (low + high) // 2
            if git.is_ancestor(self.repo, self._merged[middle].merge, start):
                low = middle + 1
            else:
                high = middle
        return low

    def _predict(
        self, rows: list[Overlap], start: str, tip: str, mine: Mapping[str, FileChange], subtask_id: str
    ) -> tuple[str, ...]:
        """Paths predicted to conflict: pairwise rows, plus the branch against the tip itself when the
        pairwise view could be incomplete (shared paths, or a start the queue did not produce)."""
        paths = list(conflicting(rows))
        if rows or start not in self._position:
            theirs = changes(self._diffs.diff(start, tip))
            paths += conflicting(overlaps(theirs, mine, self.integration_branch, subtask_id))
        return tuple(dict.fromkeys(paths))

    # --- conflicts and policy -------------------------------------------------------------------

    def _resolve(self, result: git.MergeTree, subtask_id: str, since: Sequence[_Merged]) -> Resolution:
        join = self._policy.insertions is Insertions.BOTH
        parties = Parties(subtask_id, since, self.integration_branch, self.ours_wins, join)
        return resolve(self.repo, result, parties)

    def ours_wins(self, ours: str, theirs: str) -> bool:
        """The policy: True when the integration side (owned by ``ours``) keeps the region."""
        prefer = self._policy.prefer
        if not prefer:
            return True

        def rank(subtask: str) -> int:
            role = self._roles.get(subtask, "")
            return prefer.index(role) if role in prefer else len(prefer)

        return rank(ours) <= rank(theirs)


def _message(subtask_id: str, role: str, found: Sequence[Conflict], joined: int = 0) -> str:
    title = plain(f"Merge subtask {subtask_id}" + (f" ({role})" if role else ""))  # role: untrusted text
    body = ""
    if found:
        listed = "\n".join(
            f"- {c.path} ({c.kind.value}): kept {c.kept_subtask}, recorded {c.subtask}" for c in found
        )
        body = f"Conflicts resolved by the merge policy (the other side is in the run report):\n{listed}\n\n"
    if joined:
        body += f"{joined} insert/insert region(s) joined: both sides landed, the integration's first.\n\n"
    return f"{title}\n\n{body}{TRAILER}: {subtask_id}\n"
