"""The merge queue: finished agent branches land on the integration branch one at a time, in the object DB.

Each merge is ``git merge-tree --write-tree`` (tip, branch) → ``git commit-tree`` with two parents (tip,
agent commit) → ``git update-ref`` (compare-and-swap on the old tip). No checkout, no working tree, never
the user's index: conflicted merges are finished in a throwaway index (``GIT_INDEX_FILE``). Agent branches
are never moved or deleted.

Before each merge the branch's diff is compared, path by path (:mod:`ci_swarm.overlap`), with the diffs of
the subtasks merged since the branch started; the rows are kept (:attr:`MergeQueue.overlaps`) and the
paths predicted to conflict are recorded on the :class:`MergeRecord`.

When git reports conflicts they are resolved so that nothing is lost and no conflict marker lands:

* **content** (a text file changed on both sides): ``git merge-file --diff3`` re-merges the three
  versions; every non-conflicting hunk of both sides lands, and each conflicting region keeps ONE side.
  The other side becomes a :class:`Conflict` with its full text (and the base text of the region).
  ``Conflict.lines`` is the kept text's 1-based inclusive range in the resolved integration file; when
  the kept side is empty (a deletion won) it is ``(n, n)`` with ``n`` the line before the removed region,
  ``(1, 1)`` at the top of the file, ``(0, 0)`` when the file ends up empty.
* a file added in a directory the other side renamed lands where git put it (in the renamed
  directory); nothing is lost, so nothing is recorded.
* **whole-file** conflicts (modify/delete, add/add, binary, rename/delete, rename/rename, distinct types,
  symlinks, submodules): one side is kept whole and the other recorded (full text, or a note for binary
  and submodule contents); ``lines`` is the kept file's whole range, ``(0, 0)`` if the kept side is a
  deletion or has no lines. A file/directory conflict always keeps the directory (it may hold other
  subtasks' files); the file is recorded, never left under git's ``path~side`` name.

Which side wins is :class:`MergePolicy.prefer`: ``()`` ("first") keeps what is already on the integration
branch; a role list keeps the side whose subtask's role comes first (unlisted roles rank last; ties keep
the integration side). The integration side of a region belongs to the subtask merged since the branch
started whose own diff added (or, for a deletion, removed) the most of that region's lines; for a
whole-file conflict to the last such subtask that touched the path.

A branch whose commit equals its start commit (the agent changed nothing) is not merged: its record is
``SKIPPED`` with ``commit`` = the unchanged integration tip.

Note: merge-tree decides conflicts with histogram diffs, ``merge-file`` re-merges with myers diffs; on
rare inputs with many repeated lines a file git flags can re-merge without a conflicting region (then
nothing is recorded for it) or regions can be cut differently. Either way every hunk lands or is recorded.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ci_swarm import git
from ci_swarm.errors import GitError, RepoError
from ci_swarm.models import Conflict, ConflictKind, MergePolicy, MergeRecord, MergeStatus, Overlap
from ci_swarm.naming import ROLE_TRAILER, TRAILER
from ci_swarm.overlap import FileChange, changes, conflicting, overlaps

MARKER_SIZE = 61  # wide markers: a content line never looks like one
_REGULAR = frozenset({"100644", "100755"})
_BINARY_PROBE = 8000  # git's buffer_is_binary: a NUL in the first 8000 bytes


@dataclass(frozen=True)
class Block:
    """One conflicting region of a diff3 merge: each side's text (whole lines, with their endings)."""

    ours: bytes
    base: bytes
    theirs: bytes


@dataclass(frozen=True)
class _Merged:
    subtask: str
    start: str
    commit: str
    merge: str
    changes: Mapping[str, FileChange]


@dataclass(frozen=True)
class _Side:
    mode: str
    oid: str


@dataclass
class _Group:
    """Conflicted paths git reports together (a rename's names, a file and its ``path~side`` copy)."""

    paths: set[str] = field(default_factory=set)
    kinds: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    directories: set[str] = field(default_factory=set)  # file/directory: these stay directories


class MergeQueue:
    """Sequential merges onto ``integration_branch`` (which the caller created); see the module doc."""

    def __init__(
        self,
        repo: Path,
        integration_branch: str,
        base_commit: str,
        policy: MergePolicy,
        roles: Mapping[str, str],
    ) -> None:
        self.repo = repo
        self.integration_branch = integration_branch
        self._ref = f"refs/heads/{integration_branch}"
        tip = git.try_rev_parse(repo, self._ref)
        if tip is None:
            raise RepoError(f"integration branch {integration_branch!r} does not exist in {repo}")
        self._tip = tip
        self._policy = policy
        self._roles = dict(roles)
        self._merged: list[_Merged] = []
        self._overlaps: list[Overlap] = []
        self._position = {base_commit: 0, tip: 0}  # integration commit -> merges it contains

    @property
    def tip(self) -> str:
        """The current integration commit."""
        return self._tip

    @property
    def overlaps(self) -> tuple[Overlap, ...]:
        """Every (earlier merged, later merged, path, kind) row seen so far."""
        return tuple(self._overlaps)

    def merge(self, subtask_id: str, branch_commit: str, start_commit: str, order: int) -> MergeRecord:
        """Merge one finished branch onto the tip; see the module doc for conflicts and skips."""
        started = time.perf_counter()
        tip = self._tip
        if branch_commit == start_commit:
            return MergeRecord(subtask_id, order, MergeStatus.SKIPPED, commit=tip)
        mine = changes(git.merge_diff(self.repo, start_commit, branch_commit))
        since = self._merged_since(start_commit)
        rows = [row for m in since for row in overlaps(m.changes, mine, m.subtask, subtask_id)]
        predicted = self._predict(rows, start_commit, tip, mine, subtask_id)
        result = git.merge_tree(self.repo, tip, branch_commit)
        tree, found = (result.tree, ()) if result.clean else self._resolve(result, subtask_id, since)
        message = _message(subtask_id, self._roles.get(subtask_id, ""), found)
        new = git.commit_tree(self.repo, tree, [tip, branch_commit], message)
        git.update_ref(self.repo, self._ref, new, old=tip, message=f"ci-swarm: merge {subtask_id}")
        self._tip = new
        self._merged.append(_Merged(subtask_id, start_commit, branch_commit, new, mine))
        self._position[new] = len(self._merged)
        self._overlaps += rows
        status = MergeStatus.CONFLICTED if found else MergeStatus.CLEAN
        seconds = round(time.perf_counter() - started, 6)
        return MergeRecord(subtask_id, order, status, new, predicted, found, seconds)

    # --- prediction -----------------------------------------------------------------------------

    def _merged_since(self, start: str) -> list[_Merged]:
        if start in self._position:
            return self._merged[self._position[start] :]
        return [m for m in self._merged if not git.is_ancestor(self.repo, m.merge, start)]

    def _predict(
        self, rows: list[Overlap], start: str, tip: str, mine: Mapping[str, FileChange], subtask_id: str
    ) -> tuple[str, ...]:
        """Paths predicted to conflict: pairwise rows, plus the branch against the tip itself when the
        pairwise view could be incomplete (shared paths, or a start the queue did not produce)."""
        paths = list(conflicting(rows))
        if rows or start not in self._position:
            theirs = changes(git.merge_diff(self.repo, start, tip))
            paths += conflicting(overlaps(theirs, mine, self.integration_branch, subtask_id))
        return tuple(dict.fromkeys(paths))

    # --- conflicts ------------------------------------------------------------------------------

    def _resolve(
        self, result: git.MergeTree, subtask_id: str, since: Sequence[_Merged]
    ) -> tuple[str, tuple[Conflict, ...]]:
        stages: dict[str, dict[int, _Side]] = {}
        for entry in result.entries:
            stages.setdefault(entry.path, {})[entry.stage] = _Side(entry.mode, entry.oid)
        found: list[Conflict] = []
        with git.temp_index(self.repo, result.tree) as env:
            for group in _groups(result, stages):
                resolver = _Resolver(self, env, stages, group, subtask_id, since)
                found += resolver.resolve()
            tree = git.write_tree(self.repo, env)
        return tree, tuple(found)

    def ours_wins(self, ours: str, theirs: str) -> bool:
        """The policy: True when the integration side (owned by ``ours``) keeps the region."""
        prefer = self._policy.prefer
        if not prefer:
            return True

        def rank(subtask: str) -> int:
            role = self._roles.get(subtask, "")
            return prefer.index(role) if role in prefer else len(prefer)

        return rank(ours) <= rank(theirs)


class _Resolver:
    """Resolves one group of conflicted paths into the temporary index; returns the records."""

    def __init__(
        self,
        queue: MergeQueue,
        env: Mapping[str, str],
        stages: Mapping[str, Mapping[int, _Side]],
        group: _Group,
        subtask_id: str,
        since: Sequence[_Merged],
    ) -> None:
        self.repo = queue.repo
        self.queue = queue
        self.env = env
        self.stages = stages
        self.group = group
        self.subtask = subtask_id
        self.since = since

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
        if set(sides) != {1, 2, 3} or not all(s.mode in _REGULAR for s in sides.values()):
            return False
        return all(kind == "CONFLICT (contents)" for kind in self.group.kinds)

    def _content(self, path: str) -> list[Conflict]:
        sides = self.stages[path]
        ours, base, theirs = (git.read_blob(self.repo, sides[k].oid) for k in (2, 1, 3))
        if any(_is_binary(data) for data in (ours, base, theirs)):
            return self._whole(ConflictKind.BINARY)
        nonce = secrets.token_hex(8)
        labels = (f"ours-{nonce}", f"base-{nonce}", f"theirs-{nonce}")
        merged = git.merge_file_diff3(self.repo, ours, base, theirs, labels, MARKER_SIZE)
        segments = parse_diff3(merged, labels, MARKER_SIZE)
        if segments is None:
            return self._whole(ConflictKind.CONTENT, "conflict regions could not be parsed; whole file kept")
        segments = fix_eof(segments, Block(ours, base, theirs))
        owners = self._owners(path)
        choices = [self._choose(seg, owners, path) for seg in segments]
        text, spans = _assemble(segments, choices)
        mode = sides[3].mode if sides[2].mode == sides[1].mode else sides[2].mode
        git.index_set(self.repo, self.env, path, mode, git.write_blob(self.repo, text))
        found = []
        for seg, choice, span in zip(segments, choices, spans, strict=True):
            if isinstance(seg, Block) and choice is not None:
                winner, loser, ours_won = choice
                kept, other = (seg.ours, seg.theirs) if ours_won else (seg.theirs, seg.ours)
                found.append(
                    Conflict(
                        path=path,
                        kind=ConflictKind.CONTENT,
                        subtask=loser,
                        kept_subtask=winner,
                        lines=span,
                        kept_text=_text(kept),
                        other_text=_text(other),
                        base_text=_text(seg.base),
                    )
                )
        return found

    def _choose(
        self, seg: bytes | Block, owners: Sequence[_Merged], path: str
    ) -> tuple[str, str, bool] | None:
        """(winner, loser, ours won) for a real conflicting block; None for text that just lands."""
        if not isinstance(seg, Block) or seg.ours == seg.theirs:
            return None
        ours_owner = self._block_owner(seg, owners, path)
        if self.queue.ours_wins(ours_owner, self.subtask):
            return ours_owner, self.subtask, True
        return self.subtask, ours_owner, False

    def _block_owner(self, block: Block, owners: Sequence[_Merged], path: str) -> str:
        if len(owners) <= 1:
            return owners[0].subtask if owners else self.queue.integration_branch
        wanted = _lines(block.ours) or _lines(block.base)

        def score(item: tuple[int, _Merged]) -> tuple[int, int]:
            change = item[1].changes[path]
            pool = set(change.added_lines if _lines(block.ours) else change.removed_lines)
            return sum(line in pool for line in wanted), item[0]

        return max(enumerate(owners), key=score)[1].subtask

    def _owners(self, *paths: str) -> list[_Merged]:
        """Subtasks merged since the branch started whose own diff touched one of ``paths``."""
        return [m for m in self.since if any(p in m.changes for p in paths)]

    # --- whole-file conflicts -----------------------------------------------------------------

    def _whole(self, kind: ConflictKind | None = None, note: str = "") -> list[Conflict]:
        versions, asides = self._versions()
        owners = self._owners(*versions, *self.group.paths)
        ours_owner = owners[-1].subtask if owners else self.queue.integration_branch
        ours_won = self.queue.ours_wins(ours_owner, self.subtask)
        who = {2: ours_owner, 3: self.subtask}
        win, lose = (2, 3) if ours_won else (3, 2)
        loser_elsewhere = any(lose in sides for sides in versions.values())
        reason = "; ".join([*self.group.texts, note] if note else self.group.texts)
        for aside in asides:
            git.index_remove(self.repo, self.env, aside)
        found = []
        for path in sorted(versions):
            sides = versions[path]
            if path in self.group.directories:  # the directory stays; the file side is recorded
                file_side = 3 if 3 in sides else 2
                keeper, dropped = who[5 - file_side], who[file_side]
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
        kept: _Side | None,
        sides: Mapping[int, _Side],
        lost_stage: int,
        reason: str,
    ) -> list[Conflict]:
        lost, base = sides.get(lost_stage), sides.get(1)
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

    def _versions(self) -> tuple[dict[str, dict[int, _Side]], list[str]]:
        """Stages per original path (a ``path~side`` copy folded back into ``path``), and the copies."""
        versions: dict[str, dict[int, _Side]] = {}
        asides = []
        for path in sorted(self.group.paths):
            original = _original(path, self.group.paths)
            if original != path:
                asides.append(path)
            if path in self.stages or original in self.stages:
                versions.setdefault(original, {}).update(self.stages.get(path, {}))
        return versions, asides

    def _place(self, path: str, side: _Side | None) -> None:
        if side is None:
            git.index_remove(self.repo, self.env, path)
        else:
            git.index_set(self.repo, self.env, path, side.mode, side.oid)

    def _blob(self, side: _Side | None) -> bytes | None:
        if side is None or side.mode == "160000":
            return None
        return git.read_blob(self.repo, side.oid)

    def _kind(self, sides: Mapping[int, _Side], blobs: Sequence[bytes | None]) -> ConflictKind:
        kinds = " ".join(self.group.kinds)
        if "rename" in kinds:
            return ConflictKind.RENAME
        if "file/directory" in kinds:
            return ConflictKind.MODIFY_DELETE if 1 in sides else ConflictKind.ADD_ADD
        if "modify/delete" in kinds or 2 not in sides or 3 not in sides:
            return ConflictKind.MODIFY_DELETE if 1 in sides else ConflictKind.ADD_ADD
        if "binary" in kinds or any(b is not None and _is_binary(b) for b in blobs):
            return ConflictKind.BINARY
        return ConflictKind.CONTENT if 1 in sides else ConflictKind.ADD_ADD


# --- pure helpers -------------------------------------------------------------------------------


def _groups(result: git.MergeTree, stages: Mapping[str, Mapping[int, _Side]]) -> list[_Group]:
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


def parse_diff3(data: bytes, labels: tuple[str, str, str], size: int) -> list[bytes | Block] | None:
    """Split ``merge-file --diff3`` output into clean text and conflict blocks; None if ambiguous."""
    start, mid, end = (f"{c * size} {label}".encode() for c, label in zip("<|>", labels, strict=True))
    sep = b"=" * size
    markers = {start: 0, mid: 1, sep: 2, end: 3}
    segments: list[bytes | Block] = []
    parts: list[list[bytes]] = [[]]
    for line in _split(data):
        marker = markers.get(_bare(line))
        state = len(parts) - 1  # 0: clean, 1: ours, 2: base, 3: theirs
        if marker is None:
            parts[-1].append(line)
        elif marker == 0 and state == 0:
            if parts[0]:
                segments.append(b"".join(parts[0]))
            parts = [[], []]
        elif marker == state and state in (1, 2):
            parts.append([])
        elif marker == 3 and state == 3:
            segments.append(Block(*(b"".join(p) for p in parts[1:])))
            parts = [[]]
        else:
            return None
    if len(parts) != 1:
        return None
    if parts[0]:
        segments.append(b"".join(parts[0]))
    return segments


def fix_eof(segments: list[bytes | Block], originals: Block) -> list[bytes | Block]:
    """merge-file ends every side of a final conflict with a newline; give back each file's own ending."""
    if not segments or not isinstance(segments[-1], Block):
        return segments
    last = segments[-1]
    fixed = Block(
        _restore_tail(last.ours, originals.ours),
        _restore_tail(last.base, originals.base),
        _restore_tail(last.theirs, originals.theirs),
    )
    return [*segments[:-1], fixed]


def _restore_tail(side: bytes, original: bytes) -> bytes:
    if not side or not original or original.endswith(b"\n"):
        return side
    tail = original[original.rfind(b"\n") + 1 :]
    lines = _split(side)
    return b"".join(lines[:-1]) + tail if lines[-1].startswith(tail) else side


def _assemble(
    segments: Sequence[bytes | Block], choices: Sequence[tuple[str, str, bool] | None]
) -> tuple[bytes, list[tuple[int, int]]]:
    """The resolved file, and for each segment the 1-based inclusive line span of the text kept."""
    pieces = [
        seg if isinstance(seg, bytes) else (seg.ours if choice is None or choice[2] else seg.theirs)
        for seg, choice in zip(segments, choices, strict=True)
    ]
    total = sum(_count(p) for p in pieces)
    spans, done = [], 0
    for piece in pieces:
        n = _count(piece)
        if n:
            spans.append((done + 1, done + n))
        else:
            anchor = done or (1 if total else 0)
            spans.append((anchor, anchor))
        done += n
    return b"".join(pieces), spans


def _split(data: bytes) -> list[bytes]:
    """Lines as git sees them (split on LF only), each keeping its ending."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _bare(line: bytes) -> bytes:
    line = line[:-1] if line.endswith(b"\n") else line
    return line[:-1] if line.endswith(b"\r") else line


def _count(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _lines(data: bytes) -> list[str]:
    return [line.decode("utf-8", "surrogateescape") for line in _split(data)]


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_PROBE]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _describe(side: _Side | None, data: bytes | None) -> str:
    if side is None:
        return ""
    if side.mode == "160000":
        return f"(submodule at commit {side.oid})"
    if data is None:
        return ""
    if _is_binary(data):
        return f"(binary file, {len(data)} bytes, blob {side.oid})"
    return _text(data)


def _whole_span(side: _Side | None, data: bytes | None) -> tuple[int, int]:
    if side is None or data is None or _is_binary(data) or not data:
        return (0, 0)
    return (1, _count(data))


def _message(subtask_id: str, role: str, found: Sequence[Conflict]) -> str:
    title = f"Merge subtask {subtask_id}" + (f" ({role})" if role else "")
    body = ""
    if found:
        listed = "\n".join(
            f"- {c.path} ({c.kind.value}): kept {c.kept_subtask}, recorded {c.subtask}" for c in found
        )
        body = f"Conflicts resolved by the merge policy (the other side is in the run report):\n{listed}\n\n"
    return f"{title}\n\n{body}{TRAILER}: {subtask_id}\n"


# --- the CLI's `ci-swarm merge` -----------------------------------------------------------------


def merge_branches(
    repo: Path, branches: Sequence[str], base: str, integration_branch: str, policy: MergePolicy
) -> tuple[str, tuple[MergeRecord, ...], tuple[Overlap, ...]]:
    """Create ``integration_branch`` at ``base`` and merge ``branches`` onto it in order.

    A branch's subtask id is its tip's ``Swarm-Subtask`` trailer, else the last component of its name
    (made unique with the full name when two collide); its role the ``Swarm-Role`` trailer, else
    "agent"; its start the merge base with ``base``. Returns (tip, merge records, overlap rows).
    """
    base_commit = git.rev_parse(repo, base)
    plan = [_branch_info(repo, name, base_commit) for name in branches]
    ids: dict[str, str] = {}
    for name, (sub_id, _, _, _) in zip(branches, plan, strict=True):
        ids[name] = name if sub_id in ids.values() else sub_id
    roles = {ids[name]: role for name, (_, role, _, _) in zip(branches, plan, strict=True)}
    git.create_branch(repo, integration_branch, base_commit)
    queue = MergeQueue(repo, integration_branch, base_commit, policy, roles)
    records = tuple(
        queue.merge(ids[name], commit, start, order)
        for order, (name, (_, _, commit, start)) in enumerate(zip(branches, plan, strict=True), start=1)
    )
    return queue.tip, records, queue.overlaps


def _branch_info(repo: Path, name: str, base_commit: str) -> tuple[str, str, str, str]:
    """(subtask id, role, commit, start commit) of one branch; RepoError naming an unknown one."""
    commit = git.try_rev_parse(repo, name)
    if commit is None:
        raise RepoError(f"unknown branch {name!r} in {repo}")
    try:
        start = git.merge_base(repo, base_commit, commit)
    except GitError as exc:
        raise RepoError(f"branch {name!r} shares no history with the base {base_commit[:12]}") from exc
    sub_id = git.trailer(repo, commit, TRAILER) or PurePosixPath(name).name
    role = git.trailer(repo, commit, ROLE_TRAILER) or "agent"
    return sub_id, role, commit, start
