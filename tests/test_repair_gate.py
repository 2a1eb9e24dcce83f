"""The repair gate against a resolver that tries to slip past it (issue #12's audit): conflict markers in a
file git diffs as binary, a conflicted file deleted or turned into a symlink, a conflicted path whose name
reads as a glob. Real repositories, the real sandbox, checks that pass — so only the gate can refuse."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.agents import AGENTS
from ci_swarm.models import AgentSpec, Check, MergeOrder, OnConflict, Repair, Resolved
from ci_swarm.run import RunOptions, run_plan_sync
from ci_swarm.sandbox import resolve_policy
from ci_swarm.verify import checker
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, plan_of, scripted

PASSING = Check("ok", (SANDBOX_PY, "-c", "pass"), timeout=60)


def _repair(tmp_path: Path, files: dict[str, str], path: str, resolver: AgentSpec) -> tuple[Path, Repair]:
    """``first`` and ``second`` write different text to ``path`` (merged in plan order: a conflict, keep
    keeps ``first``'s); ``resolver`` repairs it under a check that always passes."""
    repo = make_repo(tmp_path / "repo", files)
    first = scripted("first", edits=[{"write": path, "content": "first\n"}])
    second = scripted("second", edits=[{"write": path, "content": "second\n"}])
    plan = plan_of(first, second)
    plan = replace(plan, merge=replace(plan.merge, on_conflict=OnConflict.RESOLVE, resolver=resolver))
    policy = resolve_policy(None)
    options = RunOptions(
        repo=repo,
        max_agents=2,
        merge_order=MergeOrder.PLAN,
        sandbox=policy,
        check=checker(repo, (PASSING,), policy),
    )
    report = run_plan_sync(plan, options, AGENTS.factory(AgentSpec(), {}))
    merge = next(m for m in report.merges if m.subtask == "second")
    assert merge.repair is not None, merge
    if merge.repair.outcome is Resolved.REFUSED:  # keep stood: the repair is not on the integration
        assert git.read_blob(repo, f"{report.integration_commit}:{path}") == b"first\n"
    return repo, merge.repair


def _writes(*edits: dict[str, Any]) -> AgentSpec:
    return AgentSpec("scripted", {"edits": list(edits)})


def test_markers_in_a_file_git_diffs_as_binary_are_still_found(tmp_path: Path) -> None:
    files = {"notes.lock": "base\n", ".gitattributes": "*.lock -diff\n"}  # lock files are often -diff
    marked = "first\n<<<<<<< ours\nfirst\n=======\nsecond\n>>>>>>> theirs\n"
    _repo, repair = _repair(
        tmp_path, files, "notes.lock", _writes({"write": "notes.lock", "content": marked})
    )
    assert repair.outcome is Resolved.REFUSED
    assert repair.reason == "it left conflict markers in notes.lock"


def test_a_resolver_may_not_delete_the_conflicted_file(tmp_path: Path) -> None:
    _repo, repair = _repair(tmp_path, {"notes.txt": "base\n"}, "notes.txt", _writes({"delete": "notes.txt"}))
    assert repair.outcome is Resolved.REFUSED
    assert repair.reason == "it deleted a conflicted file: notes.txt"


def test_a_resolver_may_not_turn_the_conflicted_file_into_a_symlink(tmp_path: Path) -> None:
    link = AgentSpec("command", {"run": ["sh", "-c", "rm notes.txt && ln -s /etc/passwd notes.txt"]})
    _repo, repair = _repair(tmp_path, {"notes.txt": "base\n"}, "notes.txt", link)
    assert repair.outcome is Resolved.REFUSED
    assert repair.reason == "it changed the type or mode of a file: notes.txt (100644 → 120000)"


def test_a_conflicted_name_that_reads_as_a_glob_allows_only_itself(tmp_path: Path) -> None:
    files = {"x?.txt": "base\n", "xa.txt": "other\n"}
    edits = ({"write": "x?.txt", "content": "first\nsecond\n"}, {"write": "xa.txt", "content": "mine\n"})
    _repo, repair = _repair(tmp_path, files, "x?.txt", _writes(*edits))
    assert repair.outcome is Resolved.REFUSED
    assert repair.reason == "it changed files outside what it may touch: xa.txt"


def test_a_resolution_of_a_conflicted_name_with_glob_characters_is_accepted(tmp_path: Path) -> None:
    repo, repair = _repair(
        tmp_path, {"x?.txt": "base\n"}, "x?.txt", _writes({"write": "x?.txt", "content": "first\nsecond\n"})
    )
    assert repair.outcome is Resolved.RESOLVED, repair.reason
    assert git.read_blob(repo, f"{repair.commit}:x?.txt") == b"first\nsecond\n"
