"""`ci-swarm run --publish` from a laptop: the real CLI process, the fake GitHub as its own process (real
git smart-HTTP pushes, real PyGithub), checked back through PyGithub as a maintainer would see it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import github
import pytest
import yaml

from tests.helpers import make_repo, scripted

TOKEN = "ghp_LaptopT0kenThatMustNeverBePrinted7"
FILES = {"README.md": "# demo\n\nintro\n", "conf.txt": "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n"}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    source = make_repo(tmp_path / "work", FILES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_swarm.testing.fake_github", "--port", "0", "--repo", f"octo/demo={source}",
         "--user", "alice=write", "--token", f"{TOKEN}=alice", "--root", str(tmp_path / "remote")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    assert base_url.startswith("http://127.0.0.1:")
    yield base_url, source
    proc.terminate()
    proc.wait(timeout=10)


def test_run_publish_opens_a_pr_with_progress_and_an_anchored_conflict_review(
    fake: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, repo = fake
    gh = github.Github(auth=github.Auth.Token(TOKEN), base_url=base_url, retry=None)
    remote = gh.get_repo("octo/demo")
    issue = remote.create_issue("Tune the config", "please")
    plan = tmp_path / "plan.yml"
    subtasks = [
        scripted("docs", "documenter", edits=[{"append": "README.md", "text": "more docs\n"}]),
        scripted("fast", edits=[{"replace": "conf.txt", "old": "c = 3", "new": "c = 30"}]),
        scripted(
            "slow", "deployer", delay=0.4, edits=[{"replace": "conf.txt", "old": "c = 3", "new": "c = 300"}]
        ),
    ]
    plan.write_text(yaml.safe_dump({"version": 1, "task": "Tune the config", "subtasks": subtasks}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "GITHUB_"))}
    env.update(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=base_url)
    proc = subprocess.run(
        [sys.executable, "-m", "ci_swarm", "run", "--plan", str(plan), "--repo", str(repo), "--base", "main",
         "--publish", "octo/demo", "--issue", str(issue.number)],
        env=env, text=True, capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # success with a recorded conflict
    assert TOKEN not in proc.stdout + proc.stderr

    (pr,) = remote.get_pulls(state="open")
    assert pr.head.ref.startswith("swarm/") and pr.base.ref == "main"
    assert f"Closes #{issue.number}" in pr.body
    assert {f.filename for f in pr.get_files()} == {"README.md", "conf.txt"}
    # one review, its comment anchored on the kept line, the other side offered as a suggestion
    (comment,) = pr.get_review_comments()
    assert comment.path == "conf.txt" and comment.line == 3
    assert "```suggestion\nc = 300\n```" in comment.body
    # the progress comment's final state matches the run
    bodies = [c.body for c in issue.get_comments()]
    progress = next(b for b in bodies if "ci-swarm run" in b)
    for sub in ("docs", "fast", "slow"):
        assert f"`{sub}`" in progress
    assert "3/3 subtasks succeeded" in progress and "1 conflict(s) recorded" in progress
    assert all(TOKEN not in b for b in [*bodies, pr.body, comment.body])
    # every agent branch was pushed: nothing is lost
    branches = {b.name for b in remote.get_branches()}
    assert sum(name.startswith(f"{pr.head.ref}-agents/") for name in branches) == 3


def test_publish_without_token_is_a_clear_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", FILES)
    plan = tmp_path / "plan.yml"
    plan.write_text(yaml.safe_dump({"version": 1, "task": "t", "subtasks": [scripted("a")]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "GITHUB_"))}
    argv = [
        sys.executable,
        "-m",
        "ci_swarm",
        "run",
        "--plan",
        str(plan),
        "--repo",
        str(repo),
        "--publish",
        "o/n",
    ]
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 4
    assert "GITHUB_TOKEN" in proc.stderr
    assert (
        "swarm/"
        not in subprocess.run(
            ["git", "-C", str(repo), "branch"], capture_output=True, text=True, check=True
        ).stdout
    )  # nothing was run
