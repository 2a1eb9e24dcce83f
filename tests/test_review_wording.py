"""The modify/delete review comment says what the pull request does with the file, in our words (git's
"… left in tree." is wrong when the deletion was kept), and no headline ends in "..". A conflict an agent
tried to repair: a refused attempt is named on the lines with its reason; a resolved one gets no comment, the
review body says who resolved it and that the checks passed (issue #12)."""

from __future__ import annotations

from dataclasses import replace

from ci_swarm.github.review import PatchFile, file_body, plan_review, plan_run_review, review_body
from ci_swarm.models import CheckResult, Conflict, ConflictKind, MergeRecord, MergeStatus, Repair, Resolved
from tests.test_render_gfm import CLOSING, MENTION, rendered

GIT_SAYS = (
    "CONFLICT (modify/delete): src/old.py deleted in code and modified in tests.  "
    "Version tests of src/old.py left in tree."
)


def modify_delete(kept: str, other: str) -> Conflict:
    return Conflict("src/old.py", ConflictKind.MODIFY_DELETE, "tests", "code", (0, 0), kept, other, "base\n",
                    reason=GIT_SAYS)  # fmt: skip


def test_a_kept_deletion_says_the_pull_request_deletes_the_file() -> None:
    body = file_body(modify_delete(kept="", other="changed\n"))
    headline = body.splitlines()[0]
    assert "code deleted the file and tests changed it: this pull request deletes it." in headline
    assert "left in tree" not in body and ".." not in headline
    assert "changed" in body  # the other side's version is quoted


def test_a_kept_change_says_the_pull_request_keeps_it() -> None:
    body = file_body(modify_delete(kept="changed\n", other=""))
    headline = body.splitlines()[0]
    assert "code changed the file and tests deleted it: this pull request keeps code's version." in headline
    assert "left in tree" not in body and "(deleted)" in body


def test_other_reasons_end_in_one_full_stop() -> None:
    c = Conflict("a.bin", ConflictKind.BINARY, "tests", "code", (0, 0), "", "", "", reason="both changed it.")
    assert file_body(c).splitlines()[0].endswith("collided — both changed it.")


# --- conflicts an agent tried to repair (issue #12) -----------------------------------------------------

HOSTILE_REASON = "@someone <img src=x> fixes #1: markers left in src/app.py"
PATCH = "@@ -8,5 +8,5 @@ def f():\n line 8\n line 9\n-line 10\n+ten\n line 11\n line 12"
FILES = [PatchFile("src/app.py", "modified", PATCH)]


def repaired(outcome: Resolved, reason: str = "") -> MergeRecord:
    c = Conflict("src/app.py", ConflictKind.CONTENT, "tests", "code", (10, 10), "ten\n", "TEN\n", "line 10\n")
    repair = Repair(outcome, "command (resolver)", "7" * 40, reason=reason,
                    checks=(CheckResult("tests", outcome is not Resolved.REFUSED, 0, 1.0),))  # fmt: skip
    return MergeRecord("tests", 2, MergeStatus.CONFLICTED, "9" * 40, (), (c,), repair=repair)


def test_a_refused_repair_is_named_on_the_line_with_its_reason_neutralised() -> None:
    plan = plan_run_review([repaired(Resolved.REFUSED, HOSTILE_REASON)], FILES)
    ((comment,),) = plan.batches
    assert comment.line == 10 and comment.suggestion  # the exact lines, as for a kept conflict
    assert "A resolution was tried by **command (resolver)** and refused — " in comment.body
    assert "The kept side stands." in comment.body
    doc = rendered(comment.body)
    texts = doc.inline_texts()
    assert not [t for t in texts if MENTION.search(t) or CLOSING.search(t)]
    assert not [t for t in doc.walk() if t.type == "image"] and doc.html() == []
    assert HOSTILE_REASON in doc.visible()
    assert plan.total == 1 and plan.resolved == ()


def test_a_refused_repair_on_a_file_outside_the_diff_says_so_in_the_note() -> None:
    (note,) = plan_run_review([repaired(Resolved.REFUSED, "checks failed: tests")], []).notes
    assert "not part of the PR diff" in note and "refused — checks failed: tests." in note


def test_a_resolved_conflict_gets_no_line_comment_and_the_body_says_who_and_that_checks_passed() -> None:
    for outcome in (Resolved.RESOLVED, Resolved.REDONE):
        plan = plan_run_review([repaired(outcome)], FILES)
        assert plan.batches == () and plan.file_comments == () and plan.notes == () and plan.total == 0
        body = review_body(plan, 1, 1, plan.notes)
        assert body.startswith(
            "ci-swarm's agents resolved every conflict between subtasks, and the checks passed."
        )
        line = (
            f"- `src/app.py` (content, line 10): {outcome.value} by **command (resolver)**; the checks passed"
        )
        assert line in body.splitlines()
        assert "kept one side" not in body


def test_kept_conflicts_beside_a_resolved_merge_keep_their_comments() -> None:
    kept = replace(repaired(Resolved.RESOLVED), subtask="other", repair=None)
    plan = plan_run_review([kept, repaired(Resolved.RESOLVED)], FILES)
    ((comment,),) = plan.batches
    assert comment.line == 10 and "resolution was tried" not in comment.body
    body = review_body(plan, 1, 1, ())
    assert "recorded **1** conflict(s)" in body and "resolved by **command (resolver)**" in body
    assert plan_review(kept.conflicts, FILES).batches == plan.batches  # plain plan_review: the same comment


def test_a_conflicts_own_resolution_is_used_without_a_merge() -> None:
    (c,) = repaired(Resolved.REDONE).conflicts
    plan = plan_review([replace(c, resolution=Resolved.REDONE, resolved_by="command (redo of tests)")], FILES)
    assert plan.line_comments == 0 and "redone by **command (redo of tests)**" in plan.resolved[0]
