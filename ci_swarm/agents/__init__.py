"""Agent backends. ``make_agent_factory`` picks one per subtask: the subtask's ``agent`` or the default.

Built in: ``scripted`` (simulated work and file edits) and ``command`` (an external CLI, no shell).
Other backends (the Claude agent) are registered through ``extra``.

Each backend validates its own ``agent:`` options; ``OPTION_VALIDATORS`` is the mapping of every kind this
package knows (``claude`` included: its validator needs no SDK), to pass to ``plan.load_plan`` /
``plan_from_dict`` / ``validate``; the command kind's also resolves its program (exit 4 at plan time).
``check_agent_kinds`` checks a plan's kinds and options before a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ci_swarm.agents import claude, command, scripted
from ci_swarm.agents.command import CommandAgent
from ci_swarm.agents.scripted import ScriptedAgent
from ci_swarm.errors import UsageError
from ci_swarm.models import AgentSpec, OnConflict, Plan, Subtask
from ci_swarm.plan import Validators, check_agent, did_you_mean, require_executable
from ci_swarm.ports import Agent, AgentFactory, AgentKit

Backend = Callable[[AgentSpec], Agent]

BUILTIN: Mapping[str, Backend] = MappingProxyType({"scripted": ScriptedAgent, "command": CommandAgent})
OPTION_VALIDATORS: Validators = MappingProxyType(
    {
        "scripted": scripted.check_options,
        "command": lambda options, where: _command_options(options, where),
        "claude": claude.check_options,
    }
)
_NO_EXTRA: Mapping[str, Backend] = MappingProxyType({})


def _command_options(options: Mapping[str, Any], where: str) -> None:
    """The command backend's options, then its program: found now (on the ``PATH`` of its ``env:``, else
    this process's), not once per subtask when the agents start."""
    command.check_options(options, where)
    env = options.get("env")
    path = env.get("PATH") if isinstance(env, Mapping) else None
    require_executable(
        command.command_argv(options, where)[0], where, path if isinstance(path, str) else None
    )


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
    """Fail before the run starts when a subtask (or the default), or the conflict resolver
    (``on_conflict: resolve``), names an agent kind nobody provides (UsageError), or options its backend
    refuses (PlanError)."""
    backends = {**BUILTIN, **extra}
    for sub in plan.subtasks:
        spec = sub.agent or default
        if spec.kind not in backends:
            raise UsageError(_unknown(spec.kind, sub.id, backends))
        check_agent(spec, f"subtask {sub.id!r}", OPTION_VALIDATORS)
    resolver = plan.merge.resolver
    if plan.merge.on_conflict is OnConflict.RESOLVE and resolver is not None:
        if resolver.kind not in backends:
            known, hint = ", ".join(sorted(backends)), did_you_mean(resolver.kind, backends)
            raise UsageError(
                f"unknown agent kind {resolver.kind!r} for merge.resolver (available: {known}){hint}"
            )
        check_agent(resolver, "merge.resolver", OPTION_VALIDATORS)


def _unknown(kind: str, subtask_id: str, backends: Mapping[str, Backend]) -> str:
    known = ", ".join(sorted(backends))
    hint = did_you_mean(kind, backends)
    return f"unknown agent kind {kind!r} for subtask {subtask_id!r} (available: {known}){hint}"


class BuiltinAgents:
    """The :class:`ci_swarm.ports.AgentKit` of this package: what the entry points give the service."""

    def check(self, plan: Plan, default: AgentSpec, extra: Mapping[str, Backend]) -> None:
        check_agent_kinds(plan, default, extra)

    def factory(self, default: AgentSpec, extra: Mapping[str, Backend]) -> AgentFactory:
        return make_agent_factory(default, extra)

    def command_argv(self, spec: AgentSpec, where: str) -> tuple[str, ...]:
        return tuple(command.command_argv(spec.options, where))


AGENTS: AgentKit = BuiltinAgents()

__all__ = [
    "AGENTS",
    "BUILTIN",
    "OPTION_VALIDATORS",
    "Backend",
    "BuiltinAgents",
    "CommandAgent",
    "ScriptedAgent",
    "check_agent_kinds",
    "make_agent_factory",
]
