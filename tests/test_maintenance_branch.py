"""A scheduled job's branch is replaced only over ci-swarm's own commits, and only with a lease: a
maintainer's fix-up on the maintenance branch survives the next run. Through the Action, fake GitHub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.action import main
from ci_swarm.github.maintenance import foreign_commits
from ci_swarm.github.pushing import Guard, _push
from tests.act_helpers import World, make_world
from tests.fixtures import commit

BRANCH = "swarm/maintenance/tidy"
CONFIG = 'maintenance:\n  - name: tidy\n    cron: "0 3 * * 1"\n    plan: .github/swarm/nightly.yml\n'
NIGHTLY = """\
version: 1
task: Tidy the readme
subtasks:
  - id: tidy
    role: docs
    title: Tidy the readme
    paths: [README.md]
    agent:
      kind: scripted
      edits:
        - {append: README.md, text: "tidied\\n"}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def scheduled_run(world: World) -> dict[str, str]:
    world.outputs.write_text("")
    assert main(world.env("schedule", world.scheduled("0 3 * * 1"))) == 0
    return world.read_outputs()


def maintainer_fixup(world: World) -> str:
    """A maintainer pushes a fix-up commit onto the maintenance branch (as by hand, in the bare repo)."""
    tip = git.rev_parse(world.bare, f"refs/heads/{BRANCH}")
    fixed = commit(world.bare, tip, {"FIXUP.md": "a maintainer's fix-up\n"}, "fix-up by a maintainer")
    git.update_ref(world.bare, f"refs/heads/{BRANCH}", fixed, tip)
    return fixed


def test_a_maintainers_fixup_survives_the_next_scheduled_run(world: World) -> None:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG, ".github/swarm/nightly.yml": NIGHTLY})
    first = scheduled_run(world)
    fixed = maintainer_fixup(world)
    second = scheduled_run(world)
    assert second["pr_number"] == first["pr_number"]
    tip = git.rev_parse(world.bare, f"refs/heads/{BRANCH}")
    assert git.is_ancestor(world.bare, fixed, tip)
    assert git.read_blob(world.bare, f"{tip}:FIXUP.md") == b"a maintainer's fix-up\n"
    pr = world.repo().get_pull(int(second["pr_number"]))
    assert second["run_id"] in pr.body
    assert f"has 1 commit(s) not made by ci-swarm ({fixed[:10]})" in pr.body
    assert "keeps them instead of replacing the branch" in pr.body


def test_without_foreign_commits_the_branch_is_replaced(world: World) -> None:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG, ".github/swarm/nightly.yml": NIGHTLY})
    scheduled_run(world)
    old = git.rev_parse(world.bare, f"refs/heads/{BRANCH}")
    second = scheduled_run(world)
    new = git.rev_parse(world.bare, f"refs/heads/{BRANCH}")
    assert not git.is_ancestor(world.bare, old, new)  # replaced
    pr = world.repo().get_pull(int(second["pr_number"]))
    assert "not made by ci-swarm" not in pr.body
    assert [f.filename for f in pr.get_files()] == ["README.md"]


def test_only_ci_swarm_identity_with_a_trailer_counts_as_ours(world: World) -> None:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG, ".github/swarm/nightly.yml": NIGHTLY})
    scheduled_run(world)
    main_tip = git.rev_parse(world.bare, "refs/heads/main")
    tip = git.rev_parse(world.bare, f"refs/heads/{BRANCH}")
    assert foreign_commits(world.bare, main_tip, tip) == ()  # agent and merge commits are ours
    fixed = maintainer_fixup(world)
    assert foreign_commits(world.bare, main_tip, fixed) == (fixed,)


def test_a_replacing_push_holds_a_lease(world: World) -> None:
    """The lease refuses to replace a tip the push did not expect; no forced push goes without one."""
    url = world.repo().clone_url
    main_tip = git.rev_parse(world.workspace, "HEAD")
    other = commit(world.workspace, main_tip, {"x.txt": "x\n"}, "someone's work")
    mine = commit(world.workspace, main_tip, {"y.txt": "y\n"}, "mine")
    ref = "refs/heads/topic"
    assert not isinstance(_push(world.workspace, url, [f"{other}:{ref}"], world.token, Guard()), Exception)
    stale = _push(world.workspace, url, [f"{mine}:{ref}"], world.token, Guard(), lease={ref: main_tip})
    assert isinstance(stale, Exception) and "stale info" in stale.stdout
    assert git.rev_parse(world.bare, ref) == other
    fresh = _push(world.workspace, url, [f"{mine}:{ref}"], world.token, Guard(), lease={ref: other})
    assert not isinstance(fresh, Exception)
    assert git.rev_parse(world.bare, ref) == mine
