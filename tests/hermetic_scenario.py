"""A small git-using scenario that ``tests/test_hermetic.py`` runs in a child pytest whose *outer*
environment is hostile (a global git config that signs, runs a failing hook, names the default branch
``trunk`` and sets no user; credentials and CI variables set). Not collected on its own (no ``test_`` prefix):
it passes only if ``tests/conftest.py`` seals git and the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ci_swarm import git
from tests.fixtures import commit, make_repo
from tests.fixtures.env import OUTER_PREFIXES
from tests.helpers import run_cli, scripted


def test_the_outer_environment_does_not_reach_the_test() -> None:
    assert not [k for k in os.environ if k.startswith(OUTER_PREFIXES) and not k.startswith("GIT_")]
    assert os.environ["HOME"] != os.environ["HERMETIC_OUTER_HOME"]
    assert git.out(Path.cwd(), "config", "--global", "--list") == ""


def two_agent_run(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """``ci-swarm run`` (in ``env``, by default the sealed one) of two scripted agents on a fresh repo
    holding ``conf.txt``: one writes ``a.txt``, one sets ``value = 2``. The repo and the JSON report."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "conf.txt": "value = 1\n"})
    plan = tmp_path / "plan.yml"
    subtasks = [
        scripted("a", edits=[{"write": "a.txt", "content": "a\n"}]),
        scripted("b", edits=[{"replace": "conf.txt", "old": "1", "new": "2"}]),
    ]
    plan.write_text(yaml.safe_dump({"version": 1, "task": "hermetic", "subtasks": subtasks}))
    report = tmp_path / "report.json"
    proc = run_cli("run", "--plan", str(plan), "--repo", str(repo), "--report", str(report), env=env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(report.read_text())
    return repo, data


def test_builders_and_a_cli_run_with_scripted_agents(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "side", {"README.md": "# r\n"})
    assert git.current_branch(repo) == "main"
    side = commit(repo, "main", {"side.txt": "side\n"}, "side")
    assert git.changed_files(repo, "main", side) == ("side.txt",)
    repo, data = two_agent_run(tmp_path)
    assert {s["id"]: s["status"] for s in data["subtasks"]} == {"a": "succeeded", "b": "succeeded"}
    assert git.read_blob(repo, f"{data['integration_commit']}:conf.txt") == b"value = 2\n"
