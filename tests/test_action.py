"""The action's entry (`python -m ci_swarm action`) in process, against the fake GitHub over real HTTP, with
real git: what a maintainer sees for each trigger, every refusal, and every bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from github import Auth, Github

from ci_swarm import git
from ci_swarm.action import Inputs, apply_inputs, default_agent, main, parse_inputs, plan_from_text
from ci_swarm.config import Budget, Config, config_from_text
from ci_swarm.errors import PlanError, UsageError
from ci_swarm.github.event import SELF_MARKER
from ci_swarm.models import AgentSpec, RunReport
from ci_swarm.naming import agent_branch
from ci_swarm.ports import Published
from ci_swarm.testing.anthropic_script import ScriptedSubtask, edit_file_call, task_script, write_file_call
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from tests.act_helpers import (
    MAINTAINER,
    TOKEN,
    World,
    make_world,
    push_branch,
    replace_sub,
    swarm_plan,
    write_sub,
)
from tests.openapi_helpers import traffic_problems

ROOT = Path(__file__).resolve().parents[1]


# Tests that make GitHub answer 422 on purpose: their 422s are not failures at teardown.
PROVOKES_422 = frozenset(
    {
        # a maintenance shard whose scripted agents change nothing: the publisher learns that there is
        # nothing to propose from GitHub's 422 "No commits between main and swarm/maintenance/hints"
        "test_dispatch_with_a_plan_file_and_a_shard_job",
    }
)


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """The fake GitHub world; at teardown every exchange it recorded must match GitHub's OpenAPI description
    and none may be a 422 (GitHub refusing what was sent)."""
    problems: list[str] = []
    for each in make_world(tmp_path):
        yield each
        allow_422 = request.node.originalname in PROVOKES_422
        problems = traffic_problems(each.fake.traffic, allow_422=allow_422)
    assert not problems, "GitHub traffic off the description:\n" + "\n".join(problems)


def progress_comments(world: World, number: int) -> list[str]:
    return [c.body for c in world.repo().get_issue(number).get_comments() if "ci-swarm:progress" in c.body]


# ------------------------------------------------------------------------------------ the label case


def test_label_with_a_plan_block_opens_a_pr_that_closes_the_issue(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = swarm_plan(
        write_sub("code", "src/greet.py", "def greet():\n    return 'hi'\n"),
        replace_sub("docs", "README.md", "Run it.", "Run it, then greet.", role="documenter"),
    )
    issue = world.issue("Add a greeting", f"We want a greeting.\n\n{plan}", labels=("swarm",))
    code = main(world.env("issues", world.labeled(issue)))
    assert code == 0
    out = world.read_outputs()
    pr = world.repo().get_pull(int(out["pr_number"]))
    assert pr.title == "ci-swarm: Add a greeting"
    assert f"Closes #{issue.number}" in pr.body
    assert pr.head.ref == out["branch"] == f"swarm/{out['run_id']}"
    assert pr.html_url == out["pr_url"]
    assert sorted(f.filename for f in pr.get_files()) == ["README.md", "src/greet.py"]
    assert (out["conflicts"], out["failed"], out["tokens"]) == ("0", "0", "0")
    assert re.fullmatch(r"\d+\.\d\d", out["speedup"])  # a figure, whatever the load (zero agent time: 0.00)
    # every agent branch is pushed too, and the label is gone so it can be added again
    assert {
        agent_branch("swarm", out["run_id"], "code"),
        agent_branch("swarm", out["run_id"], "docs"),
    } <= world.remote_branches()
    assert [label.name for label in world.repo().get_issue(issue.number).get_labels()] == []
    (progress,) = progress_comments(world, issue.number)
    assert "finished" in progress
    assert "`code`" in progress and "`docs`" in progress
    reactions = {r.content for r in world.repo().get_issue(issue.number).get_reactions()}
    assert {"eyes", "rocket"} <= reactions
    assert "# " in world.summary.read_text()  # the Markdown report is in the job summary
    assert TOKEN not in capsys.readouterr().out


def test_conflicting_agents_give_a_review_comment_and_exit_0(world: World) -> None:
    plan = swarm_plan(
        replace_sub("one", "src/app.py", "line 10\n", "line ten (one)\n"),
        replace_sub("two", "src/app.py", "line 10\n", "line ten (two)\n"),
    )
    issue = world.issue("Rename line 10", plan, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 0
    out = world.read_outputs()
    assert out["conflicts"] == "1"
    pr = world.repo().get_pull(int(out["pr_number"]))
    comments = list(pr.get_review_comments())
    assert len(comments) == 1
    assert comments[0].path == "src/app.py"
    assert "```suggestion" in comments[0].body


@pytest.mark.parametrize(
    ("config", "merge", "kept"),
    [
        ("merge: {order: plan}\n", None, "line ten (builder)"),
        ("merge: {order: plan, prefer: [documenter]}\n", None, "line ten (documenter)"),
        ("merge: {order: plan, prefer: [documenter]}\n", {"prefer": "first"}, "line ten (builder)"),
    ],
)
def test_merge_preference_from_the_config_unless_the_plan_has_its_own(
    world: World, config: str, merge: dict[str, str] | None, kept: str
) -> None:
    world.commit_to_default({".github/ci-swarm.yml": config})
    fast = replace_sub("fast", "src/app.py", "line 10\n", "line ten (builder)\n")
    slow = replace_sub("slow", "src/app.py", "line 10\n", "line ten (documenter)\n", role="documenter")
    block = swarm_plan(fast, slow)  # merged in plan order: fast first, slow second
    if merge:
        block = block.replace("subtasks:", f"merge: {{order: plan, prefer: {merge['prefer']}}}\nsubtasks:", 1)
    issue = world.issue("Line ten", block, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 0
    out = world.read_outputs()
    assert out["conflicts"] == "1"
    assert kept.encode() in git.read_blob(world.bare, f"{out['branch']}:src/app.py")


def test_failed_subtask_still_publishes_and_exits_3(world: World) -> None:
    bad = {"id": "bad", "role": "builder", "title": "fails", "agent": {"kind": "scripted", "fail": "no luck"}}
    plan = swarm_plan(write_sub("good", "src/good.py", "ok = True\n"), bad)
    issue = world.issue("Partly", plan, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 3
    out = world.read_outputs()
    assert out["failed"] == "1"
    pr = world.repo().get_pull(int(out["pr_number"]))
    assert [f.filename for f in pr.get_files()] == ["src/good.py"]
    reactions = {r.content for r in world.repo().get_issue(issue.number).get_reactions()}
    assert "confused" in reactions


def test_swarm_plan_with_an_error_names_the_block_and_removes_the_label(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = world.issue("Broken plan", "```swarm-plan\nsubtasks: [\n```\n", labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 4
    out = capsys.readouterr().out
    assert f"::error title=ci-swarm::the swarm-plan block of #{issue.number}:2: malformed YAML" in out
    (said,) = [c.body for c in world.repo().get_issue(issue.number).get_comments()]
    assert f"the swarm-plan block of #{issue.number}:2: malformed YAML" in said
    assert [label.name for label in world.repo().get_issue(issue.number).get_labels()] == []
    assert "swarm/" not in " ".join(world.remote_branches())


def test_protected_paths_are_never_pushed(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    plan = swarm_plan(
        write_sub("evil", ".github/workflows/x.yml", "on: push\n"), write_sub("ok", "a.txt", "a\n")
    )
    issue = world.issue("Sneaky", plan, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 4
    assert "changed protected paths (.github/workflows/x.yml): nothing was pushed" in capsys.readouterr().out
    assert world.remote_branches() == {"main"}
    (progress,) = progress_comments(world, issue.number)
    assert "**Failed:** the swarm changed protected paths" in progress


def test_dry_run_writes_nothing_to_github(world: World) -> None:
    issue = world.issue("Dry", swarm_plan(write_sub("a", "a.txt", "a\n")), labels=("swarm",))
    writes_before = world.writes()
    assert main(world.env("issues", world.labeled(issue), dry_run="true")) == 0
    assert world.writes() == writes_before
    out = world.read_outputs()
    assert out["pr_number"] == ""
    assert git.branch_exists(world.workspace, out["branch"])  # the run happened in the checkout


# ---------------------------------------------------------------------------------- the comment case


def test_swarm_comment_on_a_pr_pushes_onto_its_branch(world: World) -> None:
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    plan = swarm_plan(write_sub("tests", "tests/test_feature.py", "def test_value():\n    assert True\n"))
    payload = world.commented(pr.number, f"/swarm add a test for it\n{plan}", on_pr=True)
    head_before = pr.head.sha
    assert main(world.env("issue_comment", payload)) == 0
    out = world.read_outputs()
    assert (out["branch"], out["pr_number"]) == ("feature", str(pr.number))
    after = world.repo().get_pull(pr.number)
    assert git.is_ancestor(world.bare, head_before, after.head.sha)
    assert sorted(f.filename for f in after.get_files()) == ["src/feature.py", "tests/test_feature.py"]
    assert after.body == "Please review."  # the PR body is left alone
    assert len(list(world.repo().get_pulls(state="all"))) == 1
    (progress,) = progress_comments(world, pr.number)
    assert "Run report" in progress


def test_comment_without_a_plan_needs_the_planner_key(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    env = world.env("issue_comment", world.commented(pr.number, "/swarm add tests", on_pr=True))
    assert main(env) == 6
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().out
    (said,) = [c.body for c in world.repo().get_issue(pr.number).get_comments()]
    assert said.startswith("ci-swarm could not run. **Failed:** ")
    assert "ANTHROPIC_API_KEY" in said
    assert SELF_MARKER in said


def test_comment_on_a_pr_with_claude_plans_with_the_diff_and_edits_with_tools(world: World) -> None:
    """No plan block: the Claude planner (fake Anthropic API, real SDK) plans from the comment plus the PR's
    title, body and diff; Claude agents edit with the tools; the result lands on the PR's branch."""
    pr = world.pull_request("feature", {"src/feature.py": "VALUE = 1\n"})
    script = task_script(
        (
            ScriptedSubtask(
                "code",
                "builder",
                "Use VALUE",
                paths=("src/use.py",),
                calls=(write_file_call("src/use.py", "from src.feature import VALUE\n"),),
            ),
            ScriptedSubtask(
                "docs",
                "documenter",
                "Document VALUE",
                paths=("README.md",),
                calls=(edit_file_call("README.md", "Run it.", "Run it; VALUE is 1."),),
            ),
        )
    )
    with FakeAnthropic(script) as claude:
        env = world.env(
            "issue_comment", world.commented(pr.number, "/swarm use VALUE and document it", on_pr=True)
        )
        env.update(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=claude.base_url)
        assert main(env) == 0
        planner_request = json.dumps(claude.requests[0].body)
    assert "use VALUE and document it" in planner_request
    assert "src/feature.py" in planner_request  # the PR's diff was given as context
    after = world.repo().get_pull(pr.number)
    assert sorted(f.filename for f in after.get_files()) == ["README.md", "src/feature.py", "src/use.py"]
    assert b"VALUE is 1" in git.read_blob(world.bare, "feature:README.md")


def test_comment_on_a_plain_issue_opens_a_pr(world: World) -> None:
    issue = world.issue("Docs", "The README needs a usage section.")
    plan = swarm_plan(replace_sub("docs", "README.md", "Run it.", "Run it with care."))
    assert (
        main(world.env("issue_comment", world.commented(issue.number, f"/swarm go\n{plan}", on_pr=False)))
        == 0
    )
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    assert f"Closes #{issue.number}" in pr.body


# ---------------------------------------------------------------------------------------- refusals


def test_commenter_without_write_access_is_refused_with_a_reply(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    writes = world.writes()
    payload = world.commented(
        pr.number, "/swarm delete everything", on_pr=True, login="reader", association="MEMBER"
    )
    assert main(world.env("issue_comment", payload)) == 0
    assert "::notice::@reader has 'read' permission, not write access: refused" in capsys.readouterr().out
    assert world.writes() == [*writes, f"POST /repos/{world.name}/issues/{pr.number}/comments"]
    (reply,) = [c.body for c in world.repo().get_issue(pr.number).get_comments()]
    assert "write access or more" in reply
    assert SELF_MARKER in reply
    assert world.read_outputs() == {}


def test_empty_command_gets_a_usage_reply_that_never_triggers(world: World) -> None:
    issue = world.issue("Something", "Body")
    assert main(world.env("issue_comment", world.commented(issue.number, "/swarm", on_pr=False))) == 0
    (reply,) = [c.body for c in world.repo().get_issue(issue.number).get_comments()]
    assert reply.startswith("Usage: `/swarm <what to do>`")
    assert SELF_MARKER in reply


@pytest.mark.parametrize("sender", ["reader", "triager", "stranger"])
def test_label_by_someone_without_write_access_is_refused(
    world: World, sender: str, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = world.issue("Add a", swarm_plan(write_sub("a", "a.txt", "a\n")), labels=("swarm",))
    writes = world.writes()
    assert main(world.env("issues", world.labeled(issue, sender=sender))) == 0
    assert f"::notice::@{sender} has " in capsys.readouterr().out
    assert world.writes() == [
        *writes,
        f"POST /repos/{world.name}/issues/{issue.number}/comments",  # the reply saying why
        f"DELETE /repos/{world.name}/issues/{issue.number}/labels/swarm",  # so a maintainer can add it
    ]
    assert world.remote_branches() == {"main"}


def test_label_for_another_label_makes_no_api_call(world: World) -> None:
    issue = world.issue("Bug", "It breaks", labels=("bug",))
    traffic = len(world.fake.traffic)
    assert main(world.env("issues", world.labeled(issue, label="bug"))) == 0
    assert len(world.fake.traffic) == traffic


def test_issue_with_an_empty_body_gets_a_reply_and_loses_the_label(world: World) -> None:
    issue = world.issue("Do the thing", None, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 0
    (reply,) = [c.body for c in world.repo().get_issue(issue.number).get_comments()]
    assert reply.startswith("This issue has no description")
    assert [label.name for label in world.repo().get_issue(issue.number).get_labels()] == []


def test_closed_pr_is_refused_with_a_reply(world: World) -> None:
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    pr.edit(state="closed")
    assert main(world.env("issue_comment", world.commented(pr.number, "/swarm go", on_pr=True))) == 0
    bodies = [c.body for c in world.repo().get_issue(pr.number).get_comments()]
    assert bodies[0].startswith("This pull request is closed")


def test_swarm_comment_on_a_fork_pr_is_refused_with_a_reply_and_pushes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A maintainer's /swarm on a PR whose head is someone's fork: GitHub's payload does not say so, the
    PR (read through the API) does; nothing runs, nothing is pushed anywhere, and a reply explains why."""
    fork_bare = world.fake.add_fork("someone/demo", world.name)
    world.fake.add_token("ghp_SomeoneForkT0ken", "someone", actions=False)
    push_branch(fork_bare, "patch", {"src/feature.py": "value = 1\n"}, "Feature")
    as_someone = Github(
        auth=Auth.Token("ghp_SomeoneForkT0ken"),
        base_url=world.fake.base_url,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    pr = as_someone.get_repo(world.name).create_pull(base="main", head="someone:patch", title="Fork", body="")
    assert world.repo().get_pull(pr.number).head.repo.fork is True
    fork_refs = git.out(fork_bare, "for-each-ref")
    writes = world.writes()
    plan = swarm_plan(write_sub("tests", "tests/test_feature.py", "def test_value():\n    assert True\n"))
    payload = world.commented(pr.number, f"/swarm add a test\n{plan}", on_pr=True)
    assert main(world.env("issue_comment", payload)) == 0
    assert f"::notice::pull request #{pr.number} comes from a fork: refused" in capsys.readouterr().out
    (reply,) = [c.body for c in world.repo().get_issue(pr.number).get_comments()]
    assert reply.startswith("ci-swarm does not run on pull requests from forks (someone/demo)")
    assert SELF_MARKER in reply
    assert world.writes() == [*writes, f"POST /repos/{world.name}/issues/{pr.number}/comments"]
    assert [r for r in world.fake.git_requests if "receive-pack" in r[1]] == []
    assert world.remote_branches() == {"main"}
    assert git.out(fork_bare, "for-each-ref") == fork_refs
    assert world.read_outputs() == {}


def test_other_events_are_a_notice(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.env("push", {"ref": "refs/heads/main"})) == 0
    assert "::notice::ci-swarm does not handle 'push' events: nothing to do" in capsys.readouterr().out


# -------------------------------------------------------------------------------- schedule, dispatch

NIGHTLY = """\
version: 1
task: nightly tidy
subtasks:
  - id: tidy
    role: builder
    title: tidy up
    agent:
      kind: scripted
      edits:
        - {append: README.md, text: "tidied\\n"}
"""


def test_schedule_runs_its_job_and_updates_the_same_pr_next_time(world: World) -> None:
    config = 'maintenance:\n  - name: tidy\n    cron: "0 3 * * 1"\n    plan: .github/swarm/nightly.yml\n'
    world.commit_to_default({".github/ci-swarm.yml": config, ".github/swarm/nightly.yml": NIGHTLY})
    assert main(world.env("schedule", world.scheduled("0 3 * * 1"))) == 0
    first = world.read_outputs()
    assert first["branch"] == "swarm/maintenance/tidy"
    world.outputs.write_text("")
    assert main(world.env("schedule", world.scheduled("0 3 * * 1"))) == 0
    second = world.read_outputs()
    assert second["pr_number"] == first["pr_number"]
    assert second["run_id"] != first["run_id"]
    (pr,) = list(world.repo().get_pulls(state="all"))
    assert pr.head.ref == "swarm/maintenance/tidy"
    assert second["run_id"] in pr.body
    assert [f.filename for f in pr.get_files()] == ["README.md"]
    assert b"tidied" not in git.read_blob(world.bare, "main:README.md")  # main untouched


def test_a_failing_maintenance_job_does_not_stop_the_next(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    config = (
        "maintenance:\n"
        '  - {name: broken, cron: "0 3 * * 1", plan: plans/missing.yml}\n'
        '  - {name: tidy, cron: "0 3 * * 1", plan: plans/nightly.yml}\n'
    )
    world.commit_to_default({".github/ci-swarm.yml": config, "plans/nightly.yml": NIGHTLY})
    assert main(world.env("schedule", world.scheduled("0 3 * * 1"))) == 4
    assert "::error title=ci-swarm::maintenance job broken: plan file plans/missing.yml does not exist" in (
        capsys.readouterr().out
    )
    assert world.read_outputs()["branch"] == "swarm/maintenance/tidy"
    (pr,) = list(world.repo().get_pulls(state="open"))
    assert pr.head.ref == "swarm/maintenance/tidy"


def test_schedule_without_a_matching_job_is_a_notice(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(world.env("schedule", world.scheduled("15 * * * *"))) == 0
    assert (
        "::notice::no maintenance job in the config (none found) has cron '15 * * * *'"
        in capsys.readouterr().out
    )


def test_dispatch_with_a_plan_file_and_a_shard_job(world: World) -> None:
    files = {f"src/mod{i}.py": f"x = {i}\n" for i in range(4)}
    shard = (
        "maintenance:\n  - name: hints\n    cron: '0 4 * * 0'\n    agent: scripted\n"
        "    shard: {pattern: 'src/mod*.py', agents: 2, task: add hints}\n"
    )
    world.commit_to_default({**files, ".github/ci-swarm.yml": shard, "plans/one.yml": NIGHTLY})
    assert main(world.env("workflow_dispatch", world.dispatched(plan="plans/one.yml"))) == 0
    assert world.read_outputs()["pr_number"]
    world.outputs.write_text("")
    assert main(world.env("workflow_dispatch", world.dispatched(job="hints"))) == 0
    out = world.read_outputs()
    assert out["branch"] == "swarm/maintenance/hints"
    assert {agent_branch("swarm", out["run_id"], f"shard-{i}") for i in (1, 2)} <= world.remote_branches()


def test_a_shard_job_without_an_agent_that_edits_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """No key, no agent named: the shards would run the scripted fallback and change nothing — exit 4."""
    files = {f"src/mod{i}.py": f"x = {i}\n" for i in range(4)}
    shard = (
        "maintenance:\n  - name: hints\n    cron: '0 4 * * 0'\n"
        "    shard: {pattern: 'src/mod*.py', agents: 2, task: add hints}\n"
    )
    world.commit_to_default({**files, ".github/ci-swarm.yml": shard})
    assert main(world.env("workflow_dispatch", world.dispatched(job="hints"))) == 4
    assert "needs an agent" in capsys.readouterr().out
    assert not {b for b in world.remote_branches() if b.startswith("swarm/")}


# ------------------------------------------------------------------------------------------ bad input


def test_missing_event_file(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    env = world.env("issues", {})
    env["GITHUB_EVENT_PATH"] = str(world.tmp / "nope.json")
    assert main(env) == 4
    assert "event file" in capsys.readouterr().out


def test_event_path_not_set(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    env = world.env("issues", {})
    del env["GITHUB_EVENT_PATH"]
    assert main(env) == 4
    assert "GITHUB_EVENT_PATH is not set" in capsys.readouterr().out


def test_payload_of_an_unexpected_shape(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.env("issues", {"action": "labeled", "label": {"name": "swarm"}})) == 4
    assert "event payload: 'issue.number' is missing" in capsys.readouterr().out


def test_config_error_names_key_and_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.commit_to_default({".github/ci-swarm.yml": "label: swarm\nmax_agent: 3\n"})
    issue = world.issue("x", "y", labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 4
    out = capsys.readouterr().out
    assert (
        "::error title=ci-swarm::.github/ci-swarm.yml:2: max_agent: unknown key (did you mean 'max_agents'?)"
        in out
    )


def test_explicit_config_path_must_exist(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    issue = world.issue("x", "y", labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue), config="ci/swarm.yml")) == 4
    assert "ci/swarm.yml: config file not found (input config)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_agents", "many", "input max_agents: expected a positive whole number, got 'many'"),
        ("max_agents", "0", "input max_agents: expected a positive whole number, got '0'"),
        ("budget_usd", "-2", "input budget_usd: expected a positive number of US dollars, got '-2'"),
        ("budget_usd", "nan", "input budget_usd: expected a positive number of US dollars, got 'nan'"),
        ("agent", "robot", "input agent: expected one of claude, scripted, command, got 'robot'"),
        ("dry_run", "maybe", "input dry_run: expected true or false, got 'maybe'"),
        ("config", "../outside.yml", "input config: path '../outside.yml' leaves the worktree"),
    ],
)
def test_bad_inputs_are_named(
    name: str, value: str, message: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(world.env("push", {}, **{name: value})) == 4
    assert message in capsys.readouterr().out


def test_inputs_win_over_the_config() -> None:
    config = config_from_text("label: agents\nmax_agents: 2\nbudget: {usd: 1, tokens: 100}\nagent: command\n")
    env = {
        "CI_SWARM_LABEL": "go",
        "CI_SWARM_MAX_AGENTS": "6",
        "CI_SWARM_BUDGET_USD": "2.5",
        "CI_SWARM_AGENT": "",
    }
    merged = apply_inputs(config, parse_inputs(env))
    assert (merged.label, merged.max_agents, merged.budget) == ("go", 6, Budget(usd=2.5, tokens=100))
    assert merged.agent == AgentSpec("command")
    assert merged.command == "/swarm"
    assert apply_inputs(Config(), Inputs()) == Config()


def test_default_agent_is_claude_only_with_a_key() -> None:
    assert default_agent(Config(), has_key=True) == AgentSpec("claude")
    assert default_agent(Config(), has_key=False) == AgentSpec("scripted")
    assert default_agent(config_from_text("agent: command\n"), has_key=True) == AgentSpec("command")


def test_plan_text_errors_name_the_source_and_line() -> None:
    with pytest.raises(PlanError, match=r"^the plan input:2: malformed YAML: mapping values are not allowed"):
        plan_from_text("version: 1\ntask: a: b\n", "the plan input")
    with pytest.raises(PlanError, match="a plan must be a mapping"):
        plan_from_text("- a\n", "x")
    with pytest.raises(UsageError):
        plan_from_text("version: 1\nsubtasks: []\n", "x")


# ------------------------------------------------------------------- PR closed mid-run, cancellation


def test_pr_closed_while_the_swarm_runs(world: World) -> None:
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    # the agent outlasts the closer by far, even on a loaded machine (the close must land mid-run)
    plan = swarm_plan(write_sub("slow", "src/slow.py", "slow = 1\n", delay=8))

    def close_when_started() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not progress_comments(world, pr.number):
            time.sleep(0.05)
        world.repo().get_pull(pr.number).edit(state="closed")

    closer = threading.Thread(target=close_when_started)
    closer.start()
    code = main(world.env("issue_comment", world.commented(pr.number, f"/swarm go\n{plan}", on_pr=True)))
    closer.join()
    assert code == 0
    out = world.read_outputs()
    assert out["branch"].startswith("swarm/")  # not the closed PR's branch
    assert out["branch"] in world.remote_branches()
    assert world.repo().get_branch("feature").commit.sha == pr.head.sha
    (progress,) = progress_comments(world, pr.number)
    assert "was closed while the swarm ran" in progress


def test_sigterm_pushes_what_is_committed_and_says_cancelled(world: World) -> None:
    plan = swarm_plan(
        write_sub("quick", "src/quick.py", "quick = 1\n"), write_sub("slow", "src/slow.py", "x\n", delay=60)
    )
    issue = world.issue("Cancel me", plan, labels=("swarm",))
    env = {**world.env("issues", world.labeled(issue)), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "ci_swarm", "action"],
        cwd=world.workspace,
        env={**env, "PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if "merge_finished quick" in line:
                break
        child.send_signal(signal.SIGTERM)
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, rest
    out = world.read_outputs()
    assert agent_branch("swarm", out["run_id"], "quick") in world.remote_branches()
    assert out["branch"] in world.remote_branches()
    (progress,) = progress_comments(world, issue.number)
    assert f"### 🐝 ci-swarm run `{out['run_id']}` — interrupted" in progress
    assert "**Cancelled:** the workflow was cancelled" in progress
    assert "`slow` (builder) write src/slow.py — 🚫 cancelled" in progress
    assert [label.name for label in world.repo().get_issue(issue.number).get_labels()] == []


def test_maintainer_fixture_is_a_writer(world: World) -> None:
    assert world.repo().get_collaborator_permission(MAINTAINER) == "write"


# ------------------------------------------------------------------- the service both entries share


def test_the_session_notes_reach_the_report_and_the_job_summary(world: World) -> None:
    """The Action folds the model session's notes into the report as the CLI does (it used to drop them):
    a model without a known price is named in the job summary."""
    issue = world.issue("Docs", "The README needs a usage section.")
    script = task_script(
        (
            ScriptedSubtask(
                "docs",
                "documenter",
                "Document it",
                paths=("README.md",),
                calls=(edit_file_call("README.md", "Run it.", "Run it with care."),),
            ),
        )
    )
    with FakeAnthropic(script) as claude:
        env = world.env("issue_comment", world.commented(issue.number, "/swarm document it", on_pr=False))
        env.update(
            ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=claude.base_url, CI_SWARM_MODEL="acme-1"
        )
        assert main(env) == 0
    assert "No price known for model 'acme-1'" in world.summary.read_text()


def test_a_claude_default_nobody_uses_needs_no_key(world: World) -> None:
    """The default agent is claude (input), but every subtask of the written plan names its own agent: the
    run needs no model, so no ANTHROPIC_API_KEY."""
    issue = world.issue("Add a", swarm_plan(write_sub("a", "a.txt", "a\n")), labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue), agent="claude")) == 0
    assert world.read_outputs()["failed"] == "0"


def test_the_job_is_emitted_through_the_runner_module(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from ci_swarm.github import runner

    emitted: list[tuple[str, str]] = []
    real = runner.emit_job

    def spy(report: RunReport, result: Published | None, env: Mapping[str, str] | None = None) -> RunReport:
        emitted.append((report.run_id, result.branch if result is not None else ""))
        return real(report, result, env)

    monkeypatch.setattr(runner, "emit_job", spy)
    issue = world.issue("Add a", swarm_plan(write_sub("a", "a.txt", "a\n")), labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 0
    ((run_id, branch),) = emitted
    assert world.read_outputs()["run_id"] == run_id and world.read_outputs()["branch"] == branch
