"""The reviewer judge and the review panel together through the Action (issue #14), against the fake GitHub
and the fake Anthropic API: a planned subtask with three scripted attempts judged by the real Claude reviewer
(its winner is not the smallest diff) and a ``review:`` panel of three voters. The PR body's *Attempts* table
names the winner and the reviewer's reason — a hostile one, rendered inert — and the panel's approvals decide
whether the pull request is ready for review. Every exchange with GitHub must match its OpenAPI
description."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm.action import main
from ci_swarm.llm.prompts import FOCUS_MARKER, REVIEWER_MARKER, VOTER_MARKER
from ci_swarm.testing.anthropic_script import Conversation, Script
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from tests.act_helpers import World, write_sub
from tests.helpers import show
from tests.openapi_helpers import checked_worlds
from tests.test_action_attempts import table_rows
from tests.test_render_gfm import CLOSING, MENTION, OUR_HTML, rendered

HOSTILE = "@someone <img src=x> fixes #1"
REVIEW = {"voters": 3, "approve": 2, "roles": ["security", "correctness", "style"]}
SMALL, LARGE = "x = 1\n", "x = 1\ny = 2\nz = 3\n"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from checked_worlds(tmp_path)


def writes(content: str) -> dict[str, Any]:
    return {"kind": "scripted", "edits": [{"write": "src/new.py", "content": content}]}


def model(scores: Mapping[int, tuple[float, str]], verdicts: Mapping[str, str]) -> Script:
    """The reviewer answering ``scores`` ({index: (score, reason)}) and one voter per role of
    ``verdicts`` ({role: verdict})."""
    rows = [{"index": i, "score": s, "reason": r} for i, (s, r) in scores.items()]
    reviewer = Conversation(
        "reviewer", REVIEWER_MARKER, ({"tool": "submit_scores", "input": {"scores": rows}},)
    )
    voters = tuple(
        Conversation(
            role,
            f"{VOTER_MARKER}.*{FOCUS_MARKER}{role}",
            ({"tool": "submit_vote", "input": {"verdict": verdict, "reasons": f"{role}: {verdict}"}},),
        )
        for role, verdict in verdicts.items()
    )
    return Script(conversations=(reviewer, *voters))


def run(world: World, script: Script) -> tuple[Any, FakeAnthropic]:
    sub = write_sub("feat", "src/new.py", "unused\n") | {
        "attempts": [writes(SMALL), writes(LARGE), writes(SMALL)],
        "judge": "reviewer",
    }
    plan = {"version": 1, "task": "add src/new.py", "review": REVIEW, "subtasks": [sub]}
    body = f"```swarm-plan\n{yaml.safe_dump(plan, sort_keys=False)}```\n"
    issue = world.issue("Competing attempts, reviewed", body, labels=("swarm",))
    with FakeAnthropic(script) as claude:
        env = world.env("issues", world.labeled(issue))
        env.update(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=claude.base_url)
        assert main(env) == 0
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    return pr, claude


def test_the_reviewers_winner_and_hostile_reason_in_the_pr_body_and_two_approvals_make_it_ready(
    world: World,
) -> None:
    scores = {1: (4.0, "too little"), 2: (9.0, f"complete {HOSTILE}"), 3: (4.0, "too little")}
    verdicts = {"security": "approve", "correctness": "approve", "style": "request_changes"}
    pr, claude = run(world, model(scores, verdicts))
    body = str(pr.body)
    rows = table_rows(body)
    assert [r[0] for r in rows] == ["1", "2 🏆", "3"]  # the reviewer's pick, not the smallest diff
    assert [r[5] for r in rows] == ["4", "9", "4"]
    doc = rendered(body)
    assert set(doc.html()) <= OUR_HTML | {"<details><summary>output (last lines)</summary>"}
    assert not [c for c in doc.walk() if c.type == "image"]
    texts = doc.inline_texts()
    assert not [t for t in texts if MENTION.search(t)]
    assert [hit.group(0) for t in texts for hit in CLOSING.finditer(t)] == ["Closes #1"]  # ours, the issue
    visible = doc.visible()
    assert "attempt 2 of 3 won: attempt 2 has the highest score (9)" in visible
    assert "judge reviewer (reviewer $0.0" in visible  # what the scoring cost
    assert f"complete {HOSTILE}" in visible  # shown, as text
    assert "<img" not in body and "@someone" not in body and "fixes #1" not in body
    assert show(world.bare, world.read_outputs()["branch"], "src/new.py") == LARGE  # the winner merged
    assert pr.draft is False and list(pr.get_reviews()) == []
    assert "**Ready for review:** 2 of 3 voter(s) approved, 2 required." in body
    briefs = [str(r.body) for r in claude.requests]
    assert sum(REVIEWER_MARKER in b for b in briefs) == 1 and sum(VOTER_MARKER in b for b in briefs) == 3
    voted = [b for b in briefs if VOTER_MARKER in b]
    assert all("+z = 3" in b for b in voted)  # the panel read the integration holding the winner


def test_a_reviewer_malformed_twice_falls_back_to_the_checks_rule_and_one_approval_makes_a_draft(
    world: World,
) -> None:
    scores = {1: (11.0, "off the scale"), 2: (9.0, "complete"), 3: (4.0, "too little")}  # asked again: same
    verdicts = {"security": "request_changes", "correctness": "approve", "style": "request_changes"}
    pr, claude = run(world, model(scores, verdicts))
    body = str(pr.body)
    assert [r[0] for r in table_rows(body)] == ["1 🏆", "2", "3"]  # smallest diff, lower index
    visible = rendered(body).visible()
    assert "no reviewer score: attempt 1 passes its checks with the smallest diff (1 lines)" in visible
    assert "the reviewer abstained: malformed answer after 1 repair" in visible
    assert sum(REVIEWER_MARKER in str(r.body) for r in claude.requests) == 2  # the answer and one repair
    assert pr.draft is True
    [review] = list(pr.get_reviews())
    assert "**Draft:** 1 of 3 voter(s) approved, 2 required." in review.body
    assert "**reviewer 1 (security)** — request changes" in review.body


def test_the_weighted_judge_through_the_action_merges_the_weighted_winner(world: World) -> None:
    """Two roles score the attempts differently; unweighted, attempt 1 would win (6 against 5); with
    weights {security: 3, style: 1} attempt 2 wins (7 against 4) — and it is what the PR merges."""

    def role(name: str, rows: list[dict[str, Any]]) -> Conversation:
        call = {"tool": "submit_scores", "input": {"scores": rows}}
        return Conversation(name, f"{REVIEWER_MARKER}.*{FOCUS_MARKER}{name}", (call,), after="repeat")

    security = role(
        "security", [{"index": 1, "score": 2, "reason": "a"}, {"index": 2, "score": 9, "reason": "b"}]
    )
    style = role("style", [{"index": 1, "score": 10, "reason": "c"}, {"index": 2, "score": 1, "reason": "d"}])
    sub = write_sub("feat", "src/new.py", "unused\n") | {"attempts": [writes(SMALL), writes(LARGE)]}
    plan = {"version": 1, "task": "add src/new.py", "judge": "weighted", "subtasks": [sub]}
    plan["weights"] = {"security": 3, "style": 1}
    body = f"```swarm-plan\n{yaml.safe_dump(plan, sort_keys=False)}```\n"
    issue = world.issue("Competing attempts, weighted", body, labels=("swarm",))
    with FakeAnthropic(Script(conversations=(security, style))) as claude:
        env = world.env("issues", world.labeled(issue))
        env.update(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=claude.base_url)
        assert main(env) == 0
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    assert [r[0] for r in table_rows(str(pr.body))] == ["1", "2 🏆"]
    assert "attempt 2 has the highest score (7)" in rendered(str(pr.body)).visible()
    assert show(world.bare, world.read_outputs()["branch"], "src/new.py") == LARGE
