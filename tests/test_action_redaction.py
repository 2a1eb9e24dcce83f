"""The Action redacts the runner's own secret values from what reports show of agents' output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm.action import main
from tests.act_helpers import World, make_world, swarm_plan
from tests.test_action_security import command_sub

SECRET = "pw-" + "Tr0ub4dor-and-3" * 2  # built at run time: no secret-looking literal in the repository


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def test_an_agents_output_tail_shows_no_runner_secret(world: World) -> None:
    world.commit_to_default(
        {".github/ci-swarm.yml": 'allowed_commands:\n  - ["sh", "-c"]\n', "notes/pw.txt": f"{SECRET}\n"}
    )
    plan = swarm_plan(command_sub(["sh", "-c", "cat notes/pw.txt; echo done > done.txt"]))
    issue = world.issue("Print it", f"Please.\n\n{plan}", labels=("swarm",))
    env = {**world.env("issues", world.labeled(issue)), "DATABASE_PASSWORD": SECRET}
    assert main(env) == 0
    summary = world.summary.read_text(encoding="utf-8")
    assert "done" in summary and "***" in summary  # the tail is shown, the value redacted
    assert SECRET not in summary
    comments = [c.body for c in world.repo().get_issue(issue.number).get_comments()]
    assert all(SECRET not in body for body in comments)
