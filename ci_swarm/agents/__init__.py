"""Agent backends. ``make_agent_factory`` picks one per subtask: the subtask's ``agent`` or the default.

Built in: ``scripted`` (simulated work and file edits) and ``command`` (an external CLI, no shell).
Other backends (the Claude agent) are registered through ``extra``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from ci_swarm.agents.command import CommandAgent
from ci_swarm.agents.scripted import ScriptedAgent
from ci_swarm.errors import UsageError
from ci_swarm.models import AgentSpec, Plan, Subtask
from ci_swarm.ports import Agent, AgentFactory

Backend = Callable[[AgentSpec], Agent]

BUILTIN: Mapping[str, Backend] = MappingProxyType({"scripted": ScriptedAgent, "command": CommandAgent})
_NO_EXTRA: Mapping[str, Backend] = MappingProxyType({})


def make_agent_factory(default: AgentSpec, extra: Mapping[str, Backend] = _NO_EXTRA) -> AgentFactory:
    """A factory giving each subtask its agent (``subtask.agent`` or ``default``); UsageError names an
    unknown kind."""
    backends = {**BUILTIN, **extra}

    def factory(subtask: Subtask) -> Agent:
        spec = subtask.agent or default
        backend = backends.get(spec.kind)
        if backend is None:
            raise UsageError(_unknown(spec.kind, subtask.id, backends))
        return backend(spec)

    return factory


def check_agent_kinds(plan: Plan, default: AgentSpec, extra: Mapping[str, Backend] = _NO_EXTRA) -> None:
    """Fail before the run starts when a subtask (or the default) names an agent kind nobody provides."""
    backends = {**BUILTIN, **extra}
    for sub in plan.subtasks:
        kind = (sub.agent or default).kind
        if kind not in backends:
            raise UsageError(_unknown(kind, sub.id, backends))


def _unknown(kind: str, subtask_id: str, backends: Mapping[str, Backend]) -> str:
    known = ", ".join(sorted(backends))
    return f"unknown agent kind {kind!r} for subtask {subtask_id!r} (available: {known})"


__all__ = ["BUILTIN", "Backend", "CommandAgent", "ScriptedAgent", "check_agent_kinds", "make_agent_factory"]
