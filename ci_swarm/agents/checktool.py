"""The checks as a tool of the Claude agent (issue #12: agents check their own work before they finish).

``run_checks {}`` runs the run's checks (``checks:`` in the config or plan, ``--check``) on the agent's
worktree as it is now, in order, each through the sandbox (the run's policy, only the worktree writable, the
check's timeout), and stops at the first failure: the result names each check and, for a failing one, its
exit status and the tail of its output, so the model can fix what failed. Files a check creates that were
not there before it ran (caches, reports) are removed afterwards, so they are never committed as the
agent's work; files a check rewrites stay (they are the agent's to review).

The runs are bounded (:data:`MAX_RUNS` per agent, then an error result). ``finish`` is gated once: when
checks are configured and the worktree changed since they last passed, ``finish`` runs them first and, if
they fail, hands the failure back instead of finishing; a second ``finish`` ends the agent anyway (the
integration is verified again after the merge).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ci_swarm import sandbox
from ci_swarm.errors import UsageError
from ci_swarm.models import Check
from ci_swarm.sandbox import ProcessResult, ProcessSpec, SandboxPolicy
from ci_swarm.workspace import Workspace

MAX_RUNS = 6
TAIL_CHARS = 6000

SCHEMA = {
    "name": "run_checks",
    "description": "Run the repository's checks (tests, linters) on your worktree as it is now. Returns "
    "each check's result and, for a failing one, the end of its output. Make them pass before you finish.",
    "input_schema": {"type": "object", "properties": {}, "required": []},
}


class CheckTool:
    """The checks of one agent's worktree: runs them, remembers whether the last run passed."""

    def __init__(self, workspace: Workspace, checks: Sequence[Check], policy: SandboxPolicy | None) -> None:
        self.workspace = workspace
        self.checks = tuple(checks)
        self.policy = policy
        self.runs = 0
        self.passed_at = -1  # the write count at which the checks last passed
        self.gated = False  # finish was already held back once

    async def run(self, writes: int) -> tuple[bool, str]:
        """(passed, the text for the model); ``writes`` is how many writes the agent has made so far."""
        if not self.checks:
            return False, "no checks are configured for this run"
        if self.runs >= MAX_RUNS:
            return False, f"the checks already ran {MAX_RUNS} times, the limit: finish with what you have"
        self.runs += 1
        lines: list[str] = []
        for check in self.checks:
            try:
                result = await self._one(check)
            except UsageError as exc:
                return False, f"cannot run the checks: {exc}"
            if not result.ok:
                how = "timed out" if result.timed_out else f"exit {result.returncode}"
                lines.append(f"check {check.name}: FAILED ({how}); the end of its output:\n{_tail(result)}")
                return False, "\n".join(lines)
            lines.append(f"check {check.name}: passed")
        self.passed_at = writes
        return True, "\n".join(lines) + "\nall checks pass"

    def holds_back_finish(self, writes: int) -> bool:
        """Whether ``finish`` should run the checks first (once per agent)."""
        return bool(self.checks) and not self.gated and self.passed_at != writes and self.runs < MAX_RUNS

    async def _one(self, check: Check) -> ProcessResult:
        root = self.workspace.root
        before = _entries(root)
        spec = ProcessSpec(argv=check.run, cwd=root, timeout=check.timeout, writable_dirs=(root,))
        try:
            return await sandbox.run(spec, self.policy or sandbox.resolve_policy(None))
        finally:
            _remove_new(root, before)


def _tail(result: ProcessResult) -> str:
    text = result.output.strip()
    return text[-TAIL_CHARS:] if text else "(no output)"


def _entries(root: Path) -> set[str]:
    """Every file and directory under ``root`` (``.git`` left out), as relative paths."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = os.path.relpath(dirpath, root)
        for name in (*dirnames, *filenames):
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def _remove_new(root: Path, before: set[str]) -> None:
    """Remove what appeared under ``root`` since ``before`` (outermost new directories whole)."""
    for rel in sorted(_entries(root) - before):
        path = root / rel
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
