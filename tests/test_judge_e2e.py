"""The reviewer and weighted judges end to end through ``ci-swarm run`` (issue #14): three scripted
attempts, the real Claude reviewer (``ClaudeSession.reviewer()``) against the fake Anthropic API with
scripted ``submit_scores`` answers, the JSON report's ``judgement`` and usage, the winner merged. The
scores are chosen so that the reviewer's winner is never the smallest diff: a run that ignored the reviewer
would merge another attempt."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ci_swarm.cli import cli
from ci_swarm.llm.prompts import FOCUS_MARKER, REVIEWER_MARKER
from ci_swarm.testing.anthropic_script import Conversation, Script
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, scripted, show

SMALL, MEDIUM, LARGE = "x = 1\n", "x = 1\ny = 2\n", "x = 1\ny = 2\nz = 3\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# proj\n", "src/app.py": "print('app')\n"})


def writes(content: str) -> dict[str, Any]:
    return {"kind": "scripted", "edits": [{"write": "src/new.py", "content": content}]}


def scores(*rows: tuple[int, Any, str]) -> dict[str, Any]:
    """The forced submit_scores call with (index, score, reason) rows."""
    return {
        "tool": "submit_scores",
        "input": {"scores": [{"index": i, "score": s, "reason": r} for i, s, r in rows]},
    }


def reviewer_script(*replies: dict[str, Any], role: str = "") -> Conversation:
    """The reviewer's conversation (one per role when ``role`` is given: matched on its focus line)."""
    match = f"{REVIEWER_MARKER}.*{FOCUS_MARKER}{role}" if role else REVIEWER_MARKER
    return Conversation(f"reviewer {role}".strip(), match, replies, after="repeat")


def contest(judge: str, *contents: str, **plan: Any) -> dict[str, Any]:
    sub = scripted("feat", paths=("src/new.py",)) | {
        "attempts": [writes(c) for c in contents],
        "judge": judge,
    }
    return {"version": 1, "task": "add src/new.py", "subtasks": [sub], **plan}


def run(
    repo: Path, tmp: Path, plan: Mapping[str, Any], *conversations: Conversation
) -> tuple[dict[str, Any], str, FakeAnthropic]:
    """``ci-swarm run --plan`` with the fake Anthropic API as the model: the JSON report, stdout, the fake."""
    plan_file, report = tmp / "plan.yml", tmp / "report.json"
    plan_file.write_text(yaml.safe_dump(dict(plan), sort_keys=False))
    with FakeAnthropic(Script(conversations=conversations)) as fake:
        env = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": fake.base_url}
        argv = ["run", "--plan", str(plan_file), "--repo", str(repo), "--quiet", "--report", str(report)]
        result = CliRunner().invoke(cli, argv, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(report.read_text()), result.output, fake


def judgement_of(data: dict[str, Any]) -> dict[str, Any]:
    [sub] = data["subtasks"]
    assert sub["status"] == "succeeded", sub["error"]
    judgement: dict[str, Any] = sub["judgement"]
    return judgement


def test_the_reviewer_picks_the_winner_and_the_report_shows_scores_reasons_and_usage(
    repo: Path, tmp_path: Path
) -> None:
    reply = scores((1, 3, "too little"), (2, 5, "half of it"), (3, 9, "does all of it"))
    data, out, fake = run(repo, tmp_path, contest("reviewer", SMALL, MEDIUM, LARGE), reviewer_script(reply))
    judgement = judgement_of(data)
    assert judgement["judge"] == "reviewer" and judgement["winner"] == 3  # not the smallest diff (1)
    assert judgement["why"] == "attempt 3 has the highest score (9)"
    attempts = judgement["attempts"]
    assert [a["score"] for a in attempts] == [3.0, 5.0, 9.0]
    assert [a["reason"] for a in attempts] == ["too little", "half of it", "does all of it"]
    assert [a["diff_lines"] for a in attempts] == [1, 2, 3]
    assert show(repo, data["integration_branch"], "src/new.py") == LARGE  # the winner was merged
    assert len(fake.requests) == 1  # one forced call scored all three
    body = fake.requests[0].body
    assert body is not None and body["tool_choice"] == {"type": "tool", "name": "submit_scores"}
    assert all(f"+{line}" in body["messages"][0]["content"] for line in LARGE.splitlines())
    usage = data["usage"]  # every agent is scripted: the run's model usage is the reviewer's
    assert usage["requests"] == 1 and usage["cost_usd"] > 0 and usage["tokens"] > 0
    assert judgement["usage"] == usage  # and it is the judgement's
    assert data["subtasks"][0]["usage"]["requests"] == 0  # the attempts' own (scripted) usage
    assert "attempts: feat: reviewer, attempt 3 of 3 won" in out


def test_weighted_roles_pick_the_weighted_winner(repo: Path, tmp_path: Path) -> None:
    # security: 1 → 2, 2 → 9; style: 1 → 10, 2 → 1. Unweighted 1 wins (6 vs 5); with {security: 3, style: 1}
    # 2 wins: (3·9 + 1) / 4 = 7 against (3·2 + 10) / 4 = 4.
    security = reviewer_script(scores((1, 2, "shell input"), (2, 9, "quotes it")), role="security")
    style = reviewer_script(scores((1, 10, "tidy"), (2, 1, "long")), role="style")
    plan = contest("weighted", SMALL, MEDIUM, weights={"security": 3, "style": 1})
    data, _, fake = run(repo, tmp_path, plan, security, style)
    judgement = judgement_of(data)
    assert judgement["judge"] == "weighted" and judgement["winner"] == 2
    assert [a["score"] for a in judgement["attempts"]] == [4.0, 7.0]
    assert judgement["attempts"][1]["reason"] == "quotes it; long"  # each role's reason
    assert judgement["why"] == "attempt 2 has the highest score (7)"
    briefs = sorted(str((r.body or {})["messages"][0]["content"]).split("\n")[0] for r in fake.requests)
    assert [b.split(" (")[0] for b in briefs] == [f"{FOCUS_MARKER}security", f"{FOCUS_MARKER}style"]
    assert data["usage"]["requests"] == judgement["usage"]["requests"] == 2  # both roles scored


def test_a_reviewer_malformed_twice_abstains_and_the_checks_rule_decides(repo: Path, tmp_path: Path) -> None:
    out_of_range = scores((1, 11, "great"), (2, 5, "fine"), (3, 9, "best"))
    data, _, fake = run(
        repo, tmp_path, contest("reviewer", MEDIUM, SMALL, LARGE), reviewer_script(out_of_range)
    )
    assert len(fake.requests) == 2  # the answer and one repair, then the reviewer abstains
    judgement = judgement_of(data)
    assert judgement["winner"] == 2  # the smallest diff: the stated fallback
    assert judgement["why"].startswith(
        "no reviewer score: attempt 2 passes its checks with the smallest diff (1 lines) of 3 passing"
    )
    assert "the reviewer abstained: malformed answer after 1 repair" in judgement["why"]
    assert "the score of attempt 1 is 11, outside 0-10" in judgement["why"]
    assert all(a["score"] is None for a in judgement["attempts"])
    assert data["usage"]["requests"] == judgement["usage"]["requests"] == 2  # the repair is charged too


def test_a_weighted_role_that_abstains_has_no_say_and_is_named(repo: Path, tmp_path: Path) -> None:
    security = reviewer_script(scores((1, 2, "shell input"), (2, 9, "quotes it")), role="security")
    style = reviewer_script({"text": "Attempt 1 is tidier."}, role="style")  # no tool call, twice
    plan = contest("weighted", SMALL, MEDIUM, weights={"security": 3, "style": 1})
    data, _, fake = run(repo, tmp_path, plan, security, style)
    judgement = judgement_of(data)
    assert judgement["winner"] == 2 and [a["score"] for a in judgement["attempts"]] == [2.0, 9.0]
    assert judgement["why"] == (
        "attempt 2 has the highest score (9); the style reviewer abstained: "
        "malformed answer after 1 repair: the model did not call submit_scores"
    )
    assert len(fake.requests) == 3


def test_the_checks_judge_through_the_cli_drops_a_failing_attempt_and_takes_the_smallest_passing(
    repo: Path, tmp_path: Path
) -> None:
    """`ci-swarm run --check`: the smallest diff fails the check, so the smallest *passing* one wins."""
    plan_file, report = tmp_path / "plan.yml", tmp_path / "report.json"
    bad = "x = 0  # broken\n"
    plan = contest("checks", bad, LARGE, MEDIUM)
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
    check = f"{SANDBOX_PY} -c \"import sys; sys.exit('broken' in open('src/new.py').read())\""
    argv = ["run", "--plan", str(plan_file), "--repo", str(repo), "--quiet", "--report", str(report)]
    result = CliRunner().invoke(cli, [*argv, "--check", check], env={})
    assert result.exit_code == 0, result.output
    judgement = judgement_of(json.loads(report.read_text()))
    assert judgement["judge"] == "checks" and judgement["winner"] == 3
    assert [a["checks"][0]["ok"] for a in judgement["attempts"]] == [False, True, True]
