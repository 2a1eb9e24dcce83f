"""Reading an agent's work into the user's repository: ci-swarm alone commits.

The result of an agent is the files in its clone's work tree, nothing else: its HEAD, refs, commits,
config and hooks are ignored (a commit the agent made counts only through the files it left in the work
tree). ci-swarm reads that tree into the **user's** object database with hardened git
(:class:`ci_swarm.git.Reader`: the user's git dir, the clone as work tree, a throwaway index that started as
a copy of the clone's index right after checkout, so unchanged files are not hashed again) and commits it
on the agent's branch with ``commit-tree`` and a compare-and-swap ``update-ref``.

Before adding, :func:`screen` walks the tree (not the clone's own top-level ``.git``) and keeps out what
git cannot hold: a path refused by :mod:`ci_swarm.gitpaths` (``.GIT/config``, ``git~1/x`` …), a nested
git repository, a file inside a submodule of the start commit. When ``git add`` itself fails (an
encoding or filter error), the changed paths are added one by one and the failing ones kept out. What is
kept out is *named*; the rest is committed and :class:`ci_swarm.errors.WorkLeftOut` reports the loss.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ci_swarm import git
from ci_swarm.errors import PathEscapeError, WorkLeftOut
from ci_swarm.gitpaths import check_tree_path

NESTED_REPO = "a nested git repository"


@dataclass(frozen=True)
class Screened:
    """What the walk keeps out of the add: ``excluded`` (paths of files or whole directories, literal) and
    ``left_out`` (each lost path with its reason, for the report)."""

    excluded: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()


def screen(root: Path, submodules: frozenset[str]) -> Screened:
    """Walk the work tree at ``root`` (symlinks are not followed) for paths git cannot hold."""
    excluded: list[str] = []
    left_out: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        for entry in _entries(root / rel_dir if rel_dir else root):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if rel == ".git":
                continue  # the clone's own repository: never read
            is_dir = entry.is_dir(follow_symlinks=False)
            reason = _refusal(rel, entry.is_symlink())
            if not reason and is_dir:
                reason = _dir_refusal(entry, rel, submodules)
            if not reason:
                if is_dir:
                    stack.append(rel)
                continue
            excluded.append(rel)
            if reason == NESTED_REPO:
                left_out.append(f"{_show(rel)}/ ({reason})")
            else:
                left_out.extend(f"{_show(p)} ({reason})" for p in _files(entry, rel))
    return Screened(tuple(sorted(excluded)), tuple(sorted(left_out)))


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return sorted(it, key=lambda e: e.name)


def _refusal(rel: str, symlink: bool) -> str:
    try:
        check_tree_path(rel, symlink=symlink)
    except PathEscapeError as exc:
        return str(exc).partition("refused: ")[2] or "refused by git"
    return ""


def _dir_refusal(entry: os.DirEntry[str], rel: str, submodules: frozenset[str]) -> str:
    if rel in submodules:
        return f"inside submodule {_show(rel)}"
    if os.path.lexists(os.path.join(entry.path, ".git")):
        return NESTED_REPO
    return ""


def _files(entry: os.DirEntry[str], rel: str) -> Iterator[str]:
    """``rel`` itself, or every file (and symlink) below it when it is a directory."""
    if not entry.is_dir(follow_symlinks=False):
        yield rel
        return
    for child in _entries(Path(entry.path)):
        yield from _files(child, f"{rel}/{child.name}")


def _show(path: str) -> str:
    """A path on one line: quoted when it holds control characters or bytes that are not UTF-8."""
    printable = path.isprintable() and not any(0xD800 <= ord(c) <= 0xDFFF for c in path)
    return path if printable else repr(path)


def add_tree(reader: git.Reader, excluded: tuple[str, ...]) -> tuple[str, ...]:
    """Add the whole work tree but ``excluded`` to the reader's index; the paths git refused (encoding or
    filter errors), each with git's reason, are left out and returned."""
    keep_out = [f":(top,exclude,literal){p}" for p in excluded]
    if not git.add_all(reader, [":(top)", *keep_out]):
        return ()
    failed = []
    for path in git.changed_paths(reader, [":(top)", *keep_out]):
        error = git.add_all(reader, [f":(top,literal){path}"])
        if error:
            failed.append(f"{_show(path)} ({error})")
    return tuple(failed)


@dataclass(frozen=True)
class Target:
    """Where collected work goes: ``branch`` of ``repo``, whose tip ci-swarm last set to ``parent``."""

    repo: Path
    branch: str
    parent: str


def commit_index(reader: git.Reader, target: Target, message: str, identity: git.Identity) -> str:
    """Commit the reader's index on the target branch (compare-and-swap from ``parent``); the new tip, or
    ``parent`` when the tree did not change (no empty commit)."""
    tree = git.write_index_tree(reader)
    if tree == git.tree_of(target.repo, target.parent):
        return target.parent
    commit = git.commit_tree(target.repo, tree, [target.parent], message, identity)
    git.update_ref(target.repo, f"refs/heads/{target.branch}", commit, target.parent)
    return commit


def collect(
    reader: git.Reader, target: Target, start: str, message: str, identity: git.Identity
) -> tuple[str, tuple[str, ...]]:
    """Commit what is in the reader's work tree on the target branch: (tip, files changed since
    ``start``). WorkLeftOut (carrying both) when some of it could not be committed."""
    screened = screen(reader.work_tree, frozenset(git.gitlinks(target.repo, start)))
    left_out = screened.left_out + add_tree(reader, screened.excluded)
    tip = commit_index(reader, target, message, identity)
    files = git.changed_files(target.repo, start, tip)
    if left_out:
        raise WorkLeftOut(tip, files, left_out)
    return tip, files
