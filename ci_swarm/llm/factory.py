"""The session's consumers, built from a session: the Claude planner, the ``claude`` agent backend, the
attempts' reviewer and the review panel's voters.

These constructors live here, not on :class:`~ci_swarm.llm.session.LLMSession`, so the session imports
none of its consumers (the planner and the agent take the session; nothing points back).
"""

from __future__ import annotations

from collections.abc import Callable

from ci_swarm.agents.claude import ClaudeAgent
from ci_swarm.llm.planner import ClaudePlanner
from ci_swarm.llm.reviewer import ClaudeReviewer, ClaudeVoter
from ci_swarm.llm.session import LLMSession
from ci_swarm.models import AgentSpec
from ci_swarm.ports import Agent


def claude_planner(session: LLMSession) -> ClaudePlanner:
    """A ``ports.Planner`` asking the session's model (what ``session.planner()`` used to return)."""
    return ClaudePlanner(session)


def claude_backend(session: LLMSession) -> Callable[[AgentSpec], Agent]:
    """For ``make_agent_factory(default, extra={"claude": claude_backend(session)})``."""

    def backend(spec: AgentSpec) -> Agent:
        return ClaudeAgent(session, spec)

    return backend


class ClaudeSession(LLMSession):
    """An :class:`LLMSession` that also hands out its consumers: ``ports.ModelSession`` for the service
    (``planner()``, ``agent_backend()``, ``reviewer()``, ``panel_voter()``). Build it with
    ``ClaudeSession.from_env(settings)``."""

    def planner(self) -> ClaudePlanner:
        return claude_planner(self)

    def agent_backend(self) -> Callable[[AgentSpec], Agent]:
        return claude_backend(self)

    def reviewer(self) -> ClaudeReviewer:
        return ClaudeReviewer(self)

    def panel_voter(self) -> ClaudeVoter:
        return ClaudeVoter(self)
