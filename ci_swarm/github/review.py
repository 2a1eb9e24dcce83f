"""Conflict review comments that always anchor.

A :class:`Conflict` says where the kept side stands in the integration file (RIGHT-side lines) and what
the other side was. GitHub accepts a review thread only on lines of the PR diff's hunks (base...head, 3
lines of context), and rejects the whole review for one bad anchor. So every comment is checked here
against the PR's own file patches (parsed with unidiff) before posting:

* all of the conflict's lines in one hunk → a line (or multi-line) comment, with the other side as a
  ```` ```suggestion ```` block when it replaces exactly those lines;
* some of them in a hunk → a comment on the part that is in the diff, no suggestion;
* none (or nothing on the RIGHT side: a deleted range, a deleted file) → a file-level comment
  (``subject_type: file``);
* the file is not in the PR diff at all → a note in the review body.

Very many conflicts are split over several reviews (``max_per_review`` threads each); file-level comments
beyond ``max_file_comments`` and notes beyond the body limit are summarised.

Subtask ids, reasons and file names are untrusted text: they go through :mod:`ci_swarm.neutral`; the other
side is shown in a fence (or suggestion block) longer than any backtick or tilde run inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from github import GithubException
from github.PullRequest import PullRequest
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from ci_swarm import neutral
from ci_swarm.github.client import forge_call
from ci_swarm.models import Conflict, ConflictKind

MAX_PER_REVIEW = 50
MAX_FILE_COMMENTS = 20
MAX_BODY = 60_000  # GitHub refuses bodies over 65,536 characters
MAX_QUOTE = 4_000


@dataclass(frozen=True)
class PatchFile:
    """One entry of ``GET /pulls/{n}/files``: its name, status and patch (None when GitHub shows none)."""

    filename: str
    status: str = "modified"
    patch: str | None = None


@dataclass(frozen=True)
class Hunk:
    start: int  # first RIGHT-side line
    end: int  # last RIGHT-side line
    lines: frozenset[int]  # RIGHT-side lines (context and added)


@dataclass(frozen=True)
class LineComment:
    path: str
    line: int
    body: str
    start_line: int | None = None
    suggestion: bool = False

    def payload(self) -> dict[str, object]:
        data: dict[str, object] = {"path": self.path, "line": self.line, "side": "RIGHT", "body": self.body}
        if self.start_line is not None:
            data.update(start_line=self.start_line, start_side="RIGHT")
        return data


@dataclass(frozen=True)
class FileComment:
    path: str
    body: str


@dataclass(frozen=True)
class ReviewPlan:
    """What to post: reviews (each a list of line comments), file-level comments, and body notes."""

    batches: tuple[tuple[LineComment, ...], ...] = ()
    file_comments: tuple[FileComment, ...] = ()
    notes: tuple[str, ...] = ()
    total: int = 0

    @property
    def line_comments(self) -> int:
        return sum(len(b) for b in self.batches)


@dataclass
class _Builder:
    lines: list[LineComment] = field(default_factory=list)
    files: list[FileComment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def right_hunks(patch: str | None, path: str = "file") -> tuple[Hunk, ...]:
    """The RIGHT-side line sets of a file patch as GitHub returns it (hunks only, no headers)."""
    if not patch:
        return ()
    text = f"--- a/{path}\n+++ b/{path}\n{patch}"
    if not text.endswith("\n"):
        text += "\n"
    try:
        parsed = PatchSet(text)
    except UnidiffParseError:  # a truncated or odd patch: anchor nothing rather than guess
        return ()
    hunks = []
    for patched in parsed:
        for hunk in patched:
            right = frozenset(
                ln.target_line_no for ln in hunk if (ln.is_added or ln.is_context) and ln.target_line_no
            )
            if right:
                hunks.append(Hunk(min(right), max(right), right))
    return tuple(hunks)


def anchor(hunks: Sequence[Hunk], start: int, end: int) -> tuple[int, int] | None:
    """The widest (start, end) inside one hunk that covers the most of [start, end]; None if none."""
    best: tuple[int, int] | None = None
    for hunk in hunks:
        inside = [n for n in range(start, end + 1) if n in hunk.lines]
        if not inside:
            continue
        # a thread spans consecutive diff lines of one hunk: take the longest run
        run_start = run_end = inside[0]
        longest = (inside[0], inside[0])
        for n in inside[1:]:
            run_start, run_end = (run_start, n) if n == run_end + 1 else (n, n)
            if run_end - run_start > longest[1] - longest[0]:
                longest = (run_start, run_end)
        if best is None or longest[1] - longest[0] > best[1] - best[0]:
            best = longest
    return best


def _quote(text: str) -> str:
    if len(text) <= MAX_QUOTE:
        return text
    return text[:MAX_QUOTE] + f"\n… ({len(text) - MAX_QUOTE} more characters in the run report)\n"


def _where(c: Conflict) -> str:
    if c.lines == (0, 0):
        return "the whole file"
    if c.lines[0] == c.lines[1]:
        return f"line {c.lines[0]}"
    return f"lines {c.lines[0]}–{c.lines[1]}"


def _modify_delete(c: Conflict) -> str:
    """What a modify/delete conflict did, in our words (git's "… left in tree." names the merge's tree,
    which is wrong when the deletion was kept)."""
    kept, other = neutral.inline(c.kept_subtask), neutral.inline(c.subtask)
    if not c.kept_text and c.other_text:
        return f"{kept} deleted the file and {other} changed it: this pull request deletes it"
    return f"{kept} changed the file and {other} deleted it: this pull request keeps {kept}'s version"


def _headline(c: Conflict) -> str:
    if c.kind is ConflictKind.MODIFY_DELETE:
        why = _modify_delete(c)
    else:
        why = neutral.inline(c.reason.strip().rstrip(".")) if c.reason else ""
    why = why or {
        ConflictKind.CONTENT: "both changed the same or touching lines",
        ConflictKind.ADD_ADD: "both added this file with different contents",
        ConflictKind.BINARY: "both changed this binary file",
        ConflictKind.RENAME: "the sides renamed or deleted it differently",
    }.get(c.kind, "both changed it")
    kept, other = neutral.inline(c.kept_subtask), neutral.inline(c.subtask)
    return (
        f"**ci-swarm conflict** ({c.kind.value}) at {_where(c)}: subtasks **{kept}** (kept) and "
        f"**{other}** collided — {why}."
    )


def line_body(c: Conflict, suggest: bool) -> str:
    other = neutral.inline(c.subtask)
    if suggest:
        return (
            f"{_headline(c)}\n\n**{other}**'s version of these lines is below: "
            f"commit the suggestion to take it instead.\n\n{neutral.fence(c.other_text, 'suggestion')}\n"
        )
    return f"{_headline(c)}\n\n**{other}**'s side:\n\n{neutral.fence(_quote(c.other_text))}\n"


def file_body(c: Conflict) -> str:
    text = c.other_text or "(deleted)"
    return f"{_headline(c)}\n\n**{neutral.inline(c.subtask)}**'s side:\n\n{neutral.fence(_quote(text))}\n"


def _path_note(path: str, body: str) -> str:
    """A body note for a comment that could not be placed: the file and the comment's headline."""
    return f"- {neutral.code_span(path)}: {body.splitlines()[0]}"


def note_line(c: Conflict, reason: str) -> str:
    kept = f"kept **{neutral.inline(c.kept_subtask)}**, **{neutral.inline(c.subtask)}**'s side recorded"
    return f"- {neutral.code_span(c.path)} ({c.kind.value}, {_where(c)}): {kept} — {neutral.inline(reason)}"


def _suggestable(c: Conflict, span: tuple[int, int]) -> bool:
    """A suggestion replaces exactly the commented lines: only when they are exactly the kept text, and
    the other side shows as it is (no invisible or bidirectional control the fence would strip)."""
    kept_lines = len(c.kept_text.splitlines())
    return (
        c.kind is ConflictKind.CONTENT
        and span == c.lines
        and kept_lines == c.lines[1] - c.lines[0] + 1
        and "\r" not in c.other_text
        and neutral.clean(c.other_text) == c.other_text  # a suggestion never drops a hidden character
    )


def _place(b: _Builder, c: Conflict, files: dict[str, PatchFile]) -> None:
    entry = files.get(c.path)
    if entry is None:
        b.notes.append(note_line(c, "the file is not part of the PR diff"))
        return
    hunks = right_hunks(entry.patch, c.path) if c.lines != (0, 0) else ()
    span = anchor(hunks, c.lines[0], c.lines[1]) if hunks else None
    if span is None:
        b.files.append(FileComment(c.path, file_body(c)))
        return
    suggest = _suggestable(c, span)
    start = span[0] if span[0] < span[1] else None
    b.lines.append(LineComment(c.path, span[1], line_body(c, suggest), start, suggest))


def plan_review(
    conflicts: Iterable[Conflict],
    files: Iterable[PatchFile],
    *,
    max_per_review: int = MAX_PER_REVIEW,
    max_file_comments: int = MAX_FILE_COMMENTS,
) -> ReviewPlan:
    """Place every conflict: line comment, file-level comment, or body note (pure)."""
    by_name = {f.filename: f for f in files}
    b = _Builder()
    conflicts = tuple(conflicts)
    for c in conflicts:
        _place(b, c, by_name)
    extra = b.files[max_file_comments:]
    notes = b.notes + [_path_note(f.path, f.body) for f in extra]
    batches = tuple(tuple(b.lines[i : i + max_per_review]) for i in range(0, len(b.lines), max_per_review))
    return ReviewPlan(batches, tuple(b.files[:max_file_comments]), tuple(notes), len(conflicts))


def review_body(plan: ReviewPlan, part: int, parts: int, notes: Sequence[str]) -> str:
    """The body of review ``part`` (1-based) of ``parts``, with ``notes`` (the caller puts them last)."""
    head = (
        f"ci-swarm recorded **{plan.total}** conflict(s) between subtasks. Every conflicting region kept one "
        "side (nothing is lost: the agent branches are pushed too). Each comment shows the other side; "
        "where it replaces exactly the commented lines it is a suggestion you can commit in one click."
    )
    if parts > 1:
        head += f"\n\nPart {part} of {parts}."
    if not notes:
        return head
    lines = [head, "", "Conflicts that cannot be commented on a line of the diff:", ""]
    size = sum(len(x) for x in lines)
    for i, note in enumerate(notes):
        if size + len(note) > MAX_BODY:
            lines.append(f"- … and {len(notes) - i} more, listed in the run report")
            break
        lines.append(note)
        size += len(note) + 1
    return "\n".join(lines)


# --- posting (PyGithub) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewResult:
    reviews: int
    line_comments: int
    file_comments: int
    body_notes: int
    notes: tuple[str, ...] = ()


def _is_422(exc: Exception) -> bool:
    return isinstance(exc, GithubException) and exc.status == 422


def _create_review(pr: PullRequest, commit_id: str, body: str, comments: Sequence[LineComment]) -> None:
    """POST a COMMENT review pinned to ``commit_id`` (PyGithub's create_review wants a Commit object)."""
    payload = {
        "commit_id": commit_id,
        "body": body,
        "event": "COMMENT",
        "comments": [c.payload() for c in comments],
    }
    pr._requester.requestJsonAndCheck("POST", f"{pr.url}/reviews", input=payload)


def _file_comments(pr: PullRequest, commit_id: str, comments: Iterable[FileComment]) -> tuple[int, list[str]]:
    posted, notes = 0, []
    for c in comments:
        try:
            pr.create_review_comment(c.body, commit_id, c.path, subject_type="file")
            posted += 1
        except GithubException as exc:
            if exc.status != 422:
                raise
            notes.append(_path_note(c.path, c.body))
    return posted, notes


def post_review(pr: PullRequest, commit_id: str, plan: ReviewPlan, token: str = "") -> ReviewResult:
    """Post the plan: file-level comments, then one review per batch (the notes in the last one).

    Should GitHub still reject a batch (a diff that changed under us), its comments are demoted to
    file-level comments rather than lost. Errors other than 422 become a ForgeError.
    """
    with forge_call(f"posting the conflict review on pull request #{pr.number}", token):
        files, notes = _file_comments(pr, commit_id, plan.file_comments)
        notes = [*plan.notes, *notes]
        lines = reviews = 0
        batches = list(plan.batches)
        for index, batch in enumerate(batches, 1):
            last = index == len(batches)
            body = review_body(plan, index, len(batches), notes if last else ())
            try:
                _create_review(pr, commit_id, body, batch)
                reviews += 1
                lines += len(batch)
                if last:
                    notes_posted = len(notes)
                    return ReviewResult(reviews, lines, files, notes_posted)
            except GithubException as exc:
                if not _is_422(exc):
                    raise
                demoted = [FileComment(c.path, c.body) for c in batch]
                more, failed = _file_comments(pr, commit_id, demoted)
                files += more
                notes += failed
        if notes or not reviews:
            _create_review(pr, commit_id, review_body(plan, 1, 1, notes), ())
            reviews += 1
        return ReviewResult(reviews, lines, files, len(notes))
