"""Publishing a run on GitHub: push, pull request, progress comment, conflict review, reactions.

::

    pub = Publisher(api_url, token, Target("owner/name", issue=12), remerge=remerge)
    progress = pub.start(request, run_id, plan.subtasks)      # 👀 + the live progress comment
    report = run_plan_sync(plan, options, agents, progress, request)
    result = pub.publish(repo, report, progress)               # push, PR, review, final comment, 🚀/😕

From an issue (or the CLI): a PR from the run's branch into the base, created or updated. From a PR: the
commits go onto the PR's own branch (same repository only), the PR body is left alone, and the summary
goes into the progress comment. Every PyGithub error is mapped to a one-line ForgeError at this boundary.
When the target branch moved while the swarm ran, the run is re-merged onto the new tip by the injected
``remerge`` (:class:`ci_swarm.ports.Remerge`; the entry points pass :func:`ci_swarm.merge_only.remerge`).
Titles, bodies, notes and errors carry untrusted text: it goes through :mod:`ci_swarm.neutral`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import github
from github.PullRequest import PullRequest
from github.Repository import Repository

from ci_swarm import neutral, ports
from ci_swarm.errors import ForgeError, SwarmError
from ci_swarm.github import review as rv
from ci_swarm.github.client import DEFAULT_RETRY, RetrySettings, describe, forge_call, make_github, status_of
from ci_swarm.github.progress import ProgressComment, initial_state, render, workflow_run_url
from ci_swarm.github.pushing import push_agents, push_integration, withhold
from ci_swarm.github.runner import emit_job as emit_job  # its home is runner.py; kept importable from here
from ci_swarm.models import MergeStatus, Request, RunReport, Subtask, SubtaskStatus, Usage
from ci_swarm.ports import Remerge
from ci_swarm.report import headline, panel_headline, panel_review_body, to_markdown

log = logging.getLogger(__name__)
MAX_BODY = 65_000
ACTIONS_PR_HINT = (
    "allow it under Settings → Actions → General → Workflow permissions "
    '("Allow GitHub Actions to create and approve pull requests")'
)


@dataclass(frozen=True)
class Target:
    repo: str  # owner/name
    issue: int | None = None
    pr: int | None = None
    comment_id: int | None = None  # the comment that asked for the run (gets the reactions)

    @property
    def number(self) -> int | None:
        return self.pr if self.pr is not None else self.issue


@dataclass(frozen=True)
class PublishResult:
    pr_number: int | None
    pr_url: str
    branch: str
    pushed: tuple[str, ...]
    review_comments: int = 0
    file_comments: int = 0
    body_notes: int = 0
    reviews: int = 0  # conflict reviews and the review panel's
    notes: tuple[str, ...] = ()
    report: RunReport | None = None  # as published (re-merged when the target moved)
    landed: bool = True  # False: pushed elsewhere (PR closed, fork) or nothing to propose
    held_back: tuple[
        str, ...
    ] = ()  # agent branches not pushed (a secret in their commits): place, never value


class _Pushed(NamedTuple):
    report: RunReport  # as pushed: held-back subtasks taken out, re-merged when the target moved
    pushed: tuple[str, ...]
    notes: tuple[str, ...]
    held: tuple[str, ...]  # one line per held-back agent branch


def pr_title(report: RunReport) -> str:
    """One line of plain text: the request's title (or task), no mention, no closing reference."""
    request = report.request
    text = neutral.clean(request.title if request and request.title else report.task).strip().split("\n")
    title = neutral.plain(text[0]) or neutral.plain(report.run_id)
    if request is not None and request.source == "schedule":  # ours: "ci-swarm maintenance: <job>"
        return title[:250]
    return f"ci-swarm: {title}"[:250]


def pr_body(report: RunReport, issue: int | None) -> str:
    """The report (every untrusted text neutralised), clipped to GitHub's limit with its fences and
    ``<details>`` closed, then the one live ``Closes #N``: ours, for the request's issue."""
    closes = f"\n\nCloses #{issue}\n" if issue else "\n"
    tail = "… (truncated: the full report is in the job summary)"
    body = neutral.clip(to_markdown(report).rstrip("\n"), MAX_BODY - len(closes), tail)
    return body + closes


class Publisher:
    def __init__(
        self,
        api_url: str | None,
        token: str,
        target: Target,
        *,
        branch_template: str = "{integration_branch}",
        base_branch: str | None = None,
        retry: RetrySettings = DEFAULT_RETRY,
        progress_interval: float = 5.0,
        push_attempts: int = 3,
        head_wait: float = 30.0,
        remerge: Remerge,
        env: Mapping[str, str] | None = None,
        client: github.Github | None = None,
        secrets: tuple[str, ...] = (),
        replace_branch: bool = False,
    ) -> None:
        if target.issue is not None and target.pr is not None:
            raise ForgeError("publish to an issue or a pull request, not both")
        self.token = token
        self.target = target
        self.branch_template = branch_template
        self.base_branch = base_branch
        self.progress_interval = progress_interval
        self.push_attempts = push_attempts
        self.head_wait = head_wait  # seconds to wait for the PR to show a pushed commit before anchoring
        self._remerge = remerge
        self._env = env
        self.secrets = secrets  # the run's other secret values: pushes are scanned for them and the token
        self.replace_branch = replace_branch  # force the integration push (a maintenance job's own branch)
        self.lease: str | None = None  # the branch tip a replacing push expects (None/"": must not exist)
        self.only_needed_agents = False  # push only the agent branches a person may need (scheduled runs)
        self.gh = client or make_github(token, api_url, retry=retry)
        self._repo: Repository | None = None

    # --- helpers -----------------------------------------------------------------------------

    def _call(self, doing: str) -> Any:
        return forge_call(f"{doing} ({self.target.repo})", self.token)

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            with self._call("reading the repository"):
                self._repo = self.gh.get_repo(self.target.repo)
        return self._repo

    def branch_name(self, report: RunReport) -> str:
        return self.branch_template.format(
            run_id=report.run_id, integration_branch=report.integration_branch, issue=self.target.issue or ""
        )

    def react(self, content: str) -> None:
        """Best effort: a reaction on the triggering comment, else on the issue / PR."""
        number = self.target.number
        if number is None:
            return
        try:
            with self._call(f"adding a {content} reaction"):
                issue = self.repo.get_issue(number)
                if self.target.comment_id is not None:
                    issue.get_comment(self.target.comment_id).create_reaction(content)
                else:
                    issue.create_reaction(content)
        except ForgeError as err:
            log.warning("%s", err)

    # --- start ---------------------------------------------------------------------------------

    def start(
        self,
        request: Request | None,
        run_id: str,
        subtasks: Iterable[Subtask | str],
        usage: Callable[[], Usage] | None = None,
    ) -> ProgressComment:
        """👀 and the progress comment (edited as the run goes). Without an issue or PR: a silent listener.

        ``usage`` (e.g. the LLM session's running total) puts the cost so far into each edit.
        """
        number = self.target.number
        subtasks = tuple(subtasks)
        run_url = workflow_run_url(self._env)
        if number is None:
            return ProgressComment(lambda body: None, run_id, subtasks, run_url=run_url, usage=usage)
        self.react("eyes")
        with self._call(f"commenting on #{number}"):
            body = render(initial_state(run_id, subtasks, run_url))
            comment = self.repo.get_issue(number).create_comment(body)
        return ProgressComment(
            comment.edit,
            run_id,
            subtasks,
            min_interval=self.progress_interval,
            run_url=run_url,
            usage=usage,
            url=comment.html_url,
            comment_id=comment.id,
        )

    def resume(self, run_id: str, subtasks: Iterable[Subtask | str], comment_id: int) -> ProgressComment:
        """The progress comment another job started (a fan-out's plan job), edited from here on; a comment
        that is gone (deleted) gets a new one through :meth:`start`."""
        number = self.target.number
        if number is None:
            return self.start(None, run_id, subtasks)
        try:
            with self._call(f"reading the progress comment {comment_id} on #{number}"):
                comment = self.repo.get_issue(number).get_comment(comment_id)
        except ForgeError as err:
            log.warning("%s: starting a new one", err)
            return self.start(None, run_id, subtasks)
        return ProgressComment(
            comment.edit,
            run_id,
            tuple(subtasks),
            min_interval=self.progress_interval,
            run_url=workflow_run_url(self._env),
            url=comment.html_url,
            comment_id=comment.id,
        )

    # --- publish -------------------------------------------------------------------------------

    def publish(
        self, repo: Path, report: RunReport, progress: ports.ProgressComment | None = None
    ) -> PublishResult:
        """Push, open/update the PR (or push onto the PR), post the conflict review, finish the comment."""
        try:
            result = self._publish_pr(repo, report) if self.target.pr else self._publish_branch(repo, report)
        except SwarmError as err:
            if progress is not None:
                progress.finish(f"**Publishing failed:** {neutral.inline(str(err))}", usage=report.usage)
            self.react("confused")
            raise
        final = result.report or report
        if progress is not None:
            phase = "interrupted" if final.interrupted else "finished"
            progress.finish(self._final_text(final, result), usage=final.usage, phase=phase)
            if progress.failures:
                result = replace(result, notes=(*result.notes, f"progress comment: {progress.failures[-1]}"))
        self.react("rocket" if result.landed and not final.failed else "confused")
        return result

    def _final_text(self, report: RunReport, result: PublishResult) -> str:
        lines = [f"**{headline(report)}**", ""]
        if report.interrupted:
            lines = [
                "**Cancelled:** the workflow was cancelled; the work committed so far is pushed.",
                "",
                *lines,
            ]
        if result.pr_url and not self.target.pr:
            lines.append(f"Pull request: #{result.pr_number} ({result.pr_url})")
        pushed = max(len(result.pushed) - 1, 0)
        lines.append(f"Branch: {neutral.code_span(result.branch)} · agent branches pushed: {pushed}")
        if report.panel is not None:
            lines.append(f"Review panel: {panel_headline(report.panel)}")
        if result.review_comments or result.file_comments or result.body_notes:
            lines.append(
                f"Conflict review: {result.review_comments} line comment(s), {result.file_comments} file "
                f"comment(s), {result.body_notes} in the review body"
            )
        lines += [f"> {neutral.inline(note)}" for note in result.notes]
        if self.target.pr:
            lines += ["", "<details><summary>Run report</summary>", "", to_markdown(report), "", "</details>"]
        return "\n".join(lines)

    def _push(self, repo: Path, report: RunReport, branch: str) -> _Pushed:
        """Agent branches (those holding a secret held back and taken out of the integration), then the
        integration commit; every push scanned first. Notes name each held-back branch's places."""
        url = self.repo.clone_url
        secrets = (self.token, *self.secrets)
        agents = push_agents(repo, url, self._agents_to_push(report), self.token, secrets)
        remerge = functools.partial(self._remerge, repo)
        report = withhold(report, agents.held, remerge)
        outcome = push_integration(
            repo,
            url,
            report,
            branch,
            self.token,
            remerge,
            self.push_attempts,
            secrets=secrets,
            lease=(self.lease or "") if self.replace_branch else None,
        )
        held = tuple(str(h) for h in agents.held)
        return _Pushed(outcome.report, (branch, *agents.pushed), (*held, *outcome.notes), held)

    def _agents_to_push(self, report: RunReport) -> RunReport:
        """Every agent branch; with ``only_needed_agents`` (a scheduled maintenance run) only those a person
        may need — the subtask did not succeed (failed, partial, timed out, cancelled: its work is only on its
        branch) or its merge had conflicts — so a weekly job does not leave N branches a week."""
        if not self.only_needed_agents:
            return report
        conflicted = {m.subtask for m in report.merges if m.status is MergeStatus.CONFLICTED}
        conflicted |= {c.subtask for c in report.conflicts}
        needed = tuple(
            s for s in report.subtasks if s.status is not SubtaskStatus.SUCCEEDED or s.id in conflicted
        )
        return replace(report, subtasks=needed)

    def _publish_branch(self, repo: Path, report: RunReport) -> PublishResult:
        branch = self.branch_name(report)
        report, pushed, notes, held = self._push(repo, report, branch)
        base = self.base_branch or self.repo.default_branch
        pr = self._open_or_update(report, branch, base)
        if pr is None:
            note = f"no pull request: `{branch}` has no commits that `{base}` lacks"
            return PublishResult(
                None, "", branch, pushed, notes=(*notes, note), report=report, landed=False, held_back=held
            )
        return self._reviewed(pr, branch, report, (pushed, notes, held))

    def _publish_pr(self, repo: Path, report: RunReport) -> PublishResult:
        number = self.target.pr
        assert number is not None
        with self._call(f"reading pull request #{number}"):
            pr = self.repo.get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else ""
            state, head_ref = pr.state, pr.head.ref
            merged = state != "open" and bool(pr.merged)
        reason = ""
        if state != "open":
            reason = f"pull request #{number} was {'merged' if merged else 'closed'} while the swarm ran"
        elif head_repo.lower() != self.repo.full_name.lower():
            source = head_repo or "a deleted fork"
            reason = f"pull request #{number} comes from {source}; ci-swarm pushes only to {self.target.repo}"
        if reason:
            branch = self.branch_name(report)
            report, pushed, notes, held = self._push(repo, report, branch)
            note = f"{reason}: the work is on branch `{branch}` instead"
            return PublishResult(
                number,
                pr.html_url,
                branch,
                pushed,
                notes=(*notes, note),
                report=report,
                landed=False,
                held_back=held,
            )
        report, pushed, notes, held = self._push(repo, report, head_ref)
        report = replace(report, integration_branch=head_ref)  # the PR's branch; swarm/<run> is never pushed
        return self._reviewed(pr, head_ref, report, (pushed, notes, held))

    def _reviewed(
        self,
        pr: PullRequest,
        branch: str,
        report: RunReport,
        push: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    ) -> PublishResult:
        """The result of a push that landed on ``pr``'s branch, once its conflict review is posted."""
        pushed, notes, held = push
        (lines, files, body_notes, reviews), lag = self._review(pr, report)
        reviews += self._panel_review(pr, report)
        return PublishResult(
            pr.number,
            pr.html_url,
            branch,
            pushed,
            lines,
            files,
            body_notes,
            reviews,
            notes=(*notes, *lag, *self._draft_note(pr, report)),
            report=report,
            held_back=held,
        )

    # --- pull request --------------------------------------------------------------------------

    def _find_pr(self, branch: str, base: str) -> PullRequest | None:
        with self._call(f"looking for an open pull request from {branch}"):
            owner = self.repo.owner.login
            for pr in self.repo.get_pulls(state="open", head=f"{owner}:{branch}", base=base):
                return pr
        return None

    def _open_or_update(self, report: RunReport, branch: str, base: str) -> PullRequest | None:
        title, body = pr_title(report), pr_body(report, self.target.issue)
        existing = self._find_pr(branch, base)
        if existing is not None:
            with self._call(f"updating pull request #{existing.number}"):
                existing.edit(title=title, body=body)
            return existing
        draft = report.panel is not None and not report.panel.ready  # the review panel did not approve
        try:
            with self._call(f"opening a pull request from {branch} into {base}"):
                return self.repo.create_pull(base=base, head=branch, title=title, body=body, draft=draft)
        except ForgeError as err:
            return self._pr_refused(err, report, branch, base)

    def _pr_refused(self, err: ForgeError, report: RunReport, branch: str, base: str) -> PullRequest | None:
        cause = err.__cause__
        text = describe(cause) if cause else str(err)
        status = status_of(cause) if cause else None
        where = f"the work is pushed to branch `{branch}`"
        if status == 403 and "not permitted to create or approve pull requests" in text:
            raise ForgeError(
                f"GitHub Actions is not permitted to create pull requests in {self.target.repo}: "
                f"{ACTIONS_PR_HINT}; {where}"
            ) from err
        if status == 403:
            raise ForgeError(
                f"the token may not open pull requests in {self.target.repo} ({text}); {where}"
            ) from err
        if status == 422 and "already exists" in text:
            found = self._find_pr(branch, base)
            if found is not None:
                with self._call(f"updating pull request #{found.number}"):
                    found.edit(title=pr_title(report), body=pr_body(report, self.target.issue))
                return found
        if status == 422 and "No commits between" in text:
            return None
        if status == 422 and "base" in text and "invalid" in text:
            raise ForgeError(
                f"base branch {base!r} does not exist in {self.target.repo} (was it deleted?); {where}"
            ) from err
        raise ForgeError(f"{err}; {where}") from err

    # --- review --------------------------------------------------------------------------------

    def _panel_review(self, pr: PullRequest, report: RunReport) -> int:
        """The review panel's reasons as one COMMENT review when it did not approve (1 posted, else 0)."""
        if report.panel is None or report.panel.ready:
            return 0
        with self._call(f"posting the review panel's reasons on pull request #{pr.number}"):
            pr.create_review(body=panel_review_body(report.panel), event="COMMENT")
        return 1

    def _draft_note(self, pr: PullRequest, report: RunReport) -> tuple[str, ...]:
        """A pull request that already existed keeps its draft state (GitHub's REST API cannot change it):
        say so when the panel's verdict disagrees with it."""
        if report.panel is None or pr.draft == (not report.panel.ready):
            return ()
        state = "a draft" if pr.draft else "ready for review"
        return (
            f"pull request #{pr.number} already existed and stays {state}: the review panel says otherwise",
        )

    def _shows(self, pr: PullRequest, commit: str) -> bool:
        """Wait (bounded by ``head_wait``, polling) until the pull request shows ``commit`` as its head:
        github.com updates ``head.sha`` and the file list asynchronously after a push."""
        deadline = time.monotonic() + self.head_wait
        pause = 0.25
        while True:
            with self._call(f"reading pull request #{pr.number}"):
                pr.update()
                if pr.head.sha == commit:
                    return True
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _review(
        self, pr: PullRequest, report: RunReport
    ) -> tuple[tuple[int, int, int, int], tuple[str, ...]]:
        """(line comments, file comments, body notes, reviews) posted for the report's conflicts, anchored on
        the diff of the pushed commit once the pull request shows it; else none, and a note saying so."""
        if not report.conflicts:
            return (0, 0, 0, 0), ()
        if report.integration_commit and not self._shows(pr, report.integration_commit):
            note = (
                f"pull request #{pr.number} did not show the pushed commit {report.integration_commit[:10]} "
                f"within {self.head_wait:g} s: no review comments were anchored (the conflicts are in the "
                "report)"
            )
            log.warning("%s", note)
            return (0, 0, 0, 0), (note,)
        with self._call(f"reading the diff of pull request #{pr.number}"):
            head = pr.head.sha
            files = [rv.PatchFile(f.filename, f.status, f.patch) for f in pr.get_files()]
        plan = rv.plan_run_review(report.merges, files)
        posted = rv.post_review(pr, head, plan, self.token)
        return (posted.line_comments, posted.file_comments, posted.body_notes, posted.reviews), ()
