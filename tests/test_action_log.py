"""The Action's stdout and stderr as the runner reads them: no untrusted text (subtask title, role, failure
reason, issue title, error) ever starts a line or a workflow command. In process, against the fake GitHub."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm.action import main
from tests.act_helpers import World, make_world, swarm_plan, write_sub

INJECTIONS = ("::add-mask::", "::error::", "::set-output", "::stop-commands::", "::warning::", "##[")
HOSTILE = "x\n::add-mask::s3cret\r::error::boom\n::set-output name=pr_url::evil\n::stop-commands::pwn\n##[x]"
# the only command lines ci-swarm writes itself
OURS = re.compile(
    r"::(group::.*|endgroup::|error title=ci-swarm[^:]*::.*|warning title=ci-swarm[^:]*::.*|notice::.*"
    r"|stop-commands::[0-9a-f]{32}|[0-9a-f]{32}::)"
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def command_lines(text: str) -> list[str]:
    """The lines the runner would act on: outside our stop-commands blocks, starting (after blanks) with
    ``::`` or holding ``##[``."""
    found, token = [], ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if token:
            token = "" if line == f"::{token}::" else token
            continue
        if line.startswith("::stop-commands::"):
            token = line.removeprefix("::stop-commands::")
        if line.startswith("::") or "##[" in line:
            found.append(line)
    return found


def hostile_plan() -> str:
    fails = write_sub("fails", "b.txt", "b\n", role=f"builder{HOSTILE}")
    fails["agent"]["fail"] = f"reason{HOSTILE}"
    fails["title"] = f"fail{HOSTILE}"
    ok = write_sub("ok", "a.txt", "a\n")
    ok["title"] = f"write{HOSTILE}"
    return swarm_plan(ok, fails, task=f"task{HOSTILE}")


def assert_inert(text: str) -> None:
    for line in command_lines(text):
        assert OURS.fullmatch(line), line
        data = line.partition("::")[2].partition("::")[2]
        assert "\n" not in data and "\r" not in data
    for raw in text.splitlines():
        if not raw.lstrip().startswith("::"):
            assert not any(raw.lstrip().startswith(x) for x in INJECTIONS), raw


def test_hostile_titles_roles_and_reasons_never_start_a_command(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = world.issue(f"Please{HOSTILE}", hostile_plan(), labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 3  # one subtask failed, the other landed
    captured = capsys.readouterr()
    assert "reason" in captured.out and "s3cret" in captured.out  # the text is shown, folded or escaped
    assert_inert(captured.out)
    assert_inert(captured.err)
    errors = [line for line in command_lines(captured.out) if line.startswith("::error")]
    assert any("subtask fails failed: reason" in line for line in errors)


def test_a_hostile_refusal_and_error_stay_inert(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    bad = swarm_plan(write_sub(f"bad{HOSTILE}", "a.txt", "a\n"))  # an invalid id: the error quotes it
    issue = world.issue("Bad id", bad, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 4
    captured = capsys.readouterr()
    assert_inert(captured.out)
    assert_inert(captured.err)
    stranger = world.issue(f"From a stranger{HOSTILE}", "hi", labels=("swarm",))
    assert main(world.env("issues", world.labeled(stranger, sender=f"reader{HOSTILE}"))) == 0
    captured = capsys.readouterr()
    assert_inert(captured.out)
    assert_inert(captured.err)
