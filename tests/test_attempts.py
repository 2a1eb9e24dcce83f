"""Competing attempts at one subtask (issue #14) end to end on real repositories: scripted attempts, a
check runner reading each attempt's commit, a fake reviewer, the cap, the budget and dependents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.agents import AGENTS, make_agent_factory
from ci_swarm.attempts import CERTAIN, agents_view, with_best_of, with_judge
from ci_swarm.config import Config, config_from_text
from ci_swarm.errors import ConfigError, LLMError, PlanError, UsageError
from ci_swarm.models import (
    AgentOutcome,
    AgentSpec,
    CheckResult,
    Judge,
    Plan,
    Request,
    RunReport,
    Subtask,
    SubtaskStatus,
    Usage,
)
from ci_swarm.plan import plan_from_dict, plan_to_dict
from ci_swarm.ports import Agent, AgentContext, AgentFactory, AttemptView, ModelSession, Score
from ci_swarm.run import RunOptions, run_plan_sync
from ci_swarm.service import RunRequest, ServiceOptions, needs_model, run_request
from ci_swarm.workspace import Workspace
from tests.fixtures import make_repo
from tests.helpers import plan_of, run_cli, scripted, show
from tests.test_service import TRUSTED, Factory

SCRIPTED = make_agent_factory(AgentSpec("scripted"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# proj\n", "src/app.py": "print('app')\n"})


def writes(content: str, *, delay: float = 0.0, path: str = "src/new.py", **more: Any) -> dict[str, Any]:
    return {"kind": "scripted", "delay": delay, "edits": [{"write": path, "content": content}], **more}


def contest(*attempts: dict[str, Any], judge: str | None = None, **sub: Any) -> dict[str, Any]:
    data = scripted("feat", **sub)
    data["attempts"] = list(attempts)
    if judge:
        data["judge"] = judge
    return data


async def no_bad_file(repo: Path, commit: str) -> tuple[CheckResult, ...]:
    """A check: src/new.py must not say 'bad'."""
    text = await asyncio.to_thread(show, repo, commit, "src/new.py")
    ok = "bad" not in text
    return (CheckResult("no-bad", ok, 0 if ok else 1, 0.0, "" if ok else "found bad"),)


def run(repo: Path, plan: Plan, tmp_path: Path, agents: AgentFactory = SCRIPTED, **opts: Any) -> RunReport:
    if opts.pop("checks", False):
        opts["check"] = lambda commit: no_bad_file(repo, commit)
    options = RunOptions(repo=repo, base="main", workdir=tmp_path / "wt", **opts)
    return run_plan_sync(plan, options, agents)


FOUR = (
    writes("bad\n"),  # 1: fails the check
    writes("x = 1\ny = 2\n"),  # 2 and 3: the same tree
    writes("x = 1\ny = 2\n"),
    writes("x = 1\n"),  # 4: passes with the smallest diff
)


def test_checks_picks_the_smallest_passing_attempt_and_keeps_every_branch(repo: Path, tmp_path: Path) -> None:
    report = run(repo, plan_of(contest(*FOUR)), tmp_path, checks=True)
    (sub,) = report.subtasks
    assert sub.status is SubtaskStatus.SUCCEEDED
    assert sub.judgement is not None and sub.judgement.judge is Judge.CHECKS
    assert sub.judgement.winner == 4
    assert "smallest diff" in sub.judgement.why
    attempts = {a.index: a for a in sub.judgement.attempts}
    assert not attempts[1].checks[0].ok and attempts[2].checks[0].ok
    assert [attempts[k].diff_lines for k in (1, 2, 3, 4)] == [1, 2, 2, 1]
    assert sub.commit == attempts[4].commit == git.rev_parse(repo, sub.branch)
    for a in attempts.values():  # losers' branches kept
        assert git.rev_parse(repo, a.branch) == a.commit
        assert a.branch == f"{sub.branch}.{a.index}"
    assert show(repo, report.integration_commit, "src/new.py") == "x = 1\n"


def test_vote_picks_the_pair_of_equal_trees(repo: Path, tmp_path: Path) -> None:
    report = run(repo, plan_of(contest(*FOUR, judge="vote")), tmp_path, checks=True)
    (sub,) = report.subtasks
    assert sub.judgement is not None and sub.judgement.winner == 2
    votes = {a.index: a.votes for a in sub.judgement.attempts}
    assert votes == {1: 1.0, 2: 2.0, 3: 2.0, 4: 1.0}
    assert show(repo, report.integration_commit, "src/new.py") == "x = 1\ny = 2\n"


def test_without_checks_the_default_judge_is_vote(repo: Path, tmp_path: Path) -> None:
    report = run(repo, plan_of(contest(*FOUR)), tmp_path)
    judgement = report.subtasks[0].judgement
    assert judgement is not None and judgement.judge is Judge.VOTE and judgement.winner == 2


def test_all_attempts_fail_the_subtask_fails_with_every_reason_and_branch(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(contest(writes("a\n", fail="no luck"), writes("b\n", crash=True), writes("bad\n")))
    report = run(repo, plan, tmp_path, checks=True)
    (sub,) = report.subtasks
    assert sub.status is SubtaskStatus.FAILED
    assert sub.judgement is not None and sub.judgement.winner is None
    assert "attempt 1: no luck" in sub.error and "check 'no-bad' failed" in sub.error
    assert "attempt 2:" in sub.error
    assert report.merges == () or all(m.subtask != "feat" for m in report.merges)
    for a in sub.judgement.attempts:
        assert a.branch and git.try_rev_parse(repo, a.branch) is not None
    assert git.try_rev_parse(repo, f"swarm/{report.run_id}-agents/feat") is None


def test_equal_diffs_go_to_the_lower_index(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(contest(writes("bad\n"), writes("y = 2\n"), writes("x = 1\n")))
    judgement = run(repo, plan, tmp_path, checks=True).subtasks[0].judgement
    assert judgement is not None and judgement.winner == 2
    assert "of 2 passing" in judgement.why


def test_a_dependent_starts_from_the_winners_merge(repo: Path, tmp_path: Path) -> None:
    after = scripted("after", depends_on=("feat",), edits=[{"append": "src/new.py", "text": "z = 3\n"}])
    plan = plan_of(contest(writes("bad\n"), writes("x = 1\n")), after)
    report = run(repo, plan, tmp_path, checks=True)
    subs = {s.id: s for s in report.subtasks}
    feat_merge = next(m for m in report.merges if m.subtask == "feat")
    assert subs["after"].start_commit == feat_merge.commit
    assert show(repo, report.integration_commit, "src/new.py") == "x = 1\nz = 3\n"


class Counting:
    """Wraps the scripted agents and records how many run at once."""

    def __init__(self) -> None:
        self.now = self.most = 0

    def __call__(self, subtask: Subtask) -> Agent:
        inner, outer = SCRIPTED(subtask), self

        class _Agent:
            async def run(self, subtask: Subtask, ws: Workspace, ctx: AgentContext) -> AgentOutcome:
                outer.now += 1
                outer.most = max(outer.most, outer.now)
                try:
                    return await inner.run(subtask, ws, ctx)
                finally:
                    outer.now -= 1

        return _Agent()


def test_more_attempts_than_the_cap_queue_under_it(repo: Path, tmp_path: Path) -> None:
    five = [writes(f"v = {k}\n" + "w = 0\n" * k, delay=0.2) for k in range(1, 6)]
    other = scripted("other", delay=0.2, edits=[{"write": "other.txt", "content": "o\n"}])
    counting = Counting()
    report = run(repo, plan_of(contest(*five), other), tmp_path, counting, max_agents=2, checks=True)
    subs = {s.id: s for s in report.subtasks}
    assert counting.most == 2
    assert report.stats.max_in_flight <= 2
    assert subs["feat"].judgement is not None and subs["feat"].judgement.winner == 1
    assert all(a.status is SubtaskStatus.SUCCEEDED for a in subs["feat"].judgement.attempts)
    assert subs["other"].status is SubtaskStatus.SUCCEEDED


def test_cap_one_runs_the_attempts_one_after_another(repo: Path, tmp_path: Path) -> None:
    counting = Counting()
    plan = plan_of(contest(writes("x = 1\n"), writes("x = 1\n"), writes("y = 1\n")))
    report = run(repo, plan, tmp_path, counting, max_agents=1)
    assert counting.most == 1
    assert report.subtasks[0].judgement is not None and report.subtasks[0].judgement.winner == 1


def test_a_vote_majority_stops_the_attempt_still_running(repo: Path, tmp_path: Path) -> None:
    plan = plan_of(contest(writes("x = 1\n"), writes("x = 1\n"), writes("y = 1\n", hang=True)))
    report = run(repo, plan, tmp_path, max_agents=3, timeout=60)
    (sub,) = report.subtasks
    assert sub.status is SubtaskStatus.SUCCEEDED
    assert sub.judgement is not None and sub.judgement.winner == 1
    third = sub.judgement.attempts[2]
    assert third.status is SubtaskStatus.CANCELLED and third.reason == CERTAIN
    assert git.try_rev_parse(repo, third.branch) is not None  # its (empty) work is kept


def test_an_attempt_stopped_during_its_checks_keeps_its_branch_and_commit(repo: Path, tmp_path: Path) -> None:
    async def slow_for_bad(commit: str) -> tuple[CheckResult, ...]:
        if "bad" in await asyncio.to_thread(show, repo, commit, "src/new.py"):
            await asyncio.sleep(60)  # still checking when the other two agree
        return (CheckResult("no-bad", True, 0, 0.0),)

    slow = (writes("x = 1\n", delay=0.3), writes("x = 1\n", delay=0.3))
    plan = plan_of(contest(writes("bad\n"), *slow, judge="vote"))
    report = run(repo, plan, tmp_path, max_agents=3, check=slow_for_bad, timeout=60)
    judgement = report.subtasks[0].judgement
    assert judgement is not None and judgement.winner == 2
    first = judgement.attempts[0]
    assert first.status is SubtaskStatus.CANCELLED and first.reason == CERTAIN
    assert first.commit and git.rev_parse(repo, first.branch) == first.commit


def test_a_spent_budget_stops_starting_attempts_and_judges_what_finished(repo: Path, tmp_path: Path) -> None:
    started: list[str] = []

    def spent() -> str | None:
        return "$0.10 of $0.10" if started else None

    def factory(subtask: Subtask) -> Agent:
        started.append(subtask.id)
        return SCRIPTED(subtask)

    plan = plan_of(contest(writes("x = 1\n"), writes("x = 2\n"), writes("x = 3\n")))
    report = run(repo, plan, tmp_path, factory, max_agents=1, budget=spent)
    (sub,) = report.subtasks
    assert sub.status is SubtaskStatus.SUCCEEDED and len(started) == 1
    assert sub.judgement is not None and sub.judgement.winner == 1
    skipped = sub.judgement.attempts[1:]
    assert all(a.status is SubtaskStatus.SKIPPED and "budget" in a.reason for a in skipped)


class FakeReviewer:
    """Scores by a table {attempt index: score}; the role is recorded."""

    def __init__(self, table: dict[int, float], abstain: Sequence[int] = ()) -> None:
        self.table, self.abstain = table, set(abstain)
        self.seen: list[tuple[str, list[int]]] = []

    async def score(
        self, subtask: Subtask, attempts: Sequence[AttemptView], role: str = ""
    ) -> tuple[Score, ...]:
        self.seen.append((role, [a.index for a in attempts]))
        assert all(a.diff.startswith("diff --git") for a in attempts)
        return tuple(
            Score(a.index, self.table.get(a.index, 0.0), f"r{a.index}", a.index in self.abstain)
            for a in attempts
        )

    def usage(self, subtask: str = "") -> Usage:
        return Usage()


def test_the_reviewer_scores_every_passing_attempt_and_the_highest_wins(repo: Path, tmp_path: Path) -> None:
    reviewer = FakeReviewer({2: 5.0, 3: 9.0, 4: 7.0})
    report = run(repo, plan_of(contest(*FOUR, judge="reviewer")), tmp_path, checks=True, reviewer=reviewer)
    judgement = report.subtasks[0].judgement
    assert judgement is not None and judgement.winner == 3
    assert reviewer.seen == [("", [2, 3, 4])]  # attempt 1 failed its checks: not shown
    assert {a.index: a.score for a in judgement.attempts} == {1: None, 2: 5.0, 3: 9.0, 4: 7.0}
    assert judgement.attempts[2].reason == "r3"


def test_equal_reviewer_scores_go_to_the_smaller_diff(repo: Path, tmp_path: Path) -> None:
    reviewer = FakeReviewer({2: 8.0, 3: 8.0, 4: 8.0})
    report = run(repo, plan_of(contest(*FOUR, judge="reviewer")), tmp_path, checks=True, reviewer=reviewer)
    judgement = report.subtasks[0].judgement
    assert judgement is not None and judgement.winner == 4
    assert "equal scores" in judgement.why


def test_weighted_combines_the_roles_scores(repo: Path, tmp_path: Path) -> None:
    data = plan_to_dict(plan_of(contest(writes("x = 1\n"), writes("y = 22\nz = 3\n"), judge="weighted")))
    data["weights"] = {"security": 3, "style": 1}

    class ByRole(FakeReviewer):
        async def score(
            self, subtask: Subtask, attempts: Sequence[AttemptView], role: str = ""
        ) -> tuple[Score, ...]:
            self.table = {1: 2.0, 2: 9.0} if role == "security" else {1: 10.0, 2: 1.0}
            return await super().score(subtask, attempts, role)

    reviewer = ByRole({})
    report = run(repo, plan_from_dict(data), tmp_path, reviewer=reviewer)
    judgement = report.subtasks[0].judgement
    assert [role for role, _ in reviewer.seen] == ["security", "style"]
    assert judgement is not None and judgement.winner == 2  # (3·9 + 1) / 4 = 7 beats (3·2 + 10) / 4 = 4
    assert {a.index: a.score for a in judgement.attempts} == {1: 4.0, 2: 7.0}


def test_a_reviewer_judge_without_a_reviewer_is_refused_before_the_run(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs a reviewer"):
        run(repo, plan_of(contest(*FOUR, judge="reviewer")), tmp_path)
    assert git.out(repo, "for-each-ref", "refs/heads/swarm/") == ""


def test_attempts_in_plans_round_trip_and_bad_values_are_refused() -> None:
    plan = plan_of(contest(writes("a\n"), writes("b\n"), judge="vote"), scripted("n") | {"attempts": 3})
    assert plan.subtasks[1].attempts == (None, None, None)
    assert plan_from_dict(plan_to_dict(plan)) == plan
    for bad, words in (
        (0, "between 1 and 16"),
        ([], "non-empty list"),
        ([{"kind": "scripted", "nope": 1}], "nope"),
        ("three", "a number or"),
    ):
        with pytest.raises(PlanError, match=words):
            plan_of(scripted("x") | {"attempts": bad})
    with pytest.raises(PlanError, match="did you mean 'vote'"):
        plan_of(scripted("x") | {"judge": "vot"})


def test_best_of_applies_to_subtasks_without_attempts_and_the_agents_view_names_attempt_agents() -> None:
    plan = with_best_of(plan_of(contest(writes("a\n"), writes("b\n")), scripted("n")), 3)
    assert len(plan.subtasks[0].attempts) == 2 and plan.subtasks[1].attempts == (None, None, None)
    assert [s.id for s in agents_view(plan).subtasks] == ["feat", "n", "feat.1", "feat.2"]
    with pytest.raises(UsageError):
        with_best_of(plan, 17)


def test_cli_best_of_runs_n_attempts_per_subtask_and_reports_them(repo: Path, tmp_path: Path) -> None:
    plan = tmp_path / "p.yml"
    data = {
        "version": 1,
        "task": "t",
        "subtasks": [scripted("a", edits=[{"write": "a.txt", "content": "a\n"}])],
    }
    plan.write_text(json.dumps(data))
    report = tmp_path / "r.json"
    # one at a time: with the three in parallel, whichever two finish first are the majority and stop the
    # third, so under load attempt 1 could be the one stopped (the winner then 2)
    argv = ("--plan", str(plan), "--repo", str(repo), "--best-of", "3", "--max-agents", "1")
    proc = run_cli("run", *argv, "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    (sub,) = json.loads(report.read_text())["subtasks"]
    judgement = sub["judgement"]
    assert judgement["judge"] == "vote" and judgement["winner"] == 1  # three equal trees: a majority
    assert [a["index"] for a in judgement["attempts"]][:2] == [1, 2]


# --- the config's best_of, judge and weights; the reviewer judge's model session ---------------------


def test_the_configs_best_of_judge_and_weights_are_read_and_checked_with_key_and_line() -> None:
    config = config_from_text("model: m\nbest_of: 3\njudge: weighted\nweights: {security: 3, style: 1}\n")
    assert (config.best_of, config.judge, dict(config.weights)) == (
        3,
        Judge.WEIGHTED,
        {"security": 3.0, "style": 1.0},
    )
    assert (Config().best_of, Config().judge, dict(Config().weights)) == (1, None, {})
    for text, message in (
        ("model: m\nbest_of: 17\n", r"ci-swarm.yml:2: best_of: must be at most 16, got 17"),
        ("model: m\nbest_of: 0\n", r"ci-swarm.yml:2: best_of: must be at least 1, got 0"),
        ("model: m\n\njudge: vot\n", r"ci-swarm.yml:3: judge: text 'vot' is not one of: checks, vote"),
        ("weights: {}\n", r"ci-swarm.yml:1: weights: must not be empty"),
        ("model: m\nweights:\n  style: -1\n", r"ci-swarm.yml:3: weights.style: must be at least 0, got -1"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_text(text)


def test_the_configs_judge_and_weights_apply_unless_the_plan_has_its_own() -> None:
    plain = plan_of(scripted("a"))
    judged = with_judge(plain, Judge.VOTE, {"security": 2.0})
    assert judged.judge is Judge.VOTE and dict(judged.weights) == {"security": 2.0}
    own = replace(plain, judge=Judge.CHECKS, weights={"style": 1.0})
    assert with_judge(own, Judge.VOTE, {"security": 2.0}) == own


def test_a_reviewer_judge_needs_a_model_and_a_vote_does_not() -> None:
    scripted_only = AgentSpec("scripted")
    reviewed = plan_of(contest(writes("a\n"), writes("b\n"), judge="reviewer"))
    assert needs_model(reviewed, scripted_only)
    assert needs_model(plan_of(contest(writes("a\n"), writes("b\n"), judge="weighted")), scripted_only)
    assert not needs_model(plan_of(contest(writes("a\n"), writes("b\n"), judge="vote")), scripted_only)
    no_attempts = replace(plan_of(scripted("a")), judge=Judge.REVIEWER)  # judges nothing: no model
    assert not needs_model(no_attempts, scripted_only)


def service_job(repo: Path, plan: Plan, **more: Any) -> RunRequest:
    options = RunOptions(
        repo=repo, base="main", workdir=repo.parent / "wt", default_agent=AgentSpec("scripted")
    )
    return RunRequest(Request("the task", source="test"), options, plan, **more)


def test_a_configured_reviewer_judge_opens_the_model_session_and_judges(repo: Path) -> None:
    plan = plan_of(scripted("feat", edits=[{"write": "src/new.py", "content": "x = 1\n"}]))
    factory = Factory()
    request = service_job(repo, plan, best_of=3, judge=Judge.REVIEWER)
    report = run_request(request, ServiceOptions(TRUSTED, AGENTS, factory)).report
    assert factory.calls == 1
    judgement = report.subtasks[0].judgement
    assert judgement is not None and judgement.judge is Judge.REVIEWER and judgement.winner == 1
    assert [a.score for a in judgement.attempts] == [5.0, 5.0, 5.0]  # FakeSession's reviewer: all equal
    assert "equal scores broken by diff size, then attempt index" in judgement.why


def test_without_a_model_a_reviewer_judge_is_refused_before_the_run_naming_the_judge(repo: Path) -> None:
    plan = plan_of(scripted("feat", edits=[{"write": "src/new.py", "content": "x = 1\n"}]))
    request = service_job(repo, plan, best_of=2, judge=Judge.WEIGHTED)

    def no_key() -> ModelSession:
        raise LLMError("ANTHROPIC_API_KEY is not set")

    for factory in (None, no_key):
        with pytest.raises(UsageError) as info:
            run_request(request, ServiceOptions(TRUSTED, AGENTS, factory))
        message = str(info.value)
        assert "\n" not in message and "judged by 'weighted'" in message and "ANTHROPIC_API_KEY" in message
        assert info.value.exit_code == 4
    assert git.out(repo, "for-each-ref", "refs/heads/swarm/") == ""  # nothing ran


def test_cli_reads_best_of_and_judge_from_the_repositorys_config(repo: Path, tmp_path: Path) -> None:
    config = repo / ".github" / "ci-swarm.yml"
    config.parent.mkdir()
    config.write_text("best_of: 2\njudge: checks\n")
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"version": 1, "task": "t", "subtasks": [scripted("a")]}))
    report = tmp_path / "r.json"
    proc = run_cli("run", "--plan", str(plan), "--repo", str(repo), "--report", str(report), "-q")
    assert proc.returncode == 0, proc.stderr
    judgement = json.loads(report.read_text())["subtasks"][0]["judgement"]
    assert judgement["judge"] == "checks" and len(judgement["attempts"]) == 2
    proc = run_cli("run", "--plan", str(plan), "--repo", str(repo), "--best-of", "3", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(report.read_text())["subtasks"][0]["judgement"]["attempts"]) == 3  # the flag wins
    config.write_text("judge: reviewer\nbest_of: 2\n")
    proc = run_cli("run", "--plan", str(plan), "--repo", str(repo), "-q")
    assert proc.returncode == 4
    (line,) = [ln for ln in proc.stderr.splitlines() if "reviewer" in ln]
    assert "subtask 'a' is judged by 'reviewer'" in line
