"""A pull request's diff as GitHub computes it, and GitHub's rules for review threads on it.

The diff is ``merge-base(base, head)..head`` with 3 lines of context and rename detection, computed with
git on the bare repository. Hunk headers are parsed here on purpose independently of the code under test
(which uses unidiff), so a parsing bug on one side cannot hide one on the other.

github.com updates a pull request's ``head.sha`` (and so its file list) asynchronously after a push; with
``settings.head_sha_delay`` the fake does too (:func:`visible_head`), so a publisher that anchors review
comments right after pushing sees the old diff, as it would there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_swarm import git

if TYPE_CHECKING:
    from ci_swarm.testing.fake_github.store import Pull

PATH_INVALID = "Pull request review thread path is invalid"
LINE_NOT_IN_DIFF = "Pull request review thread line must be part of the diff"
START_SAME_HUNK = "Pull request review thread start line must be part of the same hunk as the line."
START_PRECEDES = "Pull request review thread start line must precede the end line."
HUNK_BLANK = "Pull request review thread diff hunk can't be blank"
_ORDER = (PATH_INVALID, LINE_NOT_IN_DIFF, START_SAME_HUNK, START_PRECEDES, HUNK_BLANK)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}


@dataclass(frozen=True)
class DiffLine:
    position: int  # lines below the file's first @@ header (GitHub's `position`)
    kind: str  # "@" header, " " context, "+" added, "-" removed, "\\" no-newline marker
    old: int | None
    new: int | None
    text: str


@dataclass
class Hunk:
    lines: list[DiffLine] = field(default_factory=list)


@dataclass
class FileDiff:
    filename: str
    status: str
    previous_filename: str | None
    sha: str
    additions: int = 0
    deletions: int = 0
    patch: str | None = None
    hunks: list[Hunk] = field(default_factory=list)

    def find(self, line: int, side: str) -> tuple[int, DiffLine] | None:
        """(hunk index, diff line) of ``line`` on ``side`` (RIGHT = new file, LEFT = old file)."""
        for index, hunk in enumerate(self.hunks):
            for dl in hunk.lines:
                if side == "RIGHT" and dl.kind in " +" and dl.new == line:
                    return index, dl
                if side == "LEFT" and dl.kind in " -" and dl.old == line:
                    return index, dl
        return None

    def at_position(self, position: int) -> tuple[int, DiffLine] | None:
        for index, hunk in enumerate(self.hunks):
            for dl in hunk.lines:
                if dl.position == position and dl.kind != "@":
                    return index, dl
        return None

    def diff_hunk(self, hunk_index: int, upto: DiffLine) -> str:
        """GitHub's ``diff_hunk``: the hunk header and its lines down to the commented one."""
        lines = [dl.text for dl in self.hunks[hunk_index].lines if dl.position <= upto.position]
        return "\n".join(lines)


def parse_patch(patch: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    old = new = 0
    for position, text in enumerate(patch.split("\n")):
        match = _HUNK.match(text)
        if match:
            old, new = int(match[1]), int(match[3])
            hunks.append(Hunk([DiffLine(position, "@", None, None, text)]))
            continue
        if not hunks or not text:
            continue
        kind = text[0]
        if kind == " ":
            hunks[-1].lines.append(DiffLine(position, kind, old, new, text))
            old, new = old + 1, new + 1
        elif kind == "+":
            hunks[-1].lines.append(DiffLine(position, kind, None, new, text))
            new += 1
        elif kind == "-":
            hunks[-1].lines.append(DiffLine(position, kind, old, None, text))
            old += 1
        else:
            hunks[-1].lines.append(DiffLine(position, "\\", None, None, text))
    return hunks


def _name_status(bare: Path, base: str, head: str) -> list[tuple[str, str, str | None]]:
    fields = git.run(bare, "diff", "--name-status", "-z", "-M", base, head).text.split("\0")
    entries: list[tuple[str, str, str | None]] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        if status in "RC":
            entries.append((_STATUS[status], fields[i + 2], fields[i + 1]))
            i += 3
        else:
            entries.append((_STATUS.get(status, "modified"), fields[i + 1], None))
            i += 2
    return entries


def _sections(text: str) -> list[str]:
    parts = re.split(r"^(?=diff --git )", text, flags=re.MULTILINE)
    return [p for p in parts if p.startswith("diff --git ")]


def _file_diff(status: str, name: str, previous: str | None, section: str) -> FileDiff:
    header, sep, body = section.partition("\n@@")
    index = re.search(r"^index ([0-9a-f]+)\.\.([0-9a-f]+)", header, flags=re.MULTILINE)
    sha = ""
    if index:
        sha = index[2] if status != "removed" else index[1]
    entry = FileDiff(name, status, previous, sha or git.ZERO_OID)
    if not sep:
        return entry  # binary, or a pure rename / mode change: no patch
    patch = ("@@" + body).rstrip("\n")
    entry.patch = patch
    entry.hunks = parse_patch(patch)
    for hunk in entry.hunks:
        entry.additions += sum(1 for dl in hunk.lines if dl.kind == "+")
        entry.deletions += sum(1 for dl in hunk.lines if dl.kind == "-")
    return entry


def compute_files(bare: Path, base_sha: str, head_sha: str) -> list[FileDiff]:
    """The files of a pull request: merge-base(base, head)..head (GitHub's three-dot diff)."""
    start = git.merge_base(bare, base_sha, head_sha)
    text = git.run(
        bare, "diff", "--no-color", "--no-ext-diff", "-M", "-U3", "--full-index", start, head_sha
    ).text
    names = _name_status(bare, start, head_sha)
    return [_file_diff(s, n, p, sec) for (s, n, p), sec in zip(names, _sections(text), strict=True)]


def to_sentence(items: list[str]) -> str:
    """Rails' Array#to_sentence, which GitHub uses to join review thread errors."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


@dataclass(frozen=True)
class Anchor:
    """Where a valid review thread lands."""

    path: str
    line: int | None
    side: str | None
    start_line: int | None
    start_side: str | None
    position: int | None
    diff_hunk: str
    subject_type: str


def check_thread(files: dict[str, FileDiff], comment: dict[str, Any]) -> Anchor | list[str]:
    """Anchor a review-thread request on the diff, or the list of GitHub's error messages for it."""
    entry = files.get(str(comment.get("path", "")))
    if entry is None:
        return [PATH_INVALID, HUNK_BLANK]
    if comment.get("subject_type") == "file":
        return Anchor(entry.filename, None, None, None, None, None, "", "file")
    if comment.get("line") is None:
        return _by_position(entry, comment.get("position"))
    return _by_line(entry, comment)


def _by_position(entry: FileDiff, position: object) -> Anchor | list[str]:
    found = entry.at_position(position) if isinstance(position, int) else None
    if found is None:
        return [HUNK_BLANK]
    index, dl = found
    side, line = ("LEFT", dl.old) if dl.kind == "-" else ("RIGHT", dl.new)
    return Anchor(entry.filename, line, side, None, None, dl.position, entry.diff_hunk(index, dl), "line")


def _by_line(entry: FileDiff, comment: dict[str, Any]) -> Anchor | list[str]:
    line, side = int(comment["line"]), str(comment.get("side") or "RIGHT")
    found = entry.find(line, side)
    errors: list[str] = []
    if found is None:
        errors.append(LINE_NOT_IN_DIFF)
    start_line = comment.get("start_line")
    start_side = str(comment.get("start_side") or side) if start_line is not None else None
    if start_line is not None:
        start = entry.find(int(start_line), start_side or side)
        if found is None or start is None or start[0] != found[0]:
            errors.append(START_SAME_HUNK)
        if int(start_line) >= line and side == start_side:
            errors.append(START_PRECEDES)
    if errors or found is None:
        return [*errors, HUNK_BLANK]
    index, dl = found
    return Anchor(
        entry.filename,
        line,
        side,
        int(start_line) if start_line is not None else None,
        start_side,
        dl.position,
        entry.diff_hunk(index, dl),
        "line",
    )


def review_errors(messages: list[str]) -> str:
    """One sentence out of every thread's messages, in GitHub's order, each once."""
    seen = set(messages)
    return to_sentence([m for m in _ORDER if m in seen])


def visible_head(pr: Pull, live: str, delay: float, now: float) -> str:
    """The head commit the pull request shows at ``now``: a new ``live`` commit only ``delay`` seconds after
    the fake first saw it (0: at once); until then the one shown before."""
    if delay <= 0 or not pr.head_sha or live == pr.head_sha:
        pr.pending_sha = ""
        return live
    if live != pr.pending_sha:
        pr.pending_sha, pr.pending_since = live, now
    if now - pr.pending_since < delay:
        return pr.head_sha
    pr.pending_sha = ""
    return live
