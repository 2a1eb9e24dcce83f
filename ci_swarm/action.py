"""The GitHub Action's entry point: ``python -m ci_swarm action`` (what ``action.yml`` runs).

Reads the runner's environment (the action's inputs arrive as ``CI_SWARM_*`` variables through the step's
``env:``), the event at ``GITHUB_EVENT_PATH`` and the repository config; routes the event
(:mod:`ci_swarm.github.event`); a refusal is one ``::notice::`` line (plus a reply where one helps) and exit
0. Otherwise, for each job: resolve the base and the written plan (``swarm-plan`` block, plan file, shard;
none: the Claude planner), hand both to the service (:mod:`ci_swarm.service`: plan, check, run, account),
refuse to push changes to protected paths, publish (push, pull request, progress comment, review), and write
the outputs and the job summary (:func:`ci_swarm.github.runner.emit_job`). The settings and inputs are parsed
in :mod:`ci_swarm.github.inputs`.

Exit status: 0 success (also with conflicts recorded), 3 some subtasks did not succeed, else the error's
code (4 bad input, 5 git, 6 model API, 7 GitHub, 130 cancelled).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ci_swarm import git, jobs
from ci_swarm.agents import AGENTS, OPTION_VALIDATORS
from ci_swarm.config import DEFAULT_PATH, Config
from ci_swarm.errors import (
    EXIT_FAILED_SUBTASKS,
    EXIT_OK,
    GitError,
    Interrupted,
    SecretFound,
    SwarmError,
    UsageError,
    exit_code,
)
from ci_swarm.github import log as runner_log
from ci_swarm.github import runner
from ci_swarm.github.event import SELF_MARKER, Cleanup, Job, PullRequestInfo, Refuse, Run, route
from ci_swarm.github.inputs import (
    SECRET_VARIABLES,
    Inputs,
    Settings,
    apply_inputs,
    default_agent,
    load_repo_config,
    parse_inputs,
)
from ci_swarm.models import AgentSpec, MergePolicy, Plan, Request, RunReport
from ci_swarm.naming import new_run_id
from ci_swarm.ports import ModelSession, ProgressComment, ProgressEvent, ProgressListener
from ci_swarm.run import RunOptions
from ci_swarm.runtime import sigterm_interrupts
from ci_swarm.service import CommandPolicy, RunOutcome, RunRequest, ServiceOptions, run_request

if TYPE_CHECKING:
    from ci_swarm.github.publish import Publisher, PublishResult
    from ci_swarm.github.trust import ActionGitHub

__all__ = [
    "Action",
    "Inputs",
    "Settings",
    "apply_inputs",
    "default_agent",
    "main",
    "parse_inputs",
    "plan_from_text",
]

MAX_CONTEXT_DIFF = 40_000  # characters of a PR's diff given to the planner


def read_event(path: Path | None) -> dict[str, object]:
    if path is None:
        raise UsageError("GITHUB_EVENT_PATH is not set: run this inside a GitHub Actions workflow")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"event file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"event file {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"event file {path}: expected a JSON object")
    return data


# ------------------------------------------------------------------------------------------------ plans


def plan_from_text(text: str, source: str, default_merge: MergePolicy | None = None) -> Plan:
    """A plan written in YAML, its agents' options checked by the shipped backends (:mod:`ci_swarm.jobs`)."""
    return jobs.plan_from_text(text, source, OPTION_VALIDATORS, default_merge)


def plan_source(run: Run, job: Job) -> str:
    if job.plan_path:
        return job.plan_path
    if run.issue is not None:
        return f"the swarm-plan block of #{run.issue}"
    return "the plan input"


# --------------------------------------------------------------------------------------------- logging


def log(message: str) -> None:
    """One line of the runner log; untrusted parts are folded so they cannot start a workflow command."""
    runner_log.info(message)


def notice(message: str) -> None:
    runner.notice(message)


def log_listener(started: float) -> ProgressListener:
    def listen(event: ProgressEvent) -> None:
        detail = " ".join(x for x in (event.subtask, event.status, event.message) if x)
        line = f"[{time.monotonic() - started:7.1f}s] {event.kind} {detail}".rstrip()
        runner_log.emit(runner_log.one_line(line))

    return listen


# ------------------------------------------------------------------------------------------- the entry


def main(env: Mapping[str, str] | None = None) -> int:
    environ = os.environ if env is None else env
    runner_log.install_logging()
    try:
        with sigterm_interrupts():
            settings = Settings.from_env(environ)  # reads and deletes the secret files
            if env is None:
                forget_secret_variables(os.environ)
            return Action(settings, env).run()
    except KeyboardInterrupt:
        runner.error("cancelled", title="ci-swarm")
        return Interrupted.exit_code
    except SwarmError as exc:
        runner.error(str(exc), title="ci-swarm")
        return exc.exit_code


def forget_secret_variables(environ: MutableMapping[str, str]) -> None:
    """The token and key variables (the legacy way in) leave ``os.environ`` once read, so no child process
    inherits them. ``/proc/<pid>/environ`` still shows the exec-time block: action.yml passes them by file."""
    for name in SECRET_VARIABLES:
        environ.pop(name, None)


class Action:
    """One invocation: route the event, then run each job."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = env
        self._github: ActionGitHub | None = None

    @property
    def github(self) -> ActionGitHub:
        """The GitHub side (:class:`ci_swarm.github.trust.ActionGitHub`), created on first use: an event
        that is not ours needs no API call."""
        if self._github is None:
            from ci_swarm.github.trust import ActionGitHub

            s = self.settings
            self._github = ActionGitHub(s.api_url, s.token, s.repository, env=self._env)
        return self._github

    def run(self) -> int:
        settings = self.settings
        payload = read_event(settings.event_path)
        config = load_repo_config(settings)
        if not settings.repository:
            raise UsageError("GITHUB_REPOSITORY is not set: run this inside a GitHub Actions workflow")
        access = _LazyAccess(self)
        decision = route(settings.event_name, payload, config, access, repository=settings.repository)
        if isinstance(decision, Refuse):
            return self.refuse(decision)
        if isinstance(decision, Cleanup):
            return self.cleanup(config, decision)
        log(f"{decision.event} by @{decision.actor}: {len(decision.jobs)} job(s)")
        for note in decision.notes:
            log(note)
        if settings.inputs.fan_out and len(decision.jobs) != 1:
            raise UsageError(f"input fan_out: {len(decision.jobs)} jobs matched; a fan-out runs exactly one")
        try:
            codes = [self.run_isolated(config, decision, job) for job in decision.jobs]
        finally:
            landing = settings.inputs.fan_out == "land"  # the plan job removed it already
            if decision.label and decision.issue is not None and not settings.inputs.dry_run and not landing:
                with suppress(SwarmError):  # best effort: never hide the run's own outcome
                    self.github.remove_label(decision.issue, decision.label)
        return max(codes, default=EXIT_OK)

    def refuse(self, decision: Refuse) -> int:
        notice(decision.notice)
        if self.settings.inputs.dry_run or decision.issue is None:
            return EXIT_OK
        if decision.reply:
            self.github.comment(decision.issue, f"{decision.reply}\n\n{SELF_MARKER} reply -->")
        if decision.label:
            self.github.remove_label(decision.issue, decision.label)
        return EXIT_OK

    def cleanup(self, config: Config, decision: Cleanup) -> int:
        """A run's pull request closed: its agent branches go from the remote, unless they hold work that is
        not ci-swarm's (:mod:`ci_swarm.cleanup`); the PR's own branch is left (GitHub's "automatically
        delete head branches" setting decides). A dry run only says what it would delete."""
        from ci_swarm.cleanup import Selection, clean_remote
        from ci_swarm.github.pushing import TokenRemote

        state = "merged" if decision.merged else "closed"
        log(f"pull request #{decision.pr} ({decision.head_ref}) was {state}: cleaning up its agent branches")
        repo = git.open_repo(self.settings.workspace)
        self.github.fetch(repo, decision.base_ref)  # what the base holds is not lost with a branch
        remote = TokenRemote(repo, self.github.repo.clone_url, self.github.token)
        dry = self.settings.inputs.dry_run
        selection = Selection(run_id=decision.run_id)
        verdicts = clean_remote(repo, remote, config.branch_prefix, selection, dry_run=dry, agents_only=True)
        for v in verdicts:
            log(
                f"{'would delete' if dry else 'deleted'} {v.branch}"
                if v.deleted
                else f"kept {v.branch}: {v.why}"
            )
        if not verdicts:
            log(f"run {decision.run_id} has no agent branches on the remote")
        return EXIT_OK

    # --- one job ---

    def run_isolated(self, config: Config, run: Run, job: Job) -> int:
        """One job; with several (a schedule), a failing job never stops the others."""
        if len(run.jobs) == 1:
            return self.run_job(config, run, job)
        try:
            return self.run_job(config, run, job)
        except Interrupted:
            raise
        except SwarmError as exc:
            runner.error(f"maintenance job {job.name}: {exc}", title="ci-swarm")
            return exc.exit_code

    def run_job(self, config: Config, run: Run, job: Job) -> int:
        """Settings → service request → the service → protected paths → publish and emit → exit code; with
        the ``fan_out`` input, the plan or land job of a fan-out (:mod:`ci_swarm.github.fanout_job`)."""
        if self.settings.inputs.fan_out:
            from ci_swarm.github.fanout_job import run_fan_out

            return run_fan_out(self, config, run, job)
        repo = git.open_repo(self.settings.workspace)
        default = self.job_agent(config, job)
        publisher = None if self.settings.inputs.dry_run else self.publisher(config, run, job)
        started: list[ProgressComment] = []  # the progress comment, once the service started it
        try:
            base_ref, base_commit = self.resolve_base(repo, run)
            if publisher is not None and run.pr is None:
                publisher.base_branch = base_ref
            request = self.request_with_context(repo, run, job.request)
            static = self.static_plan(repo, config, run, job, base_commit, default)
            start, kept = self.maintenance_start(repo, job, publisher, base_commit)
            options = self.run_options(repo, config, start, default, new_run_id())
            where = f"from {base_ref} ({base_commit[:10]})" if start == base_commit else f"({kept})"
            job_request = RunRequest(
                request,
                options,
                static,
                config.merge,
                config.max_subtasks,
                checks=config.checks,
                merge_failing=config.merge_failing,
                speculate=config.speculate_checks,
                review=config.review,
                best_of=config.best_of,
                judge=config.judge,
                weights=config.weights,
            )
            wiring = self.wiring(config, options.run_id or "", where, publisher, started.append)
            outcome = run_request(job_request, wiring)
            extra = (*run.notes, kept) if kept else run.notes  # where the plan came from; what was kept
            if extra:
                notes = (*outcome.report.notes, *extra)
                outcome = dataclasses.replace(
                    outcome, report=dataclasses.replace(outcome.report, notes=notes)
                )
            self.refuse_protected(repo, outcome.report, config)
        except BaseException as exc:
            if publisher is not None:
                self.report_failure(run, exc, started[0] if started else None)
                publisher.react("confused")
            raise
        return self.finish(repo, job, outcome, publisher)

    def maintenance_start(
        self, repo: Path, job: Job, publisher: Publisher | None, base: str
    ) -> tuple[str, str]:
        """(the commit the run starts from, a note or ""): a maintenance job's branch is replaced (with a
        lease on its tip), unless it holds commits that are not ci-swarm's: then the run builds on them."""
        if not job.name or publisher is None:
            return base, ""
        from ci_swarm.github.maintenance import start_for

        branch = publisher.branch_template  # a maintenance template has no placeholders
        start = start_for(repo, self.github.repo.clone_url, self.github.token, branch, base)
        publisher.lease = start.lease
        if start.note:
            log(start.note)
        return start.commit, start.note

    def wiring(
        self,
        config: Config,
        run_id: str,
        where: str,
        publisher: Publisher | None,
        on_progress: Callable[[ProgressComment], None],
    ) -> ServiceOptions:
        """The Action's side of the service: plans are untrusted text, warnings become annotations, the run
        is logged line by line."""

        def on_plan(plan: Plan, planned: bool) -> None:
            log(f"run {run_id}: {len(plan.subtasks)} subtask(s) {where}")

        def watch(plan: Plan) -> AbstractContextManager[ProgressListener | None]:
            return nullcontext(log_listener(time.monotonic()))

        return ServiceOptions(
            agents=AGENTS,
            commands=CommandPolicy(
                trust_plan_commands=False,
                allowed_commands=config.allowed_commands,
                config_source=config.source or DEFAULT_PATH,
            ),
            sandbox=config.sandbox or None,
            session=lambda: self.model_session(config),
            progress=publisher,
            on_progress=on_progress,
            watch=watch,
            on_plan=on_plan,
            on_warning=lambda warning: runner.warning(warning, title="ci-swarm plan"),
        )

    @property
    def env(self) -> Mapping[str, str] | None:
        """The environment the action was given (None: the process's own)."""
        return self._env

    def run_options(
        self, repo: Path, config: Config, start: str, default: AgentSpec, run_id: str
    ) -> RunOptions:
        return RunOptions(
            repo=repo,
            base=start,
            max_agents=config.max_agents,
            timeout=config.timeout,
            run_id=run_id,
            branch_prefix=config.branch_prefix,
            default_agent=default,
            pass_env=config.pass_env,
            secrets=self.settings.secrets,  # redacted from the reports' output tails and commands
        )

    def job_agent(self, config: Config, job: Job) -> AgentSpec:
        return job.agent or default_agent(config, self.settings.has_anthropic_key)

    def refuse_protected(self, repo: Path, report: RunReport, config: Config) -> None:
        protected = protected_changes(repo, report, config)
        if protected:
            raise UsageError(f"the swarm changed protected paths ({protected}): nothing was pushed")

    def finish(self, repo: Path, job: Job, outcome: RunOutcome, publisher: Publisher | None) -> int:
        return self.published(repo, outcome, publisher).code

    def published(self, repo: Path, outcome: RunOutcome, publisher: Publisher | None) -> Finished:
        """Publish (unless a dry run), emit the job's outputs and summary; the exit code."""
        report = outcome.report
        result = None
        if publisher is not None:
            result = publisher.publish(repo, report, outcome.progress)
            for held in result.held_back:
                runner.error(held, title="ci-swarm: secret in an agent branch")
        final = runner.emit_job(report, result, self._env)
        where = (
            f": {result.pr_url or result.branch}" if result is not None else " (dry run: nothing published)"
        )
        log(f"run {final.run_id}: {len(final.failed)} failed, {len(final.conflicts)} conflict(s){where}")
        if final.interrupted:
            code = Interrupted.exit_code
        elif result is not None and result.held_back:
            code = SecretFound.exit_code
        else:
            code = EXIT_FAILED_SUBTASKS if exit_code(final) == EXIT_FAILED_SUBTASKS else EXIT_OK
        return Finished(code, result, final)

    def report_failure(self, run: Run, exc: BaseException, progress: ProgressComment | None) -> None:
        """Say why on GitHub: in the progress comment, or (before it exists) in a new comment."""
        cancelled = isinstance(exc, KeyboardInterrupt | Interrupted)
        text = f"**{'Cancelled' if cancelled else 'Failed'}:** {_why(exc)}"
        if progress is not None:
            progress.finish(text, phase="interrupted" if cancelled else "finished")
        elif run.issue is not None:
            with suppress(SwarmError):  # best effort: the original error is what the job reports
                self.github.comment(run.issue, f"ci-swarm could not run. {text}\n\n{SELF_MARKER} error -->")

    # --- pieces ---

    def publisher(self, config: Config, run: Run, job: Job) -> Publisher:
        from ci_swarm.github.publish import Target
        from ci_swarm.merge_only import remerge

        if run.pr is not None:
            target = Target(run.repo, pr=run.pr.number, comment_id=run.comment_id)
        else:
            target = Target(run.repo, issue=run.issue, comment_id=run.comment_id)
        template = f"{config.branch_prefix}/maintenance/{job.name}" if job.name else "{integration_branch}"
        publisher = self.github.publisher(target, branch_template=template, remerge=remerge)
        publisher.secrets = self.settings.secrets  # pushes are scanned for these (and the token formats)
        publisher.replace_branch = bool(
            job.name
        )  # a maintenance job's branch is ci-swarm's: each run replaces it
        publisher.only_needed_agents = run.event == "schedule"  # no N branches a week: only what needs a look
        return publisher

    def resolve_base(self, repo: Path, run: Run) -> tuple[str, str]:
        """The branch the work starts from and its commit, fetched from the repository's clone URL."""
        if run.pr is not None:
            return run.pr.head_ref, self.github.fetch(repo, run.pr.head_ref)
        branch = self.settings.inputs.base_branch
        if not branch and run.event == "workflow_dispatch" and self.settings.ref.startswith("refs/heads/"):
            branch = self.settings.ref.removeprefix("refs/heads/")
        branch = branch or self.github.default_branch()
        return branch, self.github.fetch(repo, branch)

    def request_with_context(self, repo: Path, run: Run, request: Request) -> Request:
        """For a pull request: its title, body and diff (merge base → head) as the planner's context."""
        if run.pr is None:
            return request
        head = self.github.fetch(repo, run.pr.head_ref)
        base = self.github.fetch(repo, run.pr.base_ref)
        try:
            start = git.merge_base(repo, base, head)
        except GitError:  # a shallow checkout may not reach the fork point
            start = base
        diff = git.diff(repo, start, head, context=3)
        if len(diff) > MAX_CONTEXT_DIFF:
            diff = diff[:MAX_CONTEXT_DIFF] + "\n… (diff truncated)\n"
        context = f"Pull request #{run.pr.number}: {run.pr.title}\n\n{run.pr.body}\n\nDiff:\n{diff}"
        return dataclasses.replace(request, context=context)

    def static_plan(
        self,
        repo: Path,
        config: Config,
        run: Run,
        job: Job,
        base_commit: str,
        default: AgentSpec,
    ) -> Plan | None:
        """The plan written down (swarm-plan block, plan file, shard), or None when Claude must plan: built
        by :func:`ci_swarm.jobs.written_plan`, as ``ci-swarm run --job`` builds it."""
        written = jobs.Written(job.plan_text, plan_source(run, job), job.plan_path, job.shard)
        merge, validators = config.merge, OPTION_VALIDATORS
        chosen = job.agent is not None or config.agent is not None  # else a shard would change nothing
        return jobs.written_plan(
            repo,
            base_commit,
            written,
            merge=merge,
            default=default,
            validators=validators,
            agent_chosen=chosen,
        )

    def model_session(self, config: Config) -> ModelSession:
        """The Claude session for a job that needs a model (the service decides when)."""
        from ci_swarm.llm.factory import ClaudeSession
        from ci_swarm.llm.session import LLMSettings

        settings = LLMSettings.from_config(config)
        environ = os.environ if self._env is None else self._env
        base_url = environ.get("ANTHROPIC_BASE_URL")
        return ClaudeSession.with_key(settings, self.settings.anthropic_key, base_url)


@dataclass(frozen=True)
class Finished:
    """A published job: its exit code, what was published (None: a dry run) and the report as published."""

    code: int
    result: PublishResult | None
    report: RunReport


class _LazyAccess:
    """RepoAccess through the action's GitHub side, created only when routing asks."""

    def __init__(self, action: Action) -> None:
        self._action = action

    def permission(self, login: str) -> str:
        return str(self._action.github.access.permission(login))

    def identity(self) -> str:
        return str(self._action.github.access.identity())

    def pull_request(self, number: int) -> PullRequestInfo:
        info: PullRequestInfo = self._action.github.access.pull_request(number)
        return info


# ----------------------------------------------------------------------------------------------- helpers


def protected_changes(repo: Path, report: RunReport, config: Config) -> str:
    """Protected paths changed by any agent branch or the integration branch, as one line ("" if none)."""
    found: dict[str, None] = {}
    ranges = [(s.start_commit, s.commit) for s in report.subtasks if s.start_commit and s.commit]
    if report.base and report.integration_commit:
        ranges.append((report.base, report.integration_commit))
    for start, end in ranges:
        for path in git.changed_files(repo, start, end):
            if config.is_protected(path):
                found[path] = None
    return ", ".join(found)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | Interrupted):
        return "cancelled"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
