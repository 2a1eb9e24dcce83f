"""Predict the files two changes will conflict on, with git's own adjacency rules.

A change is read from a one-line-context diff (:func:`ci_swarm.git.merge_diff`, parsed with unidiff) as
per-path :class:`Region` s in BASE coordinates: the base lines a hunk replaces, and the lines it puts there
(an insertion is a zero-length region before a base line).

Two changes to one path are classified the way ``git merge-file`` / ``git merge-tree`` (xdiff's
``xdl_do_merge`` at the ``ZEALOUS`` level) decide:

* a region of one side and a region of the other *interact* when neither ends strictly before the other
  starts: ``a.end >= b.start and b.end >= a.start``. So overlapping regions interact, and so do regions
  that merely touch (edit line 3 vs edit line 4; two insertions at one point; a deletion next to an
  edit). One unchanged line between them and they do not: that merges cleanly.
* a pair with the same base range and the same new text is not a conflict (identical edits);
* interacting regions chain into one conflict; a chain whose two sides produce the same text is not a
  conflict either (git "refines" it away).

:data:`OverlapKind.OVERLAPPING` means some pair shares a base line (or an insertion falls strictly inside
the other side's range), :data:`OverlapKind.TOUCHING` that the conflict comes only from adjacency,
:data:`OverlapKind.DISJOINT` that git merges the file cleanly.

Whole-file cases are classified conservatively (predicted to conflict unless both sides end with the same
blob): add/add, modify/delete, rename/delete, rename/rename to different paths, binary files, symlinks,
submodules, two different mode changes. A rename on one side and an edit on the other is classified by
its hunks (git follows the rename, with the same rename detection as ``git diff --find-renames``); a
renamed file's rows are named by its new path (where git reports a conflict) and by its old path.
Structural collisions that share no path are predicted too: a file on one side where the other has a
directory, and a file added under a directory the other side renamed away from (git's directory-rename
detection; over-predicted when the directory still exists on that side).

The diff is read with one line of context (:func:`ci_swarm.git.merge_diff`): with zero context ``git diff``
trims a long common tail before diffing, which the merge does not, and a hunk among repeated lines could
then align differently. Known over-prediction (documented, not hidden): a subtask's own diff is
relative to its own start, so two subtasks that started from different tips are compared in slightly
different coordinates (the merge queue therefore also predicts against the integration tip exactly).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from ci_swarm import git
from ci_swarm.errors import GitError
from ci_swarm.models import Overlap, OverlapKind

_SPECIAL_MODES = frozenset({"120000", "160000"})  # symlink, submodule: never merged line by line
_INDEX = re.compile(r"^index ([0-9a-f]+)\.\.([0-9a-f]+)(?: (\d+))?$")
_MODE = re.compile(r"^(old mode|new mode|new file mode|deleted file mode) (\d+)$")
_OCTAL = re.compile(r"[0-7]{3}")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


class FileStatus(StrEnum):
    ADDED = "added"
    DELETED = "deleted"
    MODIFIED = "modified"
    RENAMED = "renamed"


@dataclass(frozen=True)
class Region:
    """Base lines ``[start, start + len(old))`` (0-based) replaced by ``new``; ``old == ()`` inserts."""

    start: int
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.old)


@dataclass(frozen=True)
class FileChange:
    """What one side did to one file, relative to the base."""

    path: str  # path in the base (the new path for an added file)
    new_path: str  # path afterwards ("" when deleted)
    status: FileStatus
    old_mode: str = ""
    new_mode: str = ""
    old_oid: str = ""
    new_oid: str = ""
    binary: bool = False
    regions: tuple[Region, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path this change touches (both names of a rename)."""
        return tuple(dict.fromkeys(p for p in (self.path, self.new_path) if p))

    @property
    def added_lines(self) -> tuple[str, ...]:
        return tuple(line for r in self.regions for line in r.new)

    @property
    def removed_lines(self) -> tuple[str, ...]:
        return tuple(line for r in self.regions for line in r.old)


# --- parsing ------------------------------------------------------------------------------------


def changes(diff_text: str) -> dict[str, FileChange]:
    """Per-path changes of a zero-context git diff; a rename is listed under both of its paths."""
    headers, text = _placeholders(diff_text)
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise GitError(("diff",), 0, diff_text[:200], f"unparsable diff: {exc}") from exc
    result: dict[str, FileChange] = {}
    for info, patched in zip(headers, patch, strict=True):
        change = _file_change(info, patched)
        for path in change.paths:
            result[path] = change
    return result


def _placeholders(diff_text: str) -> tuple[list[list[str]], str]:
    """Each file's original header lines, and the diff with every file named ``a/fN``/``b/fN``.

    unidiff splits ``diff --git a/X b/Y`` at a space, which breaks on names holding `` b/``; the real
    names are read from the original header lines instead (:func:`_paths`).
    """
    headers: list[list[str]] = []
    out: list[str] = []
    in_header = False
    for line in _split_lf(diff_text):
        if line.startswith("diff --git "):
            headers.append([line.rstrip("\n")])
            in_header = True
            out.append(f"diff --git a/f{len(headers)} b/f{len(headers)}\n")
            continue
        if in_header and line.startswith("@@ "):
            in_header = False
        elif in_header:
            headers[-1].append(line.rstrip("\n"))
            line = _placeholder_line(line, len(headers))
        out.append(line)
    return headers, "".join(out)


def _placeholder_line(line: str, n: int) -> str:
    for marker, side in (("--- ", "a"), ("+++ ", "b")):
        if line.startswith(marker) and line.rstrip("\n") != marker + "/dev/null":
            return f"{marker}{side}/f{n}\n"
    if line.startswith("Binary files "):
        return f"Binary files a/f{n} and b/f{n} differ\n"
    return line


def _split_lf(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _file_change(info: Sequence[str], patched: PatchedFile) -> FileChange:
    status = _status(info)
    old_path, new_path = _paths(info)
    modes = {m.group(1): m.group(2) for m in map(_MODE.match, info) if m}
    index = next((m for m in map(_INDEX.match, info) if m), None)
    same_mode = index.group(3) if index and index.group(3) else ""
    old_mode = modes.get("old mode") or modes.get("deleted file mode") or same_mode
    new_mode = modes.get("new mode") or modes.get("new file mode") or same_mode
    return FileChange(
        path=new_path if status is FileStatus.ADDED else old_path,
        new_path="" if status is FileStatus.DELETED else new_path,
        status=status,
        old_mode="" if status is FileStatus.ADDED else old_mode,
        new_mode="" if status is FileStatus.DELETED else new_mode,
        old_oid=_oid(index.group(1)) if index else "",
        new_oid=_oid(index.group(2)) if index else "",
        binary=bool(patched.is_binary_file),
        regions=tuple(_regions(patched)),
    )


def _status(info: Sequence[str]) -> FileStatus:
    if any(line.startswith("new file mode ") for line in info):
        return FileStatus.ADDED
    if any(line.startswith("deleted file mode ") for line in info):
        return FileStatus.DELETED
    if any(line.startswith("rename from ") for line in info):
        return FileStatus.RENAMED
    return FileStatus.MODIFIED


def _oid(text: str) -> str:
    return "" if set(text) == {"0"} else text


def _paths(info: Sequence[str]) -> tuple[str, str]:
    """(old path, new path) from a file's header lines: rename lines, else ``---``/``+++``, else the
    ``diff --git`` line (a mode-only change)."""
    keys = ("rename from ", "rename to ")
    renamed = {k: unquote(line[len(k) :]) for line in info for k in keys if line.startswith(k)}
    if renamed:
        return renamed.get(keys[0], ""), renamed.get(keys[1], "")
    for marker in ("+++ b/", '+++ "b/', "--- a/", '--- "a/'):
        line = next((x for x in info if x.startswith(marker)), None)
        if line is not None:
            name = line[4:].rstrip("\t")
            path = unquote(name)[2:] if name.startswith('"') else name[2:]
            return path, path
    header = _header_path(info[0]) if info else None
    return header or "", header or ""


def _header_path(header: str) -> str | None:
    """The path of a ``diff --git a/P b/P`` header (not a rename: both names are equal)."""
    rest = header[len("diff --git ") :]
    if rest.startswith('"'):
        first, _, _ = _split_quoted(rest)
        return first[2:] if first.startswith("a/") else None
    if len(rest) % 2 == 0 or not rest.startswith("a/"):
        return None
    half = (len(rest) - 1) // 2
    first, second = rest[:half], rest[half + 1 :]
    return first[2:] if second == "b/" + first[2:] else None


def _split_quoted(text: str) -> tuple[str, str, str]:
    end = 1
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return unquote(text[: end + 1]), text[end + 1 : end + 2], text[end + 2 :]


def unquote(name: str) -> str:
    """Undo git's C-style quoting of a path (``"a/x\\ty"``, octal bytes); plain names pass through."""
    if not (len(name) >= 2 and name.startswith('"') and name.endswith('"')):
        return name
    body, out, i = name[1:-1], bytearray(), 0
    while i < len(body):
        if body[i] != "\\" or i + 1 == len(body):
            out += body[i].encode("utf-8", "surrogateescape")
            i += 1
        elif _OCTAL.match(body, i + 1):
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(_ESCAPES.get(body[i + 1], ord(body[i + 1])))
            i += 2
    return out.decode("utf-8", "surrogateescape")


def _regions(patched: PatchedFile) -> Iterable[Region]:
    """Each run of removed/added lines of every hunk, context lines skipped, in base coordinates."""
    for hunk in patched:
        pos = hunk.source_start - 1 if hunk.source_length else hunk.source_start  # next base line
        start = pos
        old: list[str] = []
        new: list[str] = []
        last: list[str] | None = None
        for line in hunk:
            if line.is_context:
                if old or new:
                    yield Region(start, tuple(old), tuple(new))
                pos += 1
                start, old, new, last = pos, [], [], None
            elif line.is_removed:
                old.append(line.value)
                pos += 1
                last = old
            elif line.is_added:
                new.append(line.value)
                last = new
            elif line.line_type == "\\" and last:
                last[-1] = last[-1].removesuffix("\n")  # "\ No newline at end of file"
        if old or new:
            yield Region(start, tuple(old), tuple(new))


# --- classification -----------------------------------------------------------------------------


def classify(a: FileChange, b: FileChange) -> OverlapKind:
    """How git's three-way merge treats two changes to the same base file."""
    if _same_result(a, b):
        return OverlapKind.DISJOINT
    if _whole_file_conflict(a, b):
        return OverlapKind.OVERLAPPING
    return classify_regions(a.regions, b.regions)


def _same_result(a: FileChange, b: FileChange) -> bool:
    if a.status is FileStatus.DELETED and b.status is FileStatus.DELETED:
        return True
    return bool(a.new_oid) and (a.new_oid, a.new_mode, a.new_path) == (b.new_oid, b.new_mode, b.new_path)


def _whole_file_conflict(a: FileChange, b: FileChange) -> bool:
    statuses = {a.status, b.status}
    if FileStatus.DELETED in statuses or FileStatus.ADDED in statuses:
        return True  # modify/delete, rename/delete, add/add (results differ)
    if a.status is FileStatus.RENAMED and b.status is FileStatus.RENAMED and a.new_path != b.new_path:
        return True  # rename/rename
    if a.binary or b.binary or _SPECIAL_MODES & {a.old_mode, a.new_mode, b.old_mode, b.new_mode}:
        return True
    return a.old_mode != a.new_mode and b.old_mode != b.new_mode and a.new_mode != b.new_mode


def classify_regions(ours: Sequence[Region], theirs: Sequence[Region]) -> OverlapKind:
    """xdiff's merge decision over two sorted region lists of the same base file."""
    kind = OverlapKind.DISJOINT
    for group_a, group_b, overlapping in _conflict_groups(ours, theirs):
        if _side_text(group_a, group_b) == _side_text(group_b, group_a):
            continue  # both sides produce the same text: git refines the conflict away
        if overlapping:
            return OverlapKind.OVERLAPPING
        kind = OverlapKind.TOUCHING
    return kind


def _conflict_groups(
    ours: Sequence[Region], theirs: Sequence[Region]
) -> list[tuple[list[Region], list[Region], bool]]:
    """Chains of interacting regions, walked exactly like ``xdl_do_merge``."""
    groups: list[tuple[list[Region], list[Region], list[bool]]] = []
    i = j = 0
    while i < len(ours) and j < len(theirs):
        x, y = ours[i], theirs[j]
        if x.end < y.start:
            i += 1
            continue
        if y.end < x.start:
            j += 1
            continue
        if not (x.start == y.start and x.old == y.old and x.new == y.new):  # identical edits merge
            _add_pair(groups, x, y)
        if x.end >= y.end:
            j += 1
        if y.end >= x.end:
            i += 1
    return [(ga, gb, any(flags)) for ga, gb, flags in groups]


def _add_pair(groups: list[tuple[list[Region], list[Region], list[bool]]], x: Region, y: Region) -> None:
    """Start a conflict, or extend the last one when the pair shares a region with it (a chain)."""
    if groups and (groups[-1][0][-1] is x or groups[-1][1][-1] is y):
        ga, gb, flags = groups[-1]
        if ga[-1] is not x:
            ga.append(x)
        if gb[-1] is not y:
            gb.append(y)
        flags.append(_overlapping(x, y))
    else:
        groups.append(([x], [y], [_overlapping(x, y)]))


def _overlapping(x: Region, y: Region) -> bool:
    """The two regions share a base line, or one inserts strictly inside the other's range."""
    if x.old and y.old:
        return max(x.start, y.start) < min(x.end, y.end)
    if x.old:
        return x.start < y.start < x.end
    if y.old:
        return y.start < x.start < y.end
    return False  # two insertions at one point: touching


def _side_text(side: Sequence[Region], other: Sequence[Region]) -> tuple[str, ...] | None:
    """The text one side gives the group's whole base range; None if a base line is unknown."""
    base = {r.start + k: line for r in (*side, *other) for k, line in enumerate(r.old)}
    start = min(r.start for r in (*side, *other))
    end = max(r.end for r in (*side, *other))
    text: list[str] = []
    pos = start
    for region in side:
        if any(k not in base for k in range(pos, region.start)):
            return None
        text += [base[k] for k in range(pos, region.start)]
        text += region.new
        pos = region.end
    if any(k not in base for k in range(pos, end)):
        return None
    return (*text, *(base[k] for k in range(pos, end)))


# --- predictions --------------------------------------------------------------------------------


def overlaps(
    a: Mapping[str, FileChange], b: Mapping[str, FileChange], a_id: str, b_id: str
) -> tuple[Overlap, ...]:
    """One Overlap per name of each shared file, plus structural file/directory collisions.

    A file renamed on either side is named as the merge names it — by its new path(s) — and by its old
    path, each row with the pair's kind; a file under one name is one row."""
    rows: dict[str, Overlap] = {}
    seen: set[tuple[int, int]] = set()
    for path in sorted(a.keys() & b.keys()):
        ca, cb = a[path], b[path]
        if (id(ca), id(cb)) in seen:
            continue
        seen.add((id(ca), id(cb)))
        kind = classify(ca, cb)
        for name in names(ca, cb):
            if name not in rows or rows[name].kind is OverlapKind.DISJOINT:
                rows[name] = Overlap(a_id, b_id, name, kind)
    for path in _structural(a, b) + _structural(b, a):
        rows.setdefault(path, Overlap(a_id, b_id, path, OverlapKind.OVERLAPPING))
    return tuple(rows[p] for p in sorted(rows))


def names(a: FileChange, b: FileChange) -> tuple[str, ...]:
    """The names two changes of one file go by: a rename's new path(s) (where git's merge puts the file
    and reports its conflict), then the path(s) in the base."""
    renamed = [c.new_path for c in (a, b) if c.status is FileStatus.RENAMED]
    return tuple(dict.fromkeys([*renamed, a.path, b.path]))


def _structural(a: Mapping[str, FileChange], b: Mapping[str, FileChange]) -> list[str]:
    """Where ``a`` leaves a file and ``b`` puts something under it (the file's path), or ``b`` adds a
    file under a directory ``a`` renamed files out of (the added path)."""
    files = {c.new_path for c in a.values() if c.new_path}
    moved = _renamed_dirs(a)
    found = []
    for change in b.values():
        if not change.new_path or change.new_path in a:
            continue
        parents = set(_parents(change.new_path))
        found += sorted(files & parents)
        if change.status in (FileStatus.ADDED, FileStatus.RENAMED) and moved & parents:
            found.append(change.new_path)
    return found


def _parents(path: str) -> list[str]:
    """The directories above ``path``, innermost first (``a/b/c`` → ``a/b``, ``a``)."""
    found = []
    end = path.rfind("/")
    while end > 0:
        found.append(path[:end])
        end = path.rfind("/", 0, end)
    return found


def _parent(path: str) -> str:
    """The directory of ``path``; "." at the top."""
    return path.rpartition("/")[0] or "."


def _renamed_dirs(changes_: Mapping[str, FileChange]) -> set[str]:
    """Directories some file was renamed out of (candidates for git's directory-rename detection)."""
    dirs = set()
    for c in changes_.values():
        if c.status is FileStatus.RENAMED:
            old, new = _parent(c.path), _parent(c.new_path)
            if old != new and old != ".":
                dirs.add(old)
    return dirs


class ChangeIndex:
    """Earlier changes (entries 0, 1, … in the order added) indexed by path and directory, so a new change
    is compared (:func:`overlaps`) only with the entries it can share a row with — those naming one of its
    paths, leaving a file where it has a directory or the other way round, or renaming files out of a
    directory it adds to (or the other way round) — instead of with every earlier one: the rows are those
    of the pairwise comparison, found in time proportional to the paths, not to the entries."""

    def __init__(self) -> None:
        self._count = 0
        self._paths: dict[str, list[int]] = {}  # a path an entry names -> entries
        self._files: dict[str, list[int]] = {}  # a file an entry leaves (new path) -> entries
        self._dirs: dict[str, list[int]] = {}  # a directory above a file an entry leaves -> entries
        self._moved: dict[str, list[int]] = {}  # a directory an entry renamed files out of -> entries

    def __len__(self) -> int:
        return self._count

    def add(self, changes_: Mapping[str, FileChange]) -> int:
        """File one entry's changes; its number."""
        entry = self._count
        self._count += 1
        for path in changes_:
            self._paths.setdefault(path, []).append(entry)
        for new_path in {c.new_path for c in changes_.values() if c.new_path}:
            self._files.setdefault(new_path, []).append(entry)
            for parent in _parents(new_path):
                _file(self._dirs, parent, entry)
        for moved in _renamed_dirs(changes_):
            self._moved.setdefault(moved, []).append(entry)
        return entry

    def candidates(self, changes_: Mapping[str, FileChange], first: int = 0) -> list[int]:
        """The entries from ``first`` on that may share an :func:`overlaps` row with ``changes_``, in order
        (a superset: the rows themselves come from :func:`overlaps`)."""
        found: set[int] = set()
        for path in changes_:
            found.update(self._paths.get(path, ()))
        for new_path in {c.new_path for c in changes_.values() if c.new_path}:
            found.update(self._dirs.get(new_path, ()))  # an entry put something under our file
            for parent in _parents(new_path):
                found.update(self._files.get(parent, ()))  # an entry left a file where we have a directory
                found.update(self._moved.get(parent, ()))  # we add under a directory an entry renamed away
        for moved in _renamed_dirs(changes_):
            found.update(self._dirs.get(moved, ()))  # an entry adds under a directory we renamed away
        return sorted(e for e in found if e >= first)


def _file(index: dict[str, list[int]], key: str, entry: int) -> None:
    """Add ``entry`` under ``key`` once (an entry's files share their directories)."""
    entries = index.setdefault(key, [])
    if not entries or entries[-1] != entry:
        entries.append(entry)


def predict(repo: Path, base: str, a_commit: str, b_commit: str, a_id: str, b_id: str) -> tuple[Overlap, ...]:
    """Overlaps of ``base..a_commit`` and ``base..b_commit``, one per shared path."""
    ca = changes(git.merge_diff(repo, base, a_commit))
    cb = changes(git.merge_diff(repo, base, b_commit))
    return overlaps(ca, cb, a_id, b_id)


def conflicting(rows: Iterable[Overlap]) -> tuple[str, ...]:
    """Paths predicted to conflict (touching or overlapping), in order, without repeats."""
    return tuple(dict.fromkeys(r.path for r in rows if r.kind is not OverlapKind.DISJOINT))
