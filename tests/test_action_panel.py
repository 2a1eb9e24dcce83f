"""The review panel through the Action (issue #14), against the fake GitHub and the fake Anthropic API: a
plan with ``review: {voters: 3, approve: 2, roles: [security, correctness, style]}``; with two approvals the
pull request opens ready for review, with one it opens as a draft and the voters' reasons (hostile text
included) are posted as one COMMENT review. Every exchange must match GitHub's OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm.action import main
from ci_swarm.llm.prompts import FOCUS_MARKER
from ci_swarm.testing.anthropic_script import Conversation, Script
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from tests.act_helpers import World, write_sub
from tests.openapi_helpers import checked_worlds

HOSTILE = "@someone <img src=x onerror=alert(1)> fixes #1"
REVIEW = {"voters": 3, "approve": 2, "roles": ["security", "correctness", "style"]}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from checked_worlds(tmp_path)


def voters(verdicts: Mapping[str, tuple[str, str]]) -> Script:
    """One conversation per role, each answering with its (verdict, reasons)."""
    return Script(
        conversations=tuple(
            Conversation(
                role,
                f"{FOCUS_MARKER}{role}",
                ({"tool": "submit_vote", "input": {"verdict": verdict, "reasons": reasons}},),
            )
            for role, (verdict, reasons) in verdicts.items()
        )
    )


def run_with_panel(world: World, verdicts: Mapping[str, tuple[str, str]]) -> tuple[Any, FakeAnthropic]:
    plan = {
        "version": 1,
        "task": "add greet()",
        "review": REVIEW,
        "subtasks": [write_sub("code", "greet.py", "x\n")],
    }
    body = f"```swarm-plan\n{yaml.safe_dump(plan, sort_keys=False)}```\n"
    issue = world.issue("Add greet", body, labels=("swarm",))
    with FakeAnthropic(voters(verdicts)) as claude:
        env = world.env("issues", world.labeled(issue))
        env.update(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=claude.base_url)
        assert main(env) == 0
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    return pr, claude


def test_two_approvals_of_three_open_a_pr_ready_for_review(world: World) -> None:
    verdicts = {
        "security": ("approve", "nothing reaches a shell"),
        "correctness": ("approve", "greet.py is written"),
        "style": ("request_changes", "x is not a good body"),
    }
    pr, claude = run_with_panel(world, verdicts)
    assert pr.draft is False
    assert list(pr.get_reviews()) == []  # nothing to explain: the panel approved
    assert len(claude.requests) == 3  # one vote each, no repair
    diffs = {str(r.body) for r in claude.requests}
    assert all("+x" in d and "greet.py" in d for d in diffs)  # each read the integration diff
    assert "**Ready for review:** 2 of 3 voter(s) approved, 2 required." in pr.body
    assert "x is not a good body" in pr.body  # every voter's reasons are in the report


def test_one_approval_opens_a_draft_with_the_reasons_as_one_review(world: World) -> None:
    verdicts = {
        "security": ("request_changes", f"unsafe: {HOSTILE}"),
        "correctness": ("approve", "fine"),
        "style": ("request_changes", "naming"),
    }
    pr, _ = run_with_panel(world, verdicts)
    assert pr.draft is True
    [review] = list(pr.get_reviews())
    assert review.state == "COMMENTED"
    assert "**Draft:** 1 of 3 voter(s) approved, 2 required." in review.body
    assert "**reviewer 1 (security)** — request changes" in review.body
    assert "**reviewer 3 (style)** — request changes" in review.body and "naming" in review.body
    assert "<img" not in review.body and "@someone" not in review.body  # neutralised
    assert "fixes #1" not in review.body
    assert "**Draft:**" in pr.body
