"""``ci-swarm run --compare-serial``: after a sharded command swarm, the same command runs once over all
the shards' paths in a scratch clone; the report gives both times, their ratio and whether the serial
tree equals the swarm's integration tree; the scratch branch is gone afterwards."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.errors import UsageError
from ci_swarm.models import AgentSpec
from ci_swarm.serial import serial_subtask
from tests.fixtures import make_repo
from tests.helpers import plan_of, run_cli, scripted

# word-split on purpose: works whether {paths} is one argument or one per path (no spaces in these names)
SED = "sh -c 'for f in $@; do sed -i s/old/new/ $f; done' sh {paths}"


def test_compare_serial_reports_both_times_and_the_same_tree(tmp_path: Path) -> None:
    files = {f"src/f{i}.txt": f"old {i}\n" for i in range(4)} | {"keep.txt": "old\n"}
    repo = make_repo(tmp_path / "repo", files)
    out = tmp_path / "r.json"
    args = ["run", "--repo", str(repo), "--shard", "src/*.txt", "--agents", "2", "--task", "rename"]
    args += [
        "--agent",
        "command",
        "--agent-command",
        SED,
        "--compare-serial",
        "--quiet",
        "--report",
        str(out),
    ]
    args += ["--report-md", str(tmp_path / "r.md")]
    proc = run_cli(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    serial = report["serial"]
    assert serial["same_tree"] is True and serial["exit_status"] == 0 and serial["error"] == ""
    assert serial["swarm_seconds"] == report["wall_seconds"]
    assert serial["seconds"] >= serial["agent_seconds"] > 0
    assert serial["ratio"] == pytest.approx(serial["seconds"] / report["wall_seconds"], abs=0.01)
    assert git.tree_of(repo, serial["commit"]) == git.tree_of(repo, report["integration_commit"])
    assert git.read_blob(repo, f"{report['integration_commit']}:src/f2.txt") == b"new 2\n"
    assert git.read_blob(repo, f"{report['integration_commit']}:keep.txt") == b"old\n"  # not in any shard
    assert not git.branch_exists(repo, f"swarm/{report['run_id']}-serial")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("serial: "))
    assert "same tree" in line and f"integration: swarm/{report['run_id']}" in proc.stdout
    md = (tmp_path / "r.md").read_text()
    assert "### Serial comparison" in md and "**equals** the swarm's integration tree" in md


def test_compare_serial_refuses_a_plan_without_one_command_agent_before_anything_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"version": 1, "task": "t", "subtasks": [scripted("a")]}))
    proc = run_cli("run", "--plan", str(plan), "--repo", str(repo), "--compare-serial", "--quiet")
    assert proc.returncode == 4 and "--compare-serial needs" in proc.stderr
    assert git.tree_files(repo) == ("a.txt",) and not git.run(repo, "branch", "--list", "swarm/*").text


def test_serial_subtask_is_the_union_of_the_shards_paths() -> None:
    spec = AgentSpec("command", {"run": ["true", "{paths}"]})
    plan = plan_of(
        {"id": "s1", "role": "r", "title": "t", "paths": ["a", "b"]},
        {"id": "s2", "role": "r", "title": "t", "paths": ["b", "c"]},
    )
    sub = serial_subtask(plan, spec)
    assert sub.id == "serial" and sub.paths == ("a", "b", "c") and sub.agent == spec and not sub.depends_on
    with pytest.raises(UsageError):
        serial_subtask(plan, AgentSpec("scripted"))
    mixed = plan_of({"id": "s1", "role": "r", "title": "t", "agent": {"kind": "command", "run": ["true"]}},
                    {"id": "s2", "role": "r", "title": "t"})  # fmt: skip
    with pytest.raises(UsageError):
        serial_subtask(mixed, spec)
    assert shlex.split(SED)[-1] == "{paths}"
