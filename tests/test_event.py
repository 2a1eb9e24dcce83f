"""Event routing over real webhook payloads (from @octokit/webhooks-examples): who may trigger what."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ci_swarm.config import Config, config_from_text
from ci_swarm.errors import UsageError
from ci_swarm.github.admission import bot_allowed, bot_name, meets
from ci_swarm.github.event import (
    SELF_MARKER,
    PullRequestInfo,
    Refuse,
    Run,
    plan_block,
    route,
    usage,
)

EVENTS = Path(__file__).parent / "data" / "events"
REPO = "Codertocat/Hello-World"
PLAN = """\
version: 1
task: greet
subtasks:
  - id: code
    role: builder
    title: Write greet()
"""


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@dataclass
class Access:
    """Answers routing's questions like GitHub would for a repository with these collaborators."""

    permissions: Mapping[str, str] = field(default_factory=dict)
    pulls: Mapping[int, PullRequestInfo] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    own: str = ""  # the token's login ("" like GITHUB_TOKEN, which cannot read /user)

    def permission(self, login: str) -> str:
        self.asked.append(login)
        return self.permissions.get(login, "none")

    def identity(self) -> str:
        return self.own

    def pull_request(self, number: int) -> PullRequestInfo:
        return self.pulls[number]


def pr_info(
    number: int = 1, *, head_repo: str = REPO, state: str = "open", merged: bool = False
) -> PullRequestInfo:
    return PullRequestInfo(
        number=number,
        title="Fix the typo",
        body="Spelling fixes.",
        state=state,
        merged=merged,
        head_ref="fix-typo",
        head_sha="a" * 40,
        head_repo=head_repo,
        base_ref="main",
        base_sha="b" * 40,
    )


def labeled(
    label: str = "swarm", body: str | None = "Please add a greeting module.", **sender: Any
) -> dict[str, Any]:
    payload = load("issues.labeled.json")
    payload["label"]["name"] = label
    payload["issue"]["body"] = body
    payload["sender"].update(sender)
    return payload


def comment(text: str, *, on_pr: bool = False, association: str = "OWNER", **user: Any) -> dict[str, Any]:
    payload = load("issue_comment.created.pr.json" if on_pr else "issue_comment.created.json")
    payload["comment"]["body"] = text
    payload["comment"]["author_association"] = association
    payload["comment"]["user"].update(user)
    return payload


CONFIG = Config()
WRITER = Access({"Codertocat": "write"}, {1: pr_info()})


# --------------------------------------------------------------------------------------------- labels


def test_label_event_runs_the_issue_and_removes_the_label_later() -> None:
    decision = route("issues", labeled(), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert (decision.event, decision.repo, decision.actor) == ("issues", REPO, "Codertocat")
    assert (decision.issue, decision.label, decision.pr) == (1, "swarm", None)
    (job,) = decision.jobs
    assert job.request.source == "issue"
    assert job.request.number == 1
    assert job.request.title == "Spelling error in the README file"
    assert job.request.task == "Spelling error in the README file\n\nPlease add a greeting module."
    assert job.plan_text == ""
    assert decision.requests == (job.request,)


def test_label_event_uses_a_swarm_plan_block_as_the_plan() -> None:
    body = f"Some words first.\n\n```swarm-plan\n{PLAN}```\n\nAnd after."
    decision = route("issues", labeled(body=body), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_text == PLAN


def test_label_permission_is_confirmed_through_the_api() -> None:
    access = Access({"Codertocat": "maintain"})
    assert isinstance(route("issues", labeled(), CONFIG, access), Run)
    assert access.asked == ["Codertocat"]


@pytest.mark.parametrize("permission", ["triage", "read", "none"])
def test_label_by_someone_without_write_access_is_refused(permission: str) -> None:
    decision = route("issues", labeled(), CONFIG, Access({"Codertocat": permission}))
    assert isinstance(decision, Refuse)
    assert decision.notice == f"@Codertocat has '{permission}' permission, not write access: refused"
    assert decision.reply is not None  # a person is told why (the label is removed so it can be added again)
    assert f"(@Codertocat: {permission})" in decision.reply
    assert (decision.issue, decision.label) == (1, "swarm")


def test_a_label_for_another_label_does_nothing() -> None:
    access = Access({"Codertocat": "write"})
    decision = route("issues", labeled(label="bug"), CONFIG, access)
    assert decision == Refuse("label 'bug' is not 'swarm': nothing to do")
    assert access.asked == []  # no API call for an event that is not ours


def test_configured_label_is_used() -> None:
    config = config_from_text("label: agents\n")
    assert isinstance(route("issues", labeled(label="agents"), config, WRITER), Run)
    assert isinstance(route("issues", labeled(label="swarm"), config, WRITER), Refuse)


def test_other_issue_actions_do_nothing() -> None:
    payload = labeled()
    payload["action"] = "unlabeled"
    decision = route("issues", payload, CONFIG, WRITER)
    assert isinstance(decision, Refuse)
    assert decision.notice.startswith("issues/unlabeled: nothing to do")


@pytest.mark.parametrize("body", [None, "", "  \n\t"])
def test_issue_with_an_empty_body_is_refused_with_a_reply(body: str | None) -> None:
    decision = route("issues", labeled(body=body), CONFIG, WRITER)
    assert isinstance(decision, Refuse)
    assert decision.notice == "issue #1 has an empty body: nothing to plan"
    assert decision.reply is not None
    assert "add the label again" in decision.reply
    assert (decision.issue, decision.label) == (1, "swarm")


def test_label_by_a_bot_is_ignored_unless_allowed() -> None:
    payload = labeled(login="renovate[bot]", type="Bot")
    access = Access({"renovate[bot]": "write"})
    decision = route("issues", payload, CONFIG, access)
    assert decision == Refuse("@renovate[bot] is a bot not listed in allowed_bots: ignored")
    allowed = config_from_text("allowed_bots: ['renovate[bot]']\n")
    assert isinstance(route("issues", payload, allowed, access), Run)


# ------------------------------------------------------------------------------------------- comments


def test_comment_on_a_plain_issue_runs_like_the_label_case() -> None:
    decision = route("issue_comment", comment("/swarm add a README section"), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert (decision.issue, decision.pr, decision.label) == (1, None, "")
    assert decision.comment_id == load("issue_comment.created.json")["comment"]["id"]
    (job,) = decision.jobs
    assert job.request.task == "add a README section"
    assert job.request.source == "issue"
    assert job.request.body == "It looks like you accidently spelled 'commit' with two 't's."


def test_comment_on_a_pull_request_works_on_its_branch() -> None:
    decision = route(
        "issue_comment", comment("/swarm   add tests\nfor the parser", on_pr=True), CONFIG, WRITER
    )
    assert isinstance(decision, Run)
    assert decision.pr == pr_info()
    (job,) = decision.jobs
    assert job.request.source == "pull_request"
    assert job.request.task == "add tests\nfor the parser"
    assert (job.request.title, job.request.body) == ("Fix the typo", "Spelling fixes.")


def test_comment_with_a_plan_block_on_a_pr() -> None:
    text = f"/swarm do this plan\n~~~swarm-plan\n{PLAN}~~~\n"
    decision = route("issue_comment", comment(text, on_pr=True), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_text == PLAN


@pytest.mark.parametrize("text", ["/swarm", "/swarm   ", "  /swarm\n\n"])
def test_empty_command_replies_with_usage(text: str) -> None:
    decision = route("issue_comment", comment(text), CONFIG, WRITER)
    assert decision == Refuse("empty /swarm command on #1: replied with usage", usage("/swarm"), 1)
    assert decision.reply is not None
    assert "`/swarm <what to do>`" in decision.reply


@pytest.mark.parametrize("text", ["Looks good!", "please /swarm this", "/swarmy do it", "/Swarmy do it"])
def test_comments_without_the_command_do_nothing(text: str) -> None:
    decision = route("issue_comment", comment(text), CONFIG, WRITER)
    assert decision == Refuse("comment on #1 does not start with /swarm: nothing to do")


def test_configured_command_is_used() -> None:
    config = config_from_text("command: /agents\n")
    assert isinstance(route("issue_comment", comment("/agents fix it"), config, WRITER), Run)
    assert isinstance(route("issue_comment", comment("/swarm fix it"), config, WRITER), Refuse)


ASSOCIATIONS = [
    "OWNER",
    "MEMBER",
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIME_CONTRIBUTOR",
    "NONE",
    "MANNEQUIN",
]


@pytest.mark.parametrize("association", ASSOCIATIONS)
def test_the_commenters_permission_decides_never_the_association(association: str) -> None:
    # a private org member with write access arrives as CONTRIBUTOR (or NONE); they run
    writer = route("issue_comment", comment("/swarm x", association=association), CONFIG, WRITER)
    assert isinstance(writer, Run)
    # an org member with read access arrives as MEMBER; they are refused, with a reply saying why
    reader = Access({"Codertocat": "read"})
    decision = route("issue_comment", comment("/swarm x", association=association), CONFIG, reader)
    assert isinstance(decision, Refuse)
    assert decision.notice == "@Codertocat has 'read' permission, not write access: refused"
    assert decision.reply is not None
    assert "write access or more" in decision.reply
    assert (decision.issue, decision.label) == (1, "")
    assert reader.asked == ["Codertocat"]


@pytest.mark.parametrize(
    ("minimum", "permission", "runs"),
    [
        ("write", "triage", False),
        ("triage", "triage", True),
        ("maintain", "write", False),
        ("admin", "admin", True),
    ],
)
def test_min_permission_is_configurable(minimum: str, permission: str, runs: bool) -> None:
    config = config_from_text(f"min_permission: {minimum}\n")
    decision = route("issue_comment", comment("/swarm x"), config, Access({"Codertocat": permission}))
    assert isinstance(decision, Run) is runs


def test_missing_association_changes_nothing() -> None:
    payload = comment("/swarm x")
    del payload["comment"]["author_association"]
    assert isinstance(route("issue_comment", payload, CONFIG, WRITER), Run)


@pytest.mark.parametrize("text", ["/SWARM fix it", "/Swarm fix it", "  /sWaRm fix it"])
def test_the_command_matches_in_any_case(text: str) -> None:
    decision = route("issue_comment", comment(text), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.jobs[0].request.task == "fix it"


def test_bot_comments_are_ignored_unless_allowed() -> None:
    payload = comment("/swarm bump deps", login="renovate[bot]", type="Bot", association="NONE")
    access = Access()  # the permission API answers 404 for bots: it is never asked
    assert route("issue_comment", payload, CONFIG, access) == Refuse(
        "@renovate[bot] is a bot not listed in allowed_bots: ignored"
    )
    for listed in ("renovate[bot]", "renovate", "Renovate"):
        allowed = config_from_text(f"allowed_bots: ['{listed}']\n")
        decision = route("issue_comment", payload, allowed, access)
        assert isinstance(decision, Run), listed
        assert decision.actor == "renovate[bot]"
    assert access.asked == []


def test_github_actions_bot_is_a_bot_even_if_type_is_missing() -> None:
    payload = comment("/swarm x", login="github-actions[bot]")
    del payload["comment"]["user"]["type"]
    decision = route("issue_comment", payload, CONFIG, WRITER)
    assert isinstance(decision, Refuse)
    assert "is a bot" in decision.notice


@pytest.mark.parametrize(("login", "own"), [("github-actions[bot]", ""), ("swarm-machine", "swarm-machine")])
def test_the_swarms_own_identity_never_triggers(login: str, own: str) -> None:
    config = config_from_text("allowed_bots: [github-actions, swarm-machine]\n")
    access = Access({login: "admin"}, own=own)
    decision = route("issue_comment", comment("/swarm x", login=login, type="User"), config, access)
    assert decision == Refuse(f"@{login} is ci-swarm's own identity: ignored")
    assert decision.reply is None
    assert access.asked == []


def test_ci_swarm_own_comments_never_trigger_even_from_allowed_bots() -> None:
    text = f"/swarm progress\n{SELF_MARKER} run=abc -->\n- [x] code"
    config = config_from_text("allowed_bots: ['github-actions[bot]']\n")
    payload = comment(text, login="github-actions[bot]", type="Bot", association="NONE")
    assert route("issue_comment", payload, config, WRITER) == Refuse(
        "comment on #1 was written by ci-swarm: ignored"
    )


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_edited_or_deleted_comments_never_trigger(action: str) -> None:
    payload = comment("/swarm x")
    payload["action"] = action
    decision = route("issue_comment", payload, CONFIG, WRITER)
    assert isinstance(decision, Refuse)
    assert decision.notice.startswith(f"issue_comment/{action}: nothing to do")


def test_fork_pull_requests_are_refused_with_an_explanation() -> None:
    access = Access({"Codertocat": "write"}, pulls={1: pr_info(head_repo="stranger/Hello-World")})
    decision = route("issue_comment", comment("/swarm x", on_pr=True), CONFIG, access)
    assert isinstance(decision, Refuse)
    assert decision.notice == "pull request #1 comes from a fork: refused"
    assert decision.issue == 1
    assert decision.reply is not None
    assert "stranger/Hello-World" in decision.reply
    assert "secrets" in decision.reply


def test_pull_request_whose_fork_was_deleted_is_refused() -> None:
    access = Access({"Codertocat": "write"}, pulls={1: pr_info(head_repo="")})
    decision = route("issue_comment", comment("/swarm x", on_pr=True), CONFIG, access)
    assert isinstance(decision, Refuse)
    assert decision.reply is not None
    assert "a deleted fork" in decision.reply


@pytest.mark.parametrize(("merged", "word"), [(False, "closed"), (True, "merged")])
def test_closed_or_merged_pull_requests_are_refused(merged: bool, word: str) -> None:
    access = Access({"Codertocat": "write"}, pulls={1: pr_info(state="closed", merged=merged)})
    decision = route("issue_comment", comment("/swarm x", on_pr=True), CONFIG, access)
    assert decision == Refuse(
        f"pull request #1 is {word}: nothing to do",
        f"This pull request is {word}: ci-swarm only works on open pull requests.",
        1,
    )


def test_untrusted_commenter_on_a_fork_pr_is_refused_before_the_pr_is_read() -> None:
    access = Access()  # pull_request(1) would raise KeyError
    decision = route("issue_comment", comment("/swarm x", on_pr=True, association="MEMBER"), CONFIG, access)
    assert isinstance(decision, Refuse)
    assert "has 'none' permission" in decision.notice


# ------------------------------------------------------------------------------------------- schedule

MAINTENANCE = """\
maintenance:
  - name: deps
    cron: "0 3 * * 1"
    task: Update dependencies
  - name: typing
    cron: "0 3 * * 1"
    shard: {pattern: "src/**/*.py", agents: 2, task: Add type hints}
    agent: claude
  - name: nightly
    cron: "30 2 * * *"
    plan: .github/swarm/nightly.yml
"""


def test_schedule_runs_every_job_with_that_cron() -> None:
    config = config_from_text(MAINTENANCE)
    decision = route("schedule", load("schedule.json"), config, WRITER)
    assert isinstance(decision, Run)
    assert (decision.event, decision.repo, decision.issue) == ("schedule", "octo-org/octo-repo", None)
    assert [j.name for j in decision.jobs] == ["deps", "typing"]
    deps, typing = decision.jobs
    assert deps.request.task == "Update dependencies"
    assert deps.request.title == "ci-swarm maintenance: deps"
    assert deps.request.source == "schedule"
    assert typing.shard is not None
    assert typing.shard.pattern == "src/**/*.py"
    assert typing.agent is not None
    assert typing.agent.kind == "claude"


def test_schedule_with_a_plan_file_job() -> None:
    payload = load("schedule.json")
    payload["schedule"] = "30 2 * * *"
    decision = route("schedule", payload, config_from_text(MAINTENANCE), WRITER)
    assert isinstance(decision, Run)
    assert [(j.name, j.plan_path) for j in decision.jobs] == [("nightly", ".github/swarm/nightly.yml")]


def test_schedule_with_no_matching_job_does_nothing() -> None:
    config = config_from_text(MAINTENANCE, source=".github/ci-swarm.yml")
    payload = load("schedule.json")
    payload["schedule"] = "15 * * * *"
    decision = route("schedule", payload, config, WRITER)
    assert decision == Refuse(
        "no maintenance job in .github/ci-swarm.yml has cron '15 * * * *': nothing to do"
    )


# ----------------------------------------------------------------------------------- workflow_dispatch


def dispatch(**inputs: str) -> dict[str, Any]:
    payload = load("workflow_dispatch.json")
    payload["inputs"] = inputs
    return payload


def test_dispatch_with_a_task() -> None:
    decision = route("workflow_dispatch", dispatch(task="Add a CHANGELOG"), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.actor == "Codertocat"
    assert decision.jobs[0].request.task == "Add a CHANGELOG"
    assert decision.jobs[0].request.source == "workflow_dispatch"


def test_dispatch_with_an_inline_plan_or_a_plan_file() -> None:
    inline = route("workflow_dispatch", dispatch(plan=PLAN), CONFIG, WRITER)
    assert isinstance(inline, Run)
    assert inline.jobs[0].plan_text == PLAN
    path = route("workflow_dispatch", dispatch(plan="plans/greet.yml"), CONFIG, WRITER)
    assert isinstance(path, Run)
    assert path.jobs[0].plan_path == "plans/greet.yml"


def test_dispatch_of_a_named_maintenance_job() -> None:
    decision = route("workflow_dispatch", dispatch(job="nightly"), config_from_text(MAINTENANCE), WRITER)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_path == ".github/swarm/nightly.yml"
    with pytest.raises(
        UsageError, match=r"no maintenance job named 'weekly' \(known: deps, typing, nightly\)"
    ):
        route("workflow_dispatch", dispatch(job="weekly"), config_from_text(MAINTENANCE), WRITER)


@pytest.mark.parametrize(
    ("inputs", "detail"),
    [({}, ""), ({"task": " "}, ""), ({"task": "a", "plan": "b.yml"}, r" \(got task and plan\)")],
)
def test_dispatch_needs_exactly_one_input(inputs: dict[str, str], detail: str) -> None:
    with pytest.raises(UsageError, match=rf"exactly one of the inputs task, plan or job{detail}$"):
        route("workflow_dispatch", dispatch(**inputs), CONFIG, WRITER)


# -------------------------------------------------------------------------------------- anything else


@pytest.mark.parametrize(("name", "fixture"), [("pull_request", "pull_request.opened.json"), ("push", None)])
def test_other_events_are_a_notice(name: str, fixture: str | None) -> None:
    payload = load(fixture) if fixture else {}
    assert route(name, payload, CONFIG, WRITER) == Refuse(
        f"ci-swarm does not handle '{name}' events: nothing to do"
    )


@pytest.mark.parametrize(
    ("event", "mutate", "message"),
    [
        ("issues", lambda p: p.pop("label"), "'label.name' is missing"),
        ("issues", lambda p: p["issue"].pop("number"), "'issue.number' is missing"),
        ("issues", lambda p: p["issue"].__setitem__("number", "1"), "'issue.number' should be int, got str"),
        ("issue_comment", lambda p: p.pop("comment"), "'comment.id' is missing"),
        ("issue_comment", lambda p: p.pop("action"), "'action' is missing"),
        ("schedule", lambda p: p.pop("schedule"), "'schedule' is missing"),
    ],
)
def test_payloads_of_an_unexpected_shape_are_usage_errors(event: str, mutate: Any, message: str) -> None:
    fixture = {"issues": labeled(), "issue_comment": comment("/swarm x"), "schedule": load("schedule.json")}
    payload = copy.deepcopy(fixture[event])
    mutate(payload)
    with pytest.raises(UsageError, match=f"^event payload: {message}"):
        route(event, payload, config_from_text(MAINTENANCE), WRITER)


def test_payload_must_be_an_object() -> None:
    with pytest.raises(UsageError, match="expected a JSON object"):
        route("issues", [], CONFIG, WRITER)  # type: ignore[arg-type]


def test_plan_block_extraction() -> None:
    assert plan_block("no block") == ""
    assert plan_block("```yaml\nx: 1\n```") == ""
    assert plan_block("````swarm-plan\na: 1\n```\nb: 2\n````") == "a: 1\n```\nb: 2\n"
    assert plan_block("```swarm-plan\r\nx: 1\r\n```") == "x: 1\r\n"


# ------------------------------------------------------------------------- trusted bodies and plans


def labeled_by_maintainer(body: str, author: str = "stranger", **issue: Any) -> dict[str, Any]:
    payload = labeled(body=body)
    payload["sender"]["login"] = "maintainer"
    payload["issue"]["user"]["login"] = author
    payload["issue"].update(issue)
    return payload


MAINTAINED = Access({"maintainer": "admin", "Codertocat": "write"})


def test_a_strangers_plan_block_is_task_text_even_when_a_maintainer_labels_it() -> None:
    body = f"Please.\n\n```swarm-plan\n{PLAN}```\n"
    decision = route("issues", labeled_by_maintainer(body), CONFIG, MAINTAINED)
    assert isinstance(decision, Run)
    (job,) = decision.jobs
    assert job.plan_text == ""  # the planner plans; the body is only the task
    assert "swarm-plan" in job.request.task
    assert decision.notes == (
        "task text only: the swarm-plan block of the issue body is ignored "
        "(@stranger has 'none' permission, not write access: refused)",
    )
    assert decision.actor == "maintainer"


def test_a_trusted_authors_top_level_block_is_the_plan() -> None:
    body = f"Please.\n\n```swarm-plan\n{PLAN}```\n"
    decision = route("issues", labeled_by_maintainer(body, author="Codertocat"), CONFIG, MAINTAINED)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_text == PLAN
    assert decision.notes == ("plan from @Codertocat's issue body",)


def test_a_body_without_a_block_asks_nothing_about_its_author() -> None:
    access = Access({"maintainer": "admin"})
    decision = route("issues", labeled_by_maintainer("Just words."), CONFIG, access)
    assert isinstance(decision, Run)
    assert access.asked == ["maintainer"]
    assert decision.notes == ()


@pytest.mark.parametrize(
    "body",
    [
        f"Hi.\n<!--\n```swarm-plan\n{PLAN}```\n-->\n",
        f"Hi.\n\n<details>\n<summary>more</summary>\n\n```swarm-plan\n{PLAN}```\n\n</details>\n",
        "Hi.\n\n" + "".join(f"> {line}\n" for line in f"```swarm-plan\n{PLAN}```".splitlines()),
        "Hi.\n\n- a list item\n\n"
        + "".join(f"  {line}\n" for line in f"```swarm-plan\n{PLAN}```".splitlines()),
        "Hi.\n\n" + "".join(f"    {line}\n" for line in f"```swarm-plan\n{PLAN}```".splitlines()),
    ],
    ids=["html-comment", "details", "blockquote", "list-item", "indented-code"],
)
def test_a_hidden_or_nested_block_is_never_a_plan_even_from_a_trusted_author(body: str) -> None:
    decision = route("issues", labeled_by_maintainer(body, author="Codertocat"), CONFIG, MAINTAINED)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_text == ""
    assert plan_block(body) == ""


def test_a_comments_block_is_the_commenters_own() -> None:
    hidden = f"/swarm go\n<!--\n```swarm-plan\n{PLAN}```\n-->\n"
    decision = route("issue_comment", comment(hidden), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_text == ""
    shown = route("issue_comment", comment(f"/swarm go\n```swarm-plan\n{PLAN}```\n"), CONFIG, WRITER)
    assert isinstance(shown, Run)
    assert shown.jobs[0].plan_text == PLAN
    assert shown.notes == ("plan from @Codertocat's comment",)


def test_invisible_and_bidi_characters_are_stripped_from_task_text() -> None:
    hidden = "".join(chr(c) for c in (0x200B, 0x200E, 0x202E, 0x2066, 0x2069, 0xFEFF, 0x2060))
    decision = route("issues", labeled(body=f"Add{hidden} a greeting"), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.jobs[0].request.body == "Add a greeting"
    assert decision.jobs[0].request.task.endswith("\n\nAdd a greeting")
    by_comment = route("issue_comment", comment(f"/swarm fix{hidden} it"), CONFIG, WRITER)
    assert isinstance(by_comment, Run)
    assert by_comment.jobs[0].request.task == "fix it"


# ---------------------------------------------------------------------------- triggers as sent by github


@pytest.mark.parametrize("label", ["Swarm", "SWARM", "swarm"])
def test_the_label_matches_in_any_case_and_is_removed_by_its_own_name(label: str) -> None:
    decision = route("issues", labeled(label=label), CONFIG, WRITER)
    assert isinstance(decision, Run)
    assert decision.label == label


def test_a_closed_issue_that_gets_labelled_is_refused_with_a_reply() -> None:
    payload = labeled()
    payload["issue"].update(state="closed", closed_at="2019-05-15T15:21:00Z", state_reason="completed")
    reply = "This issue is closed: ci-swarm only works on open issues. Reopen it and add the label again."
    decision = route("issues", payload, CONFIG, WRITER)
    assert decision == Refuse("issue #1 is closed: nothing to do", reply, 1, "swarm")


def test_a_command_on_a_closed_plain_issue_is_refused() -> None:
    payload = comment("/swarm x")
    payload["issue"]["state"] = "closed"
    decision = route("issue_comment", payload, CONFIG, WRITER)
    assert isinstance(decision, Refuse)
    assert decision.notice == "issue #1 is closed: nothing to do"


def test_schedule_without_repository_uses_the_one_given() -> None:
    payload = load("schedule.no-repository.json")
    assert "repository" not in payload
    decision = route("schedule", payload, config_from_text(MAINTENANCE), WRITER, repository="octo/demo")
    assert isinstance(decision, Run)
    assert decision.repo == "octo/demo"
    with pytest.raises(UsageError, match=r"'repository\.full_name' is missing"):
        route("schedule", payload, config_from_text(MAINTENANCE), WRITER)


def test_dispatch_needs_the_permission_too() -> None:
    decision = route("workflow_dispatch", dispatch(task="x"), CONFIG, Access({"Codertocat": "triage"}))
    assert isinstance(decision, Refuse)
    assert decision.reply is None  # nowhere to reply: the notice is all
    assert "not write access" in decision.notice


# ---------------------------------------------------------------------- the pieces: bodies, admission


@pytest.mark.parametrize(
    ("body", "honoured"),
    [
        (f"<details>\n\nhidden\n\n</details>\n\n```swarm-plan\n{PLAN}```\n", True),  # after it closed
        (f"Inline <!-- a note --> comment.\n\n```swarm-plan\n{PLAN}```\n", True),
        (f"Line<br>break <img src=x> then\n\n```swarm-plan\n{PLAN}```\n", True),  # void tags open nothing
        (f"<div>\n\n```swarm-plan\n{PLAN}```\n", False),  # an element left open
        (f"<!-- never closed\n\n```swarm-plan\n{PLAN}```\n", False),
        (f"```swarm-plan\n{PLAN}", True),  # unclosed: GitHub shows it to the end, so do we
        (f"```swarm-plan extra words\n{PLAN}```\n", True),
        (f"```swarm-planner\n{PLAN}```\n", False),
    ],
)
def test_which_fences_are_visible_plan_blocks(body: str, honoured: bool) -> None:
    assert (plan_block(body) == PLAN) is honoured


def test_a_labeller_who_wrote_the_issue_is_asked_about_once() -> None:
    access = Access({"Codertocat": "write"})
    decision = route("issues", labeled(body=f"```swarm-plan\n{PLAN}```\n"), CONFIG, access)
    assert isinstance(decision, Run)
    assert decision.jobs[0].plan_text == PLAN
    assert access.asked == ["Codertocat"]


@pytest.mark.parametrize(
    ("permission", "minimum", "ok"),
    [
        ("admin", "write", True),
        ("maintain", "write", True),
        ("triage", "write", False),
        ("none", "read", False),
    ],
)
def test_permission_ranks(permission: str, minimum: str, ok: bool) -> None:
    assert meets(permission, minimum) is ok


def test_bot_names() -> None:
    assert bot_name("Dependabot[bot]") == bot_name("dependabot") == "dependabot"
    assert bot_allowed("renovate[bot]", ("Renovate",))
    assert not bot_allowed("renovate-evil[bot]", ("renovate",))
