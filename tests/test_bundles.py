"""Agent bundles: made in one clone, admitted in another through quarantine; each tampered result refused
with its reason and nothing set; the newest result per subtask wins."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from ci_swarm import bundles, git
from ci_swarm.bundles import AgentResult, BundleRefused, Expected
from tests.fixtures import commit, make_repo

BRANCH = "swarm/r1-agents/a"


def _setup(tmp: Path) -> tuple[Path, Path, str, str]:
    """(agent clone, land clone, start, the agent's commit on its branch in the agent clone)."""
    agent = make_repo(tmp / "agent", {"f.txt": "f\n"})
    start = git.rev_parse(agent, "HEAD")
    land = tmp / "land"
    subprocess.run(["git", "clone", "--quiet", str(agent), str(land)], check=True)
    work = commit(agent, start, {"a.txt": "a\n"}, "a")
    git.create_branch(agent, BRANCH, work)
    return agent, land, start, work


def _expected(start: str) -> Expected:
    return Expected("r1", ["a", "b"], start, {"a": BRANCH, "b": "swarm/r1-agents/b"})


def _result(start: str, work: str, **changes: object) -> AgentResult:
    return replace(AgentResult("r1", "a", start, work, "succeeded", seconds=1.5), **changes)  # type: ignore[arg-type]


def test_a_bundle_round_trips_into_the_agent_branch_through_quarantine(tmp_path: Path) -> None:
    agent, land, start, work = _setup(tmp_path)
    out = tmp_path / "out" / "a.bundle"
    bundles.make(agent, out, _result(start, work, attempt=2), f"refs/heads/{BRANCH}")
    header = bundles.read_header(out)
    assert header.refs == ((work, f"refs/heads/{BRANCH}"),) and header.prerequisites == (start,)
    (found,) = bundles.find(tmp_path / "out")
    assert found.result == _result(start, work, attempt=2) and found.bundle == out
    assert bundles.admit(land, out, found.result, _expected(start)) == work
    assert git.try_ref(land, f"refs/heads/{BRANCH}") == work
    assert git.list_refs(land, "refs/ci-swarm/") == ()


def test_no_work_means_a_sidecar_and_no_bundle(tmp_path: Path) -> None:
    agent, _, start, _ = _setup(tmp_path)
    out = tmp_path / "out" / "a.bundle"
    bundles.make(agent, out, _result(start, "", status="failed"), f"refs/heads/{BRANCH}")
    assert not out.exists() and json.loads(bundles.sidecar_of(out).read_text())["status"] == "failed"


def _refused(land: Path, bundle: Path, result: AgentResult, start: str) -> str:
    with pytest.raises(BundleRefused) as err:
        bundles.admit(land, bundle, result, _expected(start))
    assert git.try_ref(land, f"refs/heads/{BRANCH}") is None
    assert git.list_refs(land, "refs/ci-swarm/") == ()
    return str(err.value)


def test_tampered_results_are_refused_with_a_reason_each(tmp_path: Path) -> None:
    agent, land, start, work = _setup(tmp_path)
    good = tmp_path / "good.bundle"
    git.bundle_create(agent, good, f"refs/heads/{BRANCH}", start)
    ok = _result(start, work)
    assert "made for run 'r2'" in _refused(land, good, replace(ok, run_id="r2"), start)
    assert "unknown subtask 'zz'" in _refused(land, good, replace(ok, subtask="zz"), start)
    other = commit(agent, start, {"a.txt": "other\n"}, "other")
    assert "the bundle holds commit" in _refused(land, good, replace(ok, commit=other), start)
    assert "its bundle missing.bundle is missing" in _refused(land, tmp_path / "missing.bundle", ok, start)

    git.create_branch(agent, "elsewhere", work)
    wrong_ref = tmp_path / "wrong-ref.bundle"
    git.bundle_create(agent, wrong_ref, "refs/heads/elsewhere", start)
    assert "ref is 'refs/heads/elsewhere', not 'refs/heads/swarm/r1-agents/a'" in _refused(
        land, wrong_ref, ok, start
    )


def test_a_result_whose_parent_is_not_the_start_is_refused(tmp_path: Path) -> None:
    agent, land, start, work = _setup(tmp_path)
    later = commit(agent, work, {"b.txt": "b\n"}, "on top")
    git.update_ref(agent, f"refs/heads/{BRANCH}", later)
    two = tmp_path / "two.bundle"
    git.bundle_create(agent, two, f"refs/heads/{BRANCH}", start)  # prerequisite start, parent not
    result = _result(start, later)
    assert "its commit's parent is not the recorded start" in _refused(land, two, result, start)
    onto = tmp_path / "onto.bundle"
    git.bundle_create(agent, onto, f"refs/heads/{BRANCH}", work)  # prerequisite is another commit
    assert "prerequisite is" in _refused(land, onto, result, start)
    moved = replace(result, start=work)
    assert "started at" in _refused(land, onto, moved, start)


def test_a_corrupt_or_foreign_file_is_refused(tmp_path: Path) -> None:
    agent, land, start, work = _setup(tmp_path)
    bundle = tmp_path / "a.bundle"
    git.bundle_create(agent, bundle, f"refs/heads/{BRANCH}", start)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) - 30])
    assert "objects cannot be read" in _refused(land, bundle, _result(start, work), start)
    bundle.write_bytes(b"PK\x03\x04 a zip file\n")
    assert "not a git bundle" in _refused(land, bundle, _result(start, work), start)


def test_a_bundle_git_bundle_verify_rejects_is_refused(tmp_path: Path) -> None:
    agent, _, start, work = _setup(tmp_path)
    bundle = tmp_path / "a.bundle"
    git.bundle_create(agent, bundle, f"refs/heads/{BRANCH}", start)
    stranger = make_repo(tmp_path / "stranger", {"g.txt": "unrelated\n"})  # lacks the prerequisite
    assert "git bundle verify" in _refused(stranger, bundle, _result(start, work), start)


def test_a_bundle_over_the_size_cap_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, land, start, work = _setup(tmp_path)
    bundle = tmp_path / "a.bundle"
    git.bundle_create(agent, bundle, f"refs/heads/{BRANCH}", start)
    monkeypatch.setattr(bundles, "MAX_BUNDLE_BYTES", 10)
    assert "larger than 10 bytes" in _refused(land, bundle, _result(start, work), start)


def test_the_newest_attempt_wins_then_the_later_path(tmp_path: Path) -> None:
    start = "1" * 40
    for name, attempt, commit_id in [("x/a.bundle", 2, "2"), ("y/a.bundle", 1, "3"), ("z/b.bundle", 1, "4")]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sub = path.stem
        result = AgentResult("r1", sub, start, commit_id * 40, "succeeded", attempt=attempt)
        bundles.sidecar_of(path).write_text(json.dumps({**result.__dict__, "usage": {}}))
    (tmp_path / "broken.json").write_text("{")
    found = bundles.find(tmp_path)
    assert [f.problem.startswith("unreadable sidecar") for f in found] == [True, False, False, False]
    best = bundles.newest(found)
    assert {k: v.result.commit[0] for k, v in best.items() if v.result} == {"a": "2", "b": "4"}
    first = found[1].result
    assert first is not None
    same = [bundles.Found(tmp_path / p, replace(first, attempt=1)) for p in ("p.json", "q.json")]
    assert bundles.newest(same)["a"].sidecar.name == "q.json"


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("usage", {"cost_usd": -100.0}, "'cost_usd' must be a finite number ≥ 0"),
        ("usage", {"cost_usd": float("nan")}, "'cost_usd' must be a finite number ≥ 0"),
        ("usage", {"input_tokens": -5000}, "'input_tokens' must be a whole number ≥ 0"),
        ("usage", {"output_tokens": 1.5}, "'output_tokens' must be a whole number ≥ 0"),
        ("seconds", float("inf"), "'seconds' must be a finite number ≥ 0"),
        ("attempt", 0, "'attempt' must be a whole number ≥ 1"),
        ("attempt", True, "'attempt' must be a whole number ≥ 1"),
    ],
)
def test_a_sidecar_with_impossible_numbers_is_unreadable(
    tmp_path: Path, field: str, value: object, why: str
) -> None:
    """A negative or non-finite cost would enlarge the budget shares of the jobs that follow (a NaN makes
    every comparison with the budget false): the sidecar is refused with the field named."""
    good = json.loads(json.dumps(asdict(AgentResult("r1", "a", "s" * 40, "", "failed"))))
    (tmp_path / "a.bundle.json").write_text(json.dumps({**good, field: value}))
    (found,) = bundles.find(tmp_path)
    assert found.result is None
    assert found.problem == f"unreadable sidecar: {why}"
