"""Each `ci-swarm run` flag as a real subprocess, checked through the --report JSON and the repository.

No ANTHROPIC_* / GITHUB_* variables reach the child: every run here is scripted (or a command agent).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm import git
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, run_cli, scripted

FILES = {"README.md": "# r\n\nline\n", "conf.txt": "value = 1\n"}


def ci_swarm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout)


def write_plan(path: Path, *subtasks: dict[str, Any], **extra: Any) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "task": "flags", "subtasks": list(subtasks), **extra}))
    return path


def run_plan(
    repo: Path, tmp: Path, *subtasks: dict[str, Any], flags: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``ci-swarm run --plan`` with ``flags``; the process and its JSON report."""
    plan = write_plan(tmp / "plan.yml", *subtasks)
    report = tmp / "report.json"
    report.unlink(missing_ok=True)
    proc = ci_swarm(
        "run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--report", str(report), *flags
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return proc, data


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in data["subtasks"]}


def subtask(data: dict[str, Any], sub_id: str) -> dict[str, Any]:
    return next(s for s in data["subtasks"] if s["id"] == sub_id)


def merge_order(data: dict[str, Any]) -> list[str]:
    return [m["subtask"] for m in sorted(data["merges"], key=lambda m: m["order"])]


def swarm_branches(repo: Path) -> list[str]:
    return git.out(repo, "branch", "--list", "swarm/*", "--format=%(refname:short)").split()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


# --- scheduling flags -------------------------------------------------------------------------------


def test_fail_fast_cancels_a_slow_sibling_and_exits_3(repo: Path, tmp_path: Path) -> None:
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("broken", fail="the build is red"),
        scripted("slow", delay=60, edits=[{"write": "slow.txt", "content": "slow\n"}]),
        flags=("--fail-fast",),
    )
    assert proc.returncode == 3, proc.stderr
    assert statuses(data) == {"broken": "failed", "slow": "cancelled"}
    assert subtask(data, "broken")["error"] == "the build is red"
    assert git.try_read_blob(repo, data["integration_commit"], "slow.txt") is None  # never merged
    assert git.out(repo, "worktree", "list", "--porcelain").count("worktree ") == 1  # only the user's


def test_without_fail_fast_the_sibling_finishes(repo: Path, tmp_path: Path) -> None:
    """The control for the test above: the same plan without the flag lets the sibling run to the end."""
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("broken", fail="the build is red"),
        scripted("slow", delay=0.3, edits=[{"write": "slow.txt", "content": "slow\n"}]),
    )
    assert proc.returncode == 3, proc.stderr
    assert statuses(data) == {"broken": "failed", "slow": "succeeded"}
    assert git.read_blob(repo, f"{data['integration_commit']}:slow.txt") == b"slow\n"


def test_timeout_stops_a_hanging_agent_and_exits_3(repo: Path, tmp_path: Path) -> None:
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("stuck", hang=True),
        scripted("fine", edits=[{"write": "fine.txt", "content": "fine\n"}]),
        flags=("--timeout", "10"),  # room for "fine" on a loaded machine; "stuck" never ends by itself
    )
    assert proc.returncode == 3, proc.stderr
    assert statuses(data) == {"stuck": "timed_out", "fine": "succeeded"}
    assert "timed out" in subtask(data, "stuck")["error"].lower()
    assert git.read_blob(repo, f"{data['integration_commit']}:fine.txt") == b"fine\n"  # isolated failure


def test_a_subtask_cancelled_while_its_worktree_is_added_leaves_no_worktree_entry(tmp_path: Path) -> None:
    """A repository big enough that `git worktree add` outlasts a 10 ms timeout: the cancel lands mid-add."""
    repo = make_repo(tmp_path / "repo", {f"d{i // 100}/f{i}.txt": f"{i}\n" for i in range(2000)})
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("slow", edits=[{"write": "slow.txt", "content": "slow\n"}]),
        flags=("--timeout", "0.01"),
    )
    assert proc.returncode == 3, proc.stderr
    assert statuses(data) == {"slow": "timed_out"}
    entries = git.out(repo, "worktree", "list", "--porcelain").count("worktree ")
    assert entries == 1, git.out(repo, "worktree", "list")


@pytest.mark.parametrize(
    ("order", "expected"), [("completion", ["quick", "late"]), ("plan", ["late", "quick"])]
)
def test_merge_order_plan_or_completion(repo: Path, tmp_path: Path, order: str, expected: list[str]) -> None:
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("late", delay=5.0, edits=[{"write": "late.txt", "content": "late\n"}]),
        scripted("quick", edits=[{"write": "quick.txt", "content": "quick\n"}]),
        flags=("--merge-order", order),
    )
    assert proc.returncode == 0, proc.stderr
    assert data["merge_policy"]["order"] == order
    late, quick = subtask(data, "late"), subtask(data, "quick")
    assert quick["finished_at"] < late["finished_at"]  # "quick" is done first either way
    assert merge_order(data) == expected
    assert sorted(m["order"] for m in data["merges"]) == [1, 2]
    # the integration branch is a chain of merges in that order
    first = next(m for m in data["merges"] if m["subtask"] == expected[0])
    second = next(m for m in data["merges"] if m["subtask"] == expected[1])
    assert second["commit"] == data["integration_commit"]
    assert git.is_ancestor(repo, first["commit"], second["commit"])


def test_serialize_overlaps_runs_owners_of_one_path_one_after_another(repo: Path, tmp_path: Path) -> None:
    first = scripted("first", paths=("conf.txt",), edits=[{"replace": "conf.txt", "old": "1", "new": "2"}])
    second = scripted("second", paths=("conf.txt",), edits=[{"append": "conf.txt", "text": "other = 3\n"}])
    # the control: side by side, both edits touch the same region and conflict
    control, together = run_plan(repo, tmp_path, first, second)
    assert control.returncode == 2, control.stderr
    assert [c["path"] for c in together["conflicts"]] == ["conf.txt"]

    proc, data = run_plan(repo, tmp_path, first, second, flags=("--serialize-overlaps",))
    assert proc.returncode == 0, proc.stderr
    assert data["conflicts"] == []
    one, two = subtask(data, "first"), subtask(data, "second")
    assert two["started_at"] >= one["finished_at"]
    first_merge = next(m for m in data["merges"] if m["subtask"] == "first")
    assert two["start_commit"] == first_merge["commit"]  # started from the tip after "first" merged
    assert data["max_in_flight"] == 1
    assert git.read_blob(repo, f"{data['integration_commit']}:conf.txt") == b"value = 2\nother = 3\n"


# --- plan sources -----------------------------------------------------------------------------------


SHARD_FILES = {"README.md": "# r\n", "src/a.py": "a = 1\n", "src/b.py": "b = 1\n", "src/c.py": "c = 1\n"}


def test_shard_with_scripted_agents_makes_two_subtasks_and_succeeds(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SHARD_FILES)
    report = tmp_path / "r.json"
    proc = ci_swarm(
        "run", "--shard", "src/*.py", "--agents", "2", "--task", "add a docstring", "--agent", "scripted",
        "--repo", str(repo), "--quiet", "--report", str(report),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert statuses(data) == {"shard-1": "succeeded", "shard-2": "succeeded"}
    titles = {s["id"]: s["title"] for s in data["subtasks"]}
    assert titles == {
        "shard-1": "add a docstring (2 files, shard 1/2)",
        "shard-2": "add a docstring (1 file, shard 2/2)",
    }
    assert data["task"] == "add a docstring"
    assert [m["status"] for m in data["merges"]] == ["skipped", "skipped"]  # no edits: nothing to merge
    assert data["integration_commit"] == git.head_commit(repo)


def test_shard_subtasks_own_their_slice_of_the_files(tmp_path: Path) -> None:
    """The same shards with a command agent that touches exactly the paths it was given (``{paths}``):
    each shard changes its own contiguous slice and nothing is outside what it owns."""
    repo = make_repo(tmp_path / "repo", SHARD_FILES)
    touch = "import sys\nfor p in sys.argv[1:]:\n    open(p, 'a').write('# shard\\n')\n"
    command = shlex.join([SANDBOX_PY, "-c", touch, "{paths}"])
    report = tmp_path / "r.json"
    proc = ci_swarm(
        "run", "--shard", "src/*.py", "--agents", "2", "--task", "mark", "--agent", "command",
        "--agent-command", command, "--repo", str(repo), "--quiet", "--report", str(report),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    files = {s["id"]: sorted(s["files"]) for s in data["subtasks"]}
    assert files == {"shard-1": ["src/a.py", "src/b.py"], "shard-2": ["src/c.py"]}
    assert all(s["outside_paths"] == [] for s in data["subtasks"])
    for path in ("src/a.py", "src/b.py", "src/c.py"):
        assert git.read_blob(repo, f"{data['integration_commit']}:{path}").endswith(b"# shard\n")
    assert git.read_blob(repo, f"{data['integration_commit']}:README.md") == b"# r\n"


# --- refusals ---------------------------------------------------------------------------------------


def test_an_explicit_run_id_is_refused_when_its_branch_exists(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yml", scripted("a", edits=[{"write": "a.txt", "content": "a\n"}]))
    first = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--run-id", "fixed-1")
    assert first.returncode == 0, first.stderr
    tip = git.rev_parse(repo, "swarm/fixed-1")
    second = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--run-id", "fixed-1")
    assert second.returncode == 4
    assert "swarm/fixed-1" in second.stderr and "exists" in second.stderr
    assert second.stderr.strip().count("\n") == 0 and "Traceback" not in second.stderr
    assert git.rev_parse(repo, "swarm/fixed-1") == tip  # never overwritten


def test_publish_to_an_issue_and_a_pr_at_once_is_refused(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yml", scripted("a", edits=[{"write": "a.txt", "content": "a\n"}]))
    proc = ci_swarm(
        "run", "--plan", str(plan), "--repo", str(repo), "--publish", "o/n", "--issue", "1", "--pr", "2"
    )
    assert proc.returncode == 4
    assert "exclude" in proc.stderr and "--issue" in proc.stderr and "--pr" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert swarm_branches(repo) == []  # refused before anything ran


def test_budgets_with_a_scripted_plan_do_not_crash(repo: Path, tmp_path: Path) -> None:
    """--max-usd / --max-tokens limit Claude; a plan without Claude agents needs no model session, so the
    run goes ahead (exit 0: every subtask succeeded and merged cleanly) and spends nothing."""
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("a", edits=[{"write": "a.txt", "content": "a\n"}]),
        flags=("--max-usd", "0.01", "--max-tokens", "10"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert statuses(data) == {"a": "succeeded"}
    assert data["budget_stopped"] is False
    assert data["usage"]["tokens"] == 0 and data["usage"]["cost_usd"] == 0
    assert "--max-usd/--max-tokens limit Claude agents; this run has none" in proc.stderr  # said, not ignored


def test_budget_flags_are_still_validated(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yml", scripted("a"))
    proc = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--max-usd", "lots")
    assert proc.returncode == 4
    assert "--max-usd" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert swarm_branches(repo) == []


# --- the report's shape -----------------------------------------------------------------------------

OPTIONAL_STR = (str, type(None))


def test_report_fields_and_types_in_a_run_with_a_conflict(repo: Path, tmp_path: Path) -> None:
    proc, data = run_plan(
        repo,
        tmp_path,
        scripted("x", edits=[{"replace": "conf.txt", "old": "1", "new": "2"}]),
        scripted("y", "tester", edits=[{"replace": "conf.txt", "old": "1", "new": "3"}]),
        scripted("z", "documenter", edits=[{"append": "README.md", "text": "more\n"}]),
        flags=("--merge-order", "plan"),  # x before y, whatever the load
    )
    assert proc.returncode == 2, proc.stderr
    sub_types: dict[str, Any] = {
        "id": str,
        "role": str,
        "status": str,
        "branch": str,
        "start_commit": str,
        "commit": str,
        "started_at": float,
        "finished_at": float,
        "seconds": (float, int),
        "files": list,
        "error": str,
    }
    assert len(data["subtasks"]) == 3
    for sub in data["subtasks"]:
        for key, kind in sub_types.items():
            assert isinstance(sub[key], kind), (sub["id"], key, sub[key])
        assert sub["status"] == "succeeded" and sub["error"] == ""
        assert git.rev_parse(repo, sub["branch"]) == sub["commit"]
        assert len(sub["start_commit"]) == 40 and sub["finished_at"] >= sub["started_at"]
        assert all(isinstance(f, str) for f in sub["files"])
    assert {s["id"]: s["role"] for s in data["subtasks"]} == {
        "x": "builder",
        "y": "tester",
        "z": "documenter",
    }
    assert subtask(data, "y")["files"] == ["conf.txt"]

    merge_types: dict[str, Any] = {
        "subtask": str,
        "order": int,
        "status": str,
        "commit": str,
        "predicted_conflicts": list,
    }
    assert len(data["merges"]) == 3
    for merge in data["merges"]:
        for key, kind in merge_types.items():
            assert isinstance(merge[key], kind), (merge["subtask"], key, merge[key])
        assert all(isinstance(p, str) for p in merge["predicted_conflicts"])
    assert sorted(m["order"] for m in data["merges"]) == [1, 2, 3]
    y_merge = next(m for m in data["merges"] if m["subtask"] == "y")
    assert y_merge["status"] == "conflicted" and y_merge["predicted_conflicts"] == ["conf.txt"]

    conflict_types: dict[str, Any] = {
        "path": str,
        "kind": str,
        "subtask": str,
        "kept_subtask": OPTIONAL_STR,
        "lines": list,
        "kept_text": str,
        "other_text": str,
        "base_text": str,
        "reason": str,
    }
    (conflict,) = data["conflicts"]
    for key, kind in conflict_types.items():
        assert isinstance(conflict[key], kind), (key, conflict[key])
    assert conflict["kind"] == "content" and conflict["subtask"] == "y" and conflict["kept_subtask"] == "x"
    assert conflict["lines"] == [1, 1] and all(isinstance(n, int) for n in conflict["lines"])
    assert (conflict["kept_text"], conflict["other_text"], conflict["base_text"]) == (
        "value = 2\n",
        "value = 3\n",
        "value = 1\n",
    )


# --- the service: when a model is needed, which commands run --------------------------------------------


def test_a_claude_default_nobody_uses_needs_no_key(repo: Path, tmp_path: Path) -> None:
    """The default agent is claude (flag or repository config) but every subtask names its own agent: the
    run needs no model, so no ANTHROPIC_API_KEY (it used to exit 6)."""
    sub = scripted("a", edits=[{"write": "a.txt", "content": "a\n"}])
    proc, data = run_plan(repo, tmp_path, sub, flags=("--agent", "claude"))
    assert proc.returncode == 0, proc.stderr
    assert statuses(data) == {"a": "succeeded"}
    config = tmp_path / "swarm.yml"
    config.write_text("agent: claude\n")
    proc, data = run_plan(repo, tmp_path, sub, flags=("--config", str(config)))
    assert proc.returncode == 0, proc.stderr
    assert statuses(data) == {"a": "succeeded"}


def test_the_cli_trusts_the_command_agents_of_its_plan(repo: Path, tmp_path: Path) -> None:
    """On the CLI the plan is the user's own: a command agent runs even when the repository's
    allowed_commands (which bind plans the Action reads from issues) does not list it."""
    config = tmp_path / "swarm.yml"
    config.write_text("allowed_commands:\n  - pytest\n")
    command = {**scripted("cmd"), "agent": {"kind": "command", "run": ["sh", "-c", "echo hi > hi.txt"]}}
    proc, data = run_plan(repo, tmp_path, command, flags=("--config", str(config)))
    assert proc.returncode == 0, proc.stderr
    assert git.try_read_blob(repo, data["integration_commit"], "hi.txt") == b"hi\n"


# --- --on-conflict (issue #12) ----------------------------------------------------------------------


def test_on_conflict_redo_without_checks_is_refused_before_anything_starts(
    repo: Path, tmp_path: Path
) -> None:
    proc, data = run_plan(repo, tmp_path, scripted("a"), flags=("--on-conflict", "redo"))
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "ci-swarm: error: on_conflict: redo needs checks to gate the agents' resolutions "
        "(add checks: or --check)"
    )
    assert data == {} and swarm_branches(repo) == []


def test_on_conflict_keep_overrides_a_plans_redo(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "redo.yml", scripted("a"), merge={"on_conflict": "redo"})
    refused = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet")
    assert refused.returncode == 4 and "on_conflict: redo needs checks" in refused.stderr
    kept = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--on-conflict", "keep")
    assert kept.returncode == 0, kept.stderr


def test_on_conflict_with_a_check_runs(repo: Path, tmp_path: Path) -> None:
    flags = ("--on-conflict", "resolve", "--check", "true")
    proc, data = run_plan(
        repo, tmp_path, scripted("a", edits=[{"write": "a.txt", "content": "a\n"}]), flags=flags
    )
    assert proc.returncode == 0, proc.stderr
    assert data["verification"]["status"] == "passed"


def test_the_configs_on_conflict_applies_to_a_plan_file_without_merge(repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "swarm.yml"
    config.write_text("merge:\n  on_conflict: resolve\n  resolver: scripted\n")
    plan = write_plan(tmp_path / "plan.yml", scripted("a"))
    shown = ci_swarm("plan", "--plan", str(plan), "--repo", str(repo), "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert (
        "merge: order=completion, prefer=first, insertions=both, on_conflict=resolve, resolver=scripted"
        in (shown.stdout.splitlines())
    )
    refused = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--config", str(config))
    assert refused.returncode == 4 and "on_conflict: resolve needs checks" in refused.stderr
    own = write_plan(tmp_path / "own.yml", scripted("a"), merge={"order": "plan"})  # its own merge section
    shown = ci_swarm("plan", "--plan", str(own), "--repo", str(repo), "--config", str(config))
    assert "merge: order=plan, prefer=first, insertions=both, on_conflict=keep" in shown.stdout.splitlines()


def test_on_conflict_is_in_run_help() -> None:
    help_text = ci_swarm("run", "--help").stdout
    assert "--on-conflict [keep|redo|resolve]" in help_text
