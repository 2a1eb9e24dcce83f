"""The orchestrator's seam for agents' workspaces (make / collect / dispose / close), so the kind of
workspace can change without touching the run: today a clone per agent (:class:`ci_swarm.clones.GitClones`).
"""

from __future__ import annotations

from typing import Protocol

from ci_swarm.git import Identity
from ci_swarm.models import Subtask
from ci_swarm.workspace import Workspace


class Workspaces(Protocol):
    """The orchestrator's seam for agents' workspaces (every method blocks: call it in a worker thread)."""

    def make(self, sub: Subtask, branch: str, start: str) -> Workspace:
        """A fresh workspace for ``sub`` on a new ``branch`` at commit ``start``."""
        ...

    def collect(self, ws: Workspace, message: str, identity: Identity) -> tuple[str, tuple[str, ...]]:
        """Commit whatever is in ``ws`` on its branch: the branch's tip and the files changed since start.
        :class:`ci_swarm.errors.WorkLeftOut` (carrying both) when part of the work could not be committed;
        another SwarmError when nothing could."""
        ...

    def dispose(self, ws: Workspace) -> None:
        """Delete the workspace; its branch and commits stay."""
        ...

    def close(self) -> None:
        """After the last dispose: drop what is left of every workspace of the run."""
        ...
