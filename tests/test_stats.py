"""Honest figures and what a user sees, through ``ci-swarm run`` as a process: the summary and the
integration branch on stdout, wall time from the start of the run to the report (setup, merges and
clean-up inside it), parallelism = Σ agent time / wall, and per subtask the command, its exit status, a
redacted output tail, the owned paths, a diffstat and writes outside owned paths for a command agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.diffstat import outside_paths, parse_numstat
from ci_swarm.models import Diffstat
from ci_swarm.outputtail import Redactor
from tests.fixtures import make_repo
from tests.helpers import run_plan_cli, sh_agent

SECRET = "s3cr3t-value-0123456789"
GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def owned(sub: dict[str, Any], *paths: str) -> dict[str, Any]:
    return {**sub, "paths": list(paths)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("stats")
    repo = make_repo(tmp / "repo", {"src/a.txt": "a\nb\n", "other.txt": "x\n", "doc/d.txt": "d\n"})
    edit = owned(sh_agent("edit", "printf 'a\\nB\\nc\\n' > src/a.txt; echo edited"), "src/**")
    stray = owned(sh_agent("stray", "echo y >> other.txt; echo y > doc/new.txt"), "doc/**")
    noisy = owned(sh_agent("noisy", f"seq 1 100; echo token {GH_TOKEN} and {SECRET}; exit 3"), "doc/d.txt")
    proc, report = run_plan_cli(repo, tmp, edit, stray, noisy, env={"SERVICE_TOKEN": SECRET})
    assert proc.returncode == 3, proc.stderr
    return repo, proc.stdout, report


def test_stdout_names_the_integration_branch_and_its_commit(run: tuple[Path, str, dict[str, Any]]) -> None:
    repo, stdout, report = run
    lines = stdout.splitlines()
    branch, commit = report["integration_branch"], report["integration_commit"]
    assert f"integration: {branch} {commit}" in lines
    assert git.rev_parse(repo, branch) == commit
    assert any(line.startswith("summary: 2/3 subtasks succeeded, 0 conflict(s), wall ") for line in lines)


def test_wall_holds_every_phase_and_parallelism_is_sum_by_wall(
    run: tuple[Path, str, dict[str, Any]],
) -> None:
    _, _, report = run
    subs, wall = report["subtasks"], report["wall_seconds"]
    assert all(wall >= s["seconds"] + s["setup_seconds"] for s in subs)
    assert wall >= report["run_setup_seconds"] + report["cleanup_seconds"]
    assert all(s["setup_seconds"] > 0 and s["collect_seconds"] > 0 for s in subs)
    assert report["setup_seconds_sum"] == pytest.approx(sum(s["setup_seconds"] for s in subs), abs=0.01)
    assert report["collect_seconds_sum"] == pytest.approx(sum(s["collect_seconds"] for s in subs), abs=0.01)
    assert report["merge_seconds_sum"] == pytest.approx(sum(m["seconds"] for m in report["merges"]), abs=0.01)
    assert report["agent_seconds_sum"] == pytest.approx(sum(s["seconds"] for s in subs), abs=0.01)
    assert report["parallelism"] == pytest.approx(report["agent_seconds_sum"] / wall, abs=0.002)
    assert report["speedup"] == report["parallelism"]
    assert 0 < report["critical_path_seconds"] <= report["bound_seconds"]


def test_command_exit_status_and_redacted_output_tail(run: tuple[Path, str, dict[str, Any]]) -> None:
    noisy = next(s for s in run[2]["subtasks"] if s["id"] == "noisy")
    assert noisy["status"] == "failed" and noisy["exit_status"] == 3
    assert noisy["command"][:2] == ["sh", "-c"] and SECRET not in " ".join(noisy["command"])
    tail = noisy["output_tail"].splitlines()
    assert len(tail) == 40 and tail[0] == "62" and tail[-1] == "token *** and ***"
    edit = next(s for s in run[2]["subtasks"] if s["id"] == "edit")
    assert edit["exit_status"] == 0 and edit["output_tail"] == "edited"


def test_diffstat_of_a_known_edit_and_owned_paths(run: tuple[Path, str, dict[str, Any]]) -> None:
    edit = next(s for s in run[2]["subtasks"] if s["id"] == "edit")
    assert edit["paths"] == ["src/**"]
    assert edit["diffstat"] == {"files": 1, "insertions": 2, "deletions": 1}
    assert edit["outside_paths"] == []


def test_a_command_agents_writes_outside_its_paths_are_flagged(run: tuple[Path, str, dict[str, Any]]) -> None:
    stray = next(s for s in run[2]["subtasks"] if s["id"] == "stray")
    assert stray["outside_paths"] == ["other.txt"]
    assert stray["diffstat"] == {"files": 2, "insertions": 2, "deletions": 0}


def test_numstat_counts_binary_files_without_lines() -> None:
    assert parse_numstat("3\t1\ta.txt\0-\t-\tlogo.png\0") == Diffstat(2, 3, 1)
    assert parse_numstat("") == Diffstat()


def test_outside_paths_keep_what_the_agent_reported_and_add_the_rest_once() -> None:
    assert outside_paths(["src/a.py", "x.md", "y.md"], ["src/**"], ["y.md"]) == ("y.md", "x.md")
    assert outside_paths(["anything"], []) == ()


def test_redactor_finds_a_secret_spanning_the_tail_cut() -> None:
    tail = Redactor([SECRET]).tail("\n".join(["x"] * 50 + [f"a {SECRET}", "b"]), lines=2)
    assert tail == "a ***\nb"
