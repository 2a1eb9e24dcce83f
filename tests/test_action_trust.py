"""Who may start the Action and whose plan it follows, through ``python -m ci_swarm action``'s entry (in
process) against the fake GitHub, with payloads from @octokit/webhooks-examples (tests/data/events) and
``author_association`` filled in as github.com sends it for each person."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_swarm.action import main
from ci_swarm.github.event import SELF_MARKER
from ci_swarm.testing.fake_github import BOT_LOGIN
from tests.act_helpers import MAINTAINER, World, load_event, make_world, replace_sub, swarm_plan
from tests.helpers import SANDBOX_PY
from tests.openapi_helpers import traffic_problems

MADE = "open('made.txt', 'w').write('made by a command agent\\n')"
CONFIG = f"allowed_commands:\n  - {json.dumps([SANDBOX_PY, '-c'])}\n"
NO_KEY = "ANTHROPIC_API_KEY is not set"  # the planner was asked: no written plan was honoured


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The fake GitHub world with an organisation's people, and the config allowing one command; all
    traffic must match GitHub's OpenAPI description."""
    problems: list[str] = []
    for each in make_world(tmp_path):
        each.fake.add_user("org-reader", "read", member="public")  # arrives as MEMBER
        each.fake.add_user("quiet-maintainer", "write", member="private", contributor=True)  # CONTRIBUTOR
        each.commit_to_default({".github/ci-swarm.yml": CONFIG})
        yield each
        problems = traffic_problems(each.fake.traffic)
    assert not problems, "GitHub traffic off the description:\n" + "\n".join(problems)


def association(world: World, login: str) -> str:
    return world.fake.store.association(world.fake.repo(world.name), login)


def commented(world: World, number: int, text: str, login: str, *, kind: str = "User") -> dict[str, Any]:
    payload = world.commented(number, text, on_pr=False, login=login, association=association(world, login))
    payload["comment"]["user"]["type"] = payload["sender"]["type"] = kind
    return payload


def made_by_command(world: World) -> dict[str, Any]:
    return {
        "id": "cmd",
        "role": "builder",
        "title": "run a tool",
        "agent": {"kind": "command", "run": [SANDBOX_PY, "-c", MADE]},
    }


def docs_plan() -> str:
    return swarm_plan(replace_sub("docs", "README.md", "Run it.", "Run it with care."))


def swarm_branches(world: World) -> set[str]:
    return {b for b in world.remote_branches() if b.startswith("swarm/")}


def comments(world: World, number: int) -> list[str]:
    return [c.body for c in world.repo().get_issue(number).get_comments()]


def labels(world: World, number: int) -> list[str]:
    return [label.name for label in world.repo().get_issue(number).get_labels()]


# ------------------------------------------------------------------------------------------ commenters


def test_fake_sends_associations_as_github_does(world: World) -> None:
    assert association(world, "org-reader") == "MEMBER"
    assert association(world, "quiet-maintainer") == "CONTRIBUTOR"
    assert association(world, MAINTAINER) == "COLLABORATOR"
    assert association(world, "octo") == "OWNER"
    assert association(world, "dependabot[bot]") == "NONE"


def test_an_org_member_with_read_access_is_refused_with_a_reply(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = world.issue("Docs", "The README needs care.")
    payload = commented(world, issue.number, f"/swarm go\n{docs_plan()}", "org-reader")
    assert payload["comment"]["author_association"] == "MEMBER"
    assert main(world.env("issue_comment", payload)) == 0
    assert "@org-reader has 'read' permission, not write access: refused" in capsys.readouterr().out
    (reply,) = comments(world, issue.number)
    assert "write access or more" in reply
    assert "(@org-reader: read)" in reply
    assert SELF_MARKER in reply
    assert swarm_branches(world) == set()


def test_a_private_member_with_write_access_runs(world: World) -> None:
    issue = world.issue("Docs", "The README needs care.")
    payload = commented(world, issue.number, f"/swarm go\n{docs_plan()}", "quiet-maintainer")
    assert payload["comment"]["author_association"] == "CONTRIBUTOR"
    assert main(world.env("issue_comment", payload)) == 0
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    assert [f.filename for f in pr.get_files()] == ["README.md"]


def test_a_bot_not_listed_is_refused_silently(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    issue = world.issue("Deps", "Bump them.")
    writes = world.writes()
    payload = commented(world, issue.number, f"/swarm go\n{docs_plan()}", "dependabot[bot]", kind="Bot")
    assert main(world.env("issue_comment", payload)) == 0
    assert "@dependabot[bot] is a bot not listed in allowed_bots: ignored" in capsys.readouterr().out
    assert world.writes() == writes  # no reply, no reaction, nothing
    assert not any("/permission" in x.path for x in world.fake.traffic)


def test_a_bot_listed_by_name_runs_without_asking_the_permission_api(world: World) -> None:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG + "allowed_bots: [dependabot]\n"})
    issue = world.issue("Docs", "The README needs care.")
    payload = commented(world, issue.number, f"/swarm go\n{docs_plan()}", "dependabot[bot]", kind="Bot")
    assert main(world.env("issue_comment", payload)) == 0
    assert world.read_outputs()["pr_number"]
    # github.com answers 404 "... is not a user" for a bot: ci-swarm never asks
    assert not any("/permission" in x.path for x in world.fake.traffic)


def test_the_swarms_own_identity_never_triggers(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG + f"allowed_bots: ['{BOT_LOGIN}']\n"})
    issue = world.issue("Docs", "The README needs care.")
    writes = world.writes()
    payload = commented(world, issue.number, f"/swarm go\n{docs_plan()}", BOT_LOGIN, kind="Bot")
    assert main(world.env("issue_comment", payload)) == 0
    assert f"@{BOT_LOGIN} is ci-swarm's own identity: ignored" in capsys.readouterr().out
    assert world.writes() == writes


# ------------------------------------------------------------------------------------------ plan blocks


HIDDEN = {
    "html-comment": "<!--\n{plan}-->\n",
    "details": "<details>\n<summary>notes</summary>\n\n{plan}\n</details>\n",
    "blockquote": "{quoted}",
}


@pytest.mark.parametrize("how", sorted(HIDDEN))
def test_a_hidden_plan_is_not_honoured_even_from_a_maintainer(
    world: World, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = swarm_plan(made_by_command(world))
    quoted = "".join(f"> {line}\n" for line in plan.splitlines())
    body = "Please tidy the README.\n\n" + HIDDEN[how].format(plan=plan, quoted=quoted)
    issue = world.issue("Tidy", body, labels=("swarm",))
    code = main(world.env("issues", world.labeled(issue)))
    assert code != 0
    assert NO_KEY in capsys.readouterr().out  # task text for the planner, which needs a model
    assert swarm_branches(world) == set()  # the command agent never ran


def test_a_trusted_authors_top_level_plan_is_honoured(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = world.issue("Docs", f"Please.\n\n{docs_plan()}", labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue, author=MAINTAINER))) == 0
    assert f"plan from @{MAINTAINER}'s issue body" in capsys.readouterr().out
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    assert [f.filename for f in pr.get_files()] == ["README.md"]
    # the PR says so too (the mention defused by the neutraliser: nobody is pinged)
    assert f"plan from @{MAINTAINER}'s issue body" in pr.body.replace("\u2060", "")


def test_a_strangers_plan_labelled_by_a_maintainer_is_task_text(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = world.issue("Make a file", f"Please.\n\n{swarm_plan(made_by_command(world))}", labels=("swarm",))
    code = main(world.env("issues", world.labeled(issue, author="stranger")))
    out = capsys.readouterr().out
    assert code != 0
    assert "task text only: the swarm-plan block of the issue body is ignored" in out
    assert "@stranger has 'none' permission" in out
    assert NO_KEY in out
    assert swarm_branches(world) == set()


# ------------------------------------------------------------------------------ triggers as sent


def test_a_capitalised_label_starts_the_run_and_is_removed(world: World) -> None:
    issue = world.issue("Docs", f"Care.\n\n{docs_plan()}", labels=("Swarm",))
    assert main(world.env("issues", world.labeled(issue, label="Swarm"))) == 0
    assert world.read_outputs()["pr_number"]
    assert labels(world, issue.number) == []


def test_a_capitalised_command_starts_the_run(world: World) -> None:
    issue = world.issue("Docs", "The README needs care.")
    payload = commented(world, issue.number, f"/SWARM go\n{docs_plan()}", MAINTAINER)
    assert main(world.env("issue_comment", payload)) == 0
    assert world.read_outputs()["pr_number"]


def test_a_schedule_without_repository_runs_on_github_repository(world: World) -> None:
    nightly = docs_plan().removeprefix("```swarm-plan\n").removesuffix("```\n")
    config = CONFIG + 'maintenance:\n  - name: tidy\n    cron: "0 3 * * 1"\n    plan: plans/tidy.yml\n'
    world.commit_to_default({".github/ci-swarm.yml": config, "plans/tidy.yml": nightly})
    payload = load_event("schedule.no-repository.json")  # what older GHES sends
    assert main(world.env("schedule", payload)) == 0
    assert world.read_outputs()["branch"] == "swarm/maintenance/tidy"
    (pr,) = list(world.repo().get_pulls(state="open"))
    assert pr.title == "ci-swarm maintenance: tidy"  # no double prefix


def test_a_closed_issue_that_gets_labelled_is_refused(world: World) -> None:
    issue = world.issue("Docs", f"Care.\n\n{docs_plan()}", labels=("swarm",))
    payload = world.labeled(issue)  # the issues.labeled example, as GitHub sends it for a closed issue:
    payload["issue"].update(state="closed", closed_at="2026-01-02T03:04:05Z", state_reason="completed")
    assert main(world.env("issues", payload)) == 0
    (reply,) = comments(world, issue.number)
    assert reply.startswith("This issue is closed")
    assert labels(world, issue.number) == []
    assert swarm_branches(world) == set()


def test_a_label_already_removed_is_not_an_error(world: World) -> None:
    issue = world.issue("Do the thing", None)  # someone removed the label before the run got to it
    assert main(world.env("issues", world.labeled(issue))) == 0
    (reply,) = comments(world, issue.number)
    assert reply.startswith("This issue has no description")
    (delete,) = [x for x in world.fake.traffic if x.method == "DELETE"]
    assert delete.status == 404
    assert json.loads(delete.response_body)["message"] == "Label does not exist"


# ------------------------------------------------------------------------ as action.yml execs it


def test_as_its_own_process_a_reader_is_refused_and_a_listed_bot_runs(world: World) -> None:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG + "allowed_bots: [renovate]\n"})
    issue = world.issue("Docs", "The README needs care.")
    argv = [sys.executable, "-m", "ci_swarm", "action"]
    reader = world.env("issue_comment", commented(world, issue.number, "/Swarm go", "org-reader"))
    done = subprocess.run(argv, env=reader, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "@org-reader has 'read' permission, not write access: refused" in done.stdout
    assert len(comments(world, issue.number)) == 1
    text = f"/swarm go\n{docs_plan()}"
    bot = world.env("issue_comment", commented(world, issue.number, text, "renovate[bot]", kind="Bot"))
    done = subprocess.run(argv, env=bot, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.read_outputs()["pr_number"]
