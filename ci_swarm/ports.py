"""The seams the core defines and adapters implement (agents, planners, progress listeners, the model
session, the publisher and its progress comment).

The core (plan, schedule, merge, report, run, service) only ever sees these Protocols; the anthropic and
PyGithub adapters live in ``ci_swarm.llm``, ``ci_swarm.agents.claude`` and ``ci_swarm.github``, and the entry
points (``cli.py``, ``action.py``) create them through small factories imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ci_swarm.models import (
    AgentOutcome,
    AgentSpec,
    Check,
    PanelVote,
    Plan,
    Request,
    RunReport,
    Subtask,
    Usage,
)
from ci_swarm.workspace import Workspace

if TYPE_CHECKING:  # the sandbox's helpers import the ports (concurrency → ProgressEvent)
    from ci_swarm.sandbox import SandboxPolicy


@dataclass(frozen=True)
class AgentContext:
    """What every agent gets besides its subtask and workspace."""

    run_id: str
    task: str
    plan: Plan
    timeout: float | None = None
    log: Callable[[str], None] = field(default=lambda line: None)
    sandbox: SandboxPolicy | None = None  # how untrusted processes run (None: whatever is available)
    pass_env: tuple[str, ...] = ()  # variables a command agent's `pass_env` may name (the config's list)
    checks: tuple[Check, ...] = ()  # the run's checks: the Claude agent's run_checks tool (issue #12)


class Agent(Protocol):
    """Does one subtask's work inside its workspace. Never commits, pushes or holds credentials:
    the orchestrator commits the worktree when the agent returns."""

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome: ...


class AgentFactory(Protocol):
    def __call__(self, subtask: Subtask) -> Agent: ...


AgentBackend = Callable[[AgentSpec], Agent]


class AgentKit(Protocol):
    """The agent backends an entry point wires into the service (``ci_swarm.agents.AGENTS``): the core never
    imports the agents package. ``extra`` adds backends made at run time (the Claude agent of a model
    session)."""

    def check(self, plan: Plan, default: AgentSpec, extra: Mapping[str, AgentBackend]) -> None:
        """Fail before the run when a kind nobody provides or options its backend refuses are named."""
        ...

    def factory(self, default: AgentSpec, extra: Mapping[str, AgentBackend]) -> AgentFactory: ...

    def command_argv(self, spec: AgentSpec, where: str) -> tuple[str, ...]:
        """The argv a ``command`` agent would run (PlanError naming ``where`` when it has none)."""
        ...


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


class ProgressComment(ProgressListener, Protocol):
    """A progress listener that lives somewhere else (the sticky GitHub comment): finished once, with a
    final Markdown text, the final usage and the phase (``finished`` / ``interrupted``)."""

    @property
    def failures(self) -> tuple[str, ...]:
        """Edits that failed (the run went on); the publisher names the last one."""
        ...

    def finish(self, extra: str = "", *, usage: Usage | None = None, phase: str = "finished") -> None: ...


class ProgressStarter(Protocol):
    """Starts the progress comment once the plan is known (what the service needs of a publisher)."""

    def start(
        self,
        request: Request | None,
        run_id: str,
        subtasks: Iterable[Subtask | str],
        usage: Callable[[], Usage] | None = None,
    ) -> ProgressComment: ...


class Published(Protocol):
    """What publishing a run produced: the branch, the pull request, and the report as published (re-merged
    when the target moved; None: the run's own report)."""

    @property
    def report(self) -> RunReport | None: ...

    @property
    def branch(self) -> str: ...

    @property
    def pr_number(self) -> int | None: ...

    @property
    def pr_url(self) -> str: ...


class Publisher(ProgressStarter, Protocol):
    """Puts a run on the forge: its progress comment, the push and pull request, reactions."""

    def publish(
        self, repo: Path, report: RunReport, progress: ProgressComment | None = None
    ) -> Published: ...

    def react(self, content: str) -> None: ...

    def branch_name(self, report: RunReport) -> str: ...


class ModelSession(Protocol):
    """One model client for a whole run (planner and agents share its limiter, usage ledger and budget).
    Created only when a run needs a model; closed inside the event loop that used it."""

    @property
    def budget_stopped(self) -> bool:
        """True once the budget stopped an agent (its partial work is committed, not merged)."""
        ...

    def planner(self) -> Planner: ...

    def agent_backend(self) -> AgentBackend: ...

    def reviewer(self) -> Reviewer:
        """The attempts' reviewer (judge ``reviewer``/``weighted``), asking this session's model."""
        ...

    def panel_voter(self) -> PanelVoter:
        """A review-panel voter (``review:``), asking this session's model."""
        ...

    def usage(self) -> Usage: ...

    def notes(self) -> tuple[str, ...]:
        """Lines for the report: the budget stop, models without a known price."""
        ...

    def budget_reason(self) -> str | None: ...

    async def aclose(self) -> None: ...


# --- issue #14: judging attempts and voting on the result --------------------------------------------------


@dataclass(frozen=True)
class AttemptView:
    """What a reviewer sees of one attempt: its index, diff (against the subtask's start) and check output."""

    index: int
    diff: str
    checks: str = ""


@dataclass(frozen=True)
class Score:
    """A reviewer's verdict on one attempt: a score in [0, 10] and a one-line reason; ``abstained`` when its
    answer was malformed twice (then it has no say)."""

    index: int
    score: float
    reason: str = ""
    abstained: bool = False


class Reviewer(Protocol):
    """Scores every passing attempt of a subtask in one structured answer (validated, repaired once)."""

    async def score(
        self, subtask: Subtask, attempts: Sequence[AttemptView], role: str = ""
    ) -> tuple[Score, ...]: ...

    def usage(self, subtask: str = "") -> Usage:
        """What the reviewer's requests cost so far: all of them, or only those scoring ``subtask``'s."""
        ...


class PanelVoter(Protocol):
    """One review-panel voter: reads the integration diff and approves or requests changes, with reasons."""

    async def vote(self, task: str, diff: str, role: str, voter: str) -> PanelVote: ...
