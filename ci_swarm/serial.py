"""``--compare-serial``: the serial baseline of a maintenance swarm. After the swarm, the same command agent
runs once over the union of every shard's paths, in a scratch clone at the swarm's base, through the same
agent backend and sandbox as the swarm's agents; its time (clone setup, the command, collection: what the
swarm's wall time counts too) is set beside the swarm's wall time, and its tree is compared with the
swarm's integration tree. The scratch branch is deleted afterwards; its commit is named in the report.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.clones import GitClones
from ci_swarm.concurrency import in_thread
from ci_swarm.errors import SwarmError, UsageError, WorkLeftOut
from ci_swarm.git import Identity
from ci_swarm.models import AgentOutcome, AgentSpec, Plan, RunReport, SerialComparison, Subtask
from ci_swarm.ports import Agent, AgentContext, AgentFactory
from ci_swarm.sandbox import SandboxPolicy
from ci_swarm.workspace import Workspace

SERIAL_ID = "serial"
IDENTITY = Identity("ci-swarm serial baseline", "ci-swarm@users.noreply.github.com")


def serial_subtask(plan: Plan, default: AgentSpec) -> Subtask:
    """One subtask doing every shard's work: the first subtask's text, the union of all ``paths``, the
    plan's one command agent. UsageError unless every subtask runs the same command agent."""
    specs = {repr(s.agent or default) for s in plan.subtasks}
    spec = plan.subtasks[0].agent or default if plan.subtasks else default
    if len(specs) != 1 or spec.kind != "command":
        raise UsageError(
            "--compare-serial needs a plan whose subtasks all run the same command agent "
            "(e.g. --shard GLOB --agent command --agent-command '…')"
        )
    paths = tuple(dict.fromkeys(p for s in plan.subtasks for p in s.paths))
    first = plan.subtasks[0]
    return replace(first, id=SERIAL_ID, paths=paths, depends_on=(), agent=spec)


async def compare_serial(
    sub: Subtask,
    report: RunReport,
    agents: AgentFactory,
    *,
    sandbox: SandboxPolicy | None,
    timeout: float | None = None,
    branch_prefix: str = "swarm",
) -> SerialComparison:
    """Run ``sub`` once from ``report.base`` in a scratch clone and compare it with the swarm's result."""
    repo = git.open_repo(Path(report.repo))
    branch = f"{branch_prefix}/{report.run_id}-serial"
    spaces = GitClones(repo, None, f"{report.run_id}-serial")
    began = time.monotonic()
    ws = await in_thread(spaces.make, sub, branch, report.base, undo=spaces.dispose)
    plan = Plan(report.task, (sub,))
    ctx = AgentContext(report.run_id, report.task, plan, timeout, sandbox=sandbox)
    try:
        agent_began = time.monotonic()
        outcome = await _run_agent(agents(sub), sub, ws, ctx, timeout)
        agent_seconds = time.monotonic() - agent_began
        message = f"ci-swarm serial baseline of {report.run_id}"
        try:
            commit, _ = await in_thread(spaces.collect, ws, message, IDENTITY)
        except WorkLeftOut as exc:  # what could be committed is compared; the report says what was not
            commit = exc.tip
            outcome = replace(outcome, error="; ".join(e for e in (outcome.error, str(exc)) if e))
    finally:
        await in_thread(spaces.dispose, ws)
        await in_thread(spaces.close)
    seconds = time.monotonic() - began
    try:
        same = git.tree_of(repo, commit) == git.tree_of(repo, report.integration_commit)
    finally:
        git.run(repo, "update-ref", "-d", f"refs/heads/{branch}", ok=(0, 1))
    swarm = report.stats.wall_seconds
    return SerialComparison(
        seconds=round(seconds, 3),
        agent_seconds=round(agent_seconds, 3),
        swarm_seconds=swarm,
        ratio=round(seconds / swarm, 3) if swarm > 0 else 0.0,
        commit=commit,
        same_tree=same,
        exit_status=outcome.exit_status,
        error=outcome.error,
    )


async def _run_agent(
    agent: Agent, sub: Subtask, ws: Workspace, ctx: AgentContext, timeout: float | None
) -> AgentOutcome:
    """The agent's outcome; a timeout or a SwarmError is a failed outcome (its work is still compared)."""
    try:
        async with asyncio.timeout(timeout):
            return await agent.run(sub, ws, ctx)
    except TimeoutError:
        return AgentOutcome(ok=False, error=f"timed out after {timeout:g}s")
    except SwarmError as exc:
        return AgentOutcome(ok=False, error=str(exc))
