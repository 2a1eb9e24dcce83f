"""The OpenAPI check has teeth for requests too: real exchanges recorded by the fake pass it, and the same
exchanges with only their request broken fail it, as do 422s and operations outside the slice."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import github
import pytest
from openapi_core.validation.request.exceptions import RequestValidationError

from ci_swarm import git
from ci_swarm.testing.fake_github import Exchange
from tests.github_helpers import Hub, hub
from tests.openapi_helpers import slice_api, traffic_problems
from tests.test_github_openapi import validate

__all__ = ["hub"]


def recorded(hub: Hub, method: str, suffix: str) -> Exchange:
    (found,) = [x for x in hub.fake.traffic if x.method == method and x.path.endswith(suffix)]
    return found


def with_body(x: Exchange, body: Any) -> Exchange:
    return replace(x, request_body=json.dumps(body).encode())


@pytest.fixture
def real(hub: Hub) -> dict[str, Exchange]:
    """A pull request, a review and a comment made through PyGithub: three recorded, valid exchanges."""
    git.run(hub.bare, "branch", "feature", "main")
    hub.remote_commit("feature", {"src/app.py": "changed\n"})
    repo = hub.repo()
    pr = repo.create_pull(base="main", head="feature", title="Feature", body="b")
    pr.create_review(body="fine", event="COMMENT")
    repo.get_issue(pr.number).create_comment("hello")
    return {
        "pull": recorded(hub, "POST", "/pulls"),
        "review": recorded(hub, "POST", "/reviews"),
        "comment": recorded(hub, "POST", f"/issues/{pr.number}/comments"),
    }


def test_the_recorded_requests_are_valid(real: dict[str, Exchange]) -> None:
    for x in real.values():
        validate(slice_api(), x)  # raises if not
    assert traffic_problems(real.values()) == []


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("pull", lambda b: {k: v for k, v in b.items() if k != "head"}, "'head' is a required property"),
        ("pull", lambda b: {**b, "draft": "yes"}, "'yes' is not of type 'boolean'"),
        ("review", lambda b: {**b, "event": "MAYBE"}, "'MAYBE' is not one of"),
        ("review", lambda b: {**b, "comments": [{"body": "where?"}]}, "'path' is a required property"),
        ("comment", lambda b: {"body": 42}, "42 is not of type 'string'"),
        ("comment", lambda b: {}, "'body' is a required property"),
    ],
)
def test_a_broken_request_is_caught(real: dict[str, Exchange], name: str, change: Any, problem: str) -> None:
    good = real[name]
    broken = with_body(good, change(json.loads(good.request_body)))
    with pytest.raises(RequestValidationError) as caught:
        validate(slice_api(), broken)
    assert problem in repr(caught.value.__cause__)
    (line,) = traffic_problems([broken])
    assert problem in line and good.path in line


def test_a_bare_label_array_is_caught_as_a_request_error(hub: Hub) -> None:
    """What PyGithub's add_to_labels sends: GitHub takes it, its description does not (so the action tests
    add labels when creating issues)."""
    issue = hub.repo().create_issue(title="t", body="b")
    issue.add_to_labels("bug")
    sent = recorded(hub, "POST", f"/issues/{issue.number}/labels")
    assert json.loads(sent.request_body) == ["bug"] and sent.status == 200
    with pytest.raises(RequestValidationError):
        validate(slice_api(), sent)
    validate(slice_api(), with_body(sent, {"labels": ["bug"]}))  # the documented object form passes


def test_422s_and_operations_outside_the_slice_are_problems(hub: Hub) -> None:
    repo = hub.repo()
    with pytest.raises(github.GithubException, match="No commits between"):
        repo.create_pull(base="main", head="main", title="nothing", body="")
    hub.gh().requester.requestJson("GET", f"/repos/{hub.name}/commits")  # not in the slice
    refused = recorded(hub, "POST", "/pulls")
    outside = recorded(hub, "GET", "/commits")
    assert refused.status == 422
    (line,) = traffic_problems([refused])
    assert line.startswith("pulls/create POST") and "422" in line
    assert traffic_problems([refused], allow_422=True) == []
    (line,) = traffic_problems([outside])
    assert line == f"GET /repos/{hub.name}/commits {outside.status}: not in the OpenAPI slice"
