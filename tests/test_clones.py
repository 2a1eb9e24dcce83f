"""clones.py and collection.py: a clone per agent, and ci-swarm alone reading its files into the user's
repository — whatever the agent did to its clone's config, hooks, HEAD and refs, and naming what git
cannot hold instead of dropping it."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.clones import GitClones
from ci_swarm.errors import GitError, PathEscapeError, WorkLeftOut
from ci_swarm.models import Subtask
from ci_swarm.workspace import Workspace
from tests.fixtures import USER, commit, make_repo, write_files

FILES = {"README.md": "# r\n", "src/app.py": "print('app')\n"}


def sub(sub_id: str) -> Subtask:
    return Subtask(sub_id, "builder", f"do {sub_id}", "instructions")


def made(tmp_path: Path, files: dict[str, str] | None = None) -> tuple[Path, GitClones, Workspace]:
    repo = make_repo(tmp_path / "repo", files or FILES)
    spaces = GitClones(repo, None, "r1")
    return repo, spaces, spaces.make(sub("a"), "swarm/r1-agents/a", git.rev_parse(repo, "main"))


def sh(cwd: Path, script: str) -> None:
    """What an agent runs in its clone (plain git, its own config)."""
    subprocess.run(["sh", "-c", script], cwd=cwd, check=True, capture_output=True)


def tree(repo: Path, rev: str) -> set[str]:
    return set(git.tree_files(repo, rev))


def test_a_clone_has_its_own_config_refs_and_index_and_no_remote_or_hooks(tmp_path: Path) -> None:
    repo, spaces, ws = made(tmp_path)
    start = git.rev_parse(repo, "main")
    assert not ws.root.is_relative_to(repo)
    assert git.rev_parse(ws.root, "HEAD") == start and git.current_branch(ws.root) is None  # detached
    assert git.out(ws.root, "remote") == ""  # the user's remote URL may hold a token
    assert not any((ws.root / ".git" / "hooks").glob("*"))
    hooks = Path(git.out(ws.root, "config", "--local", "core.hooksPath"))
    assert hooks.is_dir() and not any(hooks.iterdir()) and not hooks.is_relative_to(ws.root)
    assert (ws.root / "src" / "app.py").read_text() == "print('app')\n"
    assert git.out(ws.root, "status", "--porcelain") == ""
    git.set_config(ws.root, "user.name", "agent")  # the clone's config is its own
    assert "agent" not in (repo / ".git" / "config").read_text()
    assert git.rev_parse(repo, "swarm/r1-agents/a") == start  # the branch exists from the start
    spaces.dispose(ws)
    spaces.close()
    assert not ws.root.exists() and not hooks.exists()


def test_clones_are_made_in_parallel(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    start = git.rev_parse(repo, "main")
    spaces = GitClones(repo, tmp_path / "clones", "r2")
    ids = [f"s{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        spaces_made = list(pool.map(lambda i: spaces.make(sub(i), f"swarm/r2-agents/{i}", start), ids))
    assert sorted(ws.root.name for ws in spaces_made) == ids
    for ws in spaces_made:
        write_files(ws.root, {f"{ws.subtask_id}.txt": ws.subtask_id})
    with ThreadPoolExecutor(8) as pool:
        tips = list(pool.map(lambda ws: spaces.collect(ws, "work\n", USER), spaces_made))
    assert [files for _, files in tips] == [(f"{i}.txt",) for i in ids]
    spaces.close()
    assert (tmp_path / "clones").is_dir()  # the caller's directory stays


def test_the_agents_head_refs_commits_and_config_are_ignored_only_its_files_count(tmp_path: Path) -> None:
    repo, spaces, ws = made(tmp_path)
    marker = tmp_path / "fsmonitor-ran"
    script = tmp_path / "fsmonitor.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    config_before = (repo / ".git" / "config").read_bytes()
    sh(  # its own git first (an fsmonitor it set would run in its own git), then the traps for ours
        ws.root,
        "git checkout -q -b rogue && echo one > one.txt && git add one.txt"
        " && git -c user.name=a -c user.email=a@a commit -q --no-verify -m mine"
        " && git update-ref -d refs/heads/main"
        f" && git config core.fsmonitor {script} && git config alias.add '!touch {marker}'"
        " && git config core.hooksPath .git/hooks && mkdir -p .git/hooks"
        f" && printf '#!/bin/sh\\ntouch {marker}\\n' > .git/hooks/pre-commit"
        " && chmod +x .git/hooks/pre-commit"
        " && echo two > two.txt && rm README.md",
    )
    tip, files = spaces.collect(ws, "work\n", USER)
    assert files == ("README.md", "one.txt", "two.txt")
    assert tree(repo, tip) == {"one.txt", "two.txt", "src/app.py"}
    assert git.out(repo, "log", "-1", "--format=%an|%P", tip) == f"{USER.name}|{ws.start_commit}"
    assert git.rev_parse(repo, "swarm/r1-agents/a") == tip
    assert not git.branch_exists(repo, "rogue") and git.branch_exists(repo, "main")
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert not marker.exists()  # no fsmonitor, alias or hook of the agent's ran in ci-swarm's git
    spaces.close()


def test_a_second_collect_builds_on_the_first_and_a_moved_branch_is_refused(tmp_path: Path) -> None:
    repo, spaces, ws = made(tmp_path)
    write_files(ws.root, {"a.txt": "a\n"})
    first, _ = spaces.collect(ws, "one\n", USER)
    write_files(ws.root, {"b.txt": "b\n"})
    second, files = spaces.collect(ws, "two\n", USER)
    assert git.out(repo, "rev-parse", f"{second}^") == first and files == ("a.txt", "b.txt")
    git.update_ref(repo, "refs/heads/swarm/r1-agents/a", commit(repo, first, {"x": "x\n"}))
    write_files(ws.root, {"c.txt": "c\n"})
    with pytest.raises(GitError):  # compare-and-swap: someone else moved the branch
        spaces.collect(ws, "three\n", USER)
    spaces.close()


@pytest.mark.parametrize("bad", [".GIT/config", "sub/.Git", "git~1/x", ".git./x", ".git /x", "d/GIT~1"])
def test_paths_git_refuses_are_left_out_named_and_the_rest_is_committed(tmp_path: Path, bad: str) -> None:
    repo, spaces, ws = made(tmp_path)
    write_files(ws.root, {"src/feature.py": "feature\n", bad: "x\n"})
    with pytest.raises(WorkLeftOut, match=r"1 path\(s\).*" + bad.replace(".", r"\.")) as caught:
        spaces.collect(ws, "work\n", USER)
    assert caught.value.files == ("src/feature.py",)
    assert caught.value.left_out[0].startswith(f"{bad} (")
    assert "feature.py" in "".join(tree(repo, caught.value.tip))
    assert git.rev_parse(repo, "swarm/r1-agents/a") == caught.value.tip
    spaces.close()


def test_a_nested_repository_and_files_inside_a_submodule_are_left_out(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    start = commit(repo, "main", {"lib/dep": ("160000", b"")})  # a gitlink (to an object it never needs)
    spaces = GitClones(repo, None, "r3")
    ws = spaces.make(sub("a"), "swarm/r3-agents/a", start)
    sh(ws.root, "git init -q vendor/pkg && echo v > vendor/pkg/v.py && echo f > lib/dep/f.py")
    sh(ws.root, "echo ok > ok.py")
    with pytest.raises(WorkLeftOut) as caught:
        spaces.collect(ws, "work\n", USER)
    assert caught.value.left_out == (
        "lib/dep/f.py (inside submodule lib/dep)",
        "vendor/pkg/ (a nested git repository)",
    )
    assert caught.value.files == ("ok.py",)
    assert "lib/dep" in tree(repo, caught.value.tip)  # the gitlink itself stays
    spaces.close()


def test_an_encoding_error_leaves_out_only_the_failing_file(tmp_path: Path) -> None:
    files = {**FILES, ".gitattributes": "*.utf16 working-tree-encoding=UTF-16\n"}
    _, spaces, ws = made(tmp_path, files)
    write_files(ws.root, {"notes.utf16": "plain utf-8, no BOM\n", "src/ok.py": "ok\n", "README.md": "new\n"})
    with pytest.raises(WorkLeftOut, match=r"notes\.utf16") as caught:
        spaces.collect(ws, "work\n", USER)
    assert caught.value.files == ("README.md", "src/ok.py")
    assert "BOM" in caught.value.left_out[0]
    spaces.close()


def test_a_clone_owned_by_another_account_is_collected(tmp_path: Path) -> None:
    """The sandbox's ``user`` backend hands the clone to an unprivileged account (tests run as root)."""
    repo, spaces, ws = made(tmp_path)
    write_files(ws.root, {"src/new.py": "new\n"})
    for where, dirs, names in os.walk(ws.root):
        for name in [*dirs, *names]:
            os.chown(os.path.join(where, name), 54321, 54321, follow_symlinks=False)
    os.chown(ws.root, 54321, 54321)
    tip, files = spaces.collect(ws, "work\n", USER)
    assert files == ("src/new.py",) and git.read_blob(repo, f"{tip}:src/new.py") == b"new\n"
    spaces.close()


def test_nothing_changed_makes_no_commit(tmp_path: Path) -> None:
    _, spaces, ws = made(tmp_path)
    assert spaces.collect(ws, "nothing\n", USER) == (ws.start_commit, ())
    spaces.close()


@pytest.mark.parametrize("path", [".GIT/config", "git~1/x", "a/.git./b", ".git /x"])
def test_workspace_paths_are_checked_by_gits_rules(tmp_path: Path, path: str) -> None:
    ws = Workspace(tmp_path, "b", "0" * 40)
    with pytest.raises(PathEscapeError, match=r"under \.git/"):
        ws.resolve(path)
