"""Where agents work: one git worktree per subtask, behind a narrow seam (make / collect / dispose / close)
so another kind of workspace (a clone per agent, a sandbox) can take its place.

``git worktree add`` is serialized: concurrent adds read each other's half-written
``.git/worktrees/<id>/commondir`` and fail. Disposing of a worktree only deletes its files; the one
``git worktree prune`` in :meth:`GitWorktrees.close` drops every admin entry at the end, so removals never
wait for, or race with, the adds of other agents.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from ci_swarm import git
from ci_swarm.git import Identity
from ci_swarm.models import Subtask
from ci_swarm.workspace import Workspace


class Workspaces(Protocol):
    """The orchestrator's seam for agents' workspaces (every method blocks: call it in a worker thread)."""

    def make(self, sub: Subtask, branch: str, start: str) -> Workspace:
        """A fresh workspace for ``sub`` on a new ``branch`` at commit ``start``."""
        ...

    def collect(self, ws: Workspace, message: str, identity: Identity) -> tuple[str, tuple[str, ...]]:
        """Commit whatever is in ``ws`` on its branch: the branch's tip and the files changed since start."""
        ...

    def dispose(self, ws: Workspace) -> None:
        """Delete the workspace; its branch and commits stay."""
        ...

    def close(self) -> None:
        """After the last dispose: drop what is left of every workspace of the run."""
        ...


class GitWorktrees:
    """Worktrees of ``repo`` under ``root``, created with the first worktree (a temp dir of its own when
    None, deleted by close)."""

    def __init__(self, repo: Path, root: Path | None, run_id: str) -> None:
        self.repo = repo
        self._root = root.resolve() if root is not None else None
        self._temp_prefix = f"ci-swarm-{run_id}-"
        self._own_root: Path | None = None
        self._adding = threading.Lock()

    def make(self, sub: Subtask, branch: str, start: str) -> Workspace:
        with self._adding:
            ws = Workspace(self._where() / sub.id, branch, start, sub.id, sub.paths)
            git.worktree_add_new_branch(self.repo, ws.root, branch, start)
        return ws

    def _where(self) -> Path:
        if self._root is None:
            self._root = self._own_root = Path(tempfile.mkdtemp(prefix=self._temp_prefix))
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root

    def collect(self, ws: Workspace, message: str, identity: Identity) -> tuple[str, tuple[str, ...]]:
        commit = git.commit_all(ws.root, message, identity)
        tip = commit or git.rev_parse(self.repo, f"refs/heads/{ws.branch}")
        return tip, git.changed_files(self.repo, ws.start_commit, tip)

    def dispose(self, ws: Workspace) -> None:
        shutil.rmtree(ws.root, ignore_errors=True)

    def close(self) -> None:
        if self._own_root is not None:
            shutil.rmtree(self._own_root, ignore_errors=True)
        # last: every worktree directory is gone now, so prune drops all of this run's entries
        git.worktree_prune(self.repo)
