"""The fake GitHub's traffic checked against GitHub's own OpenAPI description (the committed slice).

A session drives every operation of the slice through the real PyGithub (successes and GitHub's documented
errors), then each recorded request and response is validated with openapi-core. Injected faults are not
part of the description and are left out; nothing else is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import github
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from ci_swarm import git
from ci_swarm.testing.fake_github import Exchange
from tests.github_helpers import TOKEN, Hub, hub

__all__ = ["hub"]

SLICE = Path(__file__).resolve().parent.parent / "ci_swarm" / "testing" / "data" / "github-openapi-slice.json"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SLICE.read_text())
    return loaded


def _param(part: str) -> str:
    if part == "{ref}":
        return ".+"  # a git ref has slashes: heads/main
    return "[^/]+" if part.startswith("{") else re.escape(part)


def _operation(spec: dict[str, Any], x: Exchange) -> str | None:
    for template, item in spec["paths"].items():
        pattern = "^" + "/".join(_param(p) for p in template.split("/")) + "$"
        if re.match(pattern, x.path) and x.method.lower() in item:
            return str(item[x.method.lower()]["operationId"])
    return None


def _why(exc: Exception) -> str:
    """The validation errors alone (openapi-core prefixes them with the whole value)."""
    text = str(exc)
    return re.sub(r"^.*?not valid for schema of type \w+: ", "", text, flags=re.S)[:1500]


def validate(api: OpenAPI, x: Exchange) -> None:
    headers = {k: v for k, v in x.request_headers.items() if k.lower() not in ("authorization",)}
    # openapi-core's path templates stop at "/", and a git ref has slashes (heads/main)
    path = re.sub(r"(/git/ref/)(.+)$", lambda m: m[1] + m[2].replace("/", "%2F"), x.path)
    request = MockRequest(
        "https://api.github.com",
        x.method,
        path,
        args={k: v[-1] for k, v in x.query.items()},
        headers=headers,
        data=x.request_body or None,
        content_type=x.request_headers.get("Content-Type", "application/json").split(";")[0],
    )
    api.validate_request(request)
    response = MockResponse(
        x.response_body,
        status_code=x.status,
        headers=x.response_headers,
        content_type=x.response_headers.get("Content-Type", "application/json").split(";")[0],
    )
    api.validate_response(request, response)


def drive_every_operation(hub: Hub) -> None:
    gh = hub.gh()
    repo = gh.get_repo(hub.name)
    gh.get_user().login  # noqa: B018  (GET /user)
    list(repo.get_branches())
    repo.get_branch("main")
    repo.get_git_ref("heads/main")
    hub.fake.add_user("alice", "write")
    repo.get_collaborator_permission("alice")

    issue = repo.create_issue(title="Add a greeting", body="please", labels=["swarm"])
    repo.get_issue(issue.number)
    comment = issue.create_comment("working on it")
    comment.edit("still working")
    repo.get_issue(issue.number).get_comment(comment.id)
    list(issue.get_comments())
    issue.create_reaction("eyes")
    list(issue.get_reactions())
    comment.create_reaction("rocket")
    list(comment.get_reactions())
    # PyGithub sends a bare array, which GitHub accepts but its description does not model: send the object
    issue._requester.requestJsonAndCheck("POST", f"{issue.url}/labels", input={"labels": ["bug"]})
    list(issue.get_labels())
    issue.remove_from_labels("bug")

    head = hub.remote_commit("main", {}, "noop")
    git.run(hub.bare, "branch", "feature", head)
    hub.remote_commit(
        "feature", {"src/app.py": "".join(f"line {i}\n" for i in range(1, 41)).replace("line 5\n", "five\n")}
    )
    pr = repo.create_pull(base="main", head="feature", title="Feature", body="b")
    repo.get_pull(pr.number)
    list(repo.get_pulls(state="open", head="octo:feature", base="main"))
    pr.edit(body="better body")
    list(pr.get_files())
    review = pr.create_review(
        body="looks fine", event="COMMENT", comments=[{"path": "src/app.py", "line": 5, "body": "ok"}]
    )
    list(pr.get_reviews())
    pr.get_review(review.id)
    list(pr.get_single_review_comments(review.id))
    thread = pr.create_review_comment("file note", pr.head.sha, "src/app.py", subject_type="file")
    pr.create_review_comment("a reply", pr.head.sha, "src/app.py", in_reply_to=thread.id)
    list(pr.get_review_comments())
    pr.get_review_comment(thread.id)

    # GitHub's documented errors
    with pytest.raises(github.GithubException):  # 422: line outside the diff, whole review rejected
        pr.create_review(
            body="x", event="COMMENT", comments=[{"path": "src/app.py", "line": 30, "body": "no"}]
        )
    with pytest.raises(github.GithubException):  # 422: a pull request already exists
        repo.create_pull(base="main", head="feature", title="again", body="")
    with pytest.raises(github.GithubException):  # 422: line not resolvable for a single comment
        pr.create_review_comment("bad", pr.head.sha, "src/app.py", line=30, side="RIGHT")
    with pytest.raises(github.UnknownObjectException):  # 404
        repo.get_issue(999)
    hub.fake.settings.actions_can_create_prs = False
    git.run(hub.bare, "branch", "other", "feature")
    hub.remote_commit("other", {"x.txt": "x\n"})
    with pytest.raises(github.GithubException):  # 403: Actions may not create pull requests
        repo.create_pull(base="main", head="other", title="t", body="")


def test_every_exchange_matches_githubs_openapi_description(hub: Hub, spec: dict[str, Any]) -> None:
    drive_every_operation(hub)
    api = OpenAPI.from_dict(spec)
    traffic = [x for x in hub.fake.traffic if not x.injected]
    seen = set()
    failures = []
    for x in traffic:
        op = _operation(spec, x)
        assert op is not None, f"{x.method} {x.path} is not in the slice"
        seen.add(op)
        try:
            validate(api, x)
        except Exception as exc:  # collect them all for one readable failure
            failures.append(f"{op} {x.status}: {_why(exc)}")
    assert not failures, "\n".join(failures)
    assert seen == set(spec["info"]["x-ci-swarm-slice"]), "every operation of the slice is exercised"
    assert {x.status for x in traffic} >= {200, 201, 403, 404, 422}


def test_validation_catches_a_broken_response(spec: dict[str, Any]) -> None:
    """The check has teeth: a pull request without its required fields is refused."""
    api = OpenAPI.from_dict(spec)
    broken = Exchange(
        "GET", "/repos/octo/app/pulls/1", {}, {"Accept": "application/json"}, b"", 200,
        {"Content-Type": "application/json"}, json.dumps({"number": 1}).encode(),
    )  # fmt: skip
    with pytest.raises(Exception, match="required property"):
        validate(api, broken)


def test_token_travels_only_in_the_authorization_header(hub: Hub) -> None:
    list(hub.gh().get_repo(hub.name).get_branches())
    (x, *_) = hub.fake.traffic
    assert x.request_headers["Authorization"] == f"token {TOKEN}"
    assert TOKEN not in x.path and TOKEN.encode() not in x.response_body


def test_a_publish_sends_and_receives_only_what_githubs_description_allows(
    hub: Hub, spec: dict[str, Any]
) -> None:
    from ci_swarm.github.publish import Target
    from ci_swarm.ports import ProgressEvent
    from tests.test_github_publish import conflicted_run

    number = hub.repo().create_issue(title="Add a greeting").number
    report, _ = conflicted_run(hub)
    pub = hub.publisher(Target(hub.name, issue=number))
    progress = pub.start(report.request, report.run_id, [s.id for s in report.subtasks])
    progress(ProgressEvent("subtask_started", "code", "running"))
    pub.publish(hub.work, report, progress)
    api = OpenAPI.from_dict(spec)
    failures = []
    for x in hub.fake.traffic:
        try:
            validate(api, x)
        except Exception as exc:
            failures.append(f"{x.method} {x.path} {x.status}: {_why(exc)}")
    assert not failures, "\n".join(failures)
    assert len(hub.fake.traffic) >= 10
