"""Small builders for plans, views of real repositories, and the CLI as a subprocess, used across the
engine tests (repositories themselves come from :mod:`tests.fixtures`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ci_swarm import git
from ci_swarm.agents import OPTION_VALIDATORS
from ci_swarm.models import Plan
from ci_swarm.plan import plan_from_dict
from ci_swarm.sandbox import SANE_PATH

# A Python a sandbox account can run, for command agents and run_command in tests (the test's own
# interpreter may sit in a 0700 home the account cannot reach).
SANDBOX_PY = shutil.which("python3", path=SANE_PATH) or "python3"


def scripted(
    sub_id: str,
    role: str = "builder",
    *,
    delay: float = 0.0,
    edits: list[dict[str, Any]] | None = None,
    depends_on: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
    **agent: Any,
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "role": role,
        "title": f"do {sub_id}",
        "instructions": f"instructions for {sub_id}",
        "paths": list(paths),
        "depends_on": list(depends_on),
        "agent": {"kind": "scripted", "delay": delay, "edits": edits or [], **agent},
    }


def plan_of(*subtasks: dict[str, Any], merge: dict[str, Any] | None = None, task: str = "test task") -> Plan:
    data: dict[str, Any] = {"version": 1, "task": task, "subtasks": list(subtasks)}
    if merge:
        data["merge"] = merge
    return plan_from_dict(data, source="<test>", validators=OPTION_VALIDATORS)  # as the entry points do


def snapshot(repo: Path) -> tuple[str, str, str, bytes]:
    """What the user sees of their checkout: HEAD, branch, status, and the index file's bytes."""
    index = (repo / ".git" / "index").read_bytes()
    return (
        git.head_commit(repo),
        git.current_branch(repo) or "",
        git.out(repo, "status", "--porcelain"),
        index,
    )


def show(repo: Path, rev: str, path: str) -> str:
    return git.read_blob(repo, f"{rev}:{path}").decode()


def parents(repo: Path, commit: str) -> list[str]:
    return git.out(repo, "rev-list", "--parents", "-n", "1", commit).split()[1:]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's (sealed, see tests/conftest.py) environment without credentials or service endpoints
    (ANTHROPIC_*, GITHUB_*) a test may have set, so a test's CLI run talks to nothing it did not set up;
    ``extra`` adds the ones the test wants."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "GITHUB_"))}
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m ci_swarm ARGS`` as a real subprocess (by default in :func:`clean_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "ci_swarm", *args],
        env=clean_env() if env is None else env,
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def sh_agent(sub_id: str, script: str) -> dict[str, Any]:
    """A plan's subtask whose command agent runs ``sh -c script``."""
    return {
        "id": sub_id,
        "role": "builder",
        "title": sub_id,
        "agent": {"kind": "command", "run": ["sh", "-c", script]},
    }


def run_plan_cli(
    repo: Path,
    tmp: Path,
    *subtasks: dict[str, Any],
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``ci-swarm run`` on a plan of ``subtasks`` (written to ``tmp``) with ``args``, ``env`` added to
    :func:`clean_env`: the process and its JSON report."""
    plan = tmp / "plan.yml"
    plan.write_text(yaml.safe_dump({"version": 1, "task": "hostile", "subtasks": list(subtasks)}))
    report = tmp / "report.json"
    argv = ("run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--report", str(report), *args)
    proc = run_cli(*argv, env=clean_env(**(env or {})), timeout=300)
    return proc, json.loads(report.read_text())
