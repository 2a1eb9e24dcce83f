"""Placing conflict comments on a PR diff (pure): anchors, suggestions, fallbacks, splitting; and, against
the fake GitHub, how a conflict an agent resolved or failed to resolve is reviewed."""

from __future__ import annotations

from dataclasses import replace

from ci_swarm.github.publish import Target
from ci_swarm.github.review import (
    PatchFile,
    anchor,
    plan_review,
    review_body,
    right_hunks,
)
from ci_swarm.models import CheckResult, Conflict, ConflictKind, Repair, Resolved, RunReport
from ci_swarm.neutral import WORD_JOINER, fence
from tests.github_helpers import REPO, Hub, hub, open_issue
from tests.test_github_publish import conflicted_run

__all__ = ["hub"]

# new file lines 8-12 (one hunk: 10 replaced) and 30-32 (another hunk: 31 added)
PATCH = (
    "@@ -8,5 +8,5 @@ def f():\n line 8\n line 9\n-line 10\n+ten\n line 11\n line 12\n"
    "@@ -29,2 +29,3 @@\n line 29\n+new 30\n line 31"
)


def conflict(lines: tuple[int, int], kept: str = "ten\n", other: str = "TEN\n", **kw: object) -> Conflict:
    fields: dict[str, object] = {
        "path": "src/app.py",
        "kind": ConflictKind.CONTENT,
        "subtask": "tests",
        "kept_subtask": "code",
        "lines": lines,
        "kept_text": kept,
        "other_text": other,
        "base_text": "line 10\n",
    }
    fields.update(kw)
    return Conflict(**fields)  # type: ignore[arg-type]


def test_right_hunks_are_new_file_lines_with_context() -> None:
    hunks = right_hunks(PATCH, "src/app.py")
    assert [(h.start, h.end) for h in hunks] == [(8, 12), (29, 31)]
    assert 10 in hunks[0].lines and 30 in hunks[1].lines
    assert right_hunks(None) == () and right_hunks("") == ()
    assert right_hunks("@@ -1,5 +1,5 @@\n a") == ()  # a truncated patch anchors nothing


def test_anchor_picks_the_longest_run_inside_one_hunk() -> None:
    hunks = right_hunks(PATCH)
    assert anchor(hunks, 10, 10) == (10, 10)
    assert anchor(hunks, 11, 14) == (11, 12)  # clipped to the hunk
    assert anchor(hunks, 12, 30) == (29, 30)  # the longer of two partial runs
    assert anchor(hunks, 15, 20) is None


def test_exact_kept_lines_get_a_suggestion_block() -> None:
    plan = plan_review([conflict((10, 10))], [PatchFile("src/app.py", "modified", PATCH)])
    ((comment,),) = plan.batches
    assert comment.suggestion and comment.line == 10 and comment.start_line is None
    assert "```suggestion\nTEN\n```" in comment.body
    assert comment.payload() == {"path": "src/app.py", "line": 10, "side": "RIGHT", "body": comment.body}


def test_partly_anchorable_range_is_a_comment_without_suggestion() -> None:
    c = conflict((11, 14), kept="line 11\nline 12\nx\ny\n", other="z\n")
    ((comment,),) = plan_review([c], [PatchFile("src/app.py", "modified", PATCH)]).batches
    assert (comment.start_line, comment.line, comment.suggestion) == (11, 12, False)
    assert "suggestion" not in comment.body and "z" in comment.body
    assert comment.payload()["start_side"] == "RIGHT"


def test_fallbacks_file_level_then_body() -> None:
    files = [PatchFile("src/app.py", "modified", PATCH), PatchFile("logo.png", "modified", None)]
    conflicts = [
        conflict((20, 20)),  # outside every hunk
        conflict((0, 0), kept="", other="line 3\n"),  # nothing on the RIGHT side (a deleted range)
        conflict((1, 1), path="logo.png", kind=ConflictKind.BINARY),  # no patch
        conflict((1, 1), path="docs/gone.md"),  # not in the diff
    ]
    plan = plan_review(conflicts, files)
    assert plan.line_comments == 0
    assert [f.path for f in plan.file_comments] == ["src/app.py", "src/app.py", "logo.png"]
    assert (
        len(plan.notes) == 1
        and "`docs/gone.md`" in plan.notes[0]
        and "not part of the PR diff" in plan.notes[0]
    )


def test_no_suggestion_when_kept_text_does_not_fill_the_lines() -> None:
    """An empty kept side anchored on a neighbour line: a suggestion would delete that line."""
    c = conflict((10, 10), kept="", other="added\n")
    ((comment,),) = plan_review([c], [PatchFile("src/app.py", "modified", PATCH)]).batches
    assert not comment.suggestion


def test_modify_delete_kept_whole_file_is_not_a_suggestion() -> None:
    c = conflict((8, 12), kind=ConflictKind.MODIFY_DELETE, kept="a\nb\nc\nd\ne\n", other="")
    ((comment,),) = plan_review([c], [PatchFile("src/app.py", "modified", PATCH)]).batches
    assert not comment.suggestion and "modify/delete" in comment.body


def test_many_conflicts_split_into_batches_and_file_comments_capped() -> None:
    patch = "@@ -0,0 +1,300 @@\n" + "".join(f"+l{i}\n" for i in range(1, 301)).rstrip("\n")
    lines = [conflict((i, i), kept=f"l{i}\n", other="x\n") for i in range(1, 201)]
    outside = [conflict((0, 0), path="b.py", kept="", other="y\n") for _ in range(30)]
    files = [PatchFile("src/app.py", "modified", patch), PatchFile("b.py", "modified", "@@ -1 +1 @@\n-a\n+b")]
    plan = plan_review(lines + outside, files, max_per_review=50, max_file_comments=20)
    assert [len(b) for b in plan.batches] == [50, 50, 50, 50]
    assert len(plan.file_comments) == 20 and len(plan.notes) == 10
    assert plan.total == 230
    body = review_body(plan, 4, 4, plan.notes)
    assert "Part 4 of 4" in body and body.count("\n- `b.py`") == 10


def test_review_body_stays_under_githubs_limit() -> None:
    from ci_swarm.github.review import MAX_BODY, ReviewPlan

    notes = [f"- `f{i}.py`: " + "x" * 500 for i in range(500)]
    body = review_body(ReviewPlan(total=500), 1, 1, notes)
    assert len(body) <= MAX_BODY + 1000
    assert "more, listed in the run report" in body


def test_fence_outgrows_backticks_in_the_text() -> None:
    assert fence("a\n") == "```\na\n```"
    assert fence("```py\nx\n```\n", "suggestion").startswith("````suggestion\n")


def test_hostile_names_and_reasons_are_neutralised_and_the_other_side_is_fenced() -> None:
    other = "```\n@octocat Fixes #1\n~~~\n"
    c = conflict((20, 20), path="we`ird|<b>.py", reason="@octocat <details> Fixes #1", other=other)
    files = [PatchFile("we`ird|<b>.py", "modified", PATCH)]
    (comment,) = plan_review([c], files).file_comments
    headline = comment.body.splitlines()[0]
    assert f"@{WORD_JOINER}octocat &lt;details&gt; Fixes #{WORD_JOINER}1" in headline
    assert "````\n```\n@octocat Fixes #1\n~~~\n````" in comment.body  # verbatim, in a longer fence
    note = plan_review([c], []).notes[0]
    assert note.startswith("- ``we`ird|<b>.py`` (content")


def test_no_suggestion_that_would_drop_hidden_characters() -> None:
    c = conflict((10, 10), other="TEN\u202e\n")
    ((comment,),) = plan_review([c], [PatchFile("src/app.py", "modified", PATCH)]).batches
    assert not comment.suggestion and "\u202e" not in comment.body


# --- through the fake GitHub: conflicts an agent tried to repair (issue #12) ----------------------------


def _with_repair(report: RunReport, outcome: Resolved, reason: str = "") -> RunReport:
    ok = outcome is not Resolved.REFUSED
    repair = Repair(outcome, "command (resolver)", reason=reason, checks=(CheckResult("tests", ok, 0, 1.0),))
    merges = tuple(replace(m, repair=repair) if m.conflicts else m for m in report.merges)
    return replace(report, merges=merges)


def test_a_resolved_conflict_is_one_review_saying_who_and_no_line_comment(hub: Hub) -> None:
    report, _ = conflicted_run(hub)
    result = hub.publisher(Target(REPO, issue=open_issue(hub))).publish(
        hub.work, _with_repair(report, Resolved.RESOLVED)
    )
    pr = hub.repo().get_pull(result.pr_number)
    assert list(pr.get_review_comments()) == []
    (review,) = list(pr.get_reviews())
    assert "resolved by **command (resolver)**; the checks passed" in review.body
    assert "resolution: **resolved** by command (resolver)" in pr.body and "### Conflict repairs" in pr.body


def test_a_refused_repair_is_said_on_the_conflicting_line(hub: Hub) -> None:
    report, _ = conflicted_run(hub)
    hostile = "@someone <img src=x> fixes #1"
    refused = _with_repair(report, Resolved.REFUSED, hostile)
    result = hub.publisher(Target(REPO, issue=open_issue(hub))).publish(hub.work, refused)
    pr = hub.repo().get_pull(result.pr_number)
    (comment,) = list(pr.get_review_comments())
    assert (comment.path, comment.line) == ("src/app.py", 10)
    assert "A resolution was tried by **command (resolver)** and refused — " in comment.body
    assert f"@{WORD_JOINER}someone &lt;img src=x&gt; fixes #{WORD_JOINER}1" in comment.body
    assert "refused because: " in pr.body and "<img" not in pr.body
