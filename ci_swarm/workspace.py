"""An agent's workspace (its clone's work tree) and branch, and confined file access inside it.

Every path an agent names goes through :meth:`Workspace.resolve`: no absolute paths, no ``..`` that
leaves the worktree, no symlink that points outside it, nothing under ``.git`` by git's own rules
(:func:`ci_swarm.gitpaths.is_git_dir_name`: any case, and the NTFS/HFS+ spellings such as ``git~1``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ci_swarm.errors import PathEscapeError
from ci_swarm.gitpaths import is_git_dir_name


def check_relative(path: str) -> PurePosixPath:
    """Reject paths that are absolute, climb out with ``..`` or touch ``.git`` (pure check)."""
    if not path or "\0" in path:
        raise PathEscapeError(f"invalid path {path!r}")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise PathEscapeError(f"absolute path {path!r} refused: paths are relative to the worktree")
    parts = PurePosixPath(path.replace("\\", "/")).parts
    depth = 0
    for part in parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                raise PathEscapeError(f"path {path!r} leaves the worktree")
        elif part not in (".", ""):
            depth += 1
    if any(is_git_dir_name(part) for part in parts):
        raise PathEscapeError(f"path {path!r} is under .git/: refused")
    return PurePosixPath(*[p for p in parts if p != "."]) if parts else PurePosixPath(".")


@dataclass(frozen=True)
class Workspace:
    """One subtask's worktree (``root``) on its own branch."""

    root: Path
    branch: str
    start_commit: str
    subtask_id: str = ""
    owned: tuple[str, ...] = ()  # the subtask's `paths` globs

    def resolve(self, path: str) -> Path:
        """The absolute path for ``path`` inside the worktree; PathEscapeError otherwise."""
        rel = check_relative(path)
        root = self.root.resolve()
        target = (root / rel).resolve()
        if target != root and root not in target.parents:
            raise PathEscapeError(f"path {path!r} resolves outside the worktree (symlink?)")
        inside = target.relative_to(root).parts
        if any(is_git_dir_name(part) for part in inside):
            raise PathEscapeError(f"path {path!r} is under .git/: refused")
        return target

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def read_text(self, path: str) -> str:
        return self.resolve(path).read_text(encoding="utf-8", errors="replace")

    def write_text(self, path: str, content: str) -> Path:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(path)  # re-check after creating parents (a symlinked parent dir)
        target.write_text(content, encoding="utf-8", newline="")
        return target

    def delete(self, path: str) -> None:
        target = self.resolve(path)
        if not target.exists():
            raise FileNotFoundError(path)
        target.unlink()

    def owns(self, path: str) -> bool:
        return not self.owned or matches_any(path, self.owned)


def matches_any(path: str, patterns: Sequence[str]) -> bool:
    """True when ``path`` matches a glob (``**`` spans directories) or lies under a listed directory."""
    return any(_match(path, pat) for pat in patterns)


def _match(path: str, pattern: str) -> bool:
    pattern = pattern.rstrip("/")
    if path == pattern or path.startswith(pattern + "/"):
        return True
    return re.fullmatch(glob_to_regex(pattern), path) is not None


def glob_to_regex(pattern: str) -> str:
    """Translate a path glob: ``**/`` any directories, ``*`` within one segment, ``?`` one char."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def fnmatch_any(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
