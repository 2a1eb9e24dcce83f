"""Nothing secret is pushed (issue #9, item 5), through ``python -m ci_swarm action`` against the fake GitHub:
an agent branch whose commits hold the run's token, or a token-shaped string, is held back with its file and
line named — never the value — while the other branches push; the pull request carries none of its commits;
the exit code is SecretFound's (7). Unit tests of the hold-back on a report built from real commits close it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.action import main
from ci_swarm.errors import SecretFound
from ci_swarm.github.pushing import push_agents, scan_agents, withhold
from ci_swarm.merge_only import remerge
from ci_swarm.models import SubtaskStatus
from tests.act_helpers import FILES, TOKEN, World, make_world, swarm_plan, write_sub
from tests.github_helpers import Agent, make_run

CUT = "<cut-here>"
SETTINGS = f'TOKEN = "{TOKEN[:10]}{CUT}{TOKEN[10:]}"\n'  # the token, split: neither base nor issue holds it
TOKEN_SHAPED = "ghp_" + "Zx9Qw3Er5Ty7Ui1Op2As4Df6Gh8Jk0LmNbVc"  # a GitHub token format, not the run's


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, {**FILES, "config/settings.py": SETTINGS})


def leak_sub(sub_id: str = "leak", **extra: Any) -> dict[str, Any]:
    """A scripted agent (trusted plan data) whose edit joins the split token in config/settings.py."""
    edit = {"replace": "config/settings.py", "old": CUT, "new": ""}
    agent = {"kind": "scripted", "edits": [edit], **extra}
    return {"id": sub_id, "role": "builder", "title": "tidy settings", "paths": ["config/**"], "agent": agent}


def run_issue(world: World, *subs: dict[str, Any]) -> tuple[int, Any]:
    issue = world.issue("Some work", f"Please.\n\n{swarm_plan(*subs)}", labels=("swarm",))
    return main(world.env("issues", world.labeled(issue))), issue


def comments(world: World, number: int) -> str:
    return "\n".join(c.body for c in world.repo().get_issue(number).get_comments())


def agent_branches(world: World) -> set[str]:
    return {b.rsplit("/", 1)[-1] for b in world.remote_branches() if "-agents/" in b}


def pushed_objects(world: World) -> bytes:
    """Every object of the fake's repository, raw."""
    argv = ["git", "cat-file", "--batch-all-objects", "--batch"]
    return subprocess.run(argv, cwd=world.bare, capture_output=True, check=True).stdout


def run_output(world: World, captured: pytest.CaptureFixture[str]) -> bytes:
    """The step's outputs, job summary, stdout and stderr."""
    out = captured.readouterr()
    return "".join((world.outputs.read_text(), world.summary.read_text(), out.out, out.err)).encode()


def everything_published(world: World, captured: pytest.CaptureFixture[str]) -> bytes:
    """Every byte that left the run: API request and response bodies, pushed objects, outputs, job
    summary, stdout and stderr."""
    api = b"".join(x.request_body + x.response_body for x in world.fake.traffic)
    return api + pushed_objects(world) + run_output(world, captured)


def test_a_branch_holding_the_token_is_held_back_and_the_others_land(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, issue = run_issue(world, leak_sub(), write_sub("docs", "docs/ok.md", "fine\n"))
    assert code == SecretFound.exit_code == 7
    assert agent_branches(world) == {"docs"}  # the leaking branch never reached the remote
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    assert [f.filename for f in pr.get_files()] == ["docs/ok.md"]  # re-merged without the held-back one
    said = comments(world, issue.number)
    assert "was held back" in said and "config/settings.py:1" in said and "run secret" in said
    assert "config/settings.py:1" in pr.body  # the report's row for the subtask says where
    published = everything_published(world, capsys)
    assert TOKEN.encode() not in published
    assert b"config/settings.py:1" in published  # the annotation and the summary name the place too


def test_a_token_format_in_a_scripted_edit_is_held_back(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, issue = run_issue(
        world,
        write_sub("creds", "deploy/creds.txt", f"user: bot\ntoken: {TOKEN_SHAPED}\n"),
        write_sub("docs", "docs/ok.md", "fine\n"),
    )
    assert code == 7
    assert agent_branches(world) == {"docs"}
    said = comments(world, issue.number)
    assert "deploy/creds.txt:2" in said and "GitHub token" in said
    # the issue's own text holds it (the user wrote it there); nothing ci-swarm pushed or printed does
    assert TOKEN_SHAPED.encode() not in pushed_objects(world) + run_output(world, capsys)


def failing_write(sub_id: str, path: str) -> dict[str, Any]:
    sub = write_sub(sub_id, path, "half done\n")
    sub["agent"]["fail"] = "gave up"
    return sub


def test_a_failed_agent_branch_is_pushed_only_when_clean(world: World) -> None:
    code, issue = run_issue(
        world,
        leak_sub("broken", fail="gave up"),
        failing_write("tried", "docs/tried.md"),
        write_sub("docs", "docs/ok.md", "fine\n"),
    )
    assert code == 7  # a held-back branch outranks failed subtasks (3)
    assert agent_branches(world) == {"tried", "docs"}
    assert "config/settings.py:1" in comments(world, issue.number)


def test_a_clean_run_is_unchanged(world: World) -> None:
    code, _ = run_issue(world, write_sub("docs", "docs/ok.md", "fine\n"))
    assert code == 0
    assert agent_branches(world) == {"docs"}


# --- the hold-back on a report built from real commits ------------------------------------------------


def test_withhold_re_merges_without_the_held_back_subtask(tmp_path: Path) -> None:
    from tests.fixtures import make_repo

    work = make_repo(tmp_path / "work", {"a.txt": "a\n"})
    report = make_run(work, [Agent("leak", {"k.txt": f"{TOKEN}\n"}), Agent("ok", {"b.txt": "b\n"})])
    held = scan_agents(work, report, [TOKEN])
    assert [(h.subtask, str(h.findings[0]).split(" ", 1)[1]) for h in held] == [
        ("leak", "k.txt:1: run secret")
    ]
    assert TOKEN not in str(held[0]) and TOKEN not in repr(held)
    clean = withhold(report, held, lambda r, tip: remerge(work, r, tip))
    assert clean.integration_branch == report.integration_branch
    assert git.tree_files(work, clean.integration_commit) == ("a.txt", "b.txt")
    leak = next(s for s in clean.subtasks if s.id == "leak")
    assert leak.status is SubtaskStatus.FAILED and "k.txt:1" in leak.error
    assert [m.subtask for m in clean.merges] == ["ok"]


def test_push_agents_never_pushes_a_held_back_branch(tmp_path: Path) -> None:
    from tests.fixtures import make_repo

    work = make_repo(tmp_path / "work", {"a.txt": "a\n"})
    remote = tmp_path / "remote.git"
    git.run(tmp_path, "init", "--quiet", "--bare", str(remote))
    report = make_run(
        work, [Agent("leak", {"k.txt": f"x = '{TOKEN_SHAPED}'\n"}), Agent("ok", {"b.txt": "b\n"})]
    )
    result = push_agents(work, str(remote), report, "", [])
    assert result.pushed == ("swarm/r1-agents/ok",)
    assert [h.branch for h in result.held] == ["swarm/r1-agents/leak"]
    assert git.try_rev_parse(remote, "refs/heads/swarm/r1-agents/leak") is None


def test_pushing_is_the_only_module_that_pushes() -> None:
    """Every push goes through the scan: ``git.push`` is called from ``github/pushing.py`` alone."""
    import ast

    package = Path(__file__).resolve().parents[1] / "ci_swarm"
    callers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            target = node.value if isinstance(node, ast.Attribute) and node.attr == "push" else None
            if isinstance(target, ast.Name) and target.id == "git":
                callers.add(path.relative_to(package).as_posix())
    assert callers == {"github/pushing.py"}
