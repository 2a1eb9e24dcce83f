"""github.com shows a pushed commit as a pull request's head.sha (and its file list) only after a while: the
fake can lag the same way, and the publisher waits (bounded, polling) until the PR shows the pushed commit
before anchoring review comments. Runs on a PR name the PR's branch, never an unpushed swarm/<run>."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.action import main
from ci_swarm.github.publish import Publisher
from tests.act_helpers import World, make_world, push_branch, replace_sub, swarm_plan
from tests.fixtures import commit


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def test_the_fake_shows_a_pushed_head_only_after_the_delay(world: World) -> None:
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    old = pr.head.sha
    world.fake.settings.head_sha_delay = 3600.0  # lags for the whole test, however loaded the machine
    new = commit(world.bare, old, {"src/feature.py": "value = 2\n"}, "more")
    git.update_ref(world.bare, "refs/heads/feature", new, old)
    assert world.repo().get_pull(pr.number).head.sha == old
    assert [f.patch for f in world.repo().get_pull(pr.number).get_files()] == ["@@ -0,0 +1 @@\n+value = 1"]
    world.fake.settings.head_sha_delay = 0.01  # the delay is over once this much time has passed
    time.sleep(0.02)  # a lower bound: sleeping longer on a loaded machine changes nothing
    assert world.repo().get_pull(pr.number).head.sha == new


def conflicting_run_on_a_pr(world: World) -> tuple[int, str]:
    push_branch(world.bare, "feature", {"src/feature.py": "value = 1\n"}, "feature")
    pr = world.repo().create_pull(base="main", head="feature", title="Feature", body="Please review.")
    plan = swarm_plan(
        replace_sub("one", "src/app.py", "line 10\n", "line ten (one)\n"),
        replace_sub("two", "src/app.py", "line 10\n", "line ten (two)\n"),
    )
    payload = world.commented(pr.number, f"/swarm go\n{plan}", on_pr=True)
    assert main(world.env("issue_comment", payload)) == 0
    return pr.number, git.rev_parse(world.bare, "refs/heads/feature")


def test_review_comments_anchor_on_the_pushed_commit_when_github_lags(world: World) -> None:
    world.fake.settings.head_sha_delay = 1.0
    number, pushed = conflicting_run_on_a_pr(world)
    comments = list(world.repo().get_pull(number).get_review_comments())
    assert len(comments) == 1
    assert comments[0].path == "src/app.py"
    assert comments[0].commit_id == pushed


def test_a_pr_that_never_shows_the_commit_gets_no_misplaced_comment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.fake.settings.head_sha_delay = 60.0
    real = Publisher.__init__

    def short_wait(self: Publisher, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        self.head_wait = 0.5

    monkeypatch.setattr(Publisher, "__init__", short_wait)
    number, _ = conflicting_run_on_a_pr(world)
    assert list(world.repo().get_pull(number).get_review_comments()) == []
    comments = [c.body for c in world.repo().get_issue(number).get_comments()]
    assert any("did not show the pushed commit" in body for body in comments)


def test_a_run_on_a_pr_names_the_prs_branch(world: World) -> None:
    conflicting_run_on_a_pr(world)
    out = world.read_outputs()
    assert out["branch"] == "feature"
    unpushed = re.compile(rf"swarm/{re.escape(out['run_id'])}(?!-agents)")
    assert not unpushed.search(world.summary.read_text())
    assert "`feature`" in world.summary.read_text()
