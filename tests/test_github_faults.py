"""Every fault of the publishing issue, against the fake GitHub with the real PyGithub and real pushes."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.errors import ForgeError
from ci_swarm.github.client import RetrySettings
from ci_swarm.github.publish import Target
from ci_swarm.models import Conflict, ConflictKind, RunReport
from ci_swarm.ports import ProgressEvent
from tests.github_helpers import BASE_FILES, REPO, TOKEN, Agent, Hub, hub, make_run, open_issue

__all__ = ["hub"]


def simple_run(hub: Hub, run_id: str = "r1", base: str = "main") -> RunReport:
    agents = [
        Agent("docs", {"README.md": "# app\n\nbetter docs\n"}, "documenter"),
        Agent("code", {"src/greet.py": "def greet():\n    return 'hi'\n"}),
    ]
    return make_run(hub.work, agents, run_id=run_id, base=base)


def progress_body(hub: Hub, number: int) -> str:
    return str(next(iter(hub.repo().get_issue(number).get_comments())).body)


def reactions(hub: Hub, number: int) -> list[str]:
    return [r.content for r in hub.repo().get_issue(number).get_reactions()]


# --- permissions ---------------------------------------------------------------------------------


def test_token_without_push_permission_fails_plainly_and_says_so_in_the_comment(hub: Hub) -> None:
    hub.fake.add_token("ghs_readonly", contents="read")
    number = open_issue(hub)
    report = simple_run(hub)
    pub = hub.publisher(Target(REPO, issue=number), token="ghs_readonly")
    progress = pub.start(report.request, report.run_id, ["docs", "code"])
    with pytest.raises(ForgeError, match=r"may not push to this repository \(HTTP 403\)"):
        pub.publish(hub.work, report, progress)
    assert hub.remote_sha("swarm/r1") is None
    assert "**Publishing failed:**" in progress_body(hub, number)
    assert reactions(hub, number) == ["eyes", "confused"]


def test_token_without_pull_request_permission(hub: Hub) -> None:
    hub.fake.add_token("ghs_nopr", pull_requests="read")
    report = simple_run(hub)
    with pytest.raises(
        ForgeError, match=r"may not open pull requests.*Resource not accessible by integration"
    ):
        hub.publisher(token="ghs_nopr").publish(hub.work, report)
    assert hub.remote_sha("swarm/r1") == report.integration_commit  # the work is pushed, nothing lost


def test_actions_not_permitted_to_create_prs_reports_github_message_and_the_fix(hub: Hub) -> None:
    hub.fake.settings.actions_can_create_prs = False
    report = simple_run(hub)
    with pytest.raises(ForgeError) as caught:
        hub.publisher().publish(hub.work, report)
    text = str(caught.value)
    assert "GitHub Actions is not permitted to create pull requests in octo/app" in text
    assert "Allow GitHub Actions to create and approve pull requests" in text
    assert "swarm/r1" in text
    (refused,) = [x for x in hub.fake.traffic if x.method == "POST" and x.path.endswith("/pulls")]
    assert refused.status == 403
    assert refused.json()["message"] == "GitHub Actions is not permitted to create or approve pull requests."


# --- branches and pull requests that changed under the run ----------------------------------------


def test_base_branch_deleted(hub: Hub) -> None:
    report = simple_run(hub)
    git.run(hub.bare, "update-ref", "-d", "refs/heads/main")
    with pytest.raises(ForgeError, match="base branch 'main' does not exist in octo/app"):
        hub.publisher(base_branch="main").publish(hub.work, report)
    assert hub.remote_sha("swarm/r1") == report.integration_commit


def test_pr_closed_meanwhile_keeps_the_work_on_a_swarm_branch(hub: Hub) -> None:
    git.run(hub.bare, "branch", "feature", "main")
    hub.remote_commit("feature", {"src/feature.py": "x = 1\n"})
    git.fetch(hub.work, hub.repo().clone_url, ["+refs/heads/feature:refs/heads/feature"], TOKEN)
    pr = hub.repo().create_pull(base="main", head="feature", title="Feature", body="mine")
    report = simple_run(hub, base="feature")
    pub = hub.publisher(Target(REPO, pr=pr.number))
    progress = pub.start(report.request, report.run_id, ["docs", "code"])
    pr.edit(state="closed")
    feature_before = hub.remote_sha("feature")
    result = pub.publish(hub.work, report, progress)
    assert hub.remote_sha("feature") == feature_before  # a closed PR's branch is left alone
    assert hub.remote_sha("swarm/r1") == report.integration_commit
    assert any("was closed while the swarm ran" in note for note in result.notes)
    assert "was closed while the swarm ran" in progress_body(hub, pr.number)
    assert "was merged" not in " ".join(result.notes)  # closed without merging is not called merged
    assert not result.landed
    assert reactions(hub, pr.number) == ["eyes", "confused"]


def test_pr_merged_meanwhile_says_merged_and_keeps_the_work_on_a_swarm_branch(hub: Hub) -> None:
    git.run(hub.bare, "branch", "feature", "main")
    hub.remote_commit("feature", {"src/feature.py": "x = 1\n"})
    git.fetch(hub.work, hub.repo().clone_url, ["+refs/heads/feature:refs/heads/feature"], TOKEN)
    pr = hub.repo().create_pull(base="main", head="feature", title="Feature", body="mine")
    report = simple_run(hub, base="feature")
    pub = hub.publisher(Target(REPO, pr=pr.number))
    progress = pub.start(report.request, report.run_id, ["docs", "code"])
    # the maintainer merges the PR while the swarm runs: main fast-forwards to feature, the PR is closed
    feature_before = hub.remote_sha("feature")
    git.update_ref(hub.bare, "refs/heads/main", feature_before or "", git.rev_parse(hub.bare, "main"))
    pr.edit(state="closed")
    # the fake cannot merge pull requests: answer the publisher's read of it as GitHub does after a merge
    merged = {**hub.repo().get_pull(pr.number).raw_data, "state": "closed", "merged": True}
    merged.update(merged_at="2024-05-01T12:00:00Z", merge_commit_sha=feature_before, mergeable=None)
    hub.fake.fail("GET", rf"/pulls/{pr.number}$", 200, body=merged, times=1)
    result = pub.publish(hub.work, report, progress)
    assert hub.remote_sha("feature") == feature_before  # a merged PR's branch is left alone
    assert hub.remote_sha("swarm/r1") == report.integration_commit
    (note,) = [n for n in result.notes if "while the swarm ran" in n]
    assert note == (
        f"pull request #{pr.number} was merged while the swarm ran: the work is on branch `swarm/r1` instead"
    )
    body = progress_body(hub, pr.number)
    assert "was merged while the swarm ran" in body and "was closed" not in body
    assert not result.landed
    assert [x.injected for x in hub.fake.traffic if x.path.endswith(f"/pulls/{pr.number}")][-1]


def _upstream_edit(hub: Hub, branch: str) -> None:
    hub.remote_commit(branch, {"NOTES.md": "someone else pushed\n"})


def test_target_moved_fetch_remerge_with_the_merge_queue_and_push(hub: Hub) -> None:
    git.run(hub.bare, "branch", "feature", "main")
    git.fetch(hub.work, hub.repo().clone_url, ["+refs/heads/feature:refs/heads/feature"], TOKEN)
    hub.remote_commit("feature", {"src/feature.py": "x = 1\n"})
    pr = hub.repo().create_pull(base="main", head="feature", title="Feature", body="mine")
    git.fetch(hub.work, hub.repo().clone_url, ["+refs/heads/feature:refs/heads/feature"], TOKEN)
    report = simple_run(hub, base="feature")
    _upstream_edit(hub, "feature")  # moves while the swarm ran
    moved = hub.remote_sha("feature")
    result = hub.publisher(Target(REPO, pr=pr.number)).publish(hub.work, report)
    tip = hub.remote_sha("feature")
    assert tip is not None and tip != report.integration_commit
    assert git.is_ancestor(hub.work, moved or "", tip)  # the upstream commit is kept
    for sub in report.subtasks:
        assert git.is_ancestor(hub.work, sub.commit, tip)  # and every agent's work is merged onto it
    assert result.report is not None and result.report.integration_commit == tip
    assert any("moved on the remote" in note for note in result.notes)
    assert git.try_read_blob(hub.work, tip, "NOTES.md") == b"someone else pushed\n"


def test_target_that_keeps_moving_gives_up_after_bounded_attempts(hub: Hub) -> None:
    report = simple_run(hub)
    hub.remote_commit("main", {})  # so that swarm/r1 can be created ahead of us
    git.run(hub.bare, "branch", "swarm/r1", "main")
    calls: list[str] = []

    def remerge(repo: Path, rep: RunReport, tip: str) -> RunReport:
        calls.append(tip)
        _upstream_edit(hub, "swarm/r1")  # and someone pushes again before we do
        from ci_swarm.merge_only import remerge as core_remerge

        return core_remerge(repo, rep, tip)

    pub = hub.publisher(push_attempts=3, remerge=remerge)
    with pytest.raises(ForgeError, match=r"kept moving \(3 attempts\)"):
        pub.publish(hub.work, report)
    assert len(calls) == 2


# --- server errors and rate limits -----------------------------------------------------------------


def test_5xx_is_retried_a_bounded_number_of_times(hub: Hub) -> None:
    report = simple_run(hub)
    hub.fake.fail("POST", r"/pulls$", 502, times=2)
    result = hub.publisher().publish(hub.work, report)
    posts = [x.status for x in hub.fake.traffic if x.method == "POST" and x.path.endswith("/pulls")]
    assert posts == [502, 502, 201]
    assert result.pr_number is not None


def test_5xx_that_persists_becomes_a_forge_error(hub: Hub) -> None:
    report = simple_run(hub)
    hub.fake.fail("POST", r"/pulls$", 503, times=50)
    settings = RetrySettings(total=2, backoff=0.01, secondary_rate_wait=0.05, max_wait=1.0)
    with pytest.raises(ForgeError, match=r"opening a pull request from swarm/r1 into main.*503"):
        hub.publisher(retry=settings).publish(hub.work, report)
    posts = [x for x in hub.fake.traffic if x.method == "POST" and x.path.endswith("/pulls")]
    assert len(posts) == 3  # the first try and two retries, then it stops


def test_secondary_rate_limit_is_waited_out(hub: Hub) -> None:
    number = open_issue(hub)
    report = simple_run(hub)
    pub = hub.publisher(Target(REPO, issue=number))
    progress = pub.start(report.request, report.run_id, ["docs", "code"])
    hub.fake.secondary_rate_limit("PATCH", r"/issues/comments/\d+$", times=1, retry_after=0)
    hub.fake.secondary_rate_limit("POST", r"/pulls$", times=1, retry_after=0)
    result = pub.publish(hub.work, report, progress)
    assert result.pr_number is not None
    limited = [x for x in hub.fake.traffic if x.status == 403]
    assert len(limited) == 2
    assert "— finished" in progress_body(hub, number)


def test_progress_edits_are_throttled_for_a_big_swarm(hub: Hub) -> None:
    number = open_issue(hub)
    ids = [f"agent-{i:02d}" for i in range(16)]
    pub = hub.publisher(Target(REPO, issue=number), progress_interval=0.3)
    progress = pub.start(None, "big", ids)
    for sub in ids:
        progress(ProgressEvent("subtask_started", sub, "running"))
    for sub in ids:
        progress(ProgressEvent("subtask_finished", sub, "succeeded"))
        progress(ProgressEvent("merge_finished", sub, "clean"))
    progress.finish("done")
    edits = [x for x in hub.fake.traffic if x.method == "PATCH"]
    assert 1 <= len(edits) <= 4  # 64 events, a handful of edits, the last one final
    body = progress_body(hub, number)
    assert all(f"- [x] `{sub}`" in body for sub in ids)


# --- conflicts that cannot anchor on a line --------------------------------------------------------


def test_conflicts_without_a_right_side_line_fall_back_and_never_422(hub: Hub) -> None:
    """A file deleted on the kept side, a deleted range, a line outside the hunks, a path not in the diff."""
    app = BASE_FILES["src/app.py"]
    kept_app = app.replace("line 3\nline 4\n", "")  # code deleted lines 3-4
    agents = [
        Agent("code", {"src/old.py": None, "src/app.py": kept_app}),
        Agent(
            "tests",
            {"src/old.py": "print('old, tested')\n", "src/app.py": app.replace("line 3\n", "LINE 3\n")},
        ),
    ]
    conflicts = [
        Conflict("src/old.py", ConflictKind.MODIFY_DELETE, "tests", "code", (0, 0), "",
                 "print('old, tested')\n",
                 "print('old')\n"),
        Conflict("src/app.py", ConflictKind.CONTENT, "tests", "code", (0, 0), "", "LINE 3\nline 4\n",
                 "line 3\nline 4\n"),
        Conflict("src/app.py", ConflictKind.CONTENT, "tests", "code", (30, 31), "line 32\nline 33\n", "x\n",
                 "line 32\nline 33\n"),
        Conflict("src/never.py", ConflictKind.ADD_ADD, "tests", "code", (1, 1), "a\n", "b\n", ""),
    ]  # fmt: skip
    resolved = {"tests": {"src/old.py": None, "src/app.py": kept_app}}
    report = make_run(hub.work, agents, resolved=resolved, conflicts={"tests": conflicts})
    result = hub.publisher().publish(hub.work, report)
    assert (result.review_comments, result.file_comments, result.body_notes) == (0, 3, 1)
    pr = hub.repo().get_pull(result.pr_number)
    comments = list(pr.get_review_comments())
    assert sorted((c.path, c.subject_type) for c in comments) == [
        ("src/app.py", "file"), ("src/app.py", "file"), ("src/old.py", "file"),
    ]  # fmt: skip
    (review,) = [r for r in pr.get_reviews() if r.body]
    assert "`src/never.py`" in review.body and "not part of the PR diff" in review.body
    assert not [x for x in hub.fake.traffic if x.status == 422]


def test_two_hundred_conflicts_are_split_into_reviews_all_accepted(hub: Hub) -> None:
    lines = [f"value_{i} = {i}\n" for i in range(1, 801)]
    git.run(hub.work, "checkout", "-q", "-b", "big", "main")
    (hub.work / "src" / "big.py").write_text("".join(lines))
    git.commit_all(hub.work, "big file", git.SWARM_IDENTITY)
    git.push(hub.work, hub.repo().clone_url, ["big:refs/heads/main"], TOKEN, force=True)
    kept = list(lines)
    conflicts = []
    for n in range(200):  # every 4th line, so each sits in its own hunk region
        line = 2 + 4 * n
        kept[line - 1] = f"value_{line} = 'code'\n"
        other = f"value_{line} = 'tests'\n"
        conflicts.append(Conflict("src/big.py", ConflictKind.CONTENT, "tests", "code", (line, line),
                                  kept[line - 1], other, lines[line - 1]))  # fmt: skip
    agents = [Agent("code", {"src/big.py": "".join(kept)}), Agent("tests", {"src/big.py": "".join(kept)})]
    report = make_run(hub.work, agents, base="big", conflicts={"tests": conflicts})
    result = hub.publisher().publish(hub.work, report)
    pr = hub.repo().get_pull(result.pr_number)
    assert result.review_comments == 200 and result.reviews == 4
    comments = list(pr.get_review_comments())
    assert len(comments) == 200
    assert all("```suggestion\n" in c.body for c in comments)
    assert len(list(pr.get_reviews())) == 4
    assert not [x for x in hub.fake.traffic if x.status == 422]


def test_a_review_rejected_anyway_is_demoted_to_file_comments(hub: Hub) -> None:
    """Should GitHub still reject a batch (the diff changed under us), nothing is lost."""
    app = BASE_FILES["src/app.py"].replace("line 10\n", "ten\n")
    agents = [Agent("code", {"src/app.py": app}), Agent("tests", {"src/app.py": app})]
    conflict = Conflict(
        "src/app.py", ConflictKind.CONTENT, "tests", "code", (10, 10), "ten\n", "TEN\n", "line 10\n"
    )
    report = make_run(hub.work, agents, conflicts={"tests": [conflict]})
    body = {
        "message": "Unprocessable Entity",
        "errors": ["Pull request review thread line must be part of the diff"],
    }
    hub.fake.fail("POST", r"/reviews$", 422, body=body, times=1)
    result = hub.publisher().publish(hub.work, report)
    assert (result.review_comments, result.file_comments) == (0, 1)
    (comment,) = list(hub.repo().get_pull(result.pr_number).get_review_comments())
    assert comment.subject_type == "file" and "TEN" in comment.body


# --- the token ---------------------------------------------------------------------------------


def test_token_never_appears_in_any_output(
    hub: Hub, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    number = open_issue(hub)
    report = simple_run(hub)
    pub = hub.publisher(Target(REPO, issue=number))
    progress = pub.start(report.request, report.run_id, ["docs", "code"])
    result = pub.publish(hub.work, report, progress)
    # a failing push (bad token for git) and a failing API call leave error texts behind too
    hub.fake.add_token("ghs_other_secret_token_value", contents="read")
    failures = []
    for i, token in enumerate(("ghs_other_secret_token_value", "ghs_unknown_secret_token_value")):
        with pytest.raises(ForgeError) as caught:
            hub.publisher(token=token).publish(hub.work, simple_run(hub, run_id=f"bad{i}"))
        failures.append(str(caught.value))
        assert token not in failures[-1]
    from ci_swarm.github.publish import emit_job

    emit_job(
        report, result, {"GITHUB_OUTPUT": str(tmp_path / "o"), "GITHUB_STEP_SUMMARY": str(tmp_path / "s")}
    )
    out, err = capfd.readouterr()
    repo = hub.repo()
    texts = [caplog.text, out, err, *failures, (tmp_path / "o").read_text(), (tmp_path / "s").read_text()]
    texts += [c.body for c in repo.get_issue(number).get_comments()]
    pr = repo.get_pull(result.pr_number)
    texts += [pr.body, *(c.body for c in pr.get_review_comments()), *(r.body for r in pr.get_reviews())]
    texts += [x.request_body.decode() + x.response_body.decode() + x.path for x in hub.fake.traffic]
    texts.append((hub.work / ".git" / "config").read_text())  # nothing persisted in the local repository
    tokens = (TOKEN, "ghs_other_secret_token_value", "ghs_unknown_secret_token_value")
    # git sends the token as HTTP basic auth: base64 of "x-access-token:<token>", which must not leak either
    basics = tuple(base64.b64encode(f"x-access-token:{token}".encode()).decode() for token in tokens)
    for secret in (*tokens, *basics):
        assert all(secret not in text for text in texts), secret
    assert "Bad credentials" in failures[1] or "refused" in failures[1]
