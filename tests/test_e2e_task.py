"""`ci-swarm run --task` end to end: the real CLI, the real anthropic SDK over real HTTP, the fake API as its
own process (`python -m ci_swarm.testing.fake_anthropic`), real git. Exactly as against the real API, only
ANTHROPIC_BASE_URL differs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from tests.anthropic_helpers import KEY, SAMPLE_FILES, three_subtask_script, write_script
from tests.fixtures import make_repo
from tests.helpers import clean_env, run_cli


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[str]:
    script = write_script(three_subtask_script(), tmp_path / "script.json")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci_swarm.testing.fake_anthropic",
            "--port",
            "0",
            "--script",
            str(script),
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    assert base_url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
    yield base_url
    proc.terminate()
    proc.wait(timeout=10)


def cli(*args: str, base_url: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=clean_env(ANTHROPIC_API_KEY=key, ANTHROPIC_BASE_URL=base_url), timeout=180)


def test_run_task_plans_and_runs_claude_agents_and_merges(fake_api: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    out = tmp_path / "run.json"
    proc = cli(
        "run",
        "--task",
        "add greet() with tests and docs",
        "--repo",
        str(repo),
        "--max-agents",
        "3",
        "--report",
        str(out),
        "--report-md",
        str(tmp_path / "run.md"),
        base_url=fake_api,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [(s["id"], s["status"]) for s in data["subtasks"]] == [
        ("code", "succeeded"),
        ("tests", "succeeded"),
        ("docs", "succeeded"),
    ]
    tip = data["integration_commit"]
    assert "def greet(name)" in git.read_blob(repo, f"{tip}:src/greet.py").decode()
    assert "test_greet" in git.read_blob(repo, f"{tip}:tests/test_greet.py").decode()
    assert "Call `greet(name)`" in git.read_blob(repo, f"{tip}:docs/index.md").decode()
    usage = data["usage"]
    assert usage["requests"] >= 4  # the planner + at least one turn per agent
    assert usage["cost_usd"] > 0
    assert all(s["usage"]["turns"] >= 1 for s in data["subtasks"])
    assert "### Usage" in (tmp_path / "run.md").read_text()


def test_plan_task_only_shows_the_plan(fake_api: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    proc = cli("plan", "--task", "add greet() with tests and docs", "--repo", str(repo), base_url=fake_api)
    assert proc.returncode == 0, proc.stderr
    assert "code [builder]" in proc.stdout and "docs [documenter]" in proc.stdout
    assert git.out(repo, "branch", "--list", "swarm/*") == ""  # planning creates nothing


def test_wrong_key_is_one_clear_error(fake_api: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    proc = cli("run", "--task", "anything", "--repo", str(repo), base_url=fake_api, key="sk-ant-wrong")
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "401" in proc.stderr or "key" in proc.stderr.lower()
