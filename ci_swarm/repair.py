"""Conflicted merges repaired by agents (issue #12, ``merge.on_conflict``), accepted only through a gate.

When the merge queue's merge of a subtask conflicts, the policy's hunk-level keep-one-side result is
computed first (:meth:`ci_swarm.merge.MergeQueue.attempt`) and the integration branch waits while an agent
tries to do better:

* ``redo`` — the later subtask's own agent runs again in a fresh sandboxed clone at the integration tip
  before the merge (the work that landed first), its instructions followed by the conflict records (path,
  lines, base / kept / other text, both subtasks' titles and instructions). Its commit is on
  ``<agent branch>.redo`` (a dot is no subtask id character, so no branch of the run has that name) and is
  merged onto the tip (clean: it starts there).
* ``resolve`` — a resolver agent (``merge.resolver``; the run's default agent if unset) gets a clone at the
  keep-one-side merge commit plus the conflict records and writes the resolution; its commit, on
  ``<agent branch>.resolve``, sits on top of that merge.

The gate (:func:`screen`, then the checks): no conflict-marker line added (in every file, even one git
would diff as binary); only the conflicted files (``resolve``) or the subtask's paths (``redo``; without
``paths``: the files its first commit changed plus the conflicted ones) touched — named files compared as
names, never read as globs; a resolver deletes no conflicted file (unless a conflict on it is a
modify/delete or a rename) and changes no file's type or mode (no symlink or submodule in place of the
text); the agent succeeded; and the checks pass on the candidate integration commit.
Anything else is ``refused`` with a one-line reason and the keep result lands. Either way the agent's
commit stays on its branch (ci-swarm commits it, as for every agent); nothing is lost.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.concurrency import in_thread
from ci_swarm.errors import SwarmError, WorkLeftOut
from ci_swarm.merge import Pending
from ci_swarm.merge_consumer import Repairer
from ci_swarm.models import (
    AgentSpec,
    CheckResult,
    Conflict,
    ConflictKind,
    OnConflict,
    Plan,
    Repair,
    Resolved,
    Subtask,
    Usage,
)
from ci_swarm.naming import TRAILER, agent_branch, agent_identity, commit_message
from ci_swarm.neutral import plain
from ci_swarm.ports import AgentContext, AgentFactory
from ci_swarm.verify import CheckRunner
from ci_swarm.workspace import matches_any
from ci_swarm.worktrees import Workspaces

_MARKER = re.compile(r"\+(?:(?:<{7}|>{7}|\|{7})(?: .*)?|={7})\r?")


@dataclass(frozen=True)
class RepairKit:
    """What a repair needs from its run: the repository, the plan (its ``merge`` policy), the run's names,
    a workspace maker, the agent backends, the agents' context, and the checks."""

    repo: Path
    plan: Plan
    run_id: str
    prefix: str
    spaces: Workspaces
    agents: AgentFactory
    context: AgentContext
    check: CheckRunner
    default_agent: AgentSpec
    timeout: float | None = None


@dataclass(frozen=True)
class _Job:
    sub: Subtask  # the subtask the agent runs (instructions with the conflict records)
    branch: str
    start: str  # where its clone starts
    allowed: tuple[str, ...]  # the globs of the paths it may change (a redo's subtask paths)
    exact: frozenset[str]  # the files it may change, by name (conflicted files; a redo's own files)
    outcome: Resolved  # what an accepted attempt is
    by: str
    conflicts: tuple[Conflict, ...] = ()  # a resolver's: its deletions and modes are checked too


def repairer(kit: RepairKit) -> Repairer:
    """The merge consumer's hook: a conflicted :class:`Pending` → (the :class:`Repair`, the commit to land,
    or "" when refused)."""

    async def run(pending: Pending) -> tuple[Repair, str]:
        return await attempt(kit, pending)

    return run


async def attempt(kit: RepairKit, pending: Pending) -> tuple[Repair, str]:
    job = _redo(kit, pending) if kit.plan.merge.on_conflict is OnConflict.REDO else _resolve(kit, pending)
    began = time.monotonic()
    usage, commit = Usage(), ""
    try:
        commit, usage, failure = await _run_agent(kit, job)
        if failure:
            raise _Refused(failure)
        landing = await in_thread(_landing, kit.repo, job, pending, commit)
        refusal = await in_thread(screen, kit.repo, job.start, commit, job.allowed, job.exact, job.conflicts)
        if refusal:
            raise _Refused(refusal)
        results = await kit.check(landing)
        bad = next((r for r in results if not r.ok), None)
        if bad is not None:
            how = "timed out" if bad.timed_out else f"exit {bad.exit_status}"
            raise _Refused(f"the checks fail on it: {bad.name} ({how})", results)
    except _Refused as refused:
        repair = _record(
            job, pending, Resolved.REFUSED, commit, refused.reason, refused.results, began, usage
        )
        return repair, ""
    except SwarmError as exc:
        repair = _record(job, pending, Resolved.REFUSED, commit, str(exc), (), began, usage)
        return repair, ""
    return _record(job, pending, job.outcome, commit, "", results, began, usage), landing


class _Refused(Exception):
    def __init__(self, reason: str, results: tuple[CheckResult, ...] = ()) -> None:
        super().__init__(reason)
        self.reason, self.results = reason, results


def _record(
    job: _Job,
    pending: Pending,
    outcome: Resolved,
    commit: str,
    reason: str,
    results: tuple[CheckResult, ...],
    began: float,
    usage: Usage,
) -> Repair:
    seconds = round(time.monotonic() - began, 3)
    return Repair(outcome, job.by, commit, job.start, pending.tip, reason, results, seconds, usage)


# --- the two kinds of job -------------------------------------------------------------------------------


def _redo(kit: RepairKit, pending: Pending) -> _Job:
    sub = kit.plan.subtask(pending.record.subtask)
    conflicts = pending.record.conflicts
    brief = briefing(kit.plan, conflicts, redo=True)
    again = replace(sub, instructions=f"{sub.instructions}\n\n{brief}".strip())
    exact = () if sub.paths else (*_changed(kit.repo, pending.start, pending.commit), *_paths(conflicts))
    kind = (sub.agent or kit.default_agent).kind
    branch = agent_branch(kit.prefix, kit.run_id, sub.id) + ".redo"
    by = f"{kind} (redo of {sub.id})"
    return _Job(again, branch, pending.tip, sub.paths, frozenset(exact), Resolved.REDONE, by)


def _resolve(kit: RepairKit, pending: Pending) -> _Job:
    sub_id, conflicts = pending.record.subtask, pending.record.conflicts
    spec = kit.plan.merge.resolver or kit.default_agent
    paths = _paths(conflicts)
    resolver = Subtask(
        id=sub_id,
        role="resolver",
        title=f"resolve the conflicts of merging {sub_id}",
        instructions=briefing(kit.plan, conflicts, redo=False),
        paths=paths,
        agent=spec,
    )
    branch = agent_branch(kit.prefix, kit.run_id, sub_id) + ".resolve"
    by = f"{spec.kind} (resolver)"
    return _Job(
        resolver, branch, pending.record.commit, (), frozenset(paths), Resolved.RESOLVED, by, conflicts
    )


async def _run_agent(kit: RepairKit, job: _Job) -> tuple[str, Usage, str]:
    """The job's agent in its own clone; its work committed on the job's branch whatever happened:
    (commit, usage, why it failed — "" when it succeeded and changed something)."""
    ws = await in_thread(kit.spaces.make, job.sub, job.branch, job.start, undo=kit.spaces.dispose)
    usage, failure = Usage(), ""
    try:
        try:
            outcome = await asyncio.wait_for(kit.agents(job.sub).run(job.sub, ws, kit.context), kit.timeout)
            usage = outcome.usage
            if not outcome.ok:
                failure = f"its agent failed: {plain(outcome.error or 'no reason given')}"
        except TimeoutError:
            failure = f"its agent exceeded the time limit of {kit.timeout:g}s"
        except Exception as exc:  # an agent's crash refuses its repair; the run goes on with keep
            failure = f"its agent crashed: {type(exc).__name__}: {plain(str(exc))}"
        note = "failed" if failure else ""
        message = commit_message(job.sub, kit.run_id, note)
        try:
            commit, _files = await in_thread(kit.spaces.collect, ws, message, agent_identity(job.sub))
        except WorkLeftOut as exc:
            return exc.tip, usage, failure or f"part of its work could not be committed: {exc}"
    finally:
        await in_thread(kit.spaces.dispose, ws)
    if not failure and commit == job.start:
        failure = "its agent changed nothing"
    return commit, usage, failure


def _landing(repo: Path, job: _Job, pending: Pending, commit: str) -> str:
    """The integration commit an accepted job lands: the redone commit merged onto the tip (clean: it
    started there), or the resolver's commit itself (it sits on the conflicted merge)."""
    if job.outcome is Resolved.RESOLVED:
        return commit
    merged = git.merge_tree(repo, pending.tip, commit)
    if not merged.clean:
        raise _Refused("the redone work does not merge cleanly onto the integration")
    sub = pending.record.subtask
    message = f"{plain(f'Merge subtask {sub} (redone on the integration)')}\n\n{TRAILER}: {sub}\n"
    return git.commit_tree(repo, merged.tree, [pending.tip, commit], message)


# --- the gate -------------------------------------------------------------------------------------------


def screen(
    repo: Path,
    start: str,
    commit: str,
    allowed: Sequence[str],
    exact: Collection[str] = (),
    conflicts: Sequence[Conflict] = (),
) -> str:
    """Why ``start..commit`` may not land ("" when it may): a file neither in ``exact`` nor matching a glob
    of ``allowed``; with a resolver's ``conflicts``, a conflicted file deleted (unless a conflict on it is a
    modify/delete or a rename) or any file's type or mode changed; or an added conflict-marker line."""
    changes = _raw_changes(repo, start, commit)
    outside = [c.path for c in changes if c.path not in exact and not matches_any(c.path, allowed)]
    if outside:
        return f"it changed files outside what it may touch: {_shown(outside)}"
    if conflicts:
        refusal = _resolver_refusal(changes, conflicts)
        if refusal:
            return refusal
    marked = marker_files(_text_diff(repo, start, commit))
    if marked:
        return "it left conflict markers in " + ", ".join(plain(f) for f in marked[:5])
    return ""


@dataclass(frozen=True)
class _Change:
    path: str
    old_mode: str  # "000000" when added
    new_mode: str  # "000000" when deleted
    status: str  # A, D, M, T (no renames)


_DELETABLE = (ConflictKind.MODIFY_DELETE, ConflictKind.RENAME)
_REGULAR = ("100644", "100755")


def _resolver_refusal(changes: Sequence[_Change], conflicts: Sequence[Conflict]) -> str:
    deletable = {c.path for c in conflicts if c.kind in _DELETABLE}
    deleted = [c.path for c in changes if c.status == "D" and c.path not in deletable]
    if deleted:
        return f"it deleted a conflicted file: {_shown(deleted)}"
    moded = [
        f"{c.path} ({c.old_mode} → {c.new_mode})"
        for c in changes
        if c.status != "D" and c.old_mode != c.new_mode and (c.status != "A" or c.new_mode not in _REGULAR)
    ]
    if moded:
        return f"it changed the type or mode of a file: {_shown(moded)}"
    return ""


def _shown(items: Sequence[str]) -> str:
    return ", ".join(plain(f) for f in items[:5]) + (" …" if len(items) > 5 else "")


def _raw_changes(repo: Path, start: str, commit: str) -> list[_Change]:
    """Every path ``start..commit`` changes with its modes and status (``--raw``, no renames)."""
    fields = git.run(repo, "diff", "--raw", "-z", "--no-renames", "--no-ext-diff", start, commit).text.split(
        "\0"
    )
    changes = []
    for head, path in zip(fields[0::2], fields[1::2], strict=False):
        if head.startswith(":"):
            old, new, _old_id, _new_id, status = head[1:].split(" ")
            changes.append(_Change(path, old, new, status[:1]))
    return changes


def _text_diff(repo: Path, start: str, commit: str) -> str:
    """``start..commit`` as text whatever the attributes say (``-diff``, ``binary``): markers are found
    in every file."""
    flags = ("--no-color", "--no-ext-diff", "--no-textconv", "--text", "--no-renames", "-U0")
    return git.run(repo, "diff", *flags, start, commit).text


def marker_files(diff: str) -> list[str]:
    """The files of a unified ``diff`` with an added line that is a conflict marker (``<<<<<<<``,
    ``|||||||``, ``=======``, ``>>>>>>>``), each once."""
    found: dict[str, None] = {}
    path = ""
    for line in diff.splitlines():
        if line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else line[4:]
        elif line.startswith("+") and _MARKER.fullmatch(line):
            found[path] = None
    return list(found)


def _changed(repo: Path, start: str, commit: str) -> list[str]:
    data = git.run(repo, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", start, commit).text
    return [p for p in data.split("\0") if p]


def _paths(conflicts: Iterable[Conflict]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.path for c in conflicts))


# --- what the agent is told ----------------------------------------------------------------------------


def briefing(plan: Plan, conflicts: Sequence[Conflict], *, redo: bool) -> str:
    """The conflict records as instructions: what landed first, what was lost, and what to do."""
    subs = {s.id: s for s in plan.subtasks}
    parts = [
        "## Conflicts with work that landed first",
        "Merging this work onto the integration branch conflicted. For each region below: the base text,"
        " the text already on the integration (kept), and this subtask's text (lost by the merge policy).",
    ]
    for c in conflicts:
        first, later = subs.get(c.kept_subtask), subs.get(c.subtask)
        parts += [
            f"### {c.path}, lines {c.lines[0]}–{c.lines[1]} ({c.kind.value})",
            f"Kept: {c.kept_subtask} — {first.title if first else c.kept_subtask}",
            *([f"Its instructions: {first.instructions}"] if first and first.instructions else []),
            f"Lost: {c.subtask} — {later.title if later else c.subtask}",
            "Base:",
            _block(c.base_text),
            "Kept (on the integration now):",
            _block(c.kept_text),
            f"Lost ({c.subtask}'s):",
            _block(c.other_text),
        ]
    if redo:
        parts.append(
            "Your workspace holds the integration with the kept work. Do your subtask again on top of it:"
            " keep what landed first and make your change hold too. Touch only your own paths."
        )
    else:
        files = ", ".join(dict.fromkeys(c.path for c in conflicts))
        parts.append(
            "Your workspace holds the merge with the kept side. Write the resolution into these files only:"
            f" {files}. Keep both intents where they can coexist; add no conflict markers."
        )
    return "\n\n".join(parts)


def _block(text: str) -> str:
    size = max([3, *(len(run) + 1 for run in re.findall(r"~+", text))])
    fence = "~" * size
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{fence}\n{body}{fence}"
