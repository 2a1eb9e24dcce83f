"""The seams the core defines and adapters implement (agents, planners, progress listeners).

The core (plan, schedule, merge, report, run) only ever sees these Protocols; the anthropic and
PyGithub adapters live in ``ci_swarm.llm``, ``ci_swarm.agents.claude`` and ``ci_swarm.github``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ci_swarm.models import AgentOutcome, Plan, Request, RunReport, Subtask
from ci_swarm.workspace import Workspace


@dataclass(frozen=True)
class AgentContext:
    """What every agent gets besides its subtask and workspace."""

    run_id: str
    task: str
    plan: Plan
    timeout: float | None = None
    log: Callable[[str], None] = field(default=lambda line: None)


class Agent(Protocol):
    """Does one subtask's work inside its workspace. Never commits, pushes or holds credentials:
    the orchestrator commits the worktree when the agent returns."""

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome: ...


class AgentFactory(Protocol):
    def __call__(self, subtask: Subtask) -> Agent: ...


class Planner(Protocol):
    """Turns a request into a validated plan."""

    async def plan(self, request: Request, repo: Path) -> Plan: ...


@dataclass(frozen=True)
class ProgressEvent:
    """Emitted as the run goes: kind is one of run_started, subtask_started, subtask_finished,
    merge_started, merge_finished, run_finished."""

    kind: str
    subtask: str = ""
    status: str = ""
    message: str = ""
    at: float = 0.0


class ProgressListener(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


class Remerge(Protocol):
    """Publishing's re-merge: ``report``'s merges re-run, in their order, onto ``tip`` (the target branch
    moved while the swarm ran); the report as re-merged. The core's is :func:`ci_swarm.merge_only.remerge`;
    the entry points give it to the publisher, which never imports the merge queue."""

    def __call__(self, repo: Path, report: RunReport, tip: str) -> RunReport: ...
