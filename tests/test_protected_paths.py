"""Protected paths by default: all of .github/**, action.yml/action.yaml at any depth, and the config file
that was read — through the Action against the fake GitHub, and as config values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm.action import main
from ci_swarm.config import Config, config_from_text
from tests.act_helpers import World, make_world, swarm_plan, write_sub


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


@pytest.mark.parametrize(
    "path",
    [
        ".github/workflows/ci.yml",
        ".github/actions/setup/action.yml",
        ".github/CODEOWNERS",
        ".github/dependabot.yml",
        ".github/ci-swarm.yml",
        "action.yml",
        "action.yaml",
        "tools/deploy/action.yaml",
    ],
)
def test_the_default_protects(path: str) -> None:
    assert Config().is_protected(path)


@pytest.mark.parametrize("path", ["src/app.py", "docs/action.md", "github/x.yml", "action.yml.bak"])
def test_the_default_leaves_ordinary_files_alone(path: str) -> None:
    assert not Config().is_protected(path)


def test_the_config_file_read_is_protected_even_when_the_list_is_replaced() -> None:
    config = config_from_text("protected_paths: [deploy/**]\n", source="ci/swarm.yml")
    assert config.is_protected("ci/swarm.yml")
    assert config.is_protected("deploy/x")
    assert not config.is_protected(".github/workflows/ci.yml")  # the user replaced the list


def test_a_plan_rewriting_a_local_action_pushes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = swarm_plan(
        write_sub("setup", ".github/actions/setup/action.yml", "runs: {using: composite, steps: []}\n"),
        write_sub("ok", "a.txt", "a\n"),
    )
    issue = world.issue("Tidy the setup", plan, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 4
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
    assert errors == [
        "::error title=ci-swarm::the swarm changed protected paths (.github/actions/setup/action.yml): "
        "nothing was pushed"
    ]
    assert world.remote_branches() == {"main"}


def test_a_plan_rewriting_a_nested_action_yaml_pushes_nothing(world: World) -> None:
    plan = swarm_plan(write_sub("act", "tools/lint/action.yaml", "runs: {using: node20, main: x.js}\n"))
    issue = world.issue("Lint action", plan, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 4
    assert world.remote_branches() == {"main"}
