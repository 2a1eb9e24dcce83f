"""Test doubles for the review panel and the attempts' reviewer: a voter whose verdicts are given per role,
and a reviewer that scores every attempt the same (both record what they were asked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ci_swarm.models import PanelVote, Subtask, Usage
from ci_swarm.ports import AttemptView, Score


@dataclass
class FakeVoter:
    """A ``ports.PanelVoter``: approves unless its role is in ``refuse`` (then requests changes with that
    reason); records each call's (task, diff, role, voter)."""

    refuse: Mapping[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def vote(self, task: str, diff: str, role: str, voter: str) -> PanelVote:
        self.calls.append((task, diff, role, voter))
        reason = self.refuse.get(role)
        spent = Usage(requests=1, turns=1, cost_usd=0.01)
        if reason is not None:
            return PanelVote(voter, role, approve=False, reasons=reason, usage=spent)
        return PanelVote(voter, role, approve=True, reasons="looks right", usage=spent)


@dataclass
class FakeReviewer:
    """A ``ports.Reviewer`` giving every attempt ``score``."""

    score_given: float = 5.0

    async def score(
        self, subtask: Subtask, attempts: Sequence[AttemptView], role: str = ""
    ) -> tuple[Score, ...]:
        return tuple(Score(a.index, self.score_given, "fine") for a in attempts)

    def usage(self, subtask: str = "") -> Usage:
        return Usage()
