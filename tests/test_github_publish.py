"""Publishing a run against the fake GitHub with the real PyGithub over HTTP: the happy paths."""

from __future__ import annotations

import json
from pathlib import Path

from ci_swarm import git
from ci_swarm.agents import make_agent_factory
from ci_swarm.github.publish import Target, emit_job
from ci_swarm.models import AgentSpec, Conflict, ConflictKind, Request, RunReport, SubtaskStatus, Usage
from ci_swarm.ports import ProgressEvent
from ci_swarm.run import RunOptions, run_plan_sync
from tests.github_helpers import BASE_FILES, REPO, Agent, Hub, hub, make_run, open_issue
from tests.helpers import plan_of, scripted

__all__ = ["hub"]

APP = BASE_FILES["src/app.py"]


def _app(**changes: str) -> str:
    lines = APP.splitlines(keepends=True)
    for key, text in changes.items():
        lines[int(key[1:]) - 1] = text
    return "".join(lines)


def conflicted_run(hub: Hub, run_id: str = "r1") -> tuple[RunReport, Conflict]:
    """Three agents: docs (clean), code and tests both rewrote line 10 of src/app.py; code's side kept."""
    readme = BASE_FILES["README.md"].replace("none yet", "greet() says hi")
    usage = Usage(requests=2, input_tokens=100, output_tokens=50, cost_usd=0.0123)
    code = {"src/app.py": _app(l10="greet = 'hello'\n"), "src/greet.py": "def greet():\n    return 'hi'\n"}
    agents = [
        Agent("docs", {"README.md": readme}, "documenter"),
        Agent("code", code, usage=usage),
        Agent("tests", {"src/app.py": _app(l10="greet = 'HELLO'\n", l30="line thirty\n")}, "tester"),
    ]
    conflict = Conflict(
        "src/app.py", ConflictKind.CONTENT, "tests", "code", (10, 10),
        "greet = 'hello'\n", "greet = 'HELLO'\n", "line 10\n", "both rewrote line 10",
    )  # fmt: skip
    resolved = {"tests": {"src/app.py": _app(l10="greet = 'hello'\n", l30="line thirty\n")}}
    report = make_run(hub.work, agents, run_id=run_id, resolved=resolved, conflicts={"tests": [conflict]})
    return report, conflict


def test_issue_run_opens_a_pr_with_summary_review_progress_and_reactions(hub: Hub) -> None:
    number = open_issue(hub)
    report, _ = conflicted_run(hub)
    pub = hub.publisher(Target(REPO, issue=number))
    progress = pub.start(report.request, report.run_id, [s.id for s in report.subtasks])
    for sub in report.subtasks:
        progress(ProgressEvent("subtask_started", sub.id, "running"))
    for sub in report.subtasks:
        progress(ProgressEvent("subtask_finished", sub.id, "succeeded"))
        progress(ProgressEvent("merge_finished", sub.id, "clean"))
    result = pub.publish(hub.work, report, progress)

    # branches: the integration branch and every agent branch are on the remote, as committed
    assert hub.remote_sha("swarm/r1") == report.integration_commit
    for sub in report.subtasks:
        assert hub.remote_sha(sub.branch) == sub.commit
    assert set(result.pushed) == {"swarm/r1", *(s.branch for s in report.subtasks)}

    # the PR: from swarm/r1 into main, title from the request, body with the summary and Closes #N
    repo = hub.repo()
    pr = repo.get_pull(result.pr_number)
    assert (pr.head.ref, pr.base.ref, pr.state) == ("swarm/r1", "main", "open")
    assert pr.title == "ci-swarm: Add a greeting"
    assert f"Closes #{number}" in pr.body
    assert "| `code` |" in pr.body and "```mermaid" in pr.body and "### Conflicts" in pr.body
    assert pr.html_url == result.pr_url
    assert {f.filename for f in pr.get_files()} == {"README.md", "src/app.py", "src/greet.py"}

    # the review: one comment on line 10 with tests' side as a suggestion, accepted as posted
    comments = list(pr.get_review_comments())
    assert len(comments) == 1
    (comment,) = comments
    assert (comment.path, comment.line, comment.side) == ("src/app.py", 10, "RIGHT")
    assert "```suggestion\ngreet = 'HELLO'\n```" in comment.body
    assert "**code** (kept)" in comment.body and "**tests**" in comment.body
    assert (result.review_comments, result.file_comments, result.body_notes) == (1, 0, 0)
    assert [r.state for r in pr.get_reviews()] == ["COMMENTED"]
    assert not [x for x in hub.fake.traffic if x.status == 422]

    # the progress comment: final state matches the report; reactions 👀 then 🚀
    issue = repo.get_issue(number)
    (progress_comment,) = list(issue.get_comments())
    body = progress_comment.body
    assert body.startswith("<!-- ci-swarm:progress run=r1 -->")
    assert "— finished" in body
    for sub in report.subtasks:
        assert f"- [x] `{sub.id}`" in body
    assert f"#{result.pr_number}" in body and "1 conflict(s) recorded" in body
    assert "cost $0.0123" in body
    assert [r.content for r in issue.get_reactions()] == ["eyes", "rocket"]
    assert progress.edits >= 2


def test_second_publish_updates_the_existing_pr_instead_of_failing(hub: Hub) -> None:
    number = open_issue(hub)
    report, _ = conflicted_run(hub)
    first = hub.publisher(Target(REPO, issue=number)).publish(hub.work, report)
    again = hub.publisher(Target(REPO, issue=number)).publish(hub.work, report)
    assert again.pr_number == first.pr_number
    pulls = list(hub.repo().get_pulls(state="all"))
    assert len(pulls) == 1
    assert not [x for x in hub.fake.traffic if x.status >= 400]


def test_pr_created_meanwhile_is_found_after_already_exists(hub: Hub) -> None:
    """Between looking and creating, someone opened the PR: GitHub's 422 'already exists' → update it."""
    report, _ = conflicted_run(hub)
    pub = hub.publisher()
    git.push(hub.work, hub.repo().clone_url, [f"{report.integration_commit}:refs/heads/swarm/r1"], hub.token)
    other = hub.repo().create_pull(base="main", head="swarm/r1", title="by hand", body="mine")
    hub.fake.fail("GET", r"/repos/octo/app/pulls$", 200, body=[], times=1)
    result = pub.publish(hub.work, report)
    assert result.pr_number == other.number
    assert hub.repo().get_pull(other.number).title == "ci-swarm: Add a greeting"
    assert [x.status for x in hub.fake.traffic if x.method == "POST" and x.path.endswith("/pulls")] == [
        201,
        422,
    ]


def test_pr_target_pushes_onto_the_pr_branch_and_leaves_its_body(hub: Hub) -> None:
    repo = hub.repo()
    feature = hub.remote_commit("main", {}, "noop")  # main moves a bit: the PR's base
    git.run(hub.bare, "branch", "feature", feature)
    hub.remote_commit("feature", {"src/feature.py": "x = 1\n"}, "feature work")
    pr = repo.create_pull(base="main", head="feature", title="Feature", body="original body")
    git.fetch(hub.work, repo.clone_url, ["+refs/heads/feature:refs/heads/feature"], hub.token)
    report = make_run(
        hub.work,
        [Agent("docs", {"README.md": "# app\n\nnew docs\n"}, "documenter")],
        base="feature",
    )
    result = hub.publisher(Target(REPO, pr=pr.number)).publish(hub.work, report)
    pr = hub.repo().get_pull(pr.number)
    assert pr.body == "original body"
    assert pr.head.sha == report.integration_commit == hub.remote_sha("feature")
    assert result.branch == "feature"
    assert hub.remote_sha("swarm/r1") is None  # nothing else took the work
    assert result.pr_number == pr.number


def test_job_outputs_and_summary_as_the_runner_reads_them(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    report, _ = conflicted_run(hub)
    result = hub.publisher().publish(hub.work, report)
    out_file, summary = tmp_path / "out", tmp_path / "summary"
    out_file.write_text("")
    stream = io.StringIO()
    env = {"GITHUB_OUTPUT": str(out_file), "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true"}
    emit_job(report, result, env, stream)
    outputs = parse_outputs(out_file.read_text())
    assert outputs["pr_number"] == str(result.pr_number)
    assert outputs["pr_url"] == result.pr_url
    assert outputs["branch"] == "swarm/r1"
    assert (outputs["conflicts"], outputs["failed"], outputs["tokens"]) == ("1", "0", "150")
    assert outputs["cost_usd"] == "0.0123" and outputs["run_id"] == "r1" and outputs["speedup"] == "1.50"
    assert "## ci-swarm run `r1`" in summary.read_text()
    text = stream.getvalue()
    assert text.count("::group::") == 3 == text.count("::endgroup::")
    assert "agent code log" in text
    assert json.dumps(outputs)


def parse_outputs(text: str) -> dict[str, str]:
    """Read $GITHUB_OUTPUT the way the runner does (``name<<DELIM`` blocks and ``name=value`` lines)."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


def test_failed_subtask_gets_confused_reaction_and_error_annotation(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    number = open_issue(hub)
    agents = [
        Agent("docs", {"README.md": "# app\n\ndocs\n"}, "documenter"),
        Agent("code", {"src/x.py": "x\n"}, status=SubtaskStatus.FAILED),
    ]
    report = make_run(hub.work, agents)
    pub = hub.publisher(Target(REPO, issue=number))
    progress = pub.start(report.request, report.run_id, ["docs", "code"])
    progress(ProgressEvent("subtask_finished", "code", "failed", "agent crashed"))
    result = pub.publish(hub.work, report, progress)
    issue = hub.repo().get_issue(number)
    assert [r.content for r in issue.get_reactions()] == ["eyes", "confused"]
    body = next(iter(issue.get_comments())).body
    assert "❌ failed" in body and "agent crashed" in body
    stream = io.StringIO()
    emit_job(report, result, {}, stream)
    assert "::error title=ci-swarm::subtask code failed" in stream.getvalue()


def test_full_run_from_request_to_pr_with_the_real_engine(hub: Hub, tmp_path: Path) -> None:
    """ci_swarm.run with scripted agents, the publisher as progress listener, then publish."""
    number = open_issue(hub, "Add a greeting", "with tests and docs")
    plan = plan_of(
        scripted("code", edits=[
            {"write": "src/greet.py", "content": "def greet():\n    return 'hi'\n"},
            {"replace": "src/app.py", "old": "line 10\n", "new": "greet = 'hello'\n"},
        ]),
        scripted("tests", "tester", delay=0.05, edits=[
            {"replace": "src/app.py", "old": "line 10\n", "new": "greet = 'HELLO'\n"},
            {"replace": "src/app.py", "old": "line 30\n", "new": "line thirty\n"},
        ]),
        scripted("docs", "documenter", edits=[{"replace": "README.md", "old": "none yet", "new": "greet()"}]),
        task="Add a greeting",
    )  # fmt: skip
    request = Request("Add a greeting", "issue", number, "Add a greeting", "with tests and docs", "octo")
    pub = hub.publisher(Target(REPO, issue=number))
    progress = pub.start(request, "e2e", plan.subtasks)
    options = RunOptions(repo=hub.work, base="main", run_id="e2e", workdir=tmp_path / "trees")
    report = run_plan_sync(plan, options, make_agent_factory(AgentSpec("scripted")), progress, request)
    result = pub.publish(hub.work, report, progress)

    assert {s.status for s in report.subtasks} == {SubtaskStatus.SUCCEEDED}
    assert len(report.conflicts) == 1  # code and tests both rewrote line 10
    pr = hub.repo().get_pull(result.pr_number)
    assert pr.head.sha == report.integration_commit == hub.remote_sha("swarm/e2e")
    assert f"Closes #{number}" in pr.body
    files = {f.filename for f in pr.get_files()}
    assert {"README.md", "src/app.py", "src/greet.py"} <= files
    posted = list(pr.get_review_comments())
    assert len(posted) == len(report.conflicts) == result.review_comments + result.file_comments
    for conflict, comment in zip(report.conflicts, posted, strict=True):
        assert comment.path == conflict.path
        assert comment.line == conflict.lines[1]
    assert not [x for x in hub.fake.traffic if x.status == 422]
    body = next(iter(hub.repo().get_issue(number).get_comments())).body
    assert all(f"- [x] `{s.id}`" in body for s in plan.subtasks)
    assert "— finished" in body
