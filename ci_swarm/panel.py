"""The review panel on the whole result (issue #14, ``review: {voters, approve, roles}``).

After verification, ``voters`` reviewers read the integration diff (base..integration) at once and each
votes approve or request-changes with reasons, through the ``ports.PanelVoter`` port (the Claude voter in
``llm/reviewer.py``). The votes land on ``RunReport.panel``; the publisher opens the PR ready for review only
with ``approve`` approvals, else as a draft with the reasons as one review. An abstaining voter (malformed
twice, or its model call failed) counts as no approval.

The diff is bounded: past ``MAX_DIFF_CHARS`` it is cut at a line boundary, the voters are told so and get
the full list of changed files, and the report carries a note — a panel approves only what it read, so a
cut diff is said out loud rather than hidden. A run that was interrupted, or merged nothing, gets no panel
(a note says why): there is nothing to vote on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.concurrency import in_thread
from ci_swarm.models import Panel, ReviewPolicy, RunReport
from ci_swarm.ports import PanelVoter

MAX_DIFF_CHARS = 100_000  # characters of the integration diff the voters read
MAX_FILES_LISTED = 500
GENERAL_ROLE = "overall quality"


@dataclass(frozen=True)
class PanelDiff:
    text: str  # what the voters read
    total: int  # characters of the whole diff
    cut: bool

    @property
    def note(self) -> str:
        """The report's line about a cut diff ("" when whole)."""
        if not self.cut:
            return ""
        return (
            f"The review panel read only the first {MAX_DIFF_CHARS} of {self.total} characters of the "
            "integration diff (the rest was cut; the voters saw the full list of changed files)."
        )


def seats(policy: ReviewPolicy) -> tuple[tuple[str, str], ...]:
    """(voter name, role) for each voter: the roles cycled, ``overall quality`` when none is given."""
    roles = policy.roles or (GENERAL_ROLE,)
    return tuple(
        (f"reviewer {i} ({roles[(i - 1) % len(roles)]})", roles[(i - 1) % len(roles)])
        for i in range(1, policy.voters + 1)
    )


def integration_diff(repo: Path, base: str, tip: str, limit: int = MAX_DIFF_CHARS) -> PanelDiff:
    """The diff base..tip, cut at the last line boundary before ``limit`` characters (then with the list
    of every changed file appended)."""
    text = git.diff(repo, base, tip, context=3, text=True)
    if len(text) <= limit:
        return PanelDiff(text, len(text), cut=False)
    head = text[:limit]
    head = head[: head.rfind("\n") + 1] or head
    files = git.changed_files(repo, base, tip)
    listed = "\n".join(files[:MAX_FILES_LISTED])
    more = f"\n… and {len(files) - MAX_FILES_LISTED} more" if len(files) > MAX_FILES_LISTED else ""
    tail = (
        f"\n[... the diff is cut here: {len(text) - len(head)} more characters were not shown. "
        f"Every changed file ({len(files)}):]\n{listed}{more}\n"
    )
    return PanelDiff(head + tail, len(text), cut=True)


def skipped(report: RunReport) -> str:
    """Why the panel does not vote on ``report`` ("" when it does)."""
    if report.interrupted:
        return "The review panel did not vote: the run was interrupted."
    if not report.integration_commit or report.integration_commit == report.base:
        return "The review panel did not vote: nothing was merged."
    return ""


async def review(repo: Path, report: RunReport, policy: ReviewPolicy, voter: PanelVoter) -> RunReport:
    """The report with the panel's votes (``report.panel``), or with a note saying why there is none."""
    reason = skipped(report)
    if reason:
        return replace(report, notes=(*report.notes, reason))
    diff = await in_thread(integration_diff, repo, report.base, report.integration_commit)
    votes = await asyncio.gather(
        *(voter.vote(report.task, diff.text, role, name) for name, role in seats(policy))
    )
    notes = (*report.notes, diff.note) if diff.cut else report.notes
    return replace(report, panel=Panel(tuple(votes), policy.approve), notes=notes)
