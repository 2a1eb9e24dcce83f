"""``ci-swarm cleanup`` on real repositories: a run's branches deleted locally and on a bare remote, a branch
holding a person's commit (or another run's) kept and named, --older-than, --dry-run, the checked-out branch
left alone, killed runs' clone directories removed; and the Action's route for a closed pull request."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ci_swarm import cleanup, clones, git
from ci_swarm.action import main as action_main
from ci_swarm.cli import cli
from ci_swarm.config import Config
from ci_swarm.errors import UsageError
from ci_swarm.github.event import Cleanup, Refuse, route
from ci_swarm.github.pushing import delete_branches
from ci_swarm.naming import agent_branch
from tests.act_helpers import MAINTAINER, TOKEN, World, make_world, swarm_plan, write_sub
from tests.fixtures.repos import USER, commit, make_repo
from tests.helpers import scripted

OLD_RUN = "20200101-000000-abcd"  # a generated id: started on 1 January 2020
NEW_RUN = "29990101-000000-abcd"  # a run id from the far future: never old


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs' clone directories (and their pid locks) in this test's own temp dir: the fixed run ids below
    are shared by tests on other workers, whose live runs would otherwise look like this test's run."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))


def swarm_run(repo: Path, tmp: Path, run_id: str, *ids: str) -> None:
    """A real run with scripted agents ``ids`` (each writes its own file): swarm/<run> and its agents."""
    plan = tmp / f"plan-{run_id}.yml"
    subtasks = [scripted(i, edits=[{"write": f"{i}-{run_id}.txt", "content": f"{i}\n"}]) for i in ids]
    plan.write_text(yaml.safe_dump({"version": 1, "task": "t", "subtasks": subtasks}))
    args = ["run", "--plan", str(plan), "--repo", str(repo), "--run-id", run_id, "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def branches(repo: Path) -> set[str]:
    return {r.ref.removeprefix("refs/heads/") for r in git.list_refs(repo, "refs/heads/")}


def clean(repo: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["cleanup", "--repo", str(repo), *args])
    return result.exit_code, result.output


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "hello\n"})


def test_a_runs_branches_are_deleted_and_others_stay(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a", "b")
    swarm_run(repo, tmp_path, NEW_RUN, "a")
    git.create_branch(repo, "swarm-notes", git.head_commit(repo))  # not under swarm/
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0, out
    assert f"deleted swarm/{OLD_RUN} (local)" in out
    assert f"deleted swarm/{OLD_RUN}-agents/a (local)" in out
    assert branches(repo) == {"main", "swarm-notes", f"swarm/{NEW_RUN}", f"swarm/{NEW_RUN}-agents/a"}


def test_a_branch_with_a_persons_commit_is_kept_and_named(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a", "b")
    agent = f"swarm/{OLD_RUN}-agents/a"
    mine = commit(repo, git.rev_parse(repo, agent), {"mine.txt": "mine\n"}, "my fix")
    git.update_ref(repo, f"refs/heads/{agent}", mine)
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0, out
    assert f"kept {agent} (local): commit {mine[:10]} is not ci-swarm's (committed by Test User" in out
    assert branches(repo) == {"main", agent}
    # the integration branch merged the agent's commit, which stays reachable from the kept branch
    assert f"deleted swarm/{OLD_RUN} (local)" in out


def test_a_commit_by_ci_swarm_for_another_run_is_foreign_too(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    agent = f"swarm/{OLD_RUN}-agents/a"
    other = commit(
        repo,
        git.rev_parse(repo, agent),
        {"x.txt": "x\n"},
        "x\n\nSwarm-Run: elsewhere",
        identity=git.SWARM_IDENTITY,
    )
    git.update_ref(repo, f"refs/heads/{agent}", other)
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0
    assert f"kept {agent} (local): commit {other[:10]} has no 'Swarm-Run: {OLD_RUN}' trailer" in out


def test_a_persons_work_on_main_does_not_keep_a_branch(repo: Path, tmp_path: Path) -> None:
    """Commits that stay reachable elsewhere (main moved on from the run's base) are not lost."""
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    (repo / "later.txt").write_text("later\n")
    git.commit_all(repo, "later\n", USER)
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0 and branches(repo) == {"main"}, out


def test_older_than_uses_the_run_ids_time_or_the_tips_date(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    swarm_run(repo, tmp_path, NEW_RUN, "a")
    swarm_run(repo, tmp_path, "old-named", "a")  # not a generated id: as old as its tips (the tests' date)
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{int(time.time())} +0000")
    swarm_run(repo, tmp_path, "named", "a")  # its tips are from now
    code, out = clean(repo, "--older-than", "30")
    assert code == 0, out
    assert "deleted swarm/old-named-agents/a (local)" in out
    fresh = {f"swarm/{NEW_RUN}", f"swarm/{NEW_RUN}-agents/a", "swarm/named", "swarm/named-agents/a"}
    assert branches(repo) == {"main", *fresh}
    code, out = clean(repo, "--older-than", "0")
    assert "deleted swarm/named (local)" in out and f"swarm/{NEW_RUN}" not in out


def test_dry_run_deletes_nothing(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    before = branches(repo)
    code, out = clean(repo, "--run-id", OLD_RUN, "--dry-run")
    assert code == 0 and f"would delete swarm/{OLD_RUN}-agents/a (local)" in out
    assert branches(repo) == before


def test_the_checked_out_branch_is_never_deleted(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    git.run(repo, "checkout", "--quiet", f"swarm/{OLD_RUN}")
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0 and f"kept swarm/{OLD_RUN} (local): checked out" in out
    assert f"swarm/{OLD_RUN}" in branches(repo) and f"swarm/{OLD_RUN}-agents/a" not in branches(repo)


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--run-id", "r", "--older-than", "1"),
        ("--older-than", "nan"),
        ("--older-than", "-1"),
        ("--run-id", " "),
    ],
)
def test_bad_input_is_exit_4(repo: Path, args: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ci_swarm", "cleanup", "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and "ci-swarm: error:" in proc.stderr


def test_remote_branches_are_deleted_on_a_bare_remote(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a", "b")
    bare = tmp_path / "remote.git"
    git.run(tmp_path, "init", "--quiet", "--bare", str(bare))
    git.run(repo, "remote", "add", "origin", str(bare))
    git.run(
        repo, "push", "--quiet", "origin", "main", f"refs/heads/swarm/{OLD_RUN}*:refs/heads/swarm/{OLD_RUN}*"
    )
    # a person pushed a commit onto agent b's branch on the remote only
    b = f"swarm/{OLD_RUN}-agents/b"
    theirs = commit(bare, git.rev_parse(bare, b), {"theirs.txt": "t\n"}, "theirs")
    git.update_ref(bare, f"refs/heads/{b}", theirs)
    code, out = clean(repo, "--run-id", OLD_RUN, "--remote", "origin")
    assert code == 0, out
    assert f"deleted swarm/{OLD_RUN}-agents/a (origin)" in out
    assert f"kept {b} (origin): commit {theirs[:10]} is not ci-swarm's" in out
    assert branches(bare) == {"main", b}
    assert branches(repo) == {"main"}
    assert not git.list_refs(repo, cleanup.SCRATCH)  # the fetched tips are dropped


def test_a_remote_branch_that_moved_after_the_check_is_not_deleted(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    bare = tmp_path / "remote.git"
    git.run(tmp_path, "init", "--quiet", "--bare", str(bare))
    agent = f"swarm/{OLD_RUN}-agents/a"
    git.run(repo, "push", "--quiet", str(bare), f"{agent}:refs/heads/{agent}")
    stale = {agent: git.ZERO_OID.replace("0", "1")}  # not the tip the remote holds
    assert delete_branches(repo, str(bare), "", stale) == ()
    assert branches(bare) == {agent}
    assert delete_branches(repo, str(bare), "", {agent: git.rev_parse(repo, agent)}) == (agent,)


# --- killed runs' directories -------------------------------------------------------------------------


def test_a_dead_owners_directory_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / "ci-swarm-r1-abc"
    live = tmp_path / "ci-swarm-r2-def"
    unknown = tmp_path / "ci-swarm-r3-ghi"  # no lock: not known to be stale
    for d in (gone, live, unknown):
        (d / "agent").mkdir(parents=True)
    (gone / clones.LOCK).write_text(f"{dead.pid} 1\n")
    (live / clones.LOCK).write_text(f"{os.getpid()} {clones._start_time(os.getpid())}\n")
    assert clones.remove_stale(tmp_path, dry_run=True) == (gone,) and gone.exists()
    assert clones.remove_stale(tmp_path) == (gone,)
    assert not gone.exists() and live.exists() and unknown.exists()


def test_a_reused_pid_with_another_start_time_is_dead(tmp_path: Path) -> None:
    d = tmp_path / "ci-swarm-r-x"
    d.mkdir()
    (d / clones.LOCK).write_text(f"{os.getpid()} 1\n")  # this pid, but started at another time
    assert not clones.owner_alive(d)


def test_a_run_locks_its_directories(repo: Path) -> None:
    from ci_swarm.models import Subtask

    made = clones.GitClones(repo, None, "lockcheck")
    ws = made.make(Subtask("a", "builder", "a", "a"), "swarm/lockcheck-agents/a", git.head_commit(repo))
    try:
        lock = (ws.root.parent / clones.LOCK).read_text().split()
        assert int(lock[0]) == os.getpid() and clones.owner_alive(ws.root.parent)
    finally:
        made.dispose(ws)
        made.close()


# --- the selection rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("swarm/r1", ("r1", False)),
        ("swarm/r1-agents/a", ("r1", True)),
        ("swarm/maintenance/weekly", None),
        ("swarmy/r1", None),
        ("swarm/", None),
        ("swarm/-agents/a", None),
    ],
)
def test_run_branches_are_recognised(name: str, parsed: tuple[str, bool] | None) -> None:
    assert cleanup.parse_branch("swarm", name) == parsed


def test_a_selection_needs_exactly_one_rule() -> None:
    with pytest.raises(UsageError, match="exactly one"):
        cleanup.Selection()
    with pytest.raises(UsageError, match="finite"):
        cleanup.Selection(older_than=float("inf"))


# --- the Action's route for a closed pull request --------------------------------------------------------


class NoAccess:
    def permission(self, login: str) -> str:
        raise AssertionError("routing a closed PR asks GitHub nothing")

    def identity(self) -> str:
        raise AssertionError("routing a closed PR asks GitHub nothing")

    def pull_request(self, number: int) -> object:
        raise AssertionError("routing a closed PR asks GitHub nothing")


def closed(head: str, *, repo: str = "o/r", head_repo: str = "o/r", merged: bool = True) -> dict[str, object]:
    pr = {
        "number": 5,
        "merged": merged,
        "head": {"ref": head, "repo": {"full_name": head_repo}},
        "base": {"ref": "main"},
    }
    return {"action": "closed", "pull_request": pr, "repository": {"full_name": repo}}


def test_a_closed_swarm_pull_request_routes_to_its_cleanup() -> None:
    decision = route("pull_request", closed("swarm/r1"), Config(), NoAccess())  # type: ignore[arg-type]
    assert decision == Cleanup("o/r", "r1", 5, "swarm/r1", "main", True)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (closed("feature"), "is not a ci-swarm run's"),
        (closed("swarm/r1-agents/a"), "is not a ci-swarm run's"),
        (closed("swarm/maintenance/weekly"), "is not a ci-swarm run's"),
        (closed("swarm/r1", head_repo="fork/r"), "comes from fork/r"),
        ({**closed("swarm/r1"), "action": "opened"}, "does not handle 'pull_request' events"),
    ],
)
def test_other_pull_requests_are_refused(payload: dict[str, object], why: str) -> None:
    decision = route("pull_request", payload, Config(), NoAccess())  # type: ignore[arg-type]
    assert isinstance(decision, Refuse) and why in decision.notice


# --- the Action: a closed swarm pull request, against the fake GitHub ---------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def closed_event(world: World, number: int, head: str, merged: bool) -> dict[str, object]:
    pr = {"number": number, "merged": merged, "state": "closed"}
    pr |= {"head": {"ref": head, "repo": {"full_name": world.name}}, "base": {"ref": "main"}}
    return {
        "action": "closed",
        "number": number,
        "pull_request": pr,
        "repository": {"full_name": world.name},
        "sender": {"login": MAINTAINER, "type": "User"},
    }


def test_the_action_deletes_a_closed_runs_agent_branches_but_not_foreign_work(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = swarm_plan(write_sub("one", "one.txt", "1\n"), write_sub("two", "two.txt", "2\n"))
    issue = world.issue("Two files", plan, labels=("swarm",))
    assert action_main(world.env("issues", world.labeled(issue))) == 0
    out = world.read_outputs()
    run_id, branch = out["run_id"], out["branch"]
    one, two = agent_branch("swarm", run_id, "one"), agent_branch("swarm", run_id, "two")
    assert {branch, one, two} <= world.remote_branches()
    # someone pushed their own commit onto agent branch "two"
    bare = world.bare
    theirs = commit(bare, git.rev_parse(bare, f"refs/heads/{two}"), {"theirs.txt": "t\n"}, "mine")
    git.update_ref(bare, f"refs/heads/{two}", theirs)
    capsys.readouterr()

    event = closed_event(world, int(out["pr_number"]), branch, merged=False)
    assert action_main(world.env("pull_request", event, dry_run="true")) == 0
    assert {one, two} <= world.remote_branches()  # a dry run deletes nothing
    assert f"would delete {one}" in capsys.readouterr().out

    assert action_main(world.env("pull_request", event)) == 0
    remote = world.remote_branches()
    assert one not in remote
    assert two in remote and branch in remote  # foreign work and the PR's own branch stay
    log = capsys.readouterr().out
    assert f"deleted {one}" in log and f"kept {two}: commit {theirs[:10]} is not ci-swarm's" in log
    assert TOKEN not in log
    assert not git.list_refs(world.workspace, cleanup.SCRATCH)


def test_the_action_ignores_a_closed_pull_request_that_is_no_runs(world: World) -> None:
    event = closed_event(world, 7, "feature", merged=True)
    before = world.remote_branches()
    assert action_main(world.env("pull_request", event)) == 0
    assert world.remote_branches() == before
    assert world.writes() == []


SHARDED = """\
version: 1
task: weekly chores
subtasks:
  - {id: ok, role: builder, title: ok, agent: {kind: scripted, edits: [{write: ok.txt, content: "ok\\n"}]}}
  - id: broken
    role: builder
    title: broken
    agent: {kind: scripted, fail: "the tool crashed", edits: [{write: half.txt, content: "half\\n"}]}
  - id: left
    role: builder
    title: left
    paths: [README.md]
    agent: {kind: scripted, delay: 0.2, edits: [{write: README.md, content: "left\\n"}]}
  - id: right
    role: builder
    title: right
    paths: [README.md]
    agent: {kind: scripted, delay: 0.4, edits: [{write: README.md, content: "right\\n"}]}
"""


def test_a_scheduled_run_pushes_only_the_agent_branches_a_person_needs(world: World) -> None:
    config = 'maintenance:\n  - name: weekly\n    cron: "0 3 * * 1"\n    plan: plans/weekly.yml\n'
    world.commit_to_default({".github/ci-swarm.yml": config, "plans/weekly.yml": SHARDED})
    assert action_main(world.env("schedule", world.scheduled("0 3 * * 1"))) == 3  # one subtask failed
    out = world.read_outputs()
    pushed = {b for b in world.remote_branches() if "-agents/" in b}
    run_id = out["run_id"]
    # the failed one (its partial work is only there) and the conflict's losing side (merged second, with
    # conflicts); not the clean successes, whose work is all in the integration branch
    assert pushed == {agent_branch("swarm", run_id, s) for s in ("broken", "right")}
    assert out["branch"] in world.remote_branches()


def test_a_run_in_progress_keeps_its_branches(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    bare = tmp_path / "remote.git"
    git.run(tmp_path, "init", "--quiet", "--bare", str(bare))
    git.run(repo, "push", "--quiet", str(bare), f"refs/heads/swarm/{OLD_RUN}*:refs/heads/swarm/{OLD_RUN}*")
    live = Path(tempfile.mkdtemp(prefix=f"{clones.PREFIX}{OLD_RUN}-"))  # as a running run's clone dir
    try:
        (live / clones.LOCK).write_text(f"{os.getpid()} {clones._start_time(os.getpid())}\n")
        code, out = clean(repo, "--run-id", OLD_RUN, "--remote", str(bare))
        assert code == 0 and f"kept swarm/{OLD_RUN}-agents/a (local): its run is in progress" in out
        assert f"kept swarm/{OLD_RUN}-agents/a ({bare}): its run is in progress" in out
        assert f"swarm/{OLD_RUN}" in branches(repo) and f"swarm/{OLD_RUN}" in branches(bare)
    finally:
        shutil.rmtree(live)
    assert clean(repo, "--run-id", OLD_RUN)[0] == 0 and branches(repo) == {"main"}


def test_a_persons_commit_with_ci_swarms_committer_and_trailer_is_still_theirs(
    repo: Path, tmp_path: Path
) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    agent = f"swarm/{OLD_RUN}-agents/a"
    tree = git.tree_of(repo, agent)
    message = f"looks like an agent's\n\nSwarm-Run: {OLD_RUN}\n"
    env = {**git.SWARM_IDENTITY.env(), "GIT_AUTHOR_NAME": "Pat", "GIT_AUTHOR_EMAIL": "pat@example.com"}
    mixed = git.run(
        repo, "commit-tree", tree, "-p", git.rev_parse(repo, agent), input=message.encode(), env=env
    )
    sha = mixed.text.strip()
    git.update_ref(repo, f"refs/heads/{agent}", sha)
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0 and f"kept {agent} (local): commit {sha[:10]} is not ci-swarm's (authored by pat@" in out


def test_tags_of_trees_and_annotated_tags_do_not_stop_the_check(repo: Path, tmp_path: Path) -> None:
    swarm_run(repo, tmp_path, OLD_RUN, "a")
    git.run(repo, "tag", "a-tree", git.tree_of(repo, "HEAD"))  # as git.git's v2.6.11-tree
    agent = f"swarm/{OLD_RUN}-agents/a"
    git.run(
        repo, "tag", "-a", "-m", "kept", "kept-agent", agent, env=USER.env()
    )  # an annotated tag: the work stays
    code, out = clean(repo, "--run-id", OLD_RUN)
    assert code == 0 and branches(repo) == {"main"}, out
