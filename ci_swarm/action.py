"""The GitHub Action's entry point: ``python -m ci_swarm action`` (what ``action.yml`` runs).

Reads the runner's environment (the action's inputs arrive as ``CI_SWARM_*`` variables through the step's
``env:``), the event at ``GITHUB_EVENT_PATH`` and the repository config; routes the event
(:mod:`ci_swarm.github.event`); a refusal is one ``::notice::`` line (plus a reply where one helps) and exit
0. Otherwise, for each job: resolve the base, build the plan (``swarm-plan`` block, plan file, shard, or the
Claude planner), run the swarm, refuse to push changes to protected paths, publish (push, pull request,
progress comment, review), and write the outputs and the job summary.

Exit status: 0 success (also with conflicts recorded), 3 some subtasks did not succeed, else the error's
code (4 bad input, 5 git, 6 model API, 7 GitHub, 130 cancelled).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci_swarm import git
from ci_swarm.agents import Backend, check_agent_kinds, make_agent_factory
from ci_swarm.agents.tools import command_allowed
from ci_swarm.config import DEFAULT_PATH, Budget, Config, config_from_text
from ci_swarm.errors import (
    EXIT_FAILED_SUBTASKS,
    EXIT_OK,
    ConfigError,
    GitError,
    Interrupted,
    PathEscapeError,
    PlanError,
    SwarmError,
    UsageError,
)
from ci_swarm.github import runner
from ci_swarm.github.event import SELF_MARKER, Job, PullRequestInfo, Refuse, Run, route
from ci_swarm.models import AgentSpec, MergePolicy, Plan, Request, RunReport
from ci_swarm.naming import new_run_id
from ci_swarm.plan import command_argv, plan_from_dict, validate
from ci_swarm.ports import ProgressEvent, ProgressListener
from ci_swarm.report import to_markdown
from ci_swarm.run import RunOptions, run_plan
from ci_swarm.runtime import catch_sigterm, run_sync, sigterm_interrupts
from ci_swarm.workspace import check_relative

MAX_CONTEXT_DIFF = 40_000  # characters of a PR's diff given to the planner
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off", ""})


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Inputs:
    """The action's inputs, parsed. Empty text / None means "not given: the config or the default"."""

    config: str = DEFAULT_PATH
    label: str = ""
    command: str = ""
    max_agents: int | None = None
    model: str = ""
    agent: str = ""
    budget_usd: float | None = None
    base_branch: str = ""
    branch_prefix: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything the action reads from its environment."""

    workspace: Path
    event_name: str
    event_path: Path | None
    repository: str
    api_url: str
    server_url: str
    run_url: str
    ref: str
    token: str
    has_anthropic_key: bool
    inputs: Inputs

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repository = env.get("GITHUB_REPOSITORY", "")
        run_id = env.get("GITHUB_RUN_ID", "")
        return cls(
            workspace=Path(env.get("GITHUB_WORKSPACE") or os.getcwd()),
            event_name=env.get("GITHUB_EVENT_NAME", ""),
            event_path=Path(env["GITHUB_EVENT_PATH"]) if env.get("GITHUB_EVENT_PATH") else None,
            repository=repository,
            api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            server_url=server,
            run_url=f"{server}/{repository}/actions/runs/{run_id}" if repository and run_id else "",
            ref=env.get("GITHUB_REF", ""),
            token=env.get("CI_SWARM_GITHUB_TOKEN") or env.get("GITHUB_TOKEN", ""),
            has_anthropic_key=bool(env.get("ANTHROPIC_API_KEY")),
            inputs=parse_inputs(env),
        )


def parse_inputs(env: Mapping[str, str]) -> Inputs:
    """The ``CI_SWARM_*`` variables action.yml sets; UsageError names the input at fault."""

    def text(name: str) -> str:
        return env.get(f"CI_SWARM_{name.upper()}", "").strip()

    return Inputs(
        config=text("config") or DEFAULT_PATH,
        label=text("label"),
        command=text("command"),
        max_agents=_positive_int("max_agents", text("max_agents")),
        model=text("model"),
        agent=_choice("agent", text("agent"), ("claude", "scripted", "command")),
        budget_usd=_positive_float("budget_usd", text("budget_usd")),
        base_branch=text("base_branch"),
        branch_prefix=text("branch_prefix"),
        dry_run=_flag("dry_run", text("dry_run")),
    )


def _positive_int(name: str, value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"input {name}: expected a positive whole number, got {value!r}")
    return int(value)


def _positive_float(name: str, value: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise UsageError(f"input {name}: expected a positive number of US dollars, got {value!r}")
    return number


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value and value not in allowed:
        raise UsageError(f"input {name}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in _TRUE | _FALSE:
        raise UsageError(f"input {name}: expected true or false, got {value!r}")
    return lowered in _TRUE


def apply_inputs(config: Config, inputs: Inputs) -> Config:
    """Inputs that were given win over the config file."""
    changes: dict[str, Any] = {}
    for name in ("label", "command", "model", "branch_prefix"):
        if getattr(inputs, name):
            changes[name] = getattr(inputs, name)
    if inputs.max_agents is not None:
        changes["max_agents"] = inputs.max_agents
    if inputs.budget_usd is not None:
        changes["budget"] = Budget(usd=inputs.budget_usd, tokens=config.budget.tokens)
    if inputs.agent:
        same = config.agent is not None and config.agent.kind == inputs.agent
        changes["agent"] = config.agent if same else AgentSpec(inputs.agent)
    return dataclasses.replace(config, **changes)


def default_agent(config: Config, has_key: bool) -> AgentSpec:
    return config.agent or AgentSpec("claude" if has_key else "scripted")


def read_event(path: Path | None) -> dict[str, Any]:
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


def load_repo_config(settings: Settings) -> Config:
    relative = settings.inputs.config
    try:
        check_relative(relative)
    except PathEscapeError as exc:
        raise ConfigError(f"input config: {exc}") from exc
    path = settings.workspace / relative
    if relative == DEFAULT_PATH and not path.exists():
        return apply_inputs(Config(), settings.inputs)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{relative}: config file not found (input config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{relative}: cannot read config: {exc}") from exc
    return apply_inputs(config_from_text(text, source=relative), settings.inputs)


# ------------------------------------------------------------------------------------------------ plans


def plan_from_text(text: str, source: str, default_merge: MergePolicy | None = None) -> Plan:
    """A plan written in YAML (a ``swarm-plan`` block, a dispatch input, a plan file's content); without a
    ``merge:`` key it gets ``default_merge`` (the config's)."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise PlanError(f"{where}: malformed YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: malformed YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise PlanError(f"{source}: a plan must be a mapping with 'subtasks'")
    plan = plan_from_dict(data, source=source)
    if default_merge is not None and "merge" not in data:
        plan = dataclasses.replace(plan, merge=default_merge)
    return plan if plan.task else dataclasses.replace(plan, task=source)


def plan_source(run: Run, job: Job) -> str:
    if job.plan_path:
        return job.plan_path
    if run.issue is not None:
        return f"the swarm-plan block of #{run.issue}"
    return "the plan input"


# --------------------------------------------------------------------------------------------- logging


def log(message: str) -> None:
    print(f"ci-swarm: {message}", flush=True)


def notice(message: str) -> None:
    print(runner.command("notice", message), flush=True)


def log_listener(started: float) -> ProgressListener:
    def listen(event: ProgressEvent) -> None:
        detail = " ".join(x for x in (event.subtask, event.status, event.message) if x)
        print(f"[{time.monotonic() - started:7.1f}s] {event.kind} {detail}".rstrip(), flush=True)

    return listen


def fan_out(*listeners: ProgressListener | None) -> ProgressListener:
    active = [listener for listener in listeners if listener is not None]

    def listen(event: ProgressEvent) -> None:
        for listener in active:
            listener(event)

    return listen


# ------------------------------------------------------------------------------------------- the entry


def main(env: Mapping[str, str] | None = None) -> int:
    environ = os.environ if env is None else env
    try:
        with sigterm_interrupts():
            return Action(Settings.from_env(environ), env).run()
    except KeyboardInterrupt:
        runner.error("cancelled", title="ci-swarm")
        return Interrupted.exit_code
    except SwarmError as exc:
        runner.error(str(exc), title="ci-swarm")
        return exc.exit_code


class Action:
    """One invocation: route the event, then run each job."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = env
        self._github: Any = None

    @property
    def github(self) -> Any:
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
        decision = route(settings.event_name, payload, config, _LazyAccess(self))
        if isinstance(decision, Refuse):
            return self.refuse(decision)
        log(f"{decision.event} by @{decision.actor}: {len(decision.jobs)} job(s)")
        try:
            codes = [self.run_isolated(config, decision, job) for job in decision.jobs]
        finally:
            if decision.label and decision.issue is not None and not settings.inputs.dry_run:
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
        settings = self.settings
        repo = git.open_repo(settings.workspace)
        default = job.agent or default_agent(config, settings.has_anthropic_key)
        run_id = new_run_id()
        publisher = None if settings.inputs.dry_run else self.publisher(config, run, job)
        progress: Any = None
        llm: Any = None
        try:
            base_ref, base_commit = self.resolve_base(repo, run)
            if publisher is not None and run.pr is None:
                publisher.base_branch = base_ref
            request = self.request_with_context(repo, run, job.request)
            static = self.static_plan(repo, config, run, job, base_commit, default)
            if static is None or _needs_claude(static, default):
                llm = self.llm_session(config)

            async def plan_and_run() -> RunReport:
                """Planning and the run share one event loop, so the LLM session (its client's connection
                pool, the shared limiter) lives and dies in the loop that uses it."""
                nonlocal progress
                try:
                    plan = static
                    if plan is None:
                        planned: Plan = await llm.planner().plan(request, repo)
                        plan = dataclasses.replace(planned, merge=config.merge)
                    for warning in validate(plan, max_subtasks=config.max_subtasks):
                        runner.warning(warning, title="ci-swarm plan")
                    backends: dict[str, Backend] = {}
                    if llm is not None:
                        backends["claude"] = llm.agent_backend()
                    check_agent_kinds(plan, default, backends)
                    check_commands(plan, default, config, repo)
                    if publisher is not None:
                        progress = publisher.start(request, run_id, plan.subtasks)
                    options = RunOptions(
                        repo=repo,
                        base=base_commit,
                        max_agents=config.max_agents,
                        timeout=config.timeout,
                        run_id=run_id,
                        branch_prefix=config.branch_prefix,
                        default_agent=default,
                    )
                    log(f"run {run_id}: {len(plan.subtasks)} subtask(s) from {base_ref} ({base_commit[:10]})")
                    listener = fan_out(log_listener(time.monotonic()), progress)
                    factory = make_agent_factory(default, backends)
                    return await run_plan(plan, options, factory, listener, request)
                finally:
                    if llm is not None:
                        with suppress(Exception):
                            await llm.aclose()

            report = run_sync(plan_and_run)
            catch_sigterm()
            report = _with_usage(report, llm)
            protected = protected_changes(repo, report, config)
            if protected:
                raise UsageError(f"the swarm changed protected paths ({protected}): nothing was pushed")
        except BaseException as exc:
            if publisher is not None:
                self.report_failure(run, exc, progress)
                publisher.react("confused")
            raise
        return self.finish(repo, job, report, publisher, progress)

    def finish(self, repo: Path, job: Job, report: RunReport, publisher: Any, progress: Any) -> int:
        result = None
        if publisher is not None:
            if job.name:  # a maintenance job's branch is replaced, so its open PR shows this run
                self.github.replace_branch(repo, report.integration_commit, publisher.branch_name(report))
            result = publisher.publish(repo, report, progress)
        final = result.report if result is not None and result.report is not None else report
        outputs = runner.run_outputs(
            final,
            branch=result.branch if result is not None else "",
            pr_number=result.pr_number if result is not None else None,
            pr_url=result.pr_url if result is not None else "",
        )
        runner.emit_run(final, to_markdown(final), outputs, self._env)
        where = (
            f": {result.pr_url or result.branch}" if result is not None else " (dry run: nothing published)"
        )
        log(f"run {final.run_id}: {len(final.failed)} failed, {len(final.conflicts)} conflict(s){where}")
        if final.interrupted:
            return Interrupted.exit_code
        return EXIT_FAILED_SUBTASKS if final.failed else EXIT_OK

    def report_failure(self, run: Run, exc: BaseException, progress: Any) -> None:
        """Say why on GitHub: in the progress comment, or (before it exists) in a new comment."""
        cancelled = isinstance(exc, KeyboardInterrupt | Interrupted)
        text = f"**{'Cancelled' if cancelled else 'Failed'}:** {_why(exc)}"
        if progress is not None:
            progress.finish(text, phase="interrupted" if cancelled else "finished")
        elif run.issue is not None:
            with suppress(SwarmError):  # best effort: the original error is what the job reports
                self.github.comment(run.issue, f"ci-swarm could not run. {text}\n\n{SELF_MARKER} error -->")

    # --- pieces ---

    def publisher(self, config: Config, run: Run, job: Job) -> Any:
        from ci_swarm.github.publish import Target
        from ci_swarm.merge_only import remerge

        if run.pr is not None:
            target = Target(run.repo, pr=run.pr.number, comment_id=run.comment_id)
        else:
            target = Target(run.repo, issue=run.issue, comment_id=run.comment_id)
        template = f"{config.branch_prefix}/maintenance/{job.name}" if job.name else "{integration_branch}"
        return self.github.publisher(target, branch_template=template, remerge=remerge)

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
        """The plan written down (swarm-plan block, plan file, shard), or None when Claude must plan. The
        config's merge policy applies unless a written plan states its own."""
        if job.plan_text:
            return plan_from_text(job.plan_text, plan_source(run, job), config.merge)
        if job.plan_path:
            text = _read_at(repo, base_commit, job.plan_path)
            return plan_from_text(text, job.plan_path, config.merge)
        if job.shard is not None:
            from ci_swarm.shard import shard_plan

            files = git.tree_files(repo, base_commit)
            shard = job.shard
            plan = shard_plan(files, shard.pattern, shard.agents, shard.task, agent=default)
            return dataclasses.replace(plan, merge=config.merge)
        return None

    def llm_session(self, config: Config) -> Any:
        from ci_swarm.llm.session import LLMSession, LLMSettings

        settings = LLMSettings.from_config(config)
        environ = os.environ if self._env is None else self._env
        return LLMSession.from_env(settings, environ)


class _LazyAccess:
    """RepoAccess through the action's GitHub side, created only when routing asks."""

    def __init__(self, action: Action) -> None:
        self._action = action

    def permission(self, login: str) -> str:
        return str(self._action.github.access.permission(login))

    def pull_request(self, number: int) -> PullRequestInfo:
        info: PullRequestInfo = self._action.github.access.pull_request(number)
        return info


# ----------------------------------------------------------------------------------------------- helpers


def check_commands(plan: Plan, default: AgentSpec, config: Config, repo: Path) -> None:
    """Command agents are external programs ci-swarm cannot confine, so in the Action:

    * a plan (written in an issue or a comment by anyone, or in a file) may name a ``command`` agent only
      when its argv is allowed by ``allowed_commands`` in the repository's config;
    * no command agent runs while a credential sits in .git/config (``actions/checkout`` persists one unless
      ``persist-credentials: false``): the agent could read it from its worktree.
    """
    commands = [(sub, sub.agent) for sub in plan.subtasks if (sub.agent or default).kind == "command"]
    for sub, spec in commands:
        if spec is None:  # the default agent comes from the maintainers' config or inputs: trusted
            continue
        argv = command_argv(spec.options, f"subtask {sub.id!r}")
        if not command_allowed(argv, config.allowed_commands):
            source = config.source or DEFAULT_PATH
            raise UsageError(
                f"subtask {sub.id!r} would run {' '.join(argv[:3])!r}, which allowed_commands in {source} "
                "does not allow (a plan may only run allowed commands)"
            )
    if commands and git.config_keys(repo, r"^http\..*extraheader$"):
        raise UsageError(
            "a command agent could read the token actions/checkout left in .git/config: "
            "set `persist-credentials: false` on the checkout step"
        )


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


def _read_at(repo: Path, commit: str, path: str) -> str:
    rel = check_relative(path).as_posix()
    data = git.try_read_blob(repo, commit, rel)
    if data is None:
        raise PlanError(f"plan file {rel} does not exist at {commit[:10]}")
    return data.decode("utf-8", "replace")


def _needs_claude(plan: Plan, default: AgentSpec) -> bool:
    return any((sub.agent or default).kind == "claude" for sub in plan.subtasks)


def _with_usage(report: RunReport, llm: Any) -> RunReport:
    if llm is None:
        return report
    stopped = report.budget_stopped or bool(llm.budget_stopped)
    return dataclasses.replace(report, usage=llm.usage(), budget_stopped=stopped)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | Interrupted):
        return "cancelled"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
