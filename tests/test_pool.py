"""The workspace pool (clones.py with ``pool=``): a run creates at most as many clones as its cap and
reuses each, and one agent leaves nothing for the next — untracked and ignored files, config, hooks,
branches, tags, stash refs, deleted or quietly modified files, write bits — whatever it did to its clone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ci_swarm import clones, git, trash
from ci_swarm.agents import AGENTS, make_agent_factory
from ci_swarm.clones import GitClones
from ci_swarm.errors import RepoError, WorkLeftOut
from ci_swarm.models import AgentSpec, Request, Subtask, SubtaskStatus
from ci_swarm.run import Orchestrator, RunOptions
from ci_swarm.service import CommandPolicy, RunRequest, ServiceOptions, run_request
from ci_swarm.workspace import Workspace
from tests.fixtures import USER, commit, make_repo, write_files
from tests.helpers import plan_of, run_plan_cli, scripted
from tests.helpers import sh_agent as command

FILES = {".gitignore": "*.log\n", "README.md": "# r\n", "src/app.py": "print('app')\n"}


def sub(sub_id: str) -> Subtask:
    return Subtask(sub_id, "builder", f"do {sub_id}", "instructions")


def sh(cwd: Path, script: str) -> None:
    """What an agent runs in its clone (plain git, its own config)."""
    subprocess.run(["sh", "-c", script], cwd=cwd, check=True, capture_output=True)


def work_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but ``.git``, with its bytes."""
    found = {}
    for where, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = Path(where, name)
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def tree_bytes(repo: Path, rev: str) -> dict[str, bytes]:
    return {p: git.read_blob(repo, f"{rev}:{p}") for p in git.tree_files(repo, rev)}


def refs(root: Path) -> set[str]:
    return set(git.out(root, "for-each-ref", "--format=%(refname)").split())


def test_the_next_agent_in_a_reused_clone_sees_exactly_its_start_and_nothing_of_the_last(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    first = git.rev_parse(repo, "main")
    spaces = GitClones(repo, None, "p1", pool=1)
    a = spaces.make(sub("a"), "swarm/p1-agents/a", first)
    fresh_config, fresh_refs = (a.root / ".git" / "config").read_bytes(), refs(a.root)
    marker = tmp_path / "hook-ran"
    sh(
        a.root,
        "echo u > untracked.txt && mkdir -p build && echo i > build/out.log && echo i > top.log"
        " && git config user.name evil && git config core.hooksPath .git/hooks && mkdir -p .git/hooks"
        f" && printf '#!/bin/sh\\ntouch {marker}\\n' > .git/hooks/post-checkout"
        " && chmod +x .git/hooks/post-checkout"
        " && git branch rogue && git tag v-rogue && git update-ref refs/stash HEAD"
        " && mkdir -p .git/info && echo x > .git/info/exclude && git init -q nested && echo n > nested/n.txt"
        " && rm README.md && chmod 0777 src",
    )
    app = a.root / "src" / "app.py"  # changed quietly: same size, same mtime
    before = app.stat()
    app.write_text("print('APP')\n")
    os.utime(app, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(WorkLeftOut, match="nested"):
        spaces.collect(a, "a's work\n", USER)
    spaces.dispose(a)
    assert not a.root.exists()

    second = commit(repo, first, {"src/b.py": "b\n", "src/app.py": "print('app 2')\n"})  # a dependent's start
    b = spaces.make(sub("b"), "swarm/p1-agents/b", second)
    assert spaces.created == 1 and b.root.name == "b"  # the same clone, renamed
    assert work_tree(b.root) == tree_bytes(repo, second)  # untracked, ignored, nested repo gone; README back
    assert git.rev_parse(b.root, "HEAD") == second and git.current_branch(b.root) is None
    assert git.out(b.root, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert (b.root / ".git" / "config").read_bytes() == fresh_config  # no user.name, no hooksPath of a's
    assert not (b.root / ".git" / "hooks").exists() and not marker.exists()
    assert refs(b.root) == fresh_refs  # no rogue branch, tag or stash
    assert (b.root / "src").stat().st_mode & 0o022 == 0
    write_files(b.root, {"src/b2.py": "b2\n"})
    tip, files = spaces.collect(b, "b's work\n", USER)
    assert files == ("src/b2.py",) and git.out(repo, "rev-parse", f"{tip}^") == second  # only b's own work
    spaces.dispose(b)
    spaces.close()
    assert not any(p.exists() for p in (a.root, b.root))


def test_files_inside_a_submodule_directory_do_not_reach_the_next_agent(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    start = commit(repo, "main", {"lib/dep": ("160000", b"")})  # a gitlink
    spaces = GitClones(repo, None, "p2", pool=1)
    a = spaces.make(sub("a"), "swarm/p2-agents/a", start)
    sh(a.root, "echo f > lib/dep/f.py")
    spaces.dispose(a)
    b = spaces.make(sub("b"), "swarm/p2-agents/b", start)
    assert (b.root / "lib" / "dep").is_dir() and not any((b.root / "lib" / "dep").iterdir())
    spaces.close()


def test_a_pool_of_two_serves_eight_workspaces_from_two_threads_with_two_clones(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    start = git.rev_parse(repo, "main")
    spaces = GitClones(repo, tmp_path / "clones", "p3", pool=2)

    def one(i: int) -> tuple[str, ...]:
        ws = spaces.make(sub(f"s{i}"), f"swarm/p3-agents/s{i}", start)
        write_files(ws.root, {f"out/s{i}.txt": f"{i}\n"})
        _, files = spaces.collect(ws, "work\n", USER)
        spaces.dispose(ws)
        return files

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(one, range(8))) == [(f"out/s{i}.txt",) for i in range(8)]  # nothing of another's
    assert spaces.created == 2
    assert len(list((tmp_path / "clones").iterdir())) == 2  # the free clones, under hidden names
    spaces.close()
    assert list((tmp_path / "clones").iterdir()) == []  # every clone removed once, the directory kept


def test_a_clone_that_cannot_be_reset_is_deleted_and_the_next_make_creates_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    start = git.rev_parse(repo, "main")
    spaces = GitClones(repo, None, "p4", pool=1)
    a = spaces.make(sub("a"), "swarm/p4-agents/a", start)

    def broken(clone: Path, commit: str) -> None:
        raise RepoError("reset failed")

    monkeypatch.setattr(git, "reset_clone", broken)
    spaces.dispose(a)
    assert [p.name for p in a.root.parent.iterdir() if p.name != clones.LOCK] == []  # deleted, not pooled
    monkeypatch.undo()
    b = spaces.make(sub("b"), "swarm/p4-agents/b", start)
    assert spaces.created == 2 and work_tree(b.root) == tree_bytes(repo, start)
    spaces.close()


def test_a_pooled_workspace_does_not_hold_a_path_another_clones_of_the_same_root_needs(
    tmp_path: Path,
) -> None:
    """The run's repairs make their clones in the same directory, named by the same subtask ids."""
    repo = make_repo(tmp_path / "repo", FILES)
    start = git.rev_parse(repo, "main")
    spaces = GitClones(repo, tmp_path / "wt", "p5", pool=2)
    repairs = GitClones(repo, tmp_path / "wt", "p5-repair")
    spaces.dispose(spaces.make(sub("a"), "swarm/p5-agents/a", start))
    again = repairs.make(sub("a"), "swarm/p5-agents/a.redo", start)
    assert again.root == (tmp_path / "wt" / "a").resolve()
    repairs.dispose(again)
    repairs.close()
    spaces.close()


def test_a_run_of_eight_subtasks_under_cap_two_creates_two_clones(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    writes = [
        scripted(f"s{i}", delay=0.1, edits=[{"write": f"out/s{i}.txt", "content": f"{i}\n"}])
        for i in range(8)
    ]
    plan = plan_of(*writes, task="pool")
    options = RunOptions(repo=repo, base="main", max_agents=2)
    orchestrator = Orchestrator(plan, options, make_agent_factory(AgentSpec("scripted")))
    report = asyncio.run(orchestrator.run())
    assert [s.status for s in report.subtasks] == [SubtaskStatus.SUCCEEDED] * 8
    assert orchestrator.spaces.created <= 2
    assert {f"out/s{i}.txt" for i in range(8)} <= set(git.tree_files(repo, report.integration_commit))
    for record in report.subtasks:  # each commit holds its own file only: nothing carried over
        assert git.out(repo, "diff", "--name-only", record.start_commit or "", record.commit or "") == (
            f"out/{record.id}.txt"
        )


def test_a_dependent_command_agent_in_the_same_clone_finds_nothing_of_the_first(
    open_dir: Path, tmp_path: Path
) -> None:
    """Through ``ci-swarm run`` and the sandbox, cap 1: b runs where a ran, from a's merged work."""
    repo = make_repo(open_dir / "repo", FILES)
    leave = (  # a.txt is its work (committed); the rest is what it leaves behind
        "echo a > a.txt && echo i > debug.log && mkdir -p build && echo o > build/x.log"
        " && git config user.name evil"
        " && mkdir -p .git/hooks && printf '#!/bin/sh\\n' > .git/hooks/pre-commit"
        " && git branch rogue && git tag v-rogue && git update-ref refs/stash HEAD"
    )
    look = (
        "{ ls -A; git config --local --get user.name; ls .git/hooks 2>/dev/null;"
        " git for-each-ref --format='%(refname)' refs/heads refs/tags refs/stash; } > seen.txt 2>&1; true"
    )
    b = {**command("b", look), "depends_on": ["a"]}
    proc, data = run_plan_cli(repo, tmp_path, command("a", leave), b, args=("--max-agents", "1"))
    assert proc.returncode == 0, proc.stderr
    seen = git.read_blob(repo, f"{data['integration_commit']}:seen.txt").decode().split()
    assert "a.txt" in seen  # b started from a's merged work …
    assert not {"debug.log", "build", "evil", "pre-commit"} & set(seen)  # … and nothing else of a's
    assert [r for r in seen if r.startswith("refs/")] == ["refs/heads/main"]  # as a fresh clone has it
    assert git.read_blob(repo, f"{data['integration_commit']}:README.md") == b"# r\n"


def test_dispose_of_a_workspace_never_made_does_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    spaces = GitClones(repo, None, "p6", pool=1)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    spaces.dispose(Workspace(stranger, "b", "0" * 40, "x"))
    assert stranger.is_dir()
    spaces.close()


# --- removal off the critical path ---------------------------------------------------------------------


@pytest.fixture
def own_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runs' directories (and their trash) in this test's own temp dir."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_close_moves_the_clones_into_a_locked_trash_and_returns_before_it_is_deleted(
    tmp_path: Path, own_temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    start = git.rev_parse(repo, "main")
    spaces = GitClones(repo, tmp_path / "wt", "p7", pool=2)
    held = spaces.make(sub("a"), "swarm/p7-agents/a", start)
    spaces.dispose(spaces.make(sub("b"), "swarm/p7-agents/b", start))  # a free one too
    go_on = threading.Event()
    slow = trash._remove

    def held_back(entry: Path) -> None:
        go_on.wait()
        slow(entry)

    monkeypatch.setattr(trash, "_remove", held_back)
    spaces.close()  # returns while the deletion waits
    assert list((tmp_path / "wt").iterdir()) == [] and not held.root.exists()
    (bin_,) = own_temp.glob(f"{clones.TRASH}p7-*")
    assert (bin_ / clones.LOCK).is_file() and clones.owner_alive(bin_)  # a stale one if this process dies
    assert trash.pending() == 1
    go_on.set()
    assert trash.wait() >= 0 and trash.pending() == 0
    assert list(own_temp.iterdir()) == []


def test_after_a_run_request_returns_no_clone_directory_of_the_run_is_left(
    tmp_path: Path, own_temp: Path
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    writes = [scripted(f"s{i}", edits=[{"write": f"out/s{i}.txt", "content": f"{i}\n"}]) for i in range(4)]
    options = RunOptions(repo=repo, base="main", max_agents=2)
    job = RunRequest(Request("pool", source="test"), options, plan_of(*writes))
    report = run_request(job, ServiceOptions(CommandPolicy(trust_plan_commands=True), AGENTS)).report
    assert [s.status for s in report.subtasks] == [SubtaskStatus.SUCCEEDED] * 4
    left = [p.name for p in own_temp.iterdir() if not p.name.startswith(clones.TRASH)]
    assert left == []  # the clones and the run's own directories moved away at once
    trash.wait()  # the background deletion finished
    assert list(own_temp.iterdir()) == []


KILLED = """
import sys, threading
from pathlib import Path
from ci_swarm import git, trash
from ci_swarm.clones import GitClones
from ci_swarm.models import Subtask
repo = Path(sys.argv[1])
spaces = GitClones(repo, None, "p8", pool=1)
spaces.make(Subtask("a", "builder", "a", "i"), "swarm/p8-agents/a", git.rev_parse(repo, "main"))
trash._remove = lambda entry: threading.Event().wait()  # killed in the middle of the deletion
spaces.close()
print("closed", flush=True)
threading.Event().wait()
"""


def test_a_killed_runs_trash_is_removed_by_remove_stale(tmp_path: Path, own_temp: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    env = {**os.environ, "TMPDIR": str(own_temp)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(repo)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "closed"
        (bin_,) = own_temp.glob(f"{clones.TRASH}p8-*")
        assert clones.remove_stale(own_temp) == ()  # its owner is alive: kept
    finally:
        proc.kill()
        proc.wait()
    assert any(bin_.iterdir()) and clones.remove_stale(own_temp) == (bin_,)
    assert list(own_temp.iterdir()) == []
