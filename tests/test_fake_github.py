"""The fake GitHub itself: GitHub's rules, exact error bodies, pagination, git over smart HTTP, the CLI."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import github
import pytest

from ci_swarm import git
from ci_swarm.errors import GitError
from ci_swarm.testing.fake_github import FakeGitHub
from tests.fixtures import commit, make_repo
from tests.github_helpers import BASE_FILES, TOKEN, Hub, hub

__all__ = ["hub"]

REVIEW_DOCS = "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request"


def feature_pr(hub: Hub, files: dict[str, str | None] | None = None) -> Any:
    """A PR whose diff changes line 5 and 30 of src/app.py (two hunks) and deletes src/old.py."""
    app = BASE_FILES["src/app.py"].replace("line 5\n", "five\n").replace("line 30\n", "thirty\n")
    git.run(hub.bare, "branch", "feature", "main")
    hub.remote_commit("feature", files or {"src/app.py": app, "src/old.py": None})
    return hub.repo().create_pull(base="main", head="feature", title="Feature", body="b")


def error_of(call: Any) -> tuple[int, Any]:
    with pytest.raises(github.GithubException) as caught:
        call()
    return caught.value.status, caught.value.data


# --- review rules -----------------------------------------------------------------------------


def test_review_line_outside_the_diff_rejects_the_whole_review_with_githubs_body(hub: Hub) -> None:
    pr = feature_pr(hub)
    good = {"path": "src/app.py", "line": 5, "body": "fine"}
    bad = {"path": "src/app.py", "line": 18, "body": "not in any hunk"}
    status, data = error_of(lambda: pr.create_review(body="r", event="COMMENT", comments=[good, bad]))
    assert status == 422
    assert data == {
        "message": "Unprocessable Entity",
        "errors": [
            "Pull request review thread line must be part of the diff and "
            "Pull request review thread diff hunk can't be blank"
        ],
        "documentation_url": REVIEW_DOCS,
        "status": "422",
    }
    assert list(pr.get_reviews()) == [] and list(pr.get_review_comments()) == []  # all or nothing


def test_review_start_line_rules_and_path_rule(hub: Hub) -> None:
    pr = feature_pr(hub)
    other_hunk = {"path": "src/app.py", "start_line": 5, "line": 30, "body": "spans hunks"}
    _, data = error_of(lambda: pr.create_review(event="COMMENT", body="r", comments=[other_hunk]))
    assert data["errors"] == [
        "Pull request review thread start line must be part of the same hunk as the line. and "
        "Pull request review thread diff hunk can't be blank"
    ]
    backwards = {"path": "src/app.py", "start_line": 7, "line": 5, "body": "backwards"}
    missing = {"path": "src/nope.py", "line": 1, "body": "no such file in the diff"}
    outside = {"path": "src/app.py", "line": 18, "body": "outside"}
    _, data = error_of(
        lambda: pr.create_review(event="COMMENT", body="r", comments=[backwards, missing, outside])
    )
    assert data["errors"] == [
        "Pull request review thread path is invalid, "
        "Pull request review thread line must be part of the diff, "
        "Pull request review thread start line must precede the end line., and "
        "Pull request review thread diff hunk can't be blank"
    ]


def test_review_threads_anchor_on_right_left_multiline_and_position(hub: Hub) -> None:
    pr = feature_pr(hub)
    comments = [
        {"path": "src/app.py", "line": 5, "side": "RIGHT", "body": "right"},
        {"path": "src/app.py", "line": 5, "side": "LEFT", "body": "left (the old line 5)"},
        {"path": "src/app.py", "start_line": 3, "line": 6, "body": "multi-line"},
        {"path": "src/old.py", "line": 1, "side": "LEFT", "body": "a deleted file's old line"},
        {"path": "src/app.py", "position": 4, "body": "by position"},
    ]
    review = pr.create_review(event="COMMENT", body="ok", comments=comments)
    assert review.state == "COMMENTED"
    got = {c.body: (c.line, c.side, c.start_line) for c in pr.get_review_comments()}
    assert got["right"] == (5, "RIGHT", None)
    assert got["left (the old line 5)"] == (5, "LEFT", None)
    assert got["multi-line"] == (6, "RIGHT", 3)
    assert got["a deleted file's old line"] == (1, "LEFT", None)
    assert got["by position"][0] is not None
    (multi,) = [c for c in pr.get_review_comments() if c.body == "multi-line"]
    assert multi.diff_hunk.startswith("@@ -2,7 +2,7 @@") and multi.diff_hunk.endswith("+five\n line 6")


def test_right_side_of_a_deleted_file_cannot_be_commented(hub: Hub) -> None:
    pr = feature_pr(hub)
    status, data = error_of(
        lambda: pr.create_review(
            event="COMMENT", body="r", comments=[{"path": "src/old.py", "line": 1, "body": "x"}]
        )
    )
    assert status == 422 and "line must be part of the diff" in data["errors"][0]
    thread = pr.create_review_comment("file-level is fine", pr.head.sha, "src/old.py", subject_type="file")
    assert thread.subject_type == "file"


def test_single_review_comment_errors(hub: Hub) -> None:
    pr = feature_pr(hub)
    status, data = error_of(
        lambda: pr.create_review_comment("x", pr.head.sha, "src/app.py", line=18, side="RIGHT")
    )
    assert status == 422
    assert data["message"] == "Validation Failed"
    assert data["errors"] == [
        {
            "resource": "PullRequestReviewComment",
            "code": "custom",
            "field": "pull_request_review_thread.line",
            "message": "could not be resolved",
        }
    ]
    _, data = error_of(lambda: pr.create_review_comment("x", "0" * 40, "src/app.py", line=5))
    assert data["errors"][0]["field"] == "pull_request_review_thread.end_commit_oid"


def test_cannot_approve_own_pull_request(hub: Hub) -> None:
    pr = feature_pr(hub)
    status, data = error_of(lambda: pr.create_review(event="APPROVE", body="lgtm"))
    assert (status, data["errors"]) == (422, ["Can not approve your own pull request"])


# --- pull requests ---------------------------------------------------------------------------------


def test_pull_request_rules(hub: Hub) -> None:
    repo = hub.repo()
    pr = feature_pr(hub)
    _, data = error_of(lambda: repo.create_pull(base="main", head="feature", title="again", body=""))
    assert data["errors"] == [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "A pull request already exists for octo:feature.",
        }
    ]
    git.run(hub.bare, "branch", "same", "main")
    _, data = error_of(lambda: repo.create_pull(base="main", head="same", title="t", body=""))
    assert data["errors"][0]["message"] == "No commits between main and same"
    _, data = error_of(lambda: repo.create_pull(base="gone", head="nope", title="t", body=""))
    assert data["errors"] == [
        {"resource": "PullRequest", "field": "base", "code": "invalid"},
        {"resource": "PullRequest", "field": "head", "code": "invalid"},
    ]
    # the files list is git's three-dot diff; state is live
    assert [(f.filename, f.status) for f in pr.get_files()] == [
        ("src/app.py", "modified"),
        ("src/old.py", "removed"),
    ]
    hub.remote_commit("main", {"other.txt": "moves main, not the PR diff\n"})
    assert [f.filename for f in repo.get_pull(pr.number).get_files()] == ["src/app.py", "src/old.py"]
    new_head = hub.remote_commit("feature", {"more.txt": "x\n"})
    assert repo.get_pull(pr.number).head.sha == new_head
    pr.edit(state="closed")
    assert repo.get_pull(pr.number).state == "closed"
    assert [p.number for p in repo.get_pulls(state="open")] == []


def test_pagination_link_headers_use_the_request_host(hub: Hub) -> None:
    issue = hub.repo().create_issue(title="many comments")
    for i in range(7):
        issue.create_comment(f"c{i}")
    gh = hub.gh(per_page=3)
    bodies = [c.body for c in gh.get_repo(hub.name).get_issue(issue.number).get_comments()]
    assert bodies == [f"c{i}" for i in range(7)]
    pages = [x for x in hub.fake.traffic if x.path.endswith("/comments") and x.method == "GET"]
    assert len(pages) == 3
    link = pages[0].response_headers["Link"]
    assert link.startswith(f"<{hub.fake.base_url}/repos/octo/app/issues/{issue.number}/comments?")
    assert 'rel="next"' in link and 'rel="last"' in link and "page=3" in link


def test_auth_and_permissions(hub: Hub) -> None:
    hub.fake.add_token("ghs_reader", issues="read")
    status, data = error_of(lambda: hub.gh("ghs_reader").get_repo(hub.name).create_issue(title="x"))
    assert (status, data["message"]) == (403, "Resource not accessible by integration")
    status, data = error_of(lambda: hub.gh("ghs_who").get_repo(hub.name))
    assert (status, data["message"]) == (401, "Bad credentials")
    hub.fake.add_user("alice", "write")
    hub.fake.add_user("bob", "triage")
    repo = hub.repo()
    assert repo.get_collaborator_permission("alice") == "write"
    assert repo.get_collaborator_permission("bob") == "read"
    assert repo.get_collaborator_permission("octo") == "admin"


def test_reactions_and_labels(hub: Hub) -> None:
    issue = hub.repo().create_issue(title="x", labels=["swarm"])
    issue.create_reaction("eyes")
    issue.create_reaction("eyes")  # the same reaction twice is one reaction
    assert [r.content for r in issue.get_reactions()] == ["eyes"]
    status, _ = error_of(lambda: issue.create_reaction("party"))
    assert status == 422
    issue.remove_from_labels("swarm")
    assert list(hub.repo().get_issue(issue.number).get_labels()) == []


# --- forks ----------------------------------------------------------------------------------------

FORK_TOKEN = "ghp_S0meoneElsesT0ken"


def fork_pr(hub: Hub, tmp_path: Path) -> tuple[Any, Path]:
    """``someone`` forks octo/app, pushes ``patch`` to the fork over HTTP and opens a PR into octo/app."""
    fork_bare = hub.fake.add_fork("someone/app", hub.name)
    hub.fake.add_token(FORK_TOKEN, "someone", actions=False)
    fork_url = hub.gh(FORK_TOKEN).get_repo("someone/app").clone_url
    app = BASE_FILES["src/app.py"].replace("line 5\n", "five\n")
    tip = commit(hub.work, git.rev_parse(hub.work, "main"), {"src/app.py": app}, "five")
    git.push(hub.work, fork_url, [f"{tip}:refs/heads/patch"], FORK_TOKEN)
    upstream = hub.gh(FORK_TOKEN).get_repo(hub.name)
    return upstream.create_pull(
        base="main", head="someone:patch", title="Five", body="from a fork"
    ), fork_bare


def test_pull_request_from_a_fork_has_githubs_head(hub: Hub, tmp_path: Path) -> None:
    pr, fork_bare = fork_pr(hub, tmp_path)
    got = hub.repo().get_pull(pr.number)
    assert (got.head.label, got.head.ref, got.head.user.login) == ("someone:patch", "patch", "someone")
    assert (got.head.repo.full_name, got.head.repo.fork) == ("someone/app", True)
    assert (got.base.repo.full_name, got.base.repo.fork) == (hub.name, False)
    assert got.head.repo.clone_url == f"{hub.fake.base_url}/someone/app.git"
    assert got.head.sha == git.rev_parse(fork_bare, "refs/heads/patch")
    assert [f.filename for f in got.get_files()] == ["src/app.py"]
    assert hub.remote_sha("patch") is None  # the branch lives in the fork only
    fork = hub.gh().get_repo("someone/app")
    assert fork.fork and fork.parent is not None and fork.source is not None
    assert (fork.parent.full_name, fork.source.full_name) == (hub.name, hub.name)
    assert hub.repo().forks_count == 1
    assert [p.number for p in hub.repo().get_pulls(head="someone:patch")] == [pr.number]
    assert list(hub.repo().get_pulls(head="octo:patch")) == []
    # reviews anchor on the fork's diff, computed in the base repository (refs/pull/N/head)
    review = got.create_review(
        event="COMMENT", body="r", comments=[{"path": "src/app.py", "line": 5, "body": "ok"}]
    )
    assert review.state == "COMMENTED"
    assert git.rev_parse(hub.bare, f"refs/pull/{pr.number}/head") == got.head.sha


def test_a_fork_pull_request_follows_its_branch_and_keeps_githubs_rules(hub: Hub, tmp_path: Path) -> None:
    pr, fork_bare = fork_pr(hub, tmp_path)
    tip = git.rev_parse(fork_bare, "refs/heads/patch")
    newer = commit(fork_bare, tip, {"more.txt": "more\n"}, "more")
    git.update_ref(fork_bare, "refs/heads/patch", newer, tip)
    got = hub.repo().get_pull(pr.number)
    assert got.head.sha == newer
    assert sorted(f.filename for f in got.get_files()) == ["more.txt", "src/app.py"]
    upstream = hub.gh(FORK_TOKEN).get_repo(hub.name)
    _, data = error_of(lambda: upstream.create_pull(base="main", head="someone:patch", title="t", body=""))
    assert data["errors"][0]["message"] == "A pull request already exists for someone:patch."
    _, data = error_of(lambda: upstream.create_pull(base="main", head="nobody:patch", title="t", body=""))
    assert data["errors"] == [{"resource": "PullRequest", "field": "head", "code": "invalid"}]
    # the base repository's token cannot push to someone's fork; its owner can
    with pytest.raises(GitError, match="403"):
        git.push(hub.work, got.head.repo.clone_url, [f"{tip}:refs/heads/intruder"], TOKEN)
    assert git.try_rev_parse(fork_bare, "refs/heads/intruder") is None


def test_fork_traffic_matches_githubs_openapi_description(hub: Hub, tmp_path: Path) -> None:
    from openapi_core import OpenAPI

    from tests.test_github_openapi import SLICE, validate

    pr, _ = fork_pr(hub, tmp_path)
    hub.repo().get_pull(pr.number)
    hub.gh().get_repo("someone/app")
    api = OpenAPI.from_dict(json.loads(SLICE.read_text()))
    for exchange in hub.fake.traffic:
        validate(api, exchange)
    assert {x.path for x in hub.fake.traffic} >= {"/repos/someone/app", f"/repos/octo/app/pulls/{pr.number}"}


# --- git over smart HTTP -------------------------------------------------------------------------


def test_git_push_needs_a_token_with_write_access(hub: Hub, tmp_path: Path) -> None:
    url = hub.repo().clone_url
    head = git.rev_parse(hub.work, "main")
    with pytest.raises(GitError):
        git.push(hub.work, url, [f"{head}:refs/heads/anon"])  # no credentials: refused
    hub.fake.add_token("ghs_ro", contents="read")
    with pytest.raises(GitError, match="403"):
        git.push(hub.work, url, [f"{head}:refs/heads/ro"], "ghs_ro")
    git.push(hub.work, url, [f"{head}:refs/heads/ok"], TOKEN)
    assert hub.remote_sha("ok") == head
    clone = tmp_path / "clone"
    git.run(tmp_path, "clone", "--quiet", url, str(clone))  # anonymous reads work, like a public repo
    assert (clone / "README.md").read_text() == BASE_FILES["README.md"]
    assert ("POST", "/octo/app.git/git-receive-pack", 200) in hub.fake.git_requests


def test_large_push_with_chunked_body(hub: Hub) -> None:
    import os

    blob = os.urandom(3 * 1024 * 1024).hex()  # > http.postBuffer: git sends it chunked
    tip = git.rev_parse(hub.work, "main")
    big = commit(hub.work, tip, {"big.txt": blob}, "big")
    git.push(hub.work, hub.repo().clone_url, [f"{big}:refs/heads/big"], TOKEN)
    assert hub.remote_sha("big") == big


# --- clients that hang up -------------------------------------------------------------------------


def _hang_up(fake: FakeGitHub, request: bytes) -> None:
    """Send ``request`` and reset the connection (SO_LINGER 0: an RST, as a killed client leaves)."""
    host, port = fake.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_hanging_up_prints_no_traceback_but_real_errors_still_do(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with FakeGitHub() as fake:
        fake.add_repo("octo/app")
        _hang_up(fake, b"POST /repos/octo/app/issues HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
        _hang_up(fake, b"GET /repos/octo/app HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while fake.hung_up < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.hung_up == 2
        fake.fail("GET", "/branches$", 500, body={"not json": object()})  # a bug in a test's fault
        conn = http.client.HTTPConnection(fake.base_url.removeprefix("http://"), timeout=10)
        conn.request("GET", "/repos/octo/app/branches")
        with pytest.raises(http.client.RemoteDisconnected):  # the handler died: no answer
            conn.getresponse()
        conn.close()
    err = capfd.readouterr().err
    assert "TypeError: Object of type object is not JSON serializable" in err
    assert "ConnectionResetError" not in err and "BrokenPipeError" not in err
    assert err.count("Traceback") == 1


# --- run on its own ----------------------------------------------------------------------------


def test_module_cli_serves_a_repo_and_prints_the_base_url_first(tmp_path: Path) -> None:
    source = make_repo(tmp_path / "src", {"a.txt": "a\n"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_swarm.testing.fake_github", "--port", "0", "--repo", f"octo/demo={source}",
         "--user", "alice=write", "--root", str(tmp_path / "root"), "--fork", "someone/demo=octo/demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        gh = github.Github(auth=github.Auth.Token("anything"), base_url=base, retry=None)
        repo = gh.get_repo("octo/demo")
        assert repo.clone_url == f"{base}/octo/demo.git"
        assert repo.get_collaborator_permission("alice") == "write"
        assert repo.get_branch(repo.default_branch).commit.sha == git.rev_parse(source, "HEAD")
        fork = gh.get_repo("someone/demo")
        assert fork.fork and fork.parent is not None and fork.parent.full_name == "octo/demo"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err, err


def test_fake_stops_cleanly_and_removes_its_temp_root() -> None:
    fake = FakeGitHub().start()
    root = fake.root
    assert root.is_dir()
    fake.stop()
    assert not root.exists()


def test_permission_answers_as_github_does(hub: Hub) -> None:
    hub.fake.add_user("triager", "triage")
    hub.fake.add_user("dependabot[bot]", "write")  # even a bot with access: github.com has no answer
    repo = hub.repo()
    assert repo.get_collaborator_role_name("triager") == "triage"  # role_name tells triage from read
    for login in ("dependabot[bot]", "github-actions[bot]", "nobody-known"):
        status, data = error_of(lambda login=login: repo.get_collaborator_permission(login))
        assert (status, data["message"]) == (404, f"{login} is not a user")


def test_removing_a_label_not_on_the_issue_is_a_404_label_does_not_exist(hub: Hub) -> None:
    issue = hub.repo().create_issue(title="x", labels=["swarm"])
    issue.remove_from_labels("swarm")
    status, data = error_of(lambda: issue.remove_from_labels("swarm"))
    assert (status, data["message"]) == (404, "Label does not exist")
    # PyGithub maps only "Not Found" to UnknownObjectException: this one is a plain GithubException
    with pytest.raises(github.GithubException) as caught:
        issue.remove_from_labels("swarm")
    assert not isinstance(caught.value, github.UnknownObjectException)


def test_author_association_as_github_sends_it(hub: Hub) -> None:
    hub.fake.add_user("collab", "read")
    hub.fake.add_user("org-reader", "read", member="public")
    hub.fake.add_user("private-writer", "write", member="private")
    hub.fake.add_user("drive-by", contributor=True)
    hub.fake.add_user("renovate[bot]", "write")
    repo = hub.fake.repo(hub.name)
    seen = {login: hub.fake.store.association(repo, login) for login in hub.fake.store.users}
    assert seen["collab"] == "COLLABORATOR"
    assert seen["org-reader"] == "MEMBER"
    assert seen["private-writer"] == "CONTRIBUTOR"
    assert seen["drive-by"] == "CONTRIBUTOR"
    assert seen["renovate[bot]"] == "NONE"
    assert seen[hub.name.split("/")[0]] == "OWNER"
    with pytest.raises(ValueError, match="member must be"):
        hub.fake.add_user("x", member="secret")


def test_members_from_the_command_line() -> None:
    from ci_swarm.testing.fake_github.__main__ import parse_args

    args = parse_args(["--member", "ann=read", "--private-member", "bo=write"])
    assert (args.member, args.private_member) == ([("ann", "read")], [("bo", "write")])
