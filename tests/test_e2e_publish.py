"""`ci-swarm run --publish` from a laptop: the real CLI process, the fake GitHub as its own process (real
git smart-HTTP pushes, real PyGithub), checked back through PyGithub as a maintainer would see it."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import github
import pytest
import yaml

from ci_swarm import git
from tests.fixtures import USER, make_repo
from tests.helpers import clean_env, run_cli, scripted

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
    try:
        proc.wait(timeout=60)  # a loaded machine may take a while
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
    # merged in plan order: "slow" loses to "fast" however the machine's load orders their finishes
    merge = {"order": "plan"}
    plan.write_text(
        yaml.safe_dump({"version": 1, "task": "Tune the config", "subtasks": subtasks, "merge": merge})
    )
    proc = run_cli(
        "run", "--plan", str(plan), "--repo", str(repo), "--base", "main",
        "--publish", "octo/demo", "--issue", str(issue.number),
        env=clean_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=base_url), timeout=180,
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
    proc = run_cli("run", "--plan", str(plan), "--repo", str(repo), "--publish", "o/n", timeout=60)
    assert proc.returncode == 4
    assert "GITHUB_TOKEN" in proc.stderr
    assert (
        "swarm/"
        not in subprocess.run(
            ["git", "-C", str(repo), "branch"], capture_output=True, text=True, check=True
        ).stdout
    )  # nothing was run


def test_run_publish_onto_an_open_pr_moves_its_branch_and_comments_on_it(
    fake: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, repo = fake
    gh = github.Github(auth=github.Auth.Token(TOKEN), base_url=base_url, retry=None)
    remote = gh.get_repo("octo/demo")
    # someone's feature branch of the same repository, with an open PR into main
    git.run(repo, "checkout", "--quiet", "-b", "feature")
    (repo / "feature.txt").write_text("the feature\n")
    feature_before = git.commit_all(repo, "feature\n", USER)
    assert feature_before is not None
    git.run(repo, "checkout", "--quiet", "main")
    git.push(repo, remote.clone_url, ["feature:refs/heads/feature"], TOKEN)
    pr = remote.create_pull(base="main", head="feature", title="A feature", body="Please review my feature.")
    plan = tmp_path / "plan.yml"
    subtasks = [
        scripted("tests", "tester", edits=[{"write": "test_feature.txt", "content": "tested\n"}]),
        scripted("docs", "documenter", edits=[{"append": "README.md", "text": "feature docs\n"}]),
    ]
    plan.write_text(yaml.safe_dump({"version": 1, "task": "Test and document it", "subtasks": subtasks}))
    proc = run_cli(
        "run", "--plan", str(plan), "--repo", str(repo),
        "--base", "feature", "--publish", "octo/demo", "--pr", str(pr.number), "--quiet",
        env=clean_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=base_url), timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert f"published: {pr.html_url}" in proc.stdout

    after = remote.get_pull(pr.number)
    assert (after.state, after.head.ref, after.base.ref) == ("open", "feature", "main")
    tip = after.head.sha
    git.fetch(repo, remote.clone_url, ["+refs/heads/feature:refs/remotes/check/feature"], TOKEN)
    assert tip != feature_before and git.is_ancestor(repo, feature_before, tip)  # moved forward, nothing lost
    assert git.read_blob(repo, f"{tip}:test_feature.txt") == b"tested\n"
    assert git.read_blob(repo, f"{tip}:README.md").endswith(b"feature docs\n")
    assert git.read_blob(repo, f"{tip}:feature.txt") == b"the feature\n"
    assert {f.filename for f in after.get_files()} == {"feature.txt", "test_feature.txt", "README.md"}
    assert (after.title, after.body) == ("A feature", "Please review my feature.")  # the PR text is theirs
    assert len(list(remote.get_pulls(state="all"))) == 1  # no second PR
    # the progress comment is on the PR, final, with the report folded in
    bodies = [c.body for c in remote.get_issue(pr.number).get_comments()]
    (progress,) = [b for b in bodies if "ci-swarm run" in b]
    assert "2/2 subtasks succeeded" in progress and "`tests`" in progress and "`docs`" in progress
    assert "<summary>Run report</summary>" in progress
    assert "Pull request: #" not in progress  # no other PR to point to
    # the token is nowhere in the local repository's config, plain or as git's basic-auth value
    config = (repo / ".git" / "config").read_text()
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert TOKEN not in config and basic not in config


def test_run_publish_holds_back_a_branch_carrying_a_secret_and_exits_7(
    fake: tuple[str, Path], tmp_path: Path
) -> None:
    """The CLI publishes through the same scanned pushes as the Action: a runner secret written by an agent
    keeps that branch home (named by file and line, never the value), the clean branch still lands."""
    base_url, repo = fake
    secret = "s3cr3t-" + "Database-Password-42"
    plan = tmp_path / "plan.yml"
    subtasks = [
        scripted("clean", edits=[{"write": "ok.txt", "content": "fine\n"}]),
        scripted("leaky", edits=[{"write": "settings.py", "content": f"PASSWORD = '{secret}'\n"}]),
    ]
    plan.write_text(yaml.safe_dump({"version": 1, "task": "Two files", "subtasks": subtasks}))
    env = clean_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=base_url, DATABASE_PASSWORD=secret)
    proc = run_cli(
        "run", "--plan", str(plan), "--repo", str(repo), "--base", "main", "--publish", "octo/demo",
        env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    assert "settings.py:1" in proc.stderr and "secret in an agent branch" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    gh = github.Github(auth=github.Auth.Token(TOKEN), base_url=base_url, retry=None)
    (pr,) = gh.get_repo("octo/demo").get_pulls(state="open")
    assert {f.filename for f in pr.get_files()} == {"ok.txt"}
    remote = tmp_path / "remote"
    pushed = subprocess.run(
        ["grep", "-r", "-l", "--", secret, str(remote)], capture_output=True, text=True, check=False
    )
    assert pushed.stdout == ""  # loose objects are compressed: the branch itself was never pushed
    branches = [b.name for b in gh.get_repo("octo/demo").get_branches()]
    assert not any(name.endswith("-agents/leaky") for name in branches)
    assert any(name.endswith("-agents/clean") for name in branches)
