"""An agent's workspace (its clone's work tree) and branch, and confined file access inside it.

Every path an agent names goes through :meth:`Workspace.resolve`: no absolute paths, no ``..`` that
leaves the worktree, no symlink that points outside it, nothing under ``.git`` by git's own rules
(:func:`ci_swarm.gitpaths.is_git_dir_name`: any case, and the NTFS/HFS+ spellings such as ``git~1``), no
backslash (git on Windows reads it as a directory separator, git elsewhere as part of a name:
:mod:`ci_swarm.gitpaths` refuses it, and so does collection, so a name is never silently changed).

Writes and deletes are also refused, with the reason, where ci-swarm could not commit the result
(:meth:`Workspace.writable`): a path git refuses (:func:`ci_swarm.gitpaths.check_tree_path`) or one inside a
submodule of the start commit (its files belong to another repository). Bytes are written as given; a
delete removes a symlink itself, never what it points to (:meth:`Workspace.entry`).
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ci_swarm.errors import PathEscapeError
from ci_swarm.gitpaths import check_tree_path, is_git_dir_name

BACKSLASH = (
    "a backslash (git on Windows reads it as a directory separator, git elsewhere as part of the name); "
    "separate directories with '/'"
)


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
    submodules: tuple[str, ...] = ()  # gitlink paths of the start commit: nothing may be written inside

    def resolve(self, path: str) -> Path:
        """The absolute path for ``path`` inside the worktree; PathEscapeError otherwise."""
        rel = _checked(path)
        root = self.root.resolve()
        target = (root / rel).resolve()
        if target != root and root not in target.parents:
            raise PathEscapeError(f"path {path!r} resolves outside the worktree (symlink?)")
        inside = target.relative_to(root).parts
        if any(is_git_dir_name(part) for part in inside):
            raise PathEscapeError(f"path {path!r} is under .git/: refused")
        return target

    def entry(self, path: str) -> Path:
        """The directory entry ``path`` names, its last component not followed (a symlink is itself):
        the parent is resolved and confined as :meth:`resolve` does."""
        rel = PurePosixPath(posixpath.normpath(_checked(path).as_posix()))
        if rel.name in ("", ".", ".."):
            raise PathEscapeError(f"path {path!r} names the worktree itself, not a file")
        return self.resolve(rel.parent.as_posix()) / rel.name

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def relative_entry(self, entry: Path) -> str:
        """The worktree path of an entry from :meth:`entry` (its last component not followed)."""
        return entry.relative_to(self.root.resolve()).as_posix()

    def writable(self, path: str, rel: str) -> None:
        """PathEscapeError, with the reason, when ci-swarm could not commit a file at worktree path ``rel``
        (``path`` as the agent named it): git refuses the name, or it lies inside a submodule."""
        check_tree_path(rel)
        for sub in self.submodules:
            if rel == sub or rel.startswith(sub + "/"):
                raise PathEscapeError(
                    f"path {path!r} refused: it is inside submodule {sub!r}, whose files belong to another "
                    "repository (not checked out here); ci-swarm cannot commit them"
                )

    def read_text(self, path: str) -> str:
        """A readable view of a text file (undecodable bytes replaced, line breaks as ``\\n``)."""
        return self.resolve(path).read_text(encoding="utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes:
        return self.resolve(path).read_bytes()

    def write_text(self, path: str, content: str) -> Path:
        """Write ``content`` as UTF-8, exactly as given (no newline translation)."""
        return self.write_bytes(path, content.encode("utf-8"))

    def write_bytes(self, path: str, data: bytes) -> Path:
        """Create or overwrite a file with exactly ``data`` (through an in-tree symlink, its target)."""
        target = self.resolve(path)
        self.writable(path, self.relative(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(path)  # re-check after creating parents (a symlinked parent dir)
        target.write_bytes(data)
        return target

    def delete(self, path: str) -> None:
        """Delete a file, or a symlink itself (never its target); FileNotFoundError / IsADirectoryError."""
        entry = self.entry(path)
        self.writable(path, self.relative_entry(entry))
        if not entry.is_symlink():
            if not entry.exists():
                raise FileNotFoundError(path)
            if entry.is_dir():
                raise IsADirectoryError(path)
        entry.unlink()

    def owns(self, path: str) -> bool:
        return not self.owned or matches_any(path, self.owned)


def _checked(path: str) -> PurePosixPath:
    if "\\" in path:
        raise PathEscapeError(f"path {path!r} refused: {BACKSLASH}")
    return check_relative(path)


def matches_any(path: str, patterns: Sequence[str]) -> bool:
    """True when ``path`` matches a glob (``**`` spans directories) or lies under a listed directory."""
    return _owned(tuple(patterns)).covers(path)


_WILDCARD = re.compile(r"[*?\[]")


class OwnedPaths:
    """Patterns as one matcher: literal paths (files, and directories covering what is under them) in a set,
    checked once per ancestor of the path; globs as one compiled regex. Linear in the path's depth whatever
    the number of literal paths — a shard owns thousands of exact file names."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._literal = frozenset(p.rstrip("/") for p in patterns if not _WILDCARD.search(p))
        globs = [p.rstrip("/") for p in patterns if _WILDCARD.search(p)]
        self._globs = tuple(globs)
        self._regex = re.compile("|".join(f"(?:{glob_to_regex(g)})" for g in globs)) if globs else None

    def covers(self, path: str) -> bool:
        if self._literal:
            cut = len(path)
            while cut > 0:
                if path[:cut] in self._literal:
                    return True
                cut = path.rfind("/", 0, cut)
        if self._regex is None:
            return False
        return self._regex.fullmatch(path) is not None or any(path.startswith(g + "/") for g in self._globs)


@functools.lru_cache(maxsize=256)
def _owned(patterns: tuple[str, ...]) -> OwnedPaths:
    return OwnedPaths(patterns)


def match_one(path: str, pattern: str) -> bool:
    """One pattern's rule, the reference :class:`OwnedPaths` agrees with: the path itself, under it, or
    the glob."""
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
