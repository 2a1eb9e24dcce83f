"""Where agents work: a clone of the user's repository per agent (the default :class:`Workspaces`).

Each clone borrows the user's objects (``git clone --shared --no-checkout``) and checks the start commit
out on a detached HEAD; it has its own config, refs and index, no hooks (an empty template and
``core.hooksPath``) and no remote (the user's remote URL may carry a token). Nothing is shared between
clones, so they are made in parallel without a lock. An agent may do anything to its clone: ci-swarm never
runs git with the clone's ``.git`` again. Right after checkout the clone's index is copied to a directory
only the orchestrator can read; :mod:`ci_swarm.collection` uses that copy (as its stat cache) to read the
agent's files into the user's object database and commit them on the agent's branch.

Each directory a run creates for itself holds a lock file (:data:`LOCK`: the owner's pid and its start
time), so the directories of a killed run are known as stale: :func:`remove_stale` (called when a run makes
its first clone, and by ``ci-swarm cleanup``) deletes those whose owner is gone.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ci_swarm import collection, git
from ci_swarm.errors import WorkLeftOut
from ci_swarm.git import Identity
from ci_swarm.models import Subtask
from ci_swarm.workspace import Workspace

LOCK = ".ci-swarm-owner"  # in each directory a run creates: "<pid> <start time>"
PREFIX = "ci-swarm-"  # every directory a run creates under the temp dir starts so


class GitClones:
    """Clones of ``repo`` under ``root`` (a temp dir of its own when None, deleted by close)."""

    def __init__(self, repo: Path, root: Path | None, run_id: str) -> None:
        self.repo = repo
        self._git_dir = git.git_dir(repo)
        self._root = root.resolve() if root is not None else None
        self._prefix = f"{PREFIX}{run_id}-"
        self._own_root: Path | None = None
        self._private: Path | None = None
        self._dirs = threading.Lock()  # only the lazy creation of the run's directories
        self._tips: dict[str, str] = {}  # branch -> the tip ci-swarm last set

    def make(self, sub: Subtask, branch: str, start: str) -> Workspace:
        root, private = self._where()
        git.create_branch(self.repo, branch, start)  # RepoError if it exists: never overwritten
        submodules = git.gitlinks(self.repo, start)  # the workspace refuses writes inside them
        ws = Workspace(root / sub.id, branch, start, sub.id, sub.paths, submodules)
        try:
            git.clone_shared(self.repo, ws.root, private / "template")
            git.remove_remote(ws.root, "origin")
            git.set_config(ws.root, "core.hooksPath", str(private / "template"))
            git.checkout_detached(ws.root, start)
            shutil.copyfile(ws.root / ".git" / "index", self._index(ws))
        except BaseException:
            self.dispose(ws)
            raise
        self._tips[branch] = start
        return ws

    def _where(self) -> tuple[Path, Path]:
        with self._dirs:
            if self._private is None:
                remove_stale()  # what killed runs left behind
                self._private = Path(tempfile.mkdtemp(prefix=self._prefix + "private-"))  # mode 0700
                _lock(self._private)
                (self._private / "template").mkdir()
            if self._root is None:
                self._root = self._own_root = Path(tempfile.mkdtemp(prefix=self._prefix))
                _lock(self._root)
                self._root.chmod(0o711)  # sandbox accounts pass through to their clone; they list nothing
            self._root.mkdir(parents=True, exist_ok=True)
            return self._root, self._private

    def _index(self, ws: Workspace) -> Path:
        assert self._private is not None  # made with the first workspace
        return self._private / f"{ws.subtask_id or ws.root.name}.index"

    def collect(self, ws: Workspace, message: str, identity: Identity) -> tuple[str, tuple[str, ...]]:
        reader = git.Reader(self._git_dir, ws.root, self._index(ws))
        target = collection.Target(self.repo, ws.branch, self._tips.get(ws.branch, ws.start_commit))
        try:
            tip, files = collection.collect(reader, target, ws.start_commit, message, identity)
        except WorkLeftOut as exc:
            self._tips[ws.branch] = exc.tip
            raise
        self._tips[ws.branch] = tip
        return tip, files

    def dispose(self, ws: Workspace) -> None:
        shutil.rmtree(ws.root, ignore_errors=True)
        if self._private is not None:
            self._index(ws).unlink(missing_ok=True)

    def close(self) -> None:
        for own in (self._own_root, self._private):
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)


# --- the lock of a run's own directories -----------------------------------------------------------


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where /proc does not say): a pid reused by
    another process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def _lock(directory: Path) -> None:
    pid = os.getpid()
    (directory / LOCK).write_text(f"{pid} {_start_time(pid)}\n")


def owner_alive(directory: Path) -> bool:
    """True unless the directory's lock names a process that is gone (no lock, or an unreadable one: alive,
    since it is not known to be stale)."""
    try:
        pid_text, _, started = (directory / LOCK).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not started or _start_time(pid) in ("", started)


def stale_dirs(parent: Path | None = None) -> tuple[Path, ...]:
    """The run directories under ``parent`` (default: the temp dir) whose owner process is gone."""
    where = Path(parent or tempfile.gettempdir())
    try:
        candidates = sorted(where.glob(PREFIX + "*"))
    except OSError:
        return ()
    return tuple(
        d
        for d in candidates
        if d.is_dir() and not d.is_symlink() and (d / LOCK).is_file() and not owner_alive(d)
    )


def in_progress(run_id: str, parent: Path | None = None) -> bool:
    """Whether a live process holds a directory of run ``run_id`` (the run is going on)."""
    where = Path(parent or tempfile.gettempdir())
    try:
        dirs = [d for d in where.glob(f"{glob.escape(PREFIX + run_id)}-*") if (d / LOCK).is_file()]
    except OSError:
        return False
    return any(owner_alive(d) for d in dirs)


def remove_stale(parent: Path | None = None, *, dry_run: bool = False) -> tuple[Path, ...]:
    """Delete the stale run directories (see :func:`stale_dirs`); the ones found."""
    found = stale_dirs(parent)
    if not dry_run:
        for directory in found:
            shutil.rmtree(directory, ignore_errors=True)
    return found
