"""The suite is hermetic: a developer's hostile global git configuration and stray credentials or CI
variables in the outer environment change nothing (``tests/conftest.py`` seals every test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci_swarm import git
from tests.fixtures.env import OUTER_PREFIXES, SEALED_KEYS
from tests.hermetic_scenario import two_agent_run

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "tests/hermetic_scenario.py"


def hostile_home(root: Path) -> Path:
    """A HOME whose ``.gitconfig`` breaks any git use that reads it: commits are signed by a program that
    fails, a pre-commit hook fails, ``git init`` makes ``trunk``, no user is configured or guessed."""
    hooks = root / "hooks"
    hooks.mkdir(parents=True)
    hook = hooks / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'hostile hook ran' >&2\nexit 1\n")
    hook.chmod(0o755)
    (root / ".gitconfig").write_text(
        "[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = false\n"
        f"[core]\n\thooksPath = {hooks}\n[init]\n\tdefaultBranch = trunk\n[user]\n\tuseConfigOnly = true\n"
    )
    return root


def outer_env(home: Path) -> dict[str, str]:
    """The environment a developer's shell might have: the hostile HOME, none of the sealing, and
    credentials and CI variables that tests must not see."""
    env = {k: v for k, v in os.environ.items() if k not in SEALED_KEYS or k == "PATH"}
    env.update(
        HOME=str(home),
        HERMETIC_OUTER_HOME=str(home),
        GITHUB_TOKEN="ghp_outer_token_must_not_leak",
        ANTHROPIC_API_KEY="sk-ant-outer",
        CI_SWARM_MAX_AGENTS="1",
        RUNNER_TEMP=str(home / "runner-temp"),
        ACTIONS_RUNTIME_TOKEN="outer",
        GIT_DIR=str(home / "not-a-repo"),
    )
    return env


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, str]:
    return outer_env(hostile_home(tmp_path / "hostile-home"))


def test_the_hostile_config_really_breaks_plain_git(hostile: dict[str, str], tmp_path: Path) -> None:
    """The control: outside the seal, this configuration makes a plain ``git init`` + ``git commit`` fail."""
    env = {k: v for k, v in hostile.items() if k != "GIT_DIR"}
    repo = tmp_path / "plain"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    branch = subprocess.run(
        ["git", "symbolic-ref", "--short", "HEAD"],
        cwd=repo,
        env=env,
        text=True,
        capture_output=True,
        check=True,
    )
    assert branch.stdout.strip() == "trunk"
    (repo / "f.txt").write_text("x\n")
    subprocess.run(["git", "add", "f.txt"], cwd=repo, env=env, check=True)
    author = {
        **env,
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@e",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@e",
    }
    hooked = subprocess.run(
        ["git", "commit", "-q", "-m", "x"], cwd=repo, env=author, text=True, capture_output=True, check=False
    )
    assert hooked.returncode != 0 and "hostile hook ran" in hooked.stderr
    signed = subprocess.run(
        ["git", "commit", "-q", "--no-verify", "-m", "x"],
        cwd=repo,
        env=author,
        text=True,
        capture_output=True,
        check=False,
    )
    assert signed.returncode != 0 and "gpg" in signed.stderr.lower()


def test_a_git_scenario_passes_under_a_hostile_outer_environment(hostile: dict[str, str]) -> None:
    """A child pytest (builders, a ``ci-swarm run`` with scripted agents) started from the hostile
    environment passes: the conftest's seal is all that stands between them."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", SCENARIO],
        cwd=ROOT,
        env=hostile,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_ci_swarm_itself_ignores_a_hostile_git_config(hostile: dict[str, str], tmp_path: Path) -> None:
    """Not only the tests: ``ci-swarm run`` started straight from the hostile environment (no seal) commits
    and merges, because its own git calls turn signing and hooks off and name every branch they make."""
    env = {k: v for k, v in hostile.items() if not k.startswith(OUTER_PREFIXES)}
    repo, data = two_agent_run(tmp_path, env)
    tip = data["integration_commit"]
    assert git.tree_files(repo, tip) == ("README.md", "a.txt", "conf.txt")
    assert git.read_blob(repo, f"{tip}:conf.txt") == b"value = 2\n"
