"""The pure judges of competing attempts (issue #14, ``ci_swarm/judge.py``): each rule, each stated
tie-break, abstaining and partial reviewer scores, the weighted per-role score, the early-stop rule and the
default judge — on hand-made records, no repositories."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ci_swarm.judge import certain, default_judge, judge, out_reason, passes, produced, weighted_score
from ci_swarm.models import AttemptRecord, CheckResult, Judge, SubtaskStatus

OK, FAILED, SKIPPED = SubtaskStatus.SUCCEEDED, SubtaskStatus.FAILED, SubtaskStatus.SKIPPED
GREEN = (CheckResult("tests", True, 0, 0.1),)
RED = (CheckResult("tests", False, 1, 0.1, "boom"),)


def att(
    index: int, tree: str = "", diff: int = 1, *, status: SubtaskStatus = OK, **more: object
) -> AttemptRecord:
    """An attempt with a commit (unless ``commit=""``) whose tree is ``tree`` (default: its own)."""
    fields: dict[str, object] = {"commit": f"c{index}", "tree": tree or f"t{index}", "diff_lines": diff}
    return replace(AttemptRecord(index, "scripted", status), **(fields | more))  # type: ignore[arg-type]


# --- checks --------------------------------------------------------------------------------------------


def test_checks_drops_failed_uncommitted_and_red_attempts_and_the_smallest_diff_wins() -> None:
    attempts = [
        att(1, diff=1, status=FAILED, reason="no luck"),
        att(2, diff=1, commit=""),  # succeeded, but nothing committed
        att(3, diff=1, checks=RED),
        att(4, diff=9, checks=GREEN),
        att(5, diff=3, checks=GREEN),
    ]
    verdict = judge(Judge.CHECKS, attempts)
    assert verdict.winner == 5 and verdict.judge is Judge.CHECKS
    assert verdict.why == "attempt 5 passes its checks with the smallest diff (3 lines) of 2 passing"
    assert verdict.attempts == tuple(attempts)  # every attempt kept, losers included


def test_checks_equal_diffs_go_to_the_lower_index_and_a_lone_passer_says_no_count() -> None:
    assert judge(Judge.CHECKS, [att(3, diff=2), att(1, diff=2), att(2, diff=5)]).winner == 1
    alone = judge(Judge.CHECKS, [att(1, checks=RED), att(2, diff=4)])
    assert alone.winner == 2 and alone.why.endswith("(4 lines)")


def test_checks_with_no_passing_attempt_has_no_winner_and_names_every_reason() -> None:
    verdict = judge(
        Judge.CHECKS, [att(1, status=FAILED, reason="no luck"), att(2, checks=RED), att(3, commit="")]
    )
    assert verdict.winner is None
    assert verdict.why == (
        "no attempt succeeded (attempt 1: no luck; attempt 2: check 'tests' failed; "
        "attempt 3: its work could not be committed)"
    )
    assert judge(Judge.CHECKS, []).why == "no attempt ran"


# --- vote ----------------------------------------------------------------------------------------------


def test_vote_the_largest_group_of_equal_trees_wins_and_each_attempt_carries_its_group_size() -> None:
    attempts = [att(1, "a", 1), att(2, "b", 5), att(3, "b", 5), att(4, status=FAILED, commit="")]
    verdict = judge(Judge.VOTE, attempts)
    assert verdict.winner == 2  # the group's first attempt
    assert verdict.why == "attempts 2, 3 produced the same tree (2 of 4)"
    assert [a.votes for a in verdict.attempts] == [1.0, 2.0, 2.0, 0.0]  # a failed attempt has no vote


def test_vote_equal_groups_are_broken_by_checks_then_diff_then_index() -> None:
    by_checks = judge(
        Judge.VOTE, [att(1, "a", 1, checks=RED), att(2, "a", 1, checks=RED), att(3, "b", 9), att(4, "b", 9)]
    )
    assert (
        by_checks.winner == 3 and "tie broken by checks, then diff size, then attempt index" in by_checks.why
    )
    by_diff = judge(Judge.VOTE, [att(1, "a", 7), att(2, "a", 7), att(3, "b", 2), att(4, "b", 2)])
    assert by_diff.winner == 3
    by_index = judge(Judge.VOTE, [att(3, "b", 2), att(4, "b", 2), att(1, "a", 2), att(2, "a", 2)])
    assert by_index.winner == 1


def test_vote_without_two_equal_trees_and_without_any_commit() -> None:
    single = judge(Judge.VOTE, [att(1, "a", 4), att(2, "b", 2)])
    assert single.winner == 2 and single.why.startswith("attempt 2: no two attempts produced the same tree")
    nobody = judge(Judge.VOTE, [att(1, status=FAILED, reason="x", commit="")])
    assert nobody.winner is None and "attempt 1: x" in nobody.why


# --- reviewer and weighted -------------------------------------------------------------------------------


def test_reviewer_the_highest_score_of_a_passing_attempt_wins() -> None:
    attempts = [att(1, score=10.0, checks=RED), att(2, score=6.0), att(3, score=8.0), att(4, score=None)]
    verdict = judge(Judge.REVIEWER, attempts)
    assert verdict.winner == 3 and verdict.why == "attempt 3 has the highest score (8)"  # 1 is out: red


def test_reviewer_equal_scores_go_to_the_smaller_diff_then_the_lower_index() -> None:
    by_diff = judge(Judge.REVIEWER, [att(1, diff=5, score=7.0), att(2, diff=3, score=7.0)])
    assert by_diff.winner == 2 and by_diff.why.endswith(
        "equal scores broken by diff size, then attempt index"
    )
    assert judge(Judge.REVIEWER, [att(2, diff=3, score=7.0), att(1, diff=3, score=7.0)]).winner == 1


def test_an_attempt_its_reviewer_abstained_on_cannot_beat_a_scored_one() -> None:
    verdict = judge(Judge.WEIGHTED, [att(1, diff=1, score=None), att(2, diff=9, score=2.5)])
    assert verdict.winner == 2 and verdict.judge is Judge.WEIGHTED


@pytest.mark.parametrize("kind", [Judge.REVIEWER, Judge.WEIGHTED])
def test_with_every_reviewer_abstaining_the_checks_rule_decides_and_says_so(kind: Judge) -> None:
    verdict = judge(kind, [att(1, diff=4), att(2, diff=2), att(3, diff=1, checks=RED, score=9.0)])
    assert verdict.judge is kind and verdict.winner == 2
    assert verdict.why.startswith("no reviewer score: attempt 2 passes its checks with the smallest diff")


def test_weighted_score_combines_the_roles_that_scored() -> None:
    weights = {"security": 3.0, "style": 1.0}
    assert weighted_score({"security": 9.0, "style": 1.0}, weights) == 7.0  # (27 + 1) / 4
    assert weighted_score({"security": None, "style": 4.0}, weights) == 4.0  # an abstaining role has no say
    assert weighted_score({"security": None, "style": None}, weights) is None
    assert weighted_score({}, weights) is None
    assert weighted_score({"": 6.0}, {}) == 6.0  # no weights: the plain reviewer score
    assert weighted_score({"docs": 2.0, "style": 8.0}, {"style": 1.0}) == 5.0  # an unweighted role weighs 1
    assert weighted_score({"security": 9.0}, {"security": 0.0}) is None  # all weight zero: no say at all


# --- early stop, defaults, reasons -----------------------------------------------------------------------


def test_only_a_vote_majority_of_all_attempts_is_certain() -> None:
    pair = [att(1, "a"), att(2, "a")]
    assert certain(Judge.VOTE, pair, total=3)
    assert not certain(Judge.VOTE, pair, total=4)  # 2 of 4 is no majority: the other two may tie
    assert not certain(Judge.VOTE, [att(1, "a"), att(2, "a", status=FAILED)], total=3)
    for kind in (Judge.CHECKS, Judge.REVIEWER, Judge.WEIGHTED):
        assert not certain(kind, pair, total=3)


def test_the_default_judge_is_the_subtasks_then_the_plans_then_checks_or_vote() -> None:
    assert default_judge(Judge.REVIEWER, Judge.VOTE, True) is Judge.REVIEWER
    assert default_judge(None, Judge.VOTE, True) is Judge.VOTE
    assert default_judge(None, None, True) is Judge.CHECKS
    assert default_judge(None, None, False) is Judge.VOTE


def test_out_reason_and_the_predicates() -> None:
    assert out_reason(att(1)) == "" and passes(att(1)) and produced(att(1))
    assert out_reason(att(1, status=SKIPPED)) == "skipped"
    assert out_reason(att(1, status=FAILED, reason="timed out")) == "timed out"
    assert out_reason(att(1, checks=RED)) == "check 'tests' failed" and produced(att(1, checks=RED))
    assert not passes(att(1, checks=RED)) and not produced(att(1, commit=""))
