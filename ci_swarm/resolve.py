"""Resolving a conflicted ``git merge-tree`` result so that nothing is lost and no conflict marker lands.

:func:`resolve` takes the conflicted result (its tree, stage entries and messages), finishes it in a
throwaway index (``GIT_INDEX_FILE``, never the user's) and returns the resolved tree and the
:class:`~ci_swarm.models.Conflict` records. Index stages are named (:class:`Stage`); the two sides are
:attr:`Stage.OURS` (the integration branch) and :attr:`Stage.THEIRS` (the branch being merged).

* **content** (a text file changed on both sides): ``git merge-file --diff3`` re-merges the three
  versions (parsed by :mod:`ci_swarm.diff3`); every non-conflicting hunk of both sides lands, and each
  conflicting region keeps ONE side. The other side becomes a ``Conflict`` with its full text (and the
  base text of the region); ``lines`` is the kept text's span (see :func:`ci_swarm.diff3.assemble`).
  A region where both sides only insert at one point (empty base text) lands BOTH sides in merge order —
  ours, then theirs — when :attr:`Parties.join_insertions` is set (``merge.insertions: both``, the
  default): nothing is recorded for it, only counted (:attr:`Resolution.joined`).
* a file added in a directory the other side renamed lands where git put it (in the renamed
  directory); nothing is lost, so nothing is recorded.
* **whole-file** conflicts (modify/delete, add/add, binary, rename/delete, rename/rename, distinct types,
  symlinks, submodules): one side is kept whole and the other recorded (full text, or a note for binary
  and submodule contents); ``lines`` is the kept file's whole range, ``(0, 0)`` if the kept side is a
  deletion or has no lines. A file/directory conflict always keeps the directory (it may hold other
  subtasks' files); the file is recorded, never left under git's ``path~side`` name.

Which side wins is the caller's policy (:attr:`Parties.ours_wins`). The integration side of a region
belongs to the subtask merged since the branch started whose own diff added (or, for a deletion, removed)
the most of that region's lines; for a whole-file conflict to the last such subtask that touched the path.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from ci_swarm import diff3, git
from ci_swarm.diff3 import MARKER_SIZE, Block, Segment
from ci_swarm.models import Conflict, ConflictKind
from ci_swarm.overlap import FileChange

_REGULAR = frozenset({"100644", "100755"})
_SUBMODULE = "160000"


class Stage(IntEnum):
    """Index stages of a conflicted path, as git numbers them."""

    BASE = 1
    OURS = 2  # the integration branch
    THEIRS = 3  # the branch being merged


def other(side: Stage) -> Stage:
    """The other side of a two-sided conflict: OURS ↔ THEIRS (BASE has none)."""
    if side is Stage.BASE:
        raise ValueError("the base stage has no other side")
    return Stage.THEIRS if side is Stage.OURS else Stage.OURS


@dataclass(frozen=True)
class Version:
    """One stage's entry of a conflicted path."""

    mode: str
    oid: str


Stages = Mapping[Stage, Version]


class Earlier(Protocol):
    """A subtask merged since the branch started, with its own diff (who owns the integration side)."""

    @property
    def subtask(self) -> str: ...

    @property
    def changes(self) -> Mapping[str, FileChange]: ...


@dataclass(frozen=True)
class Parties:
    """Who the two sides belong to and who wins."""

    subtask: str  # the branch being merged: owns THEIRS
    since: Sequence[Earlier]  # merged since that branch started, in merge order
    integration: str  # owns OURS where no earlier subtask touched the path
    ours_wins: Callable[[str, str], bool]  # (ours owner, theirs owner) -> the integration side keeps it
    join_insertions: bool = True  # insert/insert regions land both sides (ours, then theirs)


@dataclass(frozen=True)
class Resolution:
    """A conflicted merge finished: its tree, the conflicts recorded, and the insert/insert regions joined."""

    tree: str
    conflicts: tuple[Conflict, ...]
    joined: int = 0


@dataclass
class _Group:
    """Conflicted paths git reports together (a rename's names, a file and its ``path~side`` copy)."""

    paths: set[str] = field(default_factory=set)
    kinds: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    directories: set[str] = field(default_factory=set)  # file/directory: these stay directories


def resolve(repo: Path, result: git.MergeTree, parties: Parties) -> Resolution:
    """The resolved tree of a conflicted merge, the conflicts recorded and the regions joined; see the
    module doc."""
    stages: dict[str, dict[Stage, Version]] = {}
    for entry in result.entries:
        stages.setdefault(entry.path, {})[Stage(entry.stage)] = Version(entry.mode, entry.oid)
    found: list[Conflict] = []
    joined = 0
    with git.temp_index(repo, result.tree) as env:
        for group in _groups(result, stages):
            resolver = _Resolver(repo, env, stages, group, parties)
            found += resolver.resolve()
            joined += resolver.joined
        tree = git.write_tree(repo, env)
    return Resolution(tree, tuple(found), joined)


class _Resolver:
    """Resolves one group of conflicted paths into the temporary index; returns the records."""

    def __init__(
        self,
        repo: Path,
        env: Mapping[str, str],
        stages: Mapping[str, Stages],
        group: _Group,
        parties: Parties,
    ) -> None:
        self.repo = repo
        self.env = env
        self.stages = stages
        self.group = group
        self.parties = parties
        self.joined = 0  # insert/insert regions landed with both sides

    def resolve(self) -> list[Conflict]:
        if self.group.kinds and all("directory rename" in k for k in self.group.kinds):
            return []  # a file added where the other side renamed the directory: git placed it; no loss
        paths = [p for p in self.group.paths if p in self.stages]
        if len(self.group.paths) == 1 and len(paths) == 1 and self._is_text_content(paths[0]):
            return self._content(paths[0])
        return self._whole()

    # --- content conflicts: hunk level --------------------------------------------------------

    def _is_text_content(self, path: str) -> bool:
        sides = self.stages[path]
        if set(sides) != set(Stage) or not all(s.mode in _REGULAR for s in sides.values()):
            return False
        return all(kind == "CONFLICT (contents)" for kind in self.group.kinds)

    def _content(self, path: str) -> list[Conflict]:
        sides = self.stages[path]
        ours, base, theirs = (
            git.read_blob(self.repo, sides[s].oid) for s in (Stage.OURS, Stage.BASE, Stage.THEIRS)
        )
        if any(diff3.is_binary(data) for data in (ours, base, theirs)):
            return self._whole(ConflictKind.BINARY)
        nonce = secrets.token_hex(8)
        labels = (f"ours-{nonce}", f"base-{nonce}", f"theirs-{nonce}")
        merged = git.merge_file_diff3(self.repo, ours, base, theirs, labels, MARKER_SIZE)
        segments = diff3.parse_diff3(merged, labels, MARKER_SIZE)
        if segments is None:
            return self._whole(ConflictKind.CONTENT, "conflict regions could not be parsed; whole file kept")
        segments = diff3.fix_eof(segments, Block(ours, base, theirs))
        owners = self._owners(path)
        join = [self.parties.join_insertions and diff3.is_insert_insert(seg) for seg in segments]
        choices = [
            None if j else self._choose(seg, owners, path) for seg, j in zip(segments, join, strict=True)
        ]
        landing: list[bool | None] = [
            None if j else c is None or c[2] for c, j in zip(choices, join, strict=True)
        ]
        self.joined += sum(j and diff3.is_conflict(seg) for seg, j in zip(segments, join, strict=True))
        text, spans = diff3.assemble(segments, landing)
        mode = (
            sides[Stage.THEIRS].mode
            if sides[Stage.OURS].mode == sides[Stage.BASE].mode
            else sides[Stage.OURS].mode
        )
        git.index_set(self.repo, self.env, path, mode, git.write_blob(self.repo, text))
        found = []
        for seg, choice, span in zip(segments, choices, spans, strict=True):
            if isinstance(seg, Block) and choice is not None:
                winner, loser, ours_won = choice
                found.append(
                    Conflict(
                        path=path,
                        kind=ConflictKind.CONTENT,
                        subtask=loser,
                        kept_subtask=winner,
                        lines=span,
                        kept_text=diff3.decode(diff3.kept(seg, ours_won)),
                        other_text=diff3.decode(diff3.kept(seg, not ours_won)),
                        base_text=diff3.decode(seg.base),
                    )
                )
        return found

    def _choose(self, seg: Segment, owners: Sequence[Earlier], path: str) -> tuple[str, str, bool] | None:
        """(winner, loser, ours won) for a real conflicting block; None for text that just lands."""
        if not isinstance(seg, Block) or not diff3.is_conflict(seg):
            return None
        ours_owner = self._block_owner(seg, owners, path)
        theirs_owner = self.parties.subtask
        if self.parties.ours_wins(ours_owner, theirs_owner):
            return ours_owner, theirs_owner, True
        return theirs_owner, ours_owner, False

    def _block_owner(self, block: Block, owners: Sequence[Earlier], path: str) -> str:
        if len(owners) <= 1:
            return owners[0].subtask if owners else self.parties.integration
        ours_lines = diff3.text_lines(block.ours)
        wanted = ours_lines or diff3.text_lines(block.base)

        def score(item: tuple[int, Earlier]) -> tuple[int, int]:
            change = item[1].changes[path]
            pool = set(change.added_lines if ours_lines else change.removed_lines)
            return sum(line in pool for line in wanted), item[0]

        return max(enumerate(owners), key=score)[1].subtask

    def _owners(self, *paths: str) -> list[Earlier]:
        """Subtasks merged since the branch started whose own diff touched one of ``paths``."""
        return [m for m in self.parties.since if any(p in m.changes for p in paths)]

    # --- whole-file conflicts -----------------------------------------------------------------

    def _whole(self, kind: ConflictKind | None = None, note: str = "") -> list[Conflict]:
        versions, asides = self._versions()
        owners = self._owners(*versions, *self.group.paths)
        ours_owner = owners[-1].subtask if owners else self.parties.integration
        who = {Stage.OURS: ours_owner, Stage.THEIRS: self.parties.subtask}
        win = Stage.OURS if self.parties.ours_wins(ours_owner, self.parties.subtask) else Stage.THEIRS
        lose = other(win)
        loser_elsewhere = any(lose in sides for sides in versions.values())
        reason = "; ".join([*self.group.texts, note] if note else self.group.texts)
        for aside in asides:
            git.index_remove(self.repo, self.env, aside)
        found = []
        for path in sorted(versions):
            sides = versions[path]
            if path in self.group.directories:  # the directory stays; the file side is recorded
                file_side = Stage.THEIRS if Stage.THEIRS in sides else Stage.OURS
                keeper, dropped = who[other(file_side)], who[file_side]
                found += self._record(path, kind, keeper, dropped, None, sides, file_side, reason)
                continue
            self._place(path, sides.get(win))
            if sides.get(lose) == sides.get(win) or (lose not in sides and loser_elsewhere):
                continue  # nothing differs here (a rename's other name carries the loser's version)
            found += self._record(path, kind, who[win], who[lose], sides.get(win), sides, lose, reason)
        return found

    def _record(
        self,
        path: str,
        kind: ConflictKind | None,
        winner: str,
        loser: str,
        kept: Version | None,
        sides: Stages,
        lost_stage: Stage,
        reason: str,
    ) -> list[Conflict]:
        lost, base = sides.get(lost_stage), sides.get(Stage.BASE)
        kept_data, lost_data, base_data = (self._blob(s) for s in (kept, lost, base))
        return [
            Conflict(
                path=path,
                kind=kind or self._kind(sides, (kept_data, lost_data, base_data)),
                subtask=loser,
                kept_subtask=winner,
                lines=_whole_span(kept, kept_data),
                kept_text=_describe(kept, kept_data),
                other_text=_describe(lost, lost_data),
                base_text=_describe(base, base_data),
                reason=reason,
            )
        ]

    def _versions(self) -> tuple[dict[str, dict[Stage, Version]], list[str]]:
        """Stages per original path (a ``path~side`` copy folded back into ``path``), and the copies."""
        versions: dict[str, dict[Stage, Version]] = {}
        asides = []
        for path in sorted(self.group.paths):
            original = _original(path, self.group.paths)
            if original != path:
                asides.append(path)
            if path in self.stages or original in self.stages:
                versions.setdefault(original, {}).update(self.stages.get(path, {}))
        return versions, asides

    def _place(self, path: str, side: Version | None) -> None:
        if side is None:
            git.index_remove(self.repo, self.env, path)
        else:
            git.index_set(self.repo, self.env, path, side.mode, side.oid)

    def _blob(self, side: Version | None) -> bytes | None:
        if side is None or side.mode == _SUBMODULE:
            return None
        return git.read_blob(self.repo, side.oid)

    def _kind(self, sides: Stages, blobs: Sequence[bytes | None]) -> ConflictKind:
        kinds = " ".join(self.group.kinds)
        add_or_delete = ConflictKind.MODIFY_DELETE if Stage.BASE in sides else ConflictKind.ADD_ADD
        if "rename" in kinds:
            return ConflictKind.RENAME
        if "file/directory" in kinds or "modify/delete" in kinds:
            return add_or_delete
        if Stage.OURS not in sides or Stage.THEIRS not in sides:
            return add_or_delete
        if "binary" in kinds or any(b is not None and diff3.is_binary(b) for b in blobs):
            return ConflictKind.BINARY
        return ConflictKind.CONTENT if Stage.BASE in sides else ConflictKind.ADD_ADD


def _groups(result: git.MergeTree, stages: Mapping[str, Stages]) -> list[_Group]:
    """Union of conflicted paths that git's messages name together."""
    parent: dict[str, str] = {}

    def find(path: str) -> str:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    messages = [m for m in result.messages if m.kind.startswith("CONFLICT")]
    for path in stages:
        find(path)
    for message in messages:
        for path in message.paths[1:]:
            parent[find(path)] = find(message.paths[0])
    groups: dict[str, _Group] = {}
    for path in parent:
        groups.setdefault(find(path), _Group()).paths.add(path)
    for message in messages:
        group = groups[find(message.paths[0])]
        group.kinds.append(message.kind)
        group.texts.append(message.text)
        if "file/directory" in message.kind:
            group.directories |= {p for p in message.paths if _original(p, message.paths) == p}
    return [groups[k] for k in sorted(groups)]


def _original(path: str, others: Sequence[str] | set[str]) -> str:
    """``d`` for git's moved-aside ``d~side`` copy when ``d`` is named alongside it; else ``path``."""
    return next((o for o in others if o != path and path.startswith(o + "~")), path)


def _describe(side: Version | None, data: bytes | None) -> str:
    if side is None:
        return ""
    if side.mode == _SUBMODULE:
        return f"(submodule at commit {side.oid})"
    if data is None:
        return ""
    if diff3.is_binary(data):
        return f"(binary file, {len(data)} bytes, blob {side.oid})"
    return diff3.decode(data)


def _whole_span(side: Version | None, data: bytes | None) -> tuple[int, int]:
    if side is None or data is None or diff3.is_binary(data) or not data:
        return (0, 0)
    return (1, diff3.count_lines(data))
