"""Conflicts repaired by agents (issue #12, ``merge.on_conflict``): a half-applied keep-one-side (a rename
whose definition line lost to another subtask's edit) is caught by the checks; ``redo`` re-runs the later
subtask on top of the work that landed first, ``resolve`` lets a resolver write the joined text — each
accepted only when the checks pass, touches only what it may and adds no conflict marker; otherwise the
keep result stands, the attempt is ``refused`` with its reason and its commit kept on its branch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.agents import AGENTS
from ci_swarm.errors import EXIT_FAILED_SUBTASKS, EXIT_OK, exit_code
from ci_swarm.merge_only import remerge
from ci_swarm.models import (
    AgentSpec,
    Check,
    MergeOrder,
    MergeRecord,
    OnConflict,
    Plan,
    Repair,
    Request,
    Resolved,
    RunReport,
    SubtaskStatus,
    VerificationStatus,
)
from ci_swarm.repair import marker_files
from ci_swarm.report import to_markdown
from ci_swarm.run import RunOptions, run_plan_sync
from ci_swarm.sandbox import resolve_policy
from ci_swarm.service import CommandPolicy, RunRequest, ServiceOptions, run_request
from ci_swarm.verify import checker
from tests.fixtures import commit, make_repo
from tests.helpers import SANDBOX_PY, plan_of, scripted

TRUSTED = CommandPolicy(trust_plan_commands=True)
CHECK = Check("app", (SANDBOX_PY, "app.py"), timeout=60)
LIB = "def greet():\n    return 'hi'\n"
APP = "import lib\n\nprint(lib.greet())\n"
JOINED = "def hello():  # the greeting\n    return 'hi'\n"


def _plan(on_conflict: OnConflict, resolver: dict[str, Any] | None = None) -> Plan:
    """``polish`` edits greet's definition line; ``rename`` renames greet to hello (definition and call):
    merged in plan order, the definition line conflicts and keep-one-side keeps polish's — half a rename."""
    polish = scripted(
        "polish", edits=[{"replace": "lib.py", "old": "def greet():", "new": "def greet():  # the greeting"}]
    )
    rename = scripted("rename", edits=[{"replace": "lib.py", "old": "def greet", "new": "def hello"}])
    rename["agent"]["edits"].append({"replace": "app.py", "old": "lib.greet", "new": "lib.hello"})
    plan = plan_of(polish, rename)
    spec = AgentSpec("scripted", resolver) if resolver is not None else None
    return replace(plan, merge=replace(plan.merge, on_conflict=on_conflict, resolver=spec))


def _run(tmp_path: Path, plan: Plan) -> tuple[Path, RunReport]:
    repo = make_repo(tmp_path / "repo", {"lib.py": LIB, "app.py": APP})
    options = RunOptions(repo=repo, max_agents=2, merge_order=MergeOrder.PLAN)
    job = RunRequest(Request(task="t"), options, plan, checks=(CHECK,))
    return repo, run_request(job, ServiceOptions(TRUSTED, AGENTS)).report


def _at_tip(repo: Path, report: RunReport, path: str) -> str:
    return git.read_blob(repo, f"{report.integration_commit}:{path}").decode()


def _rename_merge(report: RunReport) -> MergeRecord:
    return next(m for m in report.merges if m.subtask == "rename")


def test_keep_lands_half_a_rename_and_verification_sets_it_aside(tmp_path: Path) -> None:
    _repo, report = _run(tmp_path, _plan(OnConflict.KEEP))
    assert [c.subtask for c in report.verification.culprits] == ["rename"]
    assert {s.id: s.status for s in report.subtasks}["rename"] is SubtaskStatus.REJECTED
    assert all(m.repair is None for m in report.merges)
    assert exit_code(report) == EXIT_FAILED_SUBTASKS


def test_redo_repairs_the_half_applied_rename_on_top_of_the_kept_work(tmp_path: Path) -> None:
    repo, report = _run(tmp_path, _plan(OnConflict.REDO))
    merge = _rename_merge(report)
    assert merge.repair is not None and merge.repair.outcome is Resolved.REDONE, merge.repair
    assert merge.resolution is Resolved.REDONE
    assert [c.resolution for c in merge.conflicts] == [Resolved.REDONE]
    assert "redo of rename" in merge.repair.by and merge.repair.checks[0].ok
    assert _at_tip(repo, report, "lib.py") == JOINED and "lib.hello" in _at_tip(repo, report, "app.py")
    assert report.verification.status is VerificationStatus.PASSED and not report.verification.culprits
    assert {s.status for s in report.subtasks} == {SubtaskStatus.SUCCEEDED}
    assert exit_code(report) == EXIT_OK and report.conflicts and not report.unrepaired_conflicts
    assert "1 conflict(s) recorded (1 repaired by agents)" in to_markdown(report)
    redo_branch = next(s.branch for s in report.subtasks if s.id == "rename") + ".redo"
    assert git.rev_parse(repo, redo_branch) == merge.repair.commit  # the redone work, on its own branch
    assert git.is_ancestor(repo, merge.repair.commit, report.integration_commit)


def test_a_resolver_that_joins_both_sides_is_accepted_when_the_checks_pass(tmp_path: Path) -> None:
    resolver = {"edits": [{"write": "lib.py", "content": JOINED}]}
    repo, report = _run(tmp_path, _plan(OnConflict.RESOLVE, resolver))
    merge = _rename_merge(report)
    assert merge.repair is not None and merge.repair.outcome is Resolved.RESOLVED, merge.repair
    assert merge.repair.by == "scripted (resolver)"
    assert _at_tip(repo, report, "lib.py") == JOINED
    assert report.verification.status is VerificationStatus.PASSED and not report.verification.culprits
    assert git.is_ancestor(repo, merge.repair.start, report.integration_commit)  # it sits on the keep merge


def _refused(tmp_path: Path, resolver: dict[str, Any]) -> Repair:
    """A refused resolution, seen on the run's own report (before verification): keep stood, the
    attempt's commit is kept on its branch and not merged."""
    repo = make_repo(tmp_path / "repo", {"lib.py": LIB, "app.py": APP})
    policy = resolve_policy(None)
    gate = checker(repo, (CHECK,), policy)
    options = RunOptions(repo=repo, max_agents=2, merge_order=MergeOrder.PLAN, sandbox=policy, check=gate)
    report = run_plan_sync(_plan(OnConflict.RESOLVE, resolver), options, AGENTS.factory(AgentSpec(), {}))
    merge = _rename_merge(report)
    assert merge.repair is not None and merge.repair.outcome is Resolved.REFUSED, merge.repair
    assert [c.resolution for c in merge.conflicts] == [Resolved.REFUSED]
    assert _at_tip(repo, report, "lib.py") == "def greet():  # the greeting\n    return 'hi'\n"  # keep stood
    branch = next(s.branch for s in report.subtasks if s.id == "rename") + ".resolve"
    assert git.rev_parse(repo, branch) == merge.repair.commit  # the refused attempt is kept, not merged
    assert not git.is_ancestor(repo, merge.repair.commit, report.integration_commit)
    return merge.repair


def test_a_refused_repair_is_named_when_verification_sets_its_subtask_aside(tmp_path: Path) -> None:
    broken = {"edits": [{"write": "lib.py", "content": "def hello(:\n    return 'hi'\n"}]}
    _repo, report = _run(tmp_path, _plan(OnConflict.RESOLVE, broken))
    assert [c.subtask for c in report.verification.culprits] == ["rename"]
    rename = next(s for s in report.subtasks if s.id == "rename")
    assert rename.status is SubtaskStatus.REJECTED
    assert (
        "a repair of its conflicts by scripted (resolver) was refused: the checks fail on it" in rename.error
    )


def test_a_resolution_the_checks_reject_is_refused_and_keep_stands(tmp_path: Path) -> None:
    broken = {"edits": [{"write": "lib.py", "content": "def hello(:\n    return 'hi'\n"}]}
    repair = _refused(tmp_path, broken)
    assert repair.reason == "the checks fail on it: app (exit 1)"
    assert repair.checks and not repair.checks[0].ok and "SyntaxError" in repair.checks[0].output_tail


def test_a_resolution_with_conflict_markers_is_refused(tmp_path: Path) -> None:
    marked = JOINED + "<<<<<<< ours\n=======\n>>>>>>> theirs\n"
    repair = _refused(tmp_path, {"edits": [{"write": "lib.py", "content": marked}]})
    assert repair.reason == "it left conflict markers in lib.py"
    assert repair.checks == ()  # refused before any check ran


def test_a_resolution_touching_another_file_is_refused(tmp_path: Path) -> None:
    edits = [{"write": "lib.py", "content": JOINED}, {"write": "other.py", "content": "x = 1\n"}]
    repair = _refused(tmp_path, {"edits": edits})
    assert repair.reason.startswith("it changed files outside what it may touch: other.py")


def test_marker_lines_are_found_only_when_added() -> None:
    diff = (
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@\n-<<<<<<< old\n+=======\n"
        "diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n+a ======= b\n+>>>>>>>\n"
        "diff --git a/z b/z\n--- a/z\n+++ b/z\n@@ -1 +1 @@\n+<<<<<<<< eight\n+ >>>>>>> indented\n"
    )
    assert marker_files(diff) == ["x", "y"]


def test_a_remerge_onto_a_moved_target_keeps_the_repair(tmp_path: Path) -> None:
    repo, report = _run(tmp_path, _plan(OnConflict.REDO))
    moved = commit(repo, report.base, {"NEWS.md": "moved on\n"}, "the target moved")
    again = remerge(repo, report, moved)
    assert _at_tip(repo, again, "lib.py") == JOINED and "lib.hello" in _at_tip(repo, again, "app.py")
    assert _at_tip(repo, again, "NEWS.md") == "moved on\n"
    assert "not checked again" in again.notes[-1]
