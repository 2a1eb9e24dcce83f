"""The fan-out run state: a round trip through its ref (plan, policy, digest, landing; each write a new
commit set with compare-and-swap), plan → dict → plan, and each error — no state, another format,
malformed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from ci_swarm import git, runstate
from ci_swarm.errors import NoRunState, RunStateError, RunStateFormat
from ci_swarm.models import AgentSpec, Check, MergeOrder, MergePolicy, OnConflict
from ci_swarm.plan import plan_from_dict, plan_to_dict
from ci_swarm.runstate import RunPolicy, RunState
from tests.fixtures import make_repo
from tests.helpers import plan_of, scripted


def _state(repo: Path) -> RunState:
    sub = scripted("a", edits=[{"write": "a.txt", "content": "a\n"}], paths=("a.txt",))
    plan = plan_of(sub, scripted("b", depends_on=("a",)), merge={"order": "plan", "prefer": ["tester"]})
    plan = replace(plan, checks=(Check("tests", ("pytest", "-q"), 30.0),), merge_failing=True)
    policy = RunPolicy(
        max_agents=3,
        timeout=12.5,
        merge_order="plan",
        checks=(Check("lint", ("ruff", "check"), None),),
        default_agent=AgentSpec("command", {"run": ("sh", "-c", "true")}),
        branch_prefix="swarm",
        sandbox="none",
    )
    return RunState("r1", git.rev_parse(repo, "HEAD"), "swarm/r1", plan, policy, "ab" * 32)


def test_plan_to_dict_reads_back_as_the_same_plan(tmp_path: Path) -> None:
    plan = _state(make_repo(tmp_path / "repo", {"f": "x\n"})).plan
    data = json.loads(json.dumps(plan_to_dict(plan)))
    assert plan_from_dict(data) == plan
    assert plan.merge == MergePolicy(order=MergeOrder.PLAN, prefer=("tester",))


def test_the_state_round_trips_through_its_ref_and_each_write_is_a_new_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    state = _state(repo)
    first = runstate.record(repo, state)
    loaded = runstate.load(repo, "r1")
    assert loaded.state == state and loaded.commit == first
    assert git.try_ref(repo, "refs/swarm/r1/state") == first
    second = runstate.record(repo, runstate.landed(state, "c" * 40), first, {"report.json": b"{}"})
    again = runstate.load(repo, "r1")
    assert again.state.landed == "c" * 40 and git.parents(repo, second) == (first,)
    assert runstate.attachment(repo, again, "report.json") == b"{}"
    assert runstate.attachment(repo, again, "missing") is None


def test_a_write_from_a_stale_state_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    state = _state(repo)
    first = runstate.record(repo, state)
    runstate.record(repo, runstate.landed(state, "c" * 40), first)
    with pytest.raises(RunStateError, match="changed meanwhile"):
        runstate.record(repo, runstate.landed(state, "d" * 40), first)
    with pytest.raises(RunStateError, match="changed meanwhile"):
        runstate.record(repo, state)  # a second plan for the same run id


def test_no_state_for_the_run_names_the_ref_to_fetch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    with pytest.raises(NoRunState, match=r"no state for run r9 .*refs/swarm/r9/state") as err:
        runstate.load(repo, "r9")
    assert err.value.exit_code == 4


def _write_raw(repo: Path, run_id: str, data: bytes) -> None:
    tree = git.make_tree(repo, {"state.json": git.write_blob(repo, data)})
    git.update_ref(repo, f"refs/swarm/{run_id}/state", git.commit_tree(repo, tree, [], "state\n"))


def test_a_state_of_a_newer_format_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    data = runstate.to_dict(_state(repo))
    _write_raw(repo, "r1", json.dumps({**data, "format": 2}).encode())
    with pytest.raises(RunStateFormat) as err:
        runstate.load(repo, "r1")
    assert str(err.value).startswith("run state format 2 is newer than this ci-swarm (")
    assert str(err.value).endswith("reads format 1)")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"format": "1"}', "'format' is not a number"),
        (b'{"format": 1}', "missing key 'policy'"),
    ],
)
def test_a_malformed_state_says_what_is_wrong(tmp_path: Path, data: bytes, why: str) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    _write_raw(repo, "r1", data)
    with pytest.raises(RunStateError, match=f"the state of run r1 is malformed: {why}"):
        runstate.load(repo, "r1")


def test_a_state_whose_plan_is_invalid_is_malformed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    data = runstate.to_dict(_state(repo))
    data["plan"]["subtasks"] = []
    _write_raw(repo, "r1", json.dumps(data).encode())
    with pytest.raises(RunStateError, match="malformed: the state's plan: the plan has no subtasks"):
        runstate.load(repo, "r1")


def test_landed_waves_round_trip_and_the_state_commit_keeps_the_tip_and_earlier_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f": "x\n"})
    state = replace(_state(repo), policy=replace(_state(repo).policy, budget_usd=2.5, budget_tokens=900))
    first = runstate.record(repo, state, attachments={"wave-0.json": b"{}"})
    tip = git.rev_parse(repo, "HEAD")
    moved = replace(state, tips=(tip,), done=MappingProxyType({"a": "succeeded"}))
    second = runstate.record(repo, moved, first, {"report.json": b"[]"}, anchor=tip)
    loaded = runstate.load(repo, "r1")
    assert loaded.state == moved and (loaded.state.wave, loaded.state.start) == (1, tip)
    assert git.parents(repo, second) == (first, tip)
    assert runstate.attachment(repo, loaded, "wave-0.json") == b"{}"  # kept from the previous commit
    assert runstate.attachment(repo, loaded, "report.json") == b"[]"


def test_a_plans_conflict_repair_policy_round_trips(tmp_path: Path) -> None:
    merge = {"on_conflict": "resolve", "resolver": {"kind": "command", "run": ["true", "{instructions}"]}}
    plan = plan_of(scripted("a"), merge=merge)
    back = plan_from_dict(json.loads(json.dumps(plan_to_dict(plan))))
    assert back == plan and back.merge.on_conflict is OnConflict.RESOLVE
    assert back.merge.resolver == AgentSpec("command", {"run": ("true", "{instructions}")})
