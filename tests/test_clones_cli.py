"""Hostile command agents through ``ci-swarm run``: each works in its own clone and ci-swarm alone commits,
so the user's config, hooks, refs and checkout are byte-identical after the run, the work lands on its swarm
branch, and work git cannot hold fails the subtask (exit 3) naming what was left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from tests.fixtures import make_repo
from tests.helpers import run_plan_cli as run
from tests.helpers import sh_agent as command

FILES = {"README.md": "# r\n", "src/app.py": "print('app')\n"}


@pytest.fixture
def repo(open_dir: Path) -> Path:
    """The user's repository where the sandbox account may read its objects (the clones borrow them):
    the agents' own git commands work in their clones."""
    repo = make_repo(open_dir / "repo", FILES)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    write = repo / "uncommitted.txt"  # the user's own work in progress stays as it is
    write.write_text("mine\n")
    return repo


def user_state(repo: Path) -> tuple[object, ...]:
    """Everything of the user's repository a run may not change (swarm branches aside)."""
    dot = repo / ".git"
    hooks = sorted((p.name, p.read_bytes()) for p in (dot / "hooks").iterdir())
    refs = [line for line in git.out(repo, "for-each-ref").splitlines() if "refs/heads/swarm/" not in line]
    status = git.out(repo, "status", "--porcelain", "--untracked-files=all")
    return (
        (dot / "config").read_bytes(),
        hooks,
        refs,
        status,
        (dot / "index").read_bytes(),
        (dot / "HEAD").read_bytes(),
    )


def the(data: dict[str, Any], sub_id: str) -> dict[str, Any]:
    return next(s for s in data["subtasks"] if s["id"] == sub_id)


def test_an_agent_setting_fsmonitor_an_alias_and_a_hook_changes_nothing_of_the_user(
    repo: Path, tmp_path: Path
) -> None:
    marker = repo.parent / "ran"  # where the sandboxed agent can reach the trap it installs
    trap = repo.parent / "trap.sh"
    trap.write_text(f"#!/bin/sh\ntouch {marker}\n")
    trap.chmod(0o755)
    before = user_state(repo)
    script = (
        f"git config core.fsmonitor {trap} && git config alias.add '!{trap}'"
        f" && git config core.hooksPath .git/h && mkdir .git/h"
        f" && cp {trap} .git/h/pre-commit && cp {trap} .git/h/post-checkout && echo w > work.txt"
    )
    proc, data = run(repo, tmp_path, command("a", script))
    assert proc.returncode == 0, proc.stderr
    assert git.read_blob(repo, f"{the(data, 'a')['commit']}:work.txt") == b"w\n"
    assert git.try_read_blob(repo, data["integration_commit"], "work.txt") == b"w\n"
    assert user_state(repo) == before
    assert not marker.exists()  # the agent's fsmonitor, alias and hooks never ran in ci-swarm's git
    git.out(repo, "status")  # nor at the user's next git status
    assert not marker.exists()


def test_an_agent_committing_and_moving_branches_lands_on_its_swarm_branch_only(
    repo: Path, tmp_path: Path
) -> None:
    before, main = user_state(repo), git.rev_parse(repo, "main")
    script = (
        "git checkout -q main && git checkout -q --ignore-other-worktrees -b rogue && echo r > rogue.txt"
        " && git add -A && git -c user.name=x -c user.email=x@x commit -qm rogue"
        " && git update-ref -d refs/heads/main"
        " && git push -q origin rogue:main 2>/dev/null; echo f > final.txt"
    )
    proc, data = run(repo, tmp_path, command("b", script))
    assert proc.returncode == 0, proc.stderr
    sub = the(data, "b")
    assert sub["branch"] == f"swarm/{data['run_id']}-agents/b"
    assert git.rev_parse(repo, sub["branch"]) == sub["commit"]
    assert set(git.tree_files(repo, sub["commit"])) == {*FILES, "rogue.txt", "final.txt"}
    assert git.out(repo, "log", "-1", "--format=%P", sub["commit"]) == main  # the agent's commit is not kept
    assert git.rev_parse(repo, "main") == main and not git.branch_exists(repo, "rogue")
    assert user_state(repo) == before


def test_paths_git_refuses_fail_the_subtask_naming_them_and_the_rest_is_committed(
    repo: Path, tmp_path: Path
) -> None:
    before = user_state(repo)
    bad = [".GIT/config", "sub/.Git", "git~1/x", ".git./x", ".git /x"]
    script = "mkdir -p src && echo f > src/feature.py" + "".join(
        f" && mkdir -p '{Path(p).parent}' && echo x > '{p}'" for p in bad
    )
    proc, data = run(repo, tmp_path, command("c", script))
    assert proc.returncode == 3, proc.stderr
    sub = the(data, "c")
    assert sub["status"] == "failed"
    assert all(p in sub["error"] for p in bad) and "\n" not in sub["error"]
    assert sub["files"] == ["src/feature.py"]
    assert git.read_blob(repo, f"{sub['commit']}:src/feature.py") == b"f\n"
    assert git.try_read_blob(repo, data["integration_commit"], "src/feature.py") is None  # failed: not merged
    assert user_state(repo) == before


def test_an_encoding_error_fails_the_subtask_naming_the_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {**FILES, ".gitattributes": "*.utf16 working-tree-encoding=UTF-16\n"})
    proc, data = run(repo, tmp_path, command("d", "echo plain > notes.utf16 && echo ok > ok.py"))
    assert proc.returncode == 3, proc.stderr
    sub = the(data, "d")
    assert sub["status"] == "failed" and "notes.utf16" in sub["error"]
    assert sub["files"] == ["ok.py"]
