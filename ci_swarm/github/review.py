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

How each conflict ended (issue #12, :func:`ci_swarm.report.conflict_resolution`) decides its comment:
``kept`` as above; ``refused`` as above, saying which agent tried a resolution and why it was refused;
``redone``/``resolved`` gets no comment on the lines (nothing was lost) — the review body says who resolved
it and that the checks passed.

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
from ci_swarm.models import Conflict, ConflictKind, MergeRecord, Repair, Resolved
from ci_swarm.report import conflict_resolution

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
    total: int = 0  # conflicts commented (kept or refused)
    resolved: tuple[str, ...] = ()  # one line per conflict an agent redid or resolved (no comment needed)

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


@dataclass(frozen=True)
class Refusal:
    """A resolution an agent tried on a conflict and the gate refused (the kept side stands)."""

    by: str
    reason: str = ""

    def text(self) -> str:
        who = f"**{neutral.inline(self.by)}**" if self.by else "an agent"
        why = neutral.inline(self.reason.strip().rstrip(".")) if self.reason else "no reason given"
        return f"A resolution was tried by {who} and refused — {why}. The kept side stands."


def _head(c: Conflict, refusal: Refusal | None) -> str:
    return _headline(c) + (f"\n\n{refusal.text()}" if refusal is not None else "")


def line_body(c: Conflict, suggest: bool, refusal: Refusal | None = None) -> str:
    other = neutral.inline(c.subtask)
    if suggest:
        return (
            f"{_head(c, refusal)}\n\n**{other}**'s version of these lines is below: "
            f"commit the suggestion to take it instead.\n\n{neutral.fence(c.other_text, 'suggestion')}\n"
        )
    return f"{_head(c, refusal)}\n\n**{other}**'s side:\n\n{neutral.fence(_quote(c.other_text))}\n"


def file_body(c: Conflict, refusal: Refusal | None = None) -> str:
    text = c.other_text or "(deleted)"
    side = f"**{neutral.inline(c.subtask)}**'s side"
    return f"{_head(c, refusal)}\n\n{side}:\n\n{neutral.fence(_quote(text))}\n"


def resolved_line(c: Conflict, resolution: Resolved, by: str) -> str:
    """The review body's line for a conflict an agent redid or resolved: where, by whom, checks passed."""
    who = f"**{neutral.inline(by)}**" if by else "an agent"
    where = f"{neutral.code_span(c.path)} ({c.kind.value}, {_where(c)})"
    return f"- {where}: {resolution.value} by {who}; the checks passed"


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


def _place(b: _Builder, c: Conflict, files: dict[str, PatchFile], refusal: Refusal | None = None) -> None:
    entry = files.get(c.path)
    if entry is None:
        why = "the file is not part of the PR diff"
        b.notes.append(note_line(c, why if refusal is None else f"{why}. {refusal.text()}"))
        return
    hunks = right_hunks(entry.patch, c.path) if c.lines != (0, 0) else ()
    span = anchor(hunks, c.lines[0], c.lines[1]) if hunks else None
    if span is None:
        b.files.append(FileComment(c.path, file_body(c, refusal)))
        return
    suggest = _suggestable(c, span)
    start = span[0] if span[0] < span[1] else None
    b.lines.append(LineComment(c.path, span[1], line_body(c, suggest, refusal), start, suggest))


Ended = tuple[Conflict, Resolved, str, Repair | None]  # a conflict, how it ended, by whom, its merge's repair


def _ended(c: Conflict, repair: Repair | None = None) -> Ended:
    resolution = c.resolution or (repair.outcome if repair is not None else Resolved.KEPT)
    return c, resolution, c.resolved_by or (repair.by if repair is not None else ""), repair


def plan_review(
    conflicts: Iterable[Conflict],
    files: Iterable[PatchFile],
    *,
    max_per_review: int = MAX_PER_REVIEW,
    max_file_comments: int = MAX_FILE_COMMENTS,
) -> ReviewPlan:
    """Place every conflict: line comment, file-level comment, or body note (pure); each as its own
    ``resolution`` says (a conflict without one: kept)."""
    return _plan([_ended(c) for c in conflicts], files, max_per_review, max_file_comments)


def plan_run_review(
    merges: Iterable[MergeRecord],
    files: Iterable[PatchFile],
    *,
    max_per_review: int = MAX_PER_REVIEW,
    max_file_comments: int = MAX_FILE_COMMENTS,
) -> ReviewPlan:
    """:func:`plan_review` over a run's merges: each conflict as it ended, a refusal's reason from its
    merge's repair."""
    ended = [(c, *conflict_resolution(m, c), m.repair) for m in merges for c in m.conflicts]
    return _plan(ended, files, max_per_review, max_file_comments)


def _plan(
    ended: Sequence[Ended], files: Iterable[PatchFile], max_per_review: int, max_files: int
) -> ReviewPlan:
    by_name = {f.filename: f for f in files}
    b = _Builder()
    resolved, total = [], 0
    for c, resolution, by, repair in ended:
        if resolution in (Resolved.REDONE, Resolved.RESOLVED):
            resolved.append(resolved_line(c, resolution, by))
            continue
        refusal = None
        if resolution is Resolved.REFUSED:
            refusal = Refusal(by, repair.reason if repair is not None else "")
        _place(b, c, by_name, refusal)
        total += 1
    extra = b.files[max_files:]
    notes = b.notes + [_path_note(f.path, f.body) for f in extra]
    batches = tuple(tuple(b.lines[i : i + max_per_review]) for i in range(0, len(b.lines), max_per_review))
    return ReviewPlan(batches, tuple(b.files[:max_files]), tuple(notes), total, tuple(resolved))


def review_body(plan: ReviewPlan, part: int, parts: int, notes: Sequence[str]) -> str:
    """The body of review ``part`` (1-based) of ``parts``, with ``notes`` (the caller puts them last); the
    last part also lists the conflicts agents resolved."""
    head = (
        f"ci-swarm recorded **{plan.total}** conflict(s) between subtasks. Every conflicting region kept one "
        "side (nothing is lost: the agent branches are pushed too). Each comment shows the other side; "
        "where it replaces exactly the commented lines it is a suggestion you can commit in one click."
    )
    if not plan.total:
        head = "ci-swarm's agents resolved every conflict between subtasks, and the checks passed."
    if parts > 1:
        head += f"\n\nPart {part} of {parts}."
    lines = [head]
    resolved = plan.resolved if part == parts else ()
    if resolved:
        lines += ["", "Conflicts an agent resolved (no comment: nothing was lost):", ""]
    size = _bounded(lines, resolved, sum(len(x) for x in lines))
    if notes:
        lines += ["", "Conflicts that cannot be commented on a line of the diff:", ""]
        _bounded(lines, notes, size + 60)
    return "\n".join(lines)


def _bounded(lines: list[str], items: Sequence[str], size: int) -> int:
    """Append ``items`` to ``lines`` while the body stays under ``MAX_BODY``; the size after."""
    for i, item in enumerate(items):
        if size + len(item) > MAX_BODY:
            lines.append(f"- … and {len(items) - i} more, listed in the run report")
            break
        lines.append(item)
        size += len(item) + 1
    return size


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
        if notes or not reviews or plan.resolved:  # the last part's body was not posted
            _create_review(pr, commit_id, review_body(plan, 1, 1, notes), ())
            reviews += 1
        return ReviewResult(reviews, lines, files, len(notes))
