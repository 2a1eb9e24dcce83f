"""``ci-swarm run --job NAME``: a maintenance job of ``.github/ci-swarm.yml`` run locally with the plan the
Action builds (:func:`ci_swarm.jobs.written_plan`): a shard job over the base's files, a plan-file job read at
the base commit (not the work tree), unknown names and conflicting flags refused with exit 4."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import github
import pytest
import yaml
from click.testing import CliRunner

from ci_swarm import git, jobs
from ci_swarm.agents import OPTION_VALIDATORS
from ci_swarm.cli import cli
from ci_swarm.config import load_config
from ci_swarm.models import AgentSpec
from ci_swarm.testing.fake_github import FakeGitHub
from tests.fixtures.repos import USER, make_repo
from tests.helpers import run_cli, scripted, show

# each shard appends a line to each of its files; {paths} may arrive as one argument or one per path
FIX = ["sh", "-c", 'for f in $*; do echo "# fixed" >> "$f"; done', "sh", "{paths}"]
CONFIG = {
    "sandbox": "none",
    "maintenance": [
        {
            "name": "fix",
            "cron": "0 3 * * 1",
            "shard": {"pattern": "src/*.py", "agents": 2, "task": "Fix the files"},
            "agent": {"kind": "command", "run": FIX},
        },
        {"name": "nightly", "cron": "30 2 * * *", "plan": ".github/swarm/nightly.yml"},
        {"name": "deps", "cron": "0 4 * * *", "task": "Update dependencies"},
    ],
}
NIGHTLY = {
    "version": 1,
    "task": "nightly chores",
    "subtasks": [scripted("notes", edits=[{"write": "NOTES.md", "content": "nightly\n"}])],
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {f"src/m{i}.py": f"x = {i}\n" for i in range(4)}
    files[".github/ci-swarm.yml"] = yaml.safe_dump(CONFIG)
    files[".github/swarm/nightly.yml"] = yaml.safe_dump(NIGHTLY)
    return make_repo(tmp_path / "repo", {**files, "README.md": "hi\n"})


def run_job(repo: Path, tmp: Path, *args: str) -> tuple[int, dict[str, object]]:
    report = tmp / "report.json"
    argv = ["run", "--repo", str(repo), "--quiet", "--report", str(report), *args]
    result = CliRunner().invoke(cli, argv)
    assert report.exists(), result.output
    return result.exit_code, json.loads(report.read_text())


def test_a_shard_job_runs_with_the_plan_the_action_builds(repo: Path, tmp_path: Path) -> None:
    code, report = run_job(repo, tmp_path, "--job", "fix", "--run-id", "job1")
    assert code == 0, report
    tip = git.rev_parse(repo, "swarm/job1")
    for i in range(4):
        assert show(repo, tip, f"src/m{i}.py") == f"x = {i}\n# fixed\n"
    config = load_config(repo / ".github" / "ci-swarm.yml")
    job = jobs.find_job(config, "fix")
    expected = jobs.written_plan(
        repo,
        git.head_commit(repo),
        jobs.Written.of_job(job),
        merge=config.merge,
        default=job.agent or AgentSpec("scripted"),
        validators=OPTION_VALIDATORS,
    )
    assert expected is not None
    subtasks = report["subtasks"]
    assert isinstance(subtasks, list)
    assert [(s["id"], tuple(s["paths"])) for s in subtasks] == [(s.id, s.paths) for s in expected.subtasks]
    assert len(subtasks) == 2
    assert report["task"] == "Fix the files"


def test_a_plan_file_job_reads_the_plan_at_the_base_commit(repo: Path, tmp_path: Path) -> None:
    # an uncommitted edit of the plan file does not count: the Action reads it at the base commit
    (repo / ".github" / "swarm" / "nightly.yml").write_text("not: [a plan\n")
    code, report = run_job(repo, tmp_path, "--job", "nightly", "--run-id", "job2")
    assert code == 0, report
    assert show(repo, "swarm/job2", "NOTES.md") == "nightly\n"
    assert [s["id"] for s in report["subtasks"]] == ["notes"]  # type: ignore[attr-defined]


def test_a_plan_file_job_at_another_base(repo: Path, tmp_path: Path) -> None:
    base = git.head_commit(repo)
    changed = {**NIGHTLY, "subtasks": [scripted("later", edits=[{"write": "L.md", "content": "l\n"}])]}
    (repo / ".github" / "swarm" / "nightly.yml").write_text(yaml.safe_dump(changed))
    git.commit_all(repo, "new nightly plan\n", USER)
    code, report = run_job(repo, tmp_path, "--job", "nightly", "--base", base, "--run-id", "job3")
    assert code == 0 and [s["id"] for s in report["subtasks"]] == ["notes"], report  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--job", "fxi"), "ci-swarm.yml (did you mean 'fix'?)"),
        (("--job", "zzz"), "(known: fix, nightly, deps)"),
        (("--job", "fix", "--task", "x"), "--job brings its own plan"),
        (("--job", "fix", "--shard", "*.py"), "--job brings its own plan"),
    ],
)
def test_bad_job_requests_are_exit_4(repo: Path, args: tuple[str, ...], message: str) -> None:
    proc = run_cli("run", "--repo", str(repo), "--quiet", *args)
    assert proc.returncode == 4, proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert not git.list_refs(repo, "refs/heads/swarm/")  # nothing started


def test_no_job_without_a_config(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "plain", {"README.md": "hi\n"})
    proc = run_cli("run", "--repo", str(bare), "--job", "fix")
    assert proc.returncode == 4 and "(known: none)" in proc.stderr


# --- with --publish: the job's own branch, as the Action publishes it ---------------------------------------


TOKEN = "ghs_RunJobT0kenThatMustNeverBePrinted"


@pytest.fixture
def github_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Any]]:
    files = {f"src/m{i}.py": f"x = {i}\n" for i in range(4)}
    files[".github/ci-swarm.yml"] = yaml.safe_dump(CONFIG)
    work = make_repo(tmp_path / "work", {**files, "README.md": "hi\n"})
    with FakeGitHub(tmp_path / "remote") as fake:
        fake.add_repo("octo/app", work)
        fake.add_token(TOKEN)
        fake.add_user("octo", "admin")
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", fake.base_url)
        gh = github.Github(auth=github.Auth.Token(TOKEN), base_url=fake.base_url, retry=None)
        yield work, gh.get_repo("octo/app")


def test_a_published_job_goes_onto_its_maintenance_branch_and_replaces_it(
    github_remote: tuple[Path, Any], tmp_path: Path
) -> None:
    work, remote = github_remote
    argv = ["run", "--repo", str(work), "--quiet", "--job", "fix", "--publish", "octo/app"]
    first = CliRunner().invoke(cli, [*argv, "--run-id", "pub1"])
    assert first.exit_code == 0, first.output
    (pr,) = remote.get_pulls(state="open")
    assert pr.head.ref == "swarm/maintenance/fix" and pr.base.ref == "main"
    assert {f.filename for f in pr.get_files()} == {f"src/m{i}.py" for i in range(4)}
    second = CliRunner().invoke(cli, [*argv, "--run-id", "pub2"])
    assert second.exit_code == 0, second.output
    (again,) = remote.get_pulls(state="open")  # the same pull request, its branch replaced
    assert again.number == pr.number and "pub2" in again.body
    tip = remote.get_branch("swarm/maintenance/fix").commit.sha
    assert git.rev_parse(work, "swarm/pub2") == tip
    assert TOKEN not in first.output + second.output
