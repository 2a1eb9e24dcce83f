"""The scripted agent: simulated latency and a list of file edits, applied inside the workspace.

Options (from the plan's ``agent:`` mapping): ``delay`` (seconds), ``edits`` (write / replace / append /
delete, in order), ``fail`` (a reason: the agent reports failure after the delay and its edits),
``crash: true`` (raises), ``hang: true`` (never returns; the scheduler's timeout stops it).
A path leaving the worktree, one git cannot hold (a backslash …) or one inside a submodule is a recorded
failure with the PathEscapeError message. Edits keep the bytes they do not change (line endings included);
a delete removes a symlink itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ci_swarm.agents import options as opt
from ci_swarm.agents import textedit
from ci_swarm.agents.edits import Edit, parse_edits
from ci_swarm.errors import PathEscapeError, PlanError, SwarmError
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.workspace import Workspace

OPTIONS = frozenset({"delay", "edits", "fail", "crash", "hang"})


def check_options(options: Mapping[str, Any], where: str) -> None:
    """plan.OptionsValidator for ``kind: scripted``."""
    opt.known_options(options, "scripted", OPTIONS, where)
    opt.seconds(options, "delay", where)
    parse_edits(options.get("edits"), where)
    opt.text(options, "fail", where, "a string (the failure reason)")
    opt.flag(options, "crash", where)
    opt.flag(options, "hang", where)


class EditFailed(SwarmError):
    """A scripted edit could not be applied (replace text missing, delete of a missing file)."""


class ScriptedAgent:
    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome:
        options = self.spec.options
        if options.get("hang"):
            ctx.log(f"{subtask.id}: hanging (hang: true)")
            await asyncio.Event().wait()
        await asyncio.sleep(float(options.get("delay", 0) or 0))
        if options.get("crash"):
            raise SwarmError(f"scripted agent for {subtask.id!r} crashed (crash: true)")
        try:
            edits = parse_edits(options.get("edits"), f"subtask {subtask.id!r}")
            done = [apply_edit(workspace, edit) for edit in edits]
        except (PlanError, PathEscapeError, EditFailed) as exc:
            return AgentOutcome(ok=False, error=str(exc), log=f"{subtask.id}: {exc}")
        for line in done:
            ctx.log(f"{subtask.id}: {line}")
        touched = sorted({e.path for e in edits})
        outside = tuple(p for p in touched if not workspace.owns(p))
        fail = str(options.get("fail") or "")
        if fail:
            return AgentOutcome(ok=False, error=fail, log="\n".join(done), outside_paths=outside)
        summary = f"{len(edits)} scripted edit(s): {', '.join(touched)}" if edits else "no edits"
        return AgentOutcome(ok=True, summary=summary, log="\n".join(done), outside_paths=outside)


def apply_edit(workspace: Workspace, edit: Edit) -> str:
    """Apply one edit through the workspace's confined file access; a line describing what was done.

    ``write`` writes the content as given; ``replace`` and ``append`` keep every byte of the file they do
    not change, line endings included (:mod:`ci_swarm.agents.textedit`); ``delete`` removes a symlink
    itself, never its target."""
    if edit.op == "write":
        workspace.write_text(edit.path, edit.content)
        return f"wrote {edit.path}"
    if edit.op == "append":
        target = workspace.resolve(edit.path)
        before = textedit.decode(workspace.read_bytes(edit.path)) if target.is_file() else ""
        workspace.write_bytes(edit.path, textedit.encode(textedit.append(before, edit.content)))
        return f"appended to {edit.path}"
    if edit.op == "replace":
        text = _read_existing(workspace, edit)
        spans = textedit.find(text, edit.old)
        if not spans:
            raise EditFailed(f"replace in {edit.path}: text {_short(edit.old)!r} not found")
        workspace.write_bytes(edit.path, textedit.encode(textedit.replace(text, spans[0], edit.new)))
        return f"replaced text in {edit.path}"
    if edit.op == "delete":
        try:
            workspace.delete(edit.path)
        except FileNotFoundError as exc:
            raise EditFailed(f"{edit.op} {edit.path}: no such file in the worktree") from exc
        except IsADirectoryError as exc:
            raise EditFailed(f"{edit.op} {edit.path}: is a directory, not a file") from exc
        return f"deleted {edit.path}"
    raise EditFailed(f"unknown edit {edit.op!r} on {edit.path}")


def _read_existing(workspace: Workspace, edit: Edit) -> str:
    if not workspace.resolve(edit.path).is_file():
        raise EditFailed(f"{edit.op} {edit.path}: no such file in the worktree")
    return textedit.decode(workspace.read_bytes(edit.path))


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
