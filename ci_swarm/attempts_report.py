"""Competing attempts as the reports show them (issue #14): the Markdown *Attempts* section — per judged
subtask the winner and why, then one compact row per attempt (agent, status, checks, diff size, score or
votes, cost, branch, note) — and the one summary line per judged subtask ``ci-swarm run`` prints.

Pure functions of the report. Every text an attempt or a reviewer wrote (agents, reasons, the judge's why,
which names failures) goes through :mod:`ci_swarm.neutral`; the JSON lives in :mod:`ci_swarm.report`.
"""

from __future__ import annotations

from ci_swarm import neutral
from ci_swarm.judge import out_reason
from ci_swarm.models import AttemptRecord, Judgement, RunReport, SubtaskRecord

WINNER = "🏆"
HEADER = ["attempt", "agent", "status", "checks", "diff", "score / votes", "cost", "branch", "note"]


def judged(report: RunReport) -> list[tuple[SubtaskRecord, Judgement]]:
    """The subtasks that ran competing attempts, in plan order, with their judgement."""
    return [(s, s.judgement) for s in report.subtasks if s.judgement is not None]


def outcome(j: Judgement) -> str:
    """``attempt 2 of 3 won`` or ``no attempt won`` (trusted words only)."""
    if j.winner is None:
        return "no attempt won"
    return f"attempt {j.winner} of {len(j.attempts)} won"


def attempts_section(report: RunReport) -> str:
    """The Markdown section: for each judged subtask one line (judge, winner, why) and its table."""
    parts = []
    for sub, j in judged(report):
        head = f"{neutral.code_span(sub.id)} · judge `{j.judge.value}`{_reviewers(j)} · **{outcome(j)}**"
        parts += [f"{head}: {neutral.inline(j.why)}", neutral.table(HEADER, [_row(a, j) for a in j.attempts])]
    return "\n\n".join(parts)


def _reviewers(j: Judgement) -> str:
    """What the reviewers' scoring cost, when they were asked."""
    return f" (reviewer ${j.usage.cost_usd:.4f})" if j.usage.requests else ""


def _row(a: AttemptRecord, j: Judgement) -> list[str]:
    return [
        f"{a.index} {WINNER}" if a.index == j.winner else str(a.index),
        neutral.cell(a.agent),
        a.status.value,
        _checks(a),
        f"{a.diff_lines} lines" if a.commit else "–",
        _score(a),
        f"${a.usage.cost_usd:.4f}" if a.usage.cost_usd else "–",
        neutral.code_cell(a.branch) if a.branch else "–",
        neutral.cell(out_reason(a) or a.reason) or "–",
    ]


def _checks(a: AttemptRecord) -> str:
    if not a.checks:
        return "–"
    failed = [c for c in a.checks if not c.ok]
    if failed:
        return "❌ " + ", ".join(neutral.code_cell(c.name) for c in failed)
    return f"✅ {len(a.checks)}/{len(a.checks)}"


def _score(a: AttemptRecord) -> str:
    said = [f"{a.score:g}"] if a.score is not None else []
    said += [f"{a.votes:g} vote(s)"] if a.votes else []
    return " · ".join(said) or "–"


def attempts_lines(report: RunReport) -> list[str]:
    """One line per judged subtask for ``ci-swarm run``'s stdout (untrusted text made one inert line by the
    caller): ``attempts: feat: checks, attempt 4 of 4 won — why``."""
    return [f"attempts: {sub.id}: {j.judge.value}, {outcome(j)} — {j.why}" for sub, j in judged(report)]
