"""Where agents work: a clone of the user's repository per agent at a time (the default :class:`Workspaces`),
kept in a pool when the caller gives one, so setup grows with the cap, not with the subtasks.

Each clone borrows the user's objects (``git clone --shared --no-checkout``) and checks the start commit
out on a detached HEAD; it has its own config, refs and index, no hooks (an empty template and
``core.hooksPath``) and no remote (the user's remote URL may carry a token). Nothing is shared between
clones, so they are made in parallel without a lock. An agent may do anything to its clone: ci-swarm never
runs git with the clone's ``.git`` as the agent left it. Right after checkout the clone's index is copied to a
directory only the orchestrator can read; :mod:`ci_swarm.collection` uses that copy (as its stat cache) to
read the agent's files into the user's object database and commit them on the agent's branch.

**The pool** (``GitClones(..., pool=cap)``, the orchestrator's): a clone is created only when none is free
and fewer than ``cap`` exist (or none is on its way back: a ``make`` waits for a clone being collected or
reset, and makes one more only when nothing moved for :data:`GRACE` seconds). ``dispose`` returns a clone:
its ``.git`` is replaced by a copy of the one taken when it was made (config, hooks, ``info/``, refs,
packed refs, objects, logs: whatever the agent did to it is gone), its index by the orchestrator's copy,
then ``git reset --hard`` of its last start (stat data compared in full, ctime included: changed files
rewritten, nothing else), ``git clean -ffdx`` (untracked and ignored files, nested repositories),
submodule directories emptied, group/other write and set-id bits dropped — and it waits, renamed
``.<prefix><n>``, for the next ``make``, which renames it to the subtask's id and checks out the new start
from the old one (only the files that differ are written). A clone that cannot be reset is deleted.
``close`` removes every clone once, at the end of the run, off its critical path: the clones and the run's
own directories are renamed into one trash directory (``ci-swarm-trash-…`` in the temp dir, holding the
run's lock), which :mod:`ci_swarm.trash` deletes in a background thread while the run goes on
(verification, the report, publishing); ``trash.wait()`` waits for it, and the interpreter does before it
exits. What cannot be renamed there (a ``root`` on another file system) is deleted by ``close`` itself.
Without ``pool`` (checks, repairs, the serial baseline) ``dispose`` deletes the clone, as each is used once.

Each directory a run creates for itself holds a lock file (:data:`LOCK`: the owner's pid and its start
time), so the directories of a killed run — its trash too — are known as stale: :func:`remove_stale`
(called when a run makes its first clone, and by ``ci-swarm cleanup``) deletes those whose owner is gone.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ci_swarm import collection, git, trash
from ci_swarm.errors import RepoError, SwarmError, WorkLeftOut
from ci_swarm.git import Identity
from ci_swarm.models import Subtask
from ci_swarm.workspace import Workspace

LOCK = ".ci-swarm-owner"  # in each directory a run creates: "<pid> <start time>"
PREFIX = "ci-swarm-"  # every directory a run creates under the temp dir starts so
TRASH = f"{PREFIX}trash-"  # a run's directories being deleted: not its run id's (the run is over)
GRACE = 2.0  # seconds a make at the cap waits for a clone on its way back that does not move
_UNSAFE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH


class _State(Enum):
    HELD = "held"  # a workspace's, between make and dispose
    COLLECTING = "collecting"  # its work is being read (returns to HELD): back soon
    RESETTING = "resetting"  # dispose is restoring it: free soon
    FREE = "free"


@dataclass
class _Clone:
    """One clone's bookkeeping (mutable, guarded by the pool's lock)."""

    slot: int
    root: Path
    commit: str  # what its work tree holds: its last start
    submodules: tuple[str, ...]
    state: _State = _State.HELD


@dataclass
class Spent:
    """Seconds a pool spent, summed over its clones (mutable, guarded by the pool's lock)."""

    create: float = 0.0  # first clones: clone, template copy, checkout
    reuse: float = 0.0  # a free clone made a workspace: rename, checkout of the differing files
    reset: float = 0.0  # dispose: .git restored, reset --hard, clean -ffdx, mode bits


class GitClones:
    """Clones of ``repo`` under ``root`` (a temp dir of its own when None, deleted by close); ``pool``: reuse
    them, at most that many at once while none is on its way back (None: a clone per make)."""

    def __init__(self, repo: Path, root: Path | None, run_id: str, *, pool: int | None = None) -> None:
        self.repo = repo
        self._git_dir = git.git_dir(repo)
        self._root = root.resolve() if root is not None else None
        self._prefix = f"{PREFIX}{run_id}-"
        self._own_root: Path | None = None
        self._private: Path | None = None
        self._dirs = threading.Lock()  # only the lazy creation of the run's directories
        self._tips: dict[str, str] = {}  # branch -> the tip ci-swarm last set
        self._pool = pool
        self._cond = threading.Condition()  # guards everything below
        self._clones: dict[int, _Clone] = {}  # every clone that exists, by slot
        self._held: dict[Path, _Clone] = {}  # the workspaces' clones, by workspace root
        self._reserved = 0  # clones being created
        self._moves = 0  # state changes, so a waiting make sees progress
        self._slots = itertools.count()
        self.created = 0  # clones created in all (a pool keeps this at its cap)
        self.spent = Spent()  # seconds by phase, for the benchmarks' breakdown
        self.close_seconds = 0.0  # close's own time (the moves into the trash), set by close

    def make(self, sub: Subtask, branch: str, start: str) -> Workspace:
        root, private = self._where()
        git.create_branch(self.repo, branch, start)  # RepoError if it exists: never overwritten
        submodules = git.gitlinks(self.repo, start)  # the workspace refuses writes inside them
        ws = Workspace(root / sub.id, branch, start, sub.id, sub.paths, submodules)
        clone = self._acquire(start)
        if clone is not None:
            try:
                self._reuse(clone, ws)
            except (SwarmError, OSError):
                self._discard(clone)  # what is left of it is not trusted: a fresh clone instead
                clone = None
                with self._cond:
                    self._reserved += 1
        if clone is None:
            clone = self._create(ws, private)
        with self._cond:
            self._held[ws.root] = clone
        self._tips[branch] = start
        return ws

    # --- taking and returning clones ------------------------------------------------------------

    def _acquire(self, start: str) -> _Clone | None:
        """A free clone (now held), the one at ``start`` if any; None: make one (it is counted)."""
        with self._cond:
            seen, deadline = self._moves, time.monotonic() + GRACE
            while True:
                free = [c for c in self._clones.values() if c.state is _State.FREE]
                if free:
                    clone = next((c for c in free if c.commit == start), free[0])
                    clone.state = _State.HELD
                    return clone
                now = time.monotonic()
                if self._moves != seen:
                    seen, deadline = self._moves, now + GRACE
                moving = any(c.state in (_State.COLLECTING, _State.RESETTING) for c in self._clones.values())
                count = len(self._clones) + self._reserved
                if self._pool is None or count < self._pool or (not moving and now >= deadline):
                    self._reserved += 1
                    return None
                self._cond.wait(GRACE if moving else max(deadline - now, 0.01))

    def _moved(self, clone: _Clone, state: _State) -> None:
        with self._cond:
            clone.state = state
            self._moves += 1
            self._cond.notify_all()

    def _create(self, ws: Workspace, private: Path) -> _Clone:
        began = time.monotonic()
        slot = next(self._slots)
        try:
            git.clone_shared(self.repo, ws.root, private / "template")
            git.remove_remote(ws.root, "origin")
            git.set_config(ws.root, "core.hooksPath", str(private / "template"))
            if self._pool is not None:  # what dispose restores: before any agent saw it
                shutil.copytree(ws.root / ".git", self._template(slot), symlinks=True)
            git.checkout_detached(ws.root, ws.start_commit)
            shutil.copyfile(ws.root / ".git" / "index", self._saved_index(slot))
        except BaseException:
            shutil.rmtree(ws.root, ignore_errors=True)
            with self._cond:
                self._reserved -= 1
            self._forget(slot)
            raise
        clone = _Clone(slot, ws.root, ws.start_commit, ws.submodules)
        with self._cond:
            self._reserved -= 1
            self._clones[slot] = clone
            self.created += 1
            self.spent.create += time.monotonic() - began
        return clone

    def _reuse(self, clone: _Clone, ws: Workspace) -> None:
        """A free (reset) clone becomes ``ws``: renamed, the new start checked out from the old one."""
        if ws.root.exists() or ws.root.is_symlink():
            raise RepoError(f"workspace {ws.root} exists")
        began = time.monotonic()
        os.rename(clone.root, ws.root)
        clone.root, clone.submodules = ws.root, ws.submodules
        if clone.commit != ws.start_commit:
            git.checkout_detached(ws.root, ws.start_commit)  # writes only the files that differ
            clone.commit = ws.start_commit
        shutil.copyfile(ws.root / ".git" / "index", self._saved_index(clone.slot))
        with self._cond:
            self.spent.reuse += time.monotonic() - began

    def _restore(self, clone: _Clone) -> None:
        """Everything of the clone back to how it was made, at its last start: see the module doc."""
        free = clone.root.parent / f".{self._prefix}{clone.slot}"
        os.rename(clone.root, free)
        clone.root = free
        dot = free / ".git"
        _remove(dot)
        shutil.copytree(self._template(clone.slot), dot, symlinks=True)
        (dot / "HEAD").write_text(clone.commit + "\n")
        shutil.copyfile(self._saved_index(clone.slot), dot / "index")
        git.reset_clone(free, clone.commit)
        for path in clone.submodules:
            _empty(free / path)
        _drop_unsafe_bits(free)
        shutil.copyfile(dot / "index", self._saved_index(clone.slot))

    def _discard(self, clone: _Clone) -> None:
        shutil.rmtree(clone.root, ignore_errors=True)
        with self._cond:
            self._clones.pop(clone.slot, None)
        self._forget(clone.slot)

    def _forget(self, slot: int) -> None:
        """A slot's private files gone; a make waiting for a clone looks again."""
        if self._private is not None:
            self._saved_index(slot).unlink(missing_ok=True)
            shutil.rmtree(self._template(slot), ignore_errors=True)
        with self._cond:
            self._moves += 1
            self._cond.notify_all()

    # --- the run's directories ------------------------------------------------------------------

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

    def _saved_index(self, slot: int) -> Path:
        assert self._private is not None  # made with the first workspace
        return self._private / f"{slot}.index"

    def _template(self, slot: int) -> Path:
        assert self._private is not None
        return self._private / f"{slot}.git"

    def collect(self, ws: Workspace, message: str, identity: Identity) -> tuple[str, tuple[str, ...]]:
        with self._cond:
            clone = self._held[ws.root]
        self._moved(clone, _State.COLLECTING)
        try:
            reader = git.Reader(self._git_dir, ws.root, self._saved_index(clone.slot))
            target = collection.Target(self.repo, ws.branch, self._tips.get(ws.branch, ws.start_commit))
            try:
                tip, files = collection.collect(reader, target, ws.start_commit, message, identity)
            except WorkLeftOut as exc:
                self._tips[ws.branch] = exc.tip
                raise
            self._tips[ws.branch] = tip
            return tip, files
        finally:
            self._moved(clone, _State.HELD)

    def dispose(self, ws: Workspace) -> None:
        with self._cond:
            clone = self._held.pop(ws.root, None)
        if clone is None:  # never made (a failed make), or disposed already
            return
        if self._pool is None:
            self._discard(clone)
            return
        self._moved(clone, _State.RESETTING)
        began = time.monotonic()
        try:
            self._restore(clone)
        except (SwarmError, OSError):
            self._discard(clone)  # the next make creates a fresh one
            return
        finally:
            with self._cond:
                self.spent.reset += time.monotonic() - began
        self._moved(clone, _State.FREE)

    def close(self) -> None:
        """Every clone (once, at the end of the run) and the run's own directories moved into one trash
        directory — renames, instant — which a background thread deletes (:mod:`ci_swarm.trash`); what cannot
        be moved there (another file system) is deleted here."""
        began = time.monotonic()
        with self._cond:
            clones, self._clones, self._held = list(self._clones.values()), {}, {}
        with self._dirs:
            own = [d for d in (self._own_root, self._private) if d is not None]
            self._own_root = self._private = None
        doomed = [clone.root for clone in clones] + own
        if doomed:
            _to_trash(doomed, self._prefix)
        self.close_seconds = time.monotonic() - began


def _to_trash(paths: list[Path], prefix: str) -> None:
    """``paths`` renamed into a new trash directory (locked, in the temp dir) deleted in the background."""
    bin_ = Path(tempfile.mkdtemp(prefix=f"{TRASH}{prefix.removeprefix(PREFIX)}"))
    _lock(bin_)
    for number, path in enumerate(paths):
        try:
            os.rename(path, bin_ / str(number))
        except FileNotFoundError:
            continue
        except OSError:  # another file system: no instant move
            shutil.rmtree(path, ignore_errors=True)
    trash.remove_later(bin_, last=LOCK)


def _remove(path: Path) -> None:
    """Delete what is at ``path``, a symlink itself (never its target)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _empty(directory: Path) -> None:
    """A submodule's directory as checkout leaves it: empty (whatever an agent put there, gone)."""
    if directory.is_symlink() or not directory.is_dir():
        _remove(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return
    for entry in directory.iterdir():
        _remove(entry)


def _drop_unsafe_bits(top: Path) -> None:
    """No file or directory another account could write, nor a set-id bit, left for the next agent."""
    for where, _dirs, files in os.walk(top):
        for path in (where, *(os.path.join(where, name) for name in files)):
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & _UNSAFE_BITS:
                os.chmod(path, stat.S_IMODE(mode) & ~_UNSAFE_BITS)


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
