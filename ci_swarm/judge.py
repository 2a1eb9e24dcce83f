"""Judging a subtask's competing attempts (issue #14): pure functions from the attempts' records (and the
reviewers' scores) to a :class:`~ci_swarm.models.Judgement` naming the winner and why.

* ``checks`` — attempts that failed, or whose checks failed, are out; among the rest the smallest diff
  (insertions + deletions) wins; equal diffs → the lower attempt index.
* ``vote`` — attempts that produced a commit are grouped by equal tree; the largest group wins; equal
  groups → the group with passing checks, then the smaller diff, then the lower index. The winner is the
  group's first attempt.
* ``reviewer`` / ``weighted`` — every attempt that passes (as for ``checks``) carries a score (``weighted``:
  the reviewers' per-role scores combined by :func:`weighted_score`); the highest score wins; equal scores →
  the smaller diff, then the lower index. No score at all (every reviewer abstained) → the ``checks`` rule.

:func:`certain` says when a winner can no longer change before every attempt has finished (only a
``vote`` majority: a group holding more than half of all attempts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from ci_swarm.models import AttemptRecord, Judge, Judgement, SubtaskStatus


def produced(attempt: AttemptRecord) -> bool:
    """The attempt's agent succeeded and its work is committed."""
    return attempt.status is SubtaskStatus.SUCCEEDED and bool(attempt.commit)


def passes(attempt: AttemptRecord) -> bool:
    """Produced a commit whose checks (if any ran) all passed."""
    return produced(attempt) and all(c.ok for c in attempt.checks)


def judge(kind: Judge, attempts: Sequence[AttemptRecord]) -> Judgement:
    """The winner of ``attempts`` under ``kind`` (scores, for reviewer judges, already on the records)."""
    if kind is Judge.VOTE:
        return _vote(attempts)
    if kind in (Judge.REVIEWER, Judge.WEIGHTED) and any(a.score is not None for a in attempts if passes(a)):
        return _scored(kind, attempts)
    return _checks(kind, attempts)


def _checks(kind: Judge, attempts: Sequence[AttemptRecord]) -> Judgement:
    alive = [a for a in attempts if passes(a)]
    if not alive:
        return Judgement(kind, None, _nobody(attempts), tuple(attempts))
    best = min(alive, key=lambda a: (a.diff_lines, a.index))
    rest = len(alive) - 1
    why = f"attempt {best.index} passes its checks with the smallest diff ({best.diff_lines} lines)"
    if kind is not Judge.CHECKS:
        why = f"no reviewer score: {why}"
    return Judgement(kind, best.index, why + (f" of {rest + 1} passing" if rest else ""), tuple(attempts))


def _vote(attempts: Sequence[AttemptRecord]) -> Judgement:
    groups: dict[str, list[AttemptRecord]] = {}
    for a in attempts:
        if produced(a):
            groups.setdefault(a.tree, []).append(a)
    if not groups:
        return Judgement(Judge.VOTE, None, _nobody(attempts), tuple(attempts))
    size = {tree: len(members) for tree, members in groups.items()}
    voted = tuple(replace(a, votes=float(size[a.tree])) if produced(a) else a for a in attempts)

    def rank(members: list[AttemptRecord]) -> tuple[int, int, int, int]:
        first = members[0]
        return (-len(members), 0 if passes(first) else 1, first.diff_lines, first.index)

    best = min(groups.values(), key=rank)
    winner = best[0]
    n = len(best)
    tied = [g for g in groups.values() if len(g) == n and g is not best]
    why = f"attempts {', '.join(str(a.index) for a in best)} produced the same tree ({n} of {len(attempts)})"
    if n == 1:
        why = f"attempt {winner.index}: no two attempts produced the same tree"
    if tied:
        why += "; tie broken by checks, then diff size, then attempt index"
    return Judgement(Judge.VOTE, winner.index, why, voted)


def _scored(kind: Judge, attempts: Sequence[AttemptRecord]) -> Judgement:
    scored = [a for a in attempts if passes(a) and a.score is not None]
    best = min(scored, key=lambda a: (-(a.score or 0.0), a.diff_lines, a.index))
    ties = [a for a in scored if a.score == best.score and a is not best]
    why = f"attempt {best.index} has the highest score ({best.score:g})"
    if ties:
        why += "; equal scores broken by diff size, then attempt index"
    return Judgement(kind, best.index, why, tuple(attempts))


def _nobody(attempts: Sequence[AttemptRecord]) -> str:
    reasons = "; ".join(f"attempt {a.index}: {out_reason(a)}" for a in attempts)
    return f"no attempt succeeded ({reasons})" if attempts else "no attempt ran"


def out_reason(attempt: AttemptRecord) -> str:
    """Why an attempt cannot win (empty when it passes)."""
    if attempt.status is not SubtaskStatus.SUCCEEDED:
        return attempt.reason or attempt.status.value
    if not attempt.commit:
        return attempt.reason or "its work could not be committed"
    failed = next((c for c in attempt.checks if not c.ok), None)
    return f"check {failed.name!r} failed" if failed is not None else ""


def weighted_score(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Σ weight × score / Σ weight over the roles that scored (an abstaining role — None — has no say);
    None when no role scored."""
    said = {role: s for role, s in scores.items() if s is not None}
    total = sum(weights.get(role, 1.0) for role in said)
    if not said or total <= 0:
        return None
    return sum(weights.get(role, 1.0) * s for role, s in said.items()) / total


def certain(kind: Judge, finished: Sequence[AttemptRecord], total: int) -> bool:
    """No attempt still running can change the winner: a ``vote`` group holds more than half of ``total``.
    Every other judge waits for all attempts."""
    if kind is not Judge.VOTE:
        return False
    counts: dict[str, int] = {}
    for a in finished:
        if produced(a):
            counts[a.tree] = counts.get(a.tree, 0) + 1
    return any(2 * n > total for n in counts.values())


def default_judge(own: Judge | None, plan: Judge | None, has_checks: bool) -> Judge:
    """The subtask's judge, else the plan's, else ``checks`` when the run has checks, else ``vote``."""
    return own or plan or (Judge.CHECKS if has_checks else Judge.VOTE)


NEEDS_REVIEWER = frozenset({Judge.REVIEWER, Judge.WEIGHTED})
