"""The deterministic sharding planner: split the files matching a glob across N subtasks.

The multi-file refactor / maintenance case: ``--shard "src/**/*.py" --agents 4 --task "..."``. Files are
sorted and cut into contiguous chunks whose sizes differ by at most one; the same input always gives the
same plan. The caller supplies the file list (the CLI takes it from ``git.tree_files``).

A run of shards whose agent nobody chose (no command, no API key: the scripted agent with no edits) would
change nothing and "succeed": :func:`require_editing_agent` refuses it (exit 4) before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import AgentSpec, Plan, Subtask
from ci_swarm.workspace import matches_any


def shard_plan(
    files: Sequence[str],
    pattern: str,
    agents: int,
    task: str,
    role: str = "builder",
    agent: AgentSpec | None = None,
) -> Plan:
    """A plan of ``shard-1..N`` subtasks, each owning a contiguous slice of the sorted matching files."""
    if agents < 1:
        raise UsageError(f"--agents must be at least 1, got {agents}")
    if not task.strip():
        raise UsageError("sharding needs a task: what should each shard do to its files?")
    matching = select(files, pattern)
    if not matching:
        raise PlanError(f"no file matches {pattern!r}: nothing to shard")
    chunks = split(matching, agents)
    subtasks = tuple(
        Subtask(
            id=f"shard-{n}",
            role=role,
            title=f"{task} ({len(chunk)} file{'s' if len(chunk) != 1 else ''}, shard {n}/{len(chunks)})",
            instructions=_instructions(task, chunk),
            paths=chunk,
            agent=agent,
        )
        for n, chunk in enumerate(chunks, 1)
    )
    rationale = f"{len(matching)} files matching {pattern!r} split into {len(chunks)} contiguous shards"
    return Plan(task=task, subtasks=subtasks, rationale=rationale)


NEEDS_AGENT = (
    "needs an agent that edits files: pass --agent command --agent-command '…' or set ANTHROPIC_API_KEY"
)


def require_editing_agent(agent: AgentSpec, chosen: bool, what: str = "--shard") -> None:
    """UsageError (exit 4) when the shards would run the fallback agent — ``scripted`` with no edits,
    because no agent was chosen (``chosen``: a flag, the config or the job named one) — which does
    nothing. An agent chosen on purpose is left alone (a dry run of the plumbing)."""
    if not chosen and agent.kind == "scripted" and not agent.options.get("edits"):
        raise UsageError(f"{what} {NEEDS_AGENT}")


def select(files: Sequence[str], pattern: str) -> tuple[str, ...]:
    """The files matching the glob (``**`` spans directories; a plain directory covers what is under it),
    sorted and without duplicates."""
    return tuple(sorted({f for f in files if matches_any(f, [pattern.strip("/")])}))


def split(items: Sequence[str], parts: int) -> tuple[tuple[str, ...], ...]:
    """Contiguous chunks, sizes differing by at most one (the first ones larger); no empty chunk."""
    parts = min(parts, len(items))
    size, extra = divmod(len(items), parts) if parts else (0, 0)
    chunks = []
    start = 0
    for n in range(parts):
        end = start + size + (1 if n < extra else 0)
        chunks.append(tuple(items[start:end]))
        start = end
    return tuple(chunks)


def _instructions(task: str, files: Sequence[str]) -> str:
    listing = "\n".join(f"- {f}" for f in files)
    return f"{task}\n\nApply this to these files only (your shard):\n{listing}"
