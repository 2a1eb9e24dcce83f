"""The application service (ci_swarm.service) on its own: when a run needs a model, planning through the
session, the checks, the progress comment, and the accounting — with scripted agents, real git repos in temp
dirs and a fake ModelSession implementing the Protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.agents import AGENTS, ScriptedAgent
from ci_swarm.errors import UsageError
from ci_swarm.models import (
    AgentSpec,
    Check,
    MergeOrder,
    MergePolicy,
    OnConflict,
    Plan,
    Request,
    SubtaskStatus,
    Usage,
)
from ci_swarm.plan import plan_from_dict
from ci_swarm.ports import (
    Agent,
    ModelSession,
    PanelVoter,
    Planner,
    ProgressComment,
    ProgressEvent,
    Reviewer,
)
from ci_swarm.run import RunOptions
from ci_swarm.service import (
    CommandPolicy,
    RunRequest,
    ServiceOptions,
    account,
    needs_model,
    plan_request,
    require_checks,
    run_request,
    with_on_conflict,
)
from tests.fixtures.repos import make_repo
from tests.helpers import plan_of, scripted
from tests.panel_helpers import FakeReviewer, FakeVoter

SPENT = Usage(requests=3, input_tokens=100, output_tokens=20, cost_usd=0.25)
TRUSTED = CommandPolicy(trust_plan_commands=True)
UNTRUSTED = CommandPolicy(trust_plan_commands=False, allowed_commands=(("true",),), config_source="cfg.yml")


def claude_sub(sub_id: str, path: str) -> dict[str, object]:
    """A subtask for the claude backend (the fake session's backend writes by-claude.txt)."""
    return {
        "id": sub_id,
        "role": "builder",
        "title": f"do {sub_id}",
        "instructions": "x",
        "agent": {"kind": "claude", "model": "m"},
        "paths": [path],
    }


@dataclass
class FakePlanner:
    plan_to_give: Plan
    asked: list[Request] = field(default_factory=list)

    async def plan(self, request: Request, repo: Path) -> Plan:
        self.asked.append(request)
        return self.plan_to_give


@dataclass
class FakeSession:
    """A ModelSession: a scripted planner, a backend that writes one file per claude subtask, fixed usage."""

    planned: Plan | None = None
    stopped: bool = False
    reason: str | None = None
    spent: Usage = SPENT
    said: tuple[str, ...] = ("No price known for model 'm': its cost is counted as $0.",)
    closed: int = 0
    backends: int = 0
    planner_used: FakePlanner | None = None
    voter: FakeVoter = field(default_factory=FakeVoter)

    @property
    def budget_stopped(self) -> bool:
        return self.stopped

    def planner(self) -> Planner:
        assert self.planned is not None, "this test gave a plan: the planner must not be asked"
        self.planner_used = FakePlanner(self.planned)
        return self.planner_used

    def agent_backend(self) -> Callable[[AgentSpec], Agent]:
        self.backends += 1

        def backend(spec: AgentSpec) -> Agent:
            return ScriptedAgent(
                AgentSpec("scripted", {"edits": [{"write": "by-claude.txt", "content": "c\n"}]})
            )

        return backend

    def reviewer(self) -> Reviewer:
        return FakeReviewer()

    def panel_voter(self) -> PanelVoter:
        return self.voter

    def usage(self) -> Usage:
        return self.spent

    def notes(self) -> tuple[str, ...]:
        return self.said

    def budget_reason(self) -> str | None:
        return self.reason

    async def aclose(self) -> None:
        self.closed += 1


class Factory:
    """A session factory that counts its calls."""

    def __init__(self, session: FakeSession | None = None) -> None:
        self.session = session or FakeSession()
        self.calls = 0

    def __call__(self) -> ModelSession:
        self.calls += 1
        return self.session


@dataclass
class FakeComment:
    events: list[ProgressEvent] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    @property
    def failures(self) -> tuple[str, ...]:
        return ()

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def finish(self, extra: str = "", *, usage: Usage | None = None, phase: str = "finished") -> None:
        self.finished.append(extra)


@dataclass
class FakeStarter:
    comment: FakeComment = field(default_factory=FakeComment)
    started: list[tuple[str, tuple[str, ...], Usage | None]] = field(default_factory=list)

    def start(
        self,
        request: Request | None,
        run_id: str,
        subtasks: Iterable[object],
        usage: Callable[[], Usage] | None = None,
    ) -> ProgressComment:
        ids = tuple(getattr(s, "id", str(s)) for s in subtasks)
        self.started.append((run_id, ids, usage() if usage is not None else None))
        return self.comment


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n", "a.txt": "a\n"})


SCRIPTED = AgentSpec("scripted")


def job(repo: Path, plan: Plan | None, default: AgentSpec = SCRIPTED) -> RunRequest:
    options = RunOptions(repo=repo, base="main", workdir=repo.parent / "wt", default_agent=default)
    return RunRequest(Request("the task", source="test"), options, plan)


# ------------------------------------------------------------------------------- the one model rule


def test_needs_a_model_without_a_plan_or_with_a_claude_subtask() -> None:
    scripted_plan = plan_of(scripted("a"))
    no_agent = plan_of({"id": "a", "role": "builder", "title": "t", "instructions": "i"})
    assert needs_model(None, AgentSpec("scripted"))
    assert needs_model(plan_of(claude_sub("a", "x.txt")), AgentSpec("scripted"))
    assert needs_model(no_agent, AgentSpec("claude"))  # the subtask falls back on the claude default
    assert not needs_model(no_agent, AgentSpec("scripted"))
    assert not needs_model(scripted_plan, AgentSpec("claude"))  # a default nobody uses needs no model


def test_a_scripted_plan_never_opens_a_session(repo: Path) -> None:
    factory = Factory()
    plan = plan_of(scripted("a", edits=[{"write": "new.txt", "content": "n\n"}]))
    outcome = run_request(job(repo, plan, AgentSpec("claude")), ServiceOptions(TRUSTED, AGENTS, factory))
    assert factory.calls == 0
    assert [s.status for s in outcome.report.subtasks] == [SubtaskStatus.SUCCEEDED]
    assert git.try_read_blob(repo, outcome.report.integration_commit, "new.txt") == b"n\n"
    assert outcome.report.usage == Usage() and outcome.progress is None


def test_a_run_that_needs_a_model_without_a_factory_is_a_usage_error(repo: Path) -> None:
    with pytest.raises(UsageError, match="needs a model"):
        run_request(job(repo, None), ServiceOptions(TRUSTED, AGENTS))


# ------------------------------------------------------------------------------- planning and accounting


def test_the_session_plans_runs_claude_agents_is_closed_and_accounted_once(repo: Path) -> None:
    planned = plan_of(claude_sub("c", "by-claude.txt"), scripted("s"), merge={"order": "plan"})
    session = FakeSession(planned=planned)
    factory = Factory(session)
    shown: list[tuple[str, bool]] = []
    wiring = ServiceOptions(
        TRUSTED, AGENTS, factory, on_plan=lambda plan, was_planned: shown.append((plan.task, was_planned))
    )
    merge = MergePolicy(order=MergeOrder.COMPLETION, prefer=("builder",))
    outcome = run_request(replace(job(repo, None), merge=merge), wiring)
    assert factory.calls == 1 and session.closed == 1 and session.backends == 1
    assert session.planner_used is not None and [r.task for r in session.planner_used.asked] == ["the task"]
    assert shown == [("test task", True)]
    report = outcome.report
    assert report.merge_policy == merge  # the planned plan follows the repository's policy
    assert {s.id: s.status for s in report.subtasks} == {
        "c": SubtaskStatus.SUCCEEDED,
        "s": SubtaskStatus.SUCCEEDED,
    }
    assert git.try_read_blob(repo, report.integration_commit, "by-claude.txt") == b"c\n"
    assert report.usage == session.spent
    assert report.notes.count(session.said[0]) == 1  # the session's notes, folded once
    assert report.budget_stopped is False


def test_budget_stopped_means_an_agent_was_stopped_not_that_the_limit_was_reached(repo: Path) -> None:
    report = run_request(job(repo, plan_of(scripted("a"))), ServiceOptions(TRUSTED, AGENTS)).report
    reached = FakeSession(reason="token budget reached", said=())
    assert account(report, reached).budget_stopped is False
    stopped = FakeSession(
        stopped=True, reason="token budget reached", said=("The budget stopped the swarm.",)
    )
    folded = account(report, stopped)
    assert folded.budget_stopped and folded.notes == ("The budget stopped the swarm.",)
    assert account(report, None) is report


def test_plan_request_plans_with_the_merge_policy_and_closes_the_session(repo: Path) -> None:
    session = FakeSession(planned=plan_of(scripted("a")))
    merge = MergePolicy(order=MergeOrder.PLAN)
    plan = plan_request(Request("plan it"), repo, Factory(session), merge)
    assert plan.merge == merge and [s.id for s in plan.subtasks] == ["a"]
    assert session.closed == 1


def test_the_session_is_closed_when_the_run_fails_early(repo: Path) -> None:
    # as a planner might return it: built without the validators, which would refuse the kind at once
    session = FakeSession(
        planned=plan_from_dict({"subtasks": [{**scripted("a"), "agent": {"kind": "nobody"}}]})
    )
    with pytest.raises(UsageError, match="unknown agent kind 'nobody'"):
        run_request(job(repo, None), ServiceOptions(TRUSTED, AGENTS, Factory(session)))
    assert session.closed == 1


# ------------------------------------------------------------------------------- warnings and progress


def test_warnings_are_returned_and_handed_to_the_entry(repo: Path) -> None:
    plan = plan_of(scripted("a", paths=("README.md",)), scripted("b", paths=("README.md",)))
    seen: list[str] = []
    outcome = run_request(job(repo, plan), ServiceOptions(TRUSTED, AGENTS, on_warning=seen.append))
    assert outcome.warnings and list(outcome.warnings) == seen
    assert "README.md" in seen[0]


def test_the_progress_comment_is_started_with_a_run_id_and_follows_the_run(repo: Path) -> None:
    starter = FakeStarter()
    given: list[ProgressComment] = []
    plan = plan_of(scripted("a"), scripted("b"))
    wiring = ServiceOptions(TRUSTED, AGENTS, progress=starter, on_progress=given.append)
    outcome = run_request(job(repo, plan), wiring)
    ((run_id, ids, usage),) = starter.started
    assert run_id and run_id == outcome.report.run_id  # named up front, the run uses it
    assert ids == ("a", "b") and usage is None  # no session: no cost probe
    assert given == [starter.comment] and outcome.progress is starter.comment
    kinds = [e.kind for e in starter.comment.events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"


# ------------------------------------------------------------------------------- command agents


def command_plan(*argv: str) -> Plan:
    return plan_of({**scripted("cmd"), "agent": {"kind": "command", "run": list(argv)}})


def test_untrusted_plans_may_only_run_allowed_commands(repo: Path) -> None:
    with pytest.raises(UsageError, match=r"'false', which allowed_commands in cfg.yml does not allow"):
        run_request(job(repo, command_plan("false")), ServiceOptions(UNTRUSTED, AGENTS))
    assert git.out(repo, "branch", "--list", "swarm/*") == ""  # refused before anything ran
    outcome = run_request(job(repo, command_plan("true")), ServiceOptions(UNTRUSTED, AGENTS))
    assert [s.status for s in outcome.report.subtasks] == [SubtaskStatus.SUCCEEDED]


def test_trusted_plans_run_any_command(repo: Path) -> None:
    outcome = run_request(
        job(repo, command_plan("sh", "-c", "echo hi > hi.txt")), ServiceOptions(TRUSTED, AGENTS)
    )
    assert git.try_read_blob(repo, outcome.report.integration_commit, "hi.txt") == b"hi\n"


def test_untrusted_command_agents_refuse_a_persisted_credential(repo: Path) -> None:
    git.run(repo, "config", "http.https://github.com/.extraheader", "AUTHORIZATION: basic xyz")
    with pytest.raises(UsageError, match="persist-credentials: false"):
        run_request(job(repo, command_plan("true")), ServiceOptions(UNTRUSTED, AGENTS))
    outcome = run_request(job(repo, command_plan("true")), ServiceOptions(TRUSTED, AGENTS))
    assert outcome.report.subtasks[0].status is SubtaskStatus.SUCCEEDED


# ------------------------------------------------------------------------------- on_conflict needs checks

TESTS = Check("tests", ("python3", "-m", "pytest", "-q"))


@pytest.mark.parametrize("value", ["redo", "resolve"])
def test_redo_or_resolve_without_any_checks_is_refused_before_anything_starts(repo: Path, value: str) -> None:
    factory = Factory()
    plan = plan_of(scripted("a"), merge={"on_conflict": value})
    with pytest.raises(UsageError) as info:
        run_request(job(repo, plan), ServiceOptions(TRUSTED, AGENTS, factory))
    assert str(info.value) == (
        f"on_conflict: {value} needs checks to gate the agents' resolutions (add checks: or --check)"
    )
    assert info.value.exit_code == 4
    assert git.out(repo, "branch", "--list", "swarm/*") == "" and factory.calls == 0  # nothing started


def test_the_on_conflict_flag_overrides_the_plan_and_is_held_to_the_same_rule(repo: Path) -> None:
    plan = plan_of(scripted("a"), merge={"on_conflict": "redo"})
    keep = replace(job(repo, plan), on_conflict=OnConflict.KEEP)
    outcome = run_request(keep, ServiceOptions(TRUSTED, AGENTS))  # the flag's keep needs no checks
    assert [s.status for s in outcome.report.subtasks] == [SubtaskStatus.SUCCEEDED]
    resolve = replace(job(repo, plan_of(scripted("b"))), on_conflict=OnConflict.RESOLVE)
    with pytest.raises(UsageError, match=r"^on_conflict: resolve needs checks"):
        run_request(resolve, ServiceOptions(TRUSTED, AGENTS))


def test_a_planned_run_follows_the_flag_and_is_refused_before_planning(repo: Path) -> None:
    factory = Factory()
    planned = replace(job(repo, None), merge=MergePolicy(order=MergeOrder.PLAN), on_conflict=OnConflict.REDO)
    with pytest.raises(UsageError, match=r"^on_conflict: redo needs checks"):
        run_request(planned, ServiceOptions(TRUSTED, AGENTS, factory))
    assert factory.calls == 0
    overridden = with_on_conflict(planned)
    assert overridden.merge == MergePolicy(order=MergeOrder.PLAN, on_conflict=OnConflict.REDO)


def test_checks_from_the_flag_the_plan_or_the_config_satisfy_the_rule(repo: Path) -> None:
    plan = plan_of(scripted("a"), merge={"on_conflict": "redo"})
    base = job(repo, plan)
    with_plan_checks = replace(base, plan=replace(plan, checks=(TESTS,)))
    for request in (replace(base, check_flags=(TESTS,)), replace(base, checks=(TESTS,)), with_plan_checks):
        require_checks(request)  # no error
    with pytest.raises(UsageError):
        require_checks(base)


def test_a_claude_resolver_needs_a_model_and_a_kept_plan_does_not() -> None:
    resolve = plan_of(scripted("a"), merge={"on_conflict": "resolve", "resolver": "claude"})
    assert needs_model(resolve, AgentSpec("scripted"))
    assert needs_model(plan_of(scripted("a"), merge={"on_conflict": "resolve"}), AgentSpec("claude"))
    assert not needs_model(plan_of(scripted("a"), merge={"resolver": "claude"}), AgentSpec("scripted"))


def test_an_untrusted_plan_may_only_name_an_allowed_command_resolver(repo: Path) -> None:
    merge = {"on_conflict": "resolve", "resolver": {"kind": "command", "run": ["false"]}}
    request = replace(job(repo, plan_of(scripted("a"), merge=merge)), checks=(TESTS,))
    with pytest.raises(UsageError) as info:
        run_request(request, ServiceOptions(UNTRUSTED, AGENTS))
    assert str(info.value) == (
        "the resolver (merge.resolver) would run 'false', which allowed_commands in cfg.yml does not allow "
        "(a plan may only run allowed commands)"
    )
    assert git.out(repo, "branch", "--list", "swarm/*") == ""
