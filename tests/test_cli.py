"""The CLI through click's CliRunner and as a real subprocess (exit codes, one-line errors, signals)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ci_swarm import git
from ci_swarm.cli import cli
from tests.fixtures import make_repo
from tests.helpers import clean_env, run_cli, scripted

ROOT = Path(__file__).resolve().parents[1]


def write_plan(path: Path, *subtasks: dict[str, object], **extra: object) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "task": "cli test", "subtasks": list(subtasks), **extra}))
    return path


def ci_swarm(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, timeout=timeout)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n\nline\n", "conf.txt": "value = 1\n"})


def test_plan_command_prints_waves_and_critical_path(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p.yml",
        scripted("a", delay=2),
        scripted("b", delay=1),
        scripted("c", depends_on=("a",), delay=1),
    )
    result = CliRunner().invoke(cli, ["plan", "--plan", str(plan)])
    assert result.exit_code == 0, result.output
    assert "wave 1: a, b" in result.output
    assert "wave 2: c" in result.output
    assert "critical path: a -> c (3 units)" in result.output


def test_run_via_clirunner_writes_both_reports(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p.yml",
        scripted("a", edits=[{"write": "a.txt", "content": "a\n"}]),
        scripted("b", edits=[{"append": "README.md", "text": "b\n"}]),
    )
    out_json, out_md = tmp_path / "run.json", tmp_path / "run.md"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--plan",
            str(plan),
            "--repo",
            str(repo),
            "--quiet",
            "--report",
            str(out_json),
            "--report-md",
            str(out_md),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    for key in (
        "run_id",
        "base",
        "integration_branch",
        "integration_commit",
        "wall_seconds",
        "agent_seconds_sum",
        "speedup",
        "bound_seconds",
        "efficiency",
        "max_agents",
        "max_in_flight",
        "subtasks",
        "merges",
        "conflicts",
        "overlap",
    ):
        assert key in data, key
    assert {s["status"] for s in data["subtasks"]} == {"succeeded"}
    assert git.rev_parse(repo, data["integration_branch"]) == data["integration_commit"]
    md = out_md.read_text()
    assert "```mermaid" in md and "gantt" in md and "| `a` |" in md


def test_conflict_run_exits_2_and_reports_the_conflict(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p.yml",
        scripted("x", edits=[{"replace": "conf.txt", "old": "1", "new": "2"}]),
        scripted("y", edits=[{"replace": "conf.txt", "old": "1", "new": "3"}]),
        merge={"order": "plan"},  # x merges first, whatever the load
    )
    proc = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 2, proc.stderr
    conflicts = json.loads((tmp_path / "r.json").read_text())["conflicts"]
    assert conflicts[0]["path"] == "conf.txt" and conflicts[0]["subtask"] == "y"
    assert conflicts[0]["kept_subtask"] == "x" and conflicts[0]["lines"] == [1, 1]


def test_failed_subtask_exits_3(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yml", scripted("a", fail="nope"))
    proc = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet")
    assert proc.returncode == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--plan", "{missing}"], "missing.yml"),
        (["run", "--plan", "{bad_yaml}"], "bad.yml:5:1: malformed YAML"),
        (["run", "--plan", "{cycle}"], "a -> b -> a"),
        (["run", "--plan", "{good}", "--repo", "{not_repo}"], "not a git repository"),
        (["run", "--plan", "{good}", "--repo", "{repo}", "--base", "v9"], "unknown revision 'v9'"),
        (["run", "--max-agents", "zero"], "max-agents"),
        (["run", "--task", "do it", "--repo", "{repo}"], "ANTHROPIC_API_KEY"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(repo: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.yml").write_text("version: 1\ntask: t\nsubtasks: [\n  {id: a\n")
    write_plan(tmp_path / "cycle.yml", scripted("a", depends_on=("b",)), scripted("b", depends_on=("a",)))
    write_plan(tmp_path / "good.yml", scripted("a"))
    (tmp_path / "plain").mkdir()
    names = {
        "missing": tmp_path / "missing.yml",
        "bad_yaml": tmp_path / "bad.yml",
        "cycle": tmp_path / "cycle.yml",
        "good": tmp_path / "good.yml",
        "not_repo": tmp_path / "plain",
        "repo": repo,
    }
    proc = ci_swarm(*[a.format(**{k: str(v) for k, v in names.items()}) for a in args])
    code = 6 if "--task" in args else 4
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # one line, no traceback
    assert "Traceback" not in proc.stderr


def test_merge_command_on_existing_branches(repo: Path, tmp_path: Path) -> None:
    for name, content in (("feat-a", "A\n"), ("feat-b", "B\n")):
        git.run(repo, "branch", name, "main")
        wt = tmp_path / name
        git.worktree_add(repo, wt, name)
        (wt / f"{name}.txt").write_text(content)
        git.commit_all(wt, f"{name}\n", git.SWARM_IDENTITY)
        git.worktree_remove(repo, wt)
    proc = ci_swarm(
        "merge",
        "feat-a",
        "feat-b",
        "--base",
        "main",
        "--repo",
        str(repo),
        "--into",
        "combined",
        "--report",
        str(tmp_path / "m.json"),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "m.json").read_text())
    assert [m["status"] for m in data["merges"]] == ["clean", "clean"]
    assert git.read_blob(repo, "combined:feat-a.txt") == b"A\n"
    assert git.read_blob(repo, "combined:feat-b.txt") == b"B\n"
    unknown = ci_swarm("merge", "nope", "--base", "main", "--repo", str(repo))
    assert unknown.returncode == 4 and "nope" in unknown.stderr


def _merged(repo: Path, path: str) -> bool:
    """Some integration branch (``swarm/<run>``, not an agent branch) holds ``path``."""
    names = git.out(repo, "for-each-ref", "--format=%(refname)", "refs/heads/swarm/").split()
    return any(git.try_read_blob(repo, name, path) is not None for name in names if "-agents/" not in name)


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGINT, signal.SIGTERM, signal.SIGINT)],  # a runner's cancel sends several
    ids=["sigint", "sigint-then-more"],
)
def test_sigint_cancels_cleanly_and_keeps_committed_work(
    repo: Path, tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    plan = write_plan(
        tmp_path / "p.yml",
        scripted("done", edits=[{"write": "d.txt", "content": "d\n"}]),
        scripted("stuck", edits=[{"write": "s.txt", "content": "s\n"}], delay=60),
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = clean_env(TMPDIR=str(temp))  # the run's clone directories go here
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci_swarm",
            "run",
            "--plan",
            str(plan),
            "--repo",
            str(repo),
            "--quiet",
            "--report",
            str(tmp_path / "r.json"),
        ],
        env=env,
        text=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120  # a bound for a broken run only: the wait ends when `done` is merged
    while time.monotonic() < deadline and not _merged(repo, "d.txt"):
        time.sleep(0.1)
    for sig in signals:  # the later ones land while the run winds down: they must not abort the clean-up
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    data = json.loads((tmp_path / "r.json").read_text())  # the report is always written
    status = {s["id"]: s["status"] for s in data["subtasks"]}
    assert status == {"done": "succeeded", "stuck": "cancelled"}
    assert data["interrupted"] is True
    assert git.out(repo, "worktree", "list").count("\n") == 0
    assert git.read_blob(repo, f"{data['integration_branch']}:d.txt") == b"d\n"
    assert data["integration_commit"] == git.rev_parse(repo, data["integration_branch"])
    assert [p.name for p in temp.iterdir() if p.name.startswith("ci-swarm")] == []  # no clone left behind


def test_demo_runs_offline(tmp_path: Path) -> None:
    proc = ci_swarm("demo", "--dir", str(tmp_path), "--speed", "0.1", "--report", str(tmp_path / "d.json"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["max_in_flight"] > 1
    assert any(o["kind"] == "disjoint" and o["path"] == "README.md" for o in data["overlap"])
    assert [c["path"] for c in data["conflicts"]] == ["settings.toml"]
    assert "git -C" in proc.stdout and "log --graph" in proc.stdout


def test_run_follows_the_repository_config(repo: Path, tmp_path: Path) -> None:
    (repo / ".github").mkdir()
    (repo / ".github" / "ci-swarm.yml").write_text("max_agents: 1\nbranch_prefix: bots\n")
    git.commit_all(repo, "config\n", git.SWARM_IDENTITY)
    plan = write_plan(tmp_path / "p.yml", scripted("a", delay=0.1), scripted("b", delay=0.1))
    proc = ci_swarm(
        "run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--report", str(tmp_path / "r.json")
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["max_agents"], data["max_in_flight"]) == (1, 1)
    assert data["integration_branch"].startswith("bots/")
    flags = ci_swarm("run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--max-agents", "2",
                     "--report", str(tmp_path / "r2.json"))  # fmt: skip
    assert flags.returncode == 0, flags.stderr
    assert json.loads((tmp_path / "r2.json").read_text())["max_agents"] == 2  # a flag beats the config


def test_bad_repository_config_is_one_line_naming_key_and_line(repo: Path, tmp_path: Path) -> None:
    (repo / ".github").mkdir()
    (repo / ".github" / "ci-swarm.yml").write_text("label: swarm\nmax_agent: 3\n")
    plan = write_plan(tmp_path / "p.yml", scripted("a"))
    proc = ci_swarm("run", "--plan", str(plan), "--repo", str(repo))
    assert proc.returncode == 4
    assert "ci-swarm.yml:2" in proc.stderr and "max_agent" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_demo_with_a_relative_dir_shows_the_dependency_and_the_clean_shared_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ci_swarm", "demo", "--dir", "rel", "--speed", "0.1", "--report", "d.json"],
        cwd=tmp_path, text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "d.json").read_text())
    subs = {s["id"]: s for s in data["subtasks"]}
    greet_merge = next(m for m in data["merges"] if m["subtask"] == "greet")
    assert subs["tests"]["start_commit"] == greet_merge["commit"]  # started from the tip after greet merged
    repo = tmp_path / "rel" / "acme-greeter"
    readme = git.read_blob(repo, f"{data['integration_commit']}:README.md").decode()
    assert "acme.greet.greet(name)" in readme and "a /greet HTTP endpoint" in readme  # both hunks landed
    assert git.out(repo, "worktree", "list").count("\n") == 0
    assert not (repo / "rel").exists()  # nothing inside the sample checkout
