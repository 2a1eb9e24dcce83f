"""The click CLI. Thin: parse, build options, call the service (:mod:`ci_swarm.service`), print, and map
errors to exit codes."""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from ci_swarm import errors, git
from ci_swarm.agents import AGENTS, OPTION_VALIDATORS
from ci_swarm.config import DEFAULT_TIMEOUT, Config, MaintenanceJob, with_success
from ci_swarm.dag import critical_path, waves
from ci_swarm.errors import exit_code
from ci_swarm.jobs import Written, find_job, job_request, written_plan
from ci_swarm.logtext import one_line
from ci_swarm.models import (
    AgentSpec,
    Check,
    MergeOrder,
    MergePolicy,
    OnConflict,
    Plan,
    Request,
    RunReport,
    Subtask,
)
from ci_swarm.plan import load_plan, validate
from ci_swarm.ports import ModelSession, ProgressListener
from ci_swarm.report import print_terminal, summary_lines, write_json, write_markdown
from ci_swarm.run import RunOptions
from ci_swarm.service import (
    CommandPolicy,
    RunRequest,
    ServiceOptions,
    Watch,
    needs_model,
    plan_request,
    run_request,
)
from ci_swarm.shard import require_editing_agent

if TYPE_CHECKING:
    from ci_swarm.fanout import AgentRun, Landing
    from ci_swarm.github.publish import Publisher

EXIT_CODES_HELP = """\b
Exit codes:
  0    success: every subtask succeeded and merged cleanly
  2    success with conflicts recorded (all work kept; see the report)
  3    some subtasks failed, timed out, were skipped or cancelled
  4    bad input (plan, config, arguments, repository, base, branch exists)
  5    a git command failed
  6    the model API failed (no key, wrong key, retries exhausted)
  7    the GitHub API or a push failed
  130  interrupted (Ctrl-C / SIGTERM); committed work is kept
"""


def fail(message: str, code: int) -> None:
    """One line on stderr (never wrapped, never a traceback), then exit with ``code``."""
    prefix = click.style("ci-swarm: error:", fg="red", bold=True)
    click.echo(f"{prefix} {one_line(' '.join(message.split()))}", err=True)
    sys.exit(code)


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ci-swarm")
def cli() -> None:
    """Turn one request into parallel coding agents on git worktrees, merged git-natively."""


# --- option types ---------------------------------------------------------------------------------


class FiniteFloat(click.FloatRange):
    """A float range that refuses ``nan`` and ``inf`` (a NaN timeout times everything out at once, an
    infinite one is no timeout)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--run-id`` by git's ref rules, before any branch exists."""
    from ci_swarm.naming import check_run_id

    try:
        return None if value is None else check_run_id(value)
    except errors.UsageError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _branch_prefix(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ci_swarm.naming import check_branch_prefix

    try:
        return None if value is None else check_branch_prefix(value)
    except errors.UsageError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _agent_command(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--agent-command``: shell-like words whose program exists, checked before any agent starts."""
    if value is None:
        return None
    import shlex

    from ci_swarm.plan import require_executable

    try:
        argv = shlex.split(value)
        if not argv:
            raise errors.UsageError("--agent-command is empty")
        require_executable(argv[0], "--agent-command")
    except (ValueError, errors.UsageError) as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


# --- shared options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanSource:
    """Where the plan comes from and what it runs on: the options ``run`` and ``plan`` share."""

    plan_file: Path | None
    task: str | None
    config_file: Path | None
    shard_glob: str | None
    shard_agents: int
    repo: Path
    base: str
    agent_kind: str | None
    agent_command: str | None
    model: str | None
    planner_model: str | None
    max_subtasks: int | None


def _plan_source_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared options; the command receives them as one ``source: PlanSource``."""
    names = [field.name for field in fields(PlanSource)]

    def packed(**kwargs: Any) -> Any:
        source = PlanSource(**{name: kwargs.pop(name) for name in names})
        return f(source=source, **kwargs)

    # name, help and the options already declared carry over; not __wrapped__, or click would read the
    # inner signature and hand ``packed`` only the parameters named there
    packed.__name__, packed.__doc__ = f.__name__, f.__doc__
    if hasattr(f, "__click_params__"):
        packed.__click_params__ = f.__click_params__  # type: ignore[attr-defined]
    decorated: Callable[..., Any] = packed
    for option in reversed(
        [
            click.option(
                "--plan",
                "--plan-file",
                "plan_file",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Plan file (YAML or JSON).",
            ),
            click.option("--task", help="Ask Claude to plan this request (needs ANTHROPIC_API_KEY)."),
            click.option(
                "--config",
                "config_file",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Repository config (default: the repo's .github/ci-swarm.yml when present).",
            ),
            click.option(
                "--shard",
                "shard_glob",
                metavar="GLOB",
                help="Split the files matching GLOB across --agents subtasks (with --task).",
            ),
            click.option(
                "--agents",
                "shard_agents",
                type=click.IntRange(1, 256),
                default=4,
                show_default=True,
                help="Number of shards for --shard.",
            ),
            click.option(
                "--repo",
                type=click.Path(path_type=Path, file_okay=False),
                default=Path("."),
                show_default=True,
                help="The git repository to work on.",
            ),
            click.option("--base", default="HEAD", show_default=True, help="Revision the run starts from."),
            click.option(
                "--agent",
                "agent_kind",
                type=click.Choice(["scripted", "command", "claude"]),
                help="Default agent for subtasks that name none (claude when a key is set).",
            ),
            click.option(
                "--agent-command",
                callback=_agent_command,
                help="Argv for --agent command, e.g. 'aider --message {instructions}'.",
            ),
            click.option("--model", help="Model for agents."),
            click.option("--planner-model", help="Model for the planner."),
            click.option("--max-subtasks", type=click.IntRange(1, 500), help="Cap the planner's subtasks."),
        ]
    ):
        decorated = option(decorated)
    return decorated


def _static_plan(source: PlanSource, agent: AgentSpec, merge: MergePolicy | None = None) -> Plan | None:
    """The plan from a file or the sharder; None when Claude must plan ``source.task``. ``merge`` (the
    config's policy) applies to a shard, and to a plan file without a ``merge:`` key, as in the Action."""
    if source.plan_file is not None:
        return load_plan(source.plan_file, validators=OPTION_VALIDATORS, default_merge=merge)
    if source.shard_glob:
        from ci_swarm.shard import shard_plan

        if not source.task:
            raise errors.UsageError("--shard needs --task to say what each shard should do")
        root = git.open_repo(source.repo)
        files = git.tree_files(root, git.rev_parse(root, source.base))
        plan = shard_plan(files, source.shard_glob, source.shard_agents, source.task, agent=agent)
        return plan if merge is None else dataclasses.replace(plan, merge=merge)
    if source.task:
        return None
    raise errors.UsageError("give a plan: --plan FILE, --task TEXT, or --shard GLOB --task TEXT")


def _repo_config(source: PlanSource) -> Config:
    """The repository's config, as the Action reads it; built-in defaults when there is none."""
    return _config_at(source.config_file, source.repo)


def _config_at(config_file: Path | None, repo: Path) -> Config:
    from ci_swarm.config import load_config

    if config_file is not None:
        return load_config(config_file, missing_ok=False)
    try:
        root = git.open_repo(repo)
    except errors.RepoError:
        return Config()  # the command reports the bad repository itself
    return load_config(root / ".github" / "ci-swarm.yml", missing_ok=True)


def _model_session(
    config: Config, source: PlanSource, max_usd: float | None = None, max_tokens: int | None = None
) -> ModelSession:
    """The factory the service calls when a run needs a model: one LLMSession (client, shared limiter,
    accounting, budget) for the whole command, from the repository's config (allowed commands, role prompts,
    budgets, models) overridden by the flags given."""
    from ci_swarm.llm.factory import ClaudeSession
    from ci_swarm.llm.session import LLMSettings

    settings = LLMSettings.from_config(
        config,
        model=source.model,
        planner_model=source.planner_model,
        max_subtasks=source.max_subtasks,
        max_usd=max_usd,
        max_tokens=max_tokens,
    )
    return ClaudeSession.from_env(settings)


def _default_agent(source: PlanSource, has_key: bool, configured: AgentSpec | None = None) -> AgentSpec:
    kind, command = source.agent_kind, source.agent_command
    if configured is not None and kind is None and command is None:
        return configured
    if command and kind in (None, "command"):
        import shlex

        return AgentSpec("command", {"run": tuple(shlex.split(command))})
    if kind == "command":
        raise errors.UsageError("--agent command needs --agent-command 'PROGRAM ARGS…'")
    return AgentSpec(kind or ("claude" if has_key else "scripted"))


# --- run -------------------------------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@_plan_source_options
@click.option(
    "--max-agents", type=click.IntRange(1, 256), help="At most this many agents at once (config; default 4)."
)
@click.option(
    "--timeout",
    type=FiniteFloat(min=0.01),
    help=f"Per-subtask timeout in seconds (config; default {DEFAULT_TIMEOUT:g}).",
)
@click.option("--merge-order", type=click.Choice(["completion", "plan"]), help="Override the plan's order.")
@click.option(
    "--on-conflict",
    type=click.Choice([o.value for o in OnConflict]),
    help="What a conflicted merge gets: keep (one side per region), redo (the later subtask's agent redoes "
    "its work on the integration tip) or resolve (the resolver agent writes the resolution); redo and "
    "resolve land only when the checks pass and need checks. Overrides the plan's and the config's "
    "merge.on_conflict.",
)
@click.option(
    "--best-of",
    type=click.IntRange(1, 16),
    help="N competing attempts for every subtask that names no attempts: each in its own clone and branch, "
    "judged by the plan's judge (default: checks when there are checks, else vote); the winner is merged "
    "(config: best_of).",
)
@click.option("--fail-fast", is_flag=True, help="Cancel the rest on the first failure.")
@click.option(
    "--serialize-overlaps", is_flag=True, help="Run subtasks with overlapping paths one after another."
)
@click.option("--run-id", callback=_run_id, help="Use this run id (error if its branch exists).")
@click.option("--branch-prefix", callback=_branch_prefix, help="Branch namespace (config; default swarm).")
@click.option("--max-usd", type=FiniteFloat(min=0), help="Budget for the whole swarm in USD (Claude).")
@click.option("--max-tokens", type=int, help="Token budget for the whole swarm (Claude).")
@click.option("--report", "report_json", type=click.Path(path_type=Path, dir_okay=False), help="Write JSON.")
@click.option("--report-md", type=click.Path(path_type=Path, dir_okay=False), help="Write Markdown.")
@click.option("--publish", metavar="OWNER/NAME", help="Push and open/update the PR on GitHub.")
@click.option("--issue", type=int, help="With --publish: the issue this run answers.")
@click.option("--pr", type=int, help="With --publish: the PR this run works on.")
@click.option(
    "--sandbox",
    type=click.Choice(["user", "none"]),
    help="How agents' commands run: user (a dedicated unprivileged account; the default where ci-swarm runs "
    "as root or with passwordless sudo) or none (unsandboxed, your own machine only). Config: sandbox.",
)
@click.option(
    "--compare-serial",
    is_flag=True,
    help="After the swarm, run its command agent once over all the shards' paths in a scratch clone and "
    "report both times and whether the trees are equal.",
)
@click.option(
    "--job",
    metavar="NAME",
    help="Run the repository config's maintenance job NAME as the Action would (no push unless --publish).",
)
@click.option(
    "--check",
    "check_texts",
    multiple=True,
    metavar="COMMAND",
    help="A check that judges the result (repeatable; split like a shell would): run through the sandbox "
    "on the integration tip and each command agent's commit. Replaces the plan's and the config's checks.",
)
@click.option(
    "--speculate",
    is_flag=True,
    help="Run the checks on intermediate integration tips while agents still run (one at a time, the "
    "newest tip first), so verification reuses them (config: speculate_checks).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(
    source: PlanSource,
    max_agents: int | None,
    timeout: float | None,
    merge_order: str | None,
    on_conflict: str | None,
    best_of: int | None,
    fail_fast: bool,
    serialize_overlaps: bool,
    run_id: str | None,
    branch_prefix: str | None,
    max_usd: float | None,
    max_tokens: int | None,
    report_json: Path | None,
    report_md: Path | None,
    publish: str | None,
    issue: int | None,
    pr: int | None,
    sandbox: str | None,
    compare_serial: bool,
    job: str | None,
    check_texts: tuple[str, ...],
    speculate: bool,
    quiet: bool,
) -> None:
    """Plan, run agents in parallel, merge their branches, report."""
    import os

    from ci_swarm.github.inputs import secret_values

    config = _repo_config(source)
    maintenance = _job(config, source, job)
    configured = (maintenance.agent if maintenance else None) or config.agent
    default = _default_agent(source, bool(os.environ.get("ANTHROPIC_API_KEY")), configured)
    default = with_success(default, maintenance.success if maintenance else config.success)
    chosen = configured is not None or source.agent_kind is not None or source.agent_command is not None
    if source.shard_glob:
        require_editing_agent(default, chosen)
    static = (
        _job_plan(source, maintenance, config, default, chosen)
        if maintenance
        else _static_plan(source, default, config.merge)
    )
    serial = _serial_subtask(static, default) if compare_serial else None
    if not needs_model(static, default) and (max_usd is not None or max_tokens is not None):
        warning = "ci-swarm: warning: --max-usd/--max-tokens limit Claude agents; this run has none"
        click.echo(warning, err=True)
    options = RunOptions(
        repo=source.repo,
        base=source.base,
        max_agents=max_agents or config.max_agents,
        timeout=timeout if timeout is not None else config.timeout,  # the config or its default
        merge_order=MergeOrder(merge_order) if merge_order else None,
        fail_fast=fail_fast,
        serialize_overlaps=serialize_overlaps,
        run_id=run_id,  # with a publisher the service names one up front (the progress comment shows it)
        branch_prefix=branch_prefix or config.branch_prefix,
        default_agent=default,
        pass_env=config.pass_env,
        secrets=secret_values(os.environ),  # redacted from the reports' output tails and commands
    )
    task = source.task or (static.task if static else "")
    request = Request(task=task, source="cli", number=issue or pr)
    if maintenance is not None:
        request = dataclasses.replace(job_request(maintenance), number=issue or pr)
    publisher = _publisher(publish, issue, pr, source.repo, source.base) if publish else None
    if publisher is not None and maintenance is not None:
        options = _maintenance_branch(publisher, maintenance, options)
    console = Console(stderr=True)
    wiring = ServiceOptions(
        agents=AGENTS,
        commands=CommandPolicy(trust_plan_commands=True, allowed_commands=config.allowed_commands),
        sandbox=sandbox or config.sandbox or None,
        session=lambda: _model_session(config, source, max_usd, max_tokens),
        progress=publisher,
        watch=_terminal(console, quiet),
        on_plan=lambda plan, planned: _print_plan(plan, console) if planned and not quiet else None,
    )
    run_job = RunRequest(
        request,
        options,
        static,
        merge=config.merge,
        checks=config.checks,
        check_flags=_check_flags(check_texts),
        merge_failing=config.merge_failing,
        speculate=speculate or config.speculate_checks,
        on_conflict=OnConflict(on_conflict) if on_conflict else None,
        best_of=best_of if best_of is not None else config.best_of,
        review=config.review,
        judge=config.judge,
        weights=config.weights,
    )
    outcome = run_request(run_job, wiring)
    report = outcome.report
    if serial is not None and not report.interrupted:
        report = _with_serial(report, serial, options)
    if not quiet:
        print_terminal(report, console)
    _write_reports(report, report_json, report_md)
    for line in summary_lines(report):  # on stdout, one line each, never cut to the terminal's width
        click.echo(one_line(line))
    if publisher is not None:
        result = publisher.publish(git.open_repo(source.repo), report, outcome.progress)
        click.echo(f"published: {result.pr_url or result.branch}")
        for held in result.held_back:  # place and kind, never the value
            click.echo(f"ci-swarm: error: secret in an agent branch: {one_line(held)}", err=True)
        if result.held_back:
            sys.exit(errors.SecretFound.exit_code)
    sys.exit(exit_code(report))


def _check_flags(texts: Sequence[str]) -> tuple[Check, ...]:
    """``--check`` texts → checks named by their text; exit 4 for one a shell could not split."""
    checks = []
    for text in texts:
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            raise errors.UsageError(f"--check {text!r}: {exc}") from exc
        if not argv:
            raise errors.UsageError("--check needs a command")
        checks.append(Check(name=text, run=argv))
    return tuple(checks)


def _serial_subtask(static: Plan | None, default: AgentSpec) -> Subtask:
    """``--compare-serial``'s one subtask, checked before the swarm starts (exit 4 when it cannot be)."""
    from ci_swarm.serial import serial_subtask

    if static is None:
        raise errors.UsageError("--compare-serial needs a plan file or --shard, not a plan from the model")
    return serial_subtask(static, default)


def _with_serial(report: RunReport, sub: Subtask, options: RunOptions) -> RunReport:
    """The report with the serial baseline: the same command agent, backend and sandbox as the swarm."""
    from dataclasses import replace

    from ci_swarm.runtime import run_sync
    from ci_swarm.sandbox import resolve_policy
    from ci_swarm.serial import compare_serial

    policy = resolve_policy(report.sandbox) if report.sandbox in ("user", "none") else None
    agents = AGENTS.factory(options.default_agent, {})
    comparison = run_sync(
        lambda: compare_serial(
            sub,
            report,
            agents,
            sandbox=policy,
            timeout=options.timeout,
            branch_prefix=options.branch_prefix,
        )
    )
    return replace(report, serial=comparison)


def _job(config: Config, source: PlanSource, name: str | None) -> MaintenanceJob | None:
    """The maintenance job ``--job`` names (None without it); it brings its own plan, so it excludes
    --plan, --task and --shard."""
    if name is None:
        return None
    if source.plan_file is not None or source.task or source.shard_glob:
        raise errors.UsageError("--job brings its own plan: drop --plan, --task and --shard")
    return find_job(config, name)


def _maintenance_branch(publisher: Publisher, job: MaintenanceJob, options: RunOptions) -> RunOptions:
    """``--job`` with ``--publish`` publishes as the Action does: onto the job's own branch
    ``<prefix>/maintenance/<name>``, replaced with a lease on its tip, and the run built on that tip when it
    holds commits that are not ci-swarm's (:mod:`ci_swarm.github.maintenance`)."""
    from ci_swarm.github.maintenance import start_for

    branch = f"{options.branch_prefix}/maintenance/{job.name}"
    root = git.open_repo(options.repo)
    base = git.rev_parse(root, options.base)
    start = start_for(root, publisher.repo.clone_url, publisher.token, branch, base)
    publisher.branch_template, publisher.replace_branch, publisher.lease = branch, True, start.lease
    if start.note:
        click.echo(f"ci-swarm: {one_line(start.note)}", err=True)
    return dataclasses.replace(options, base=start.commit)


def _job_plan(
    source: PlanSource, job: MaintenanceJob, config: Config, default: AgentSpec, chosen: bool = True
) -> Plan | None:
    """The job's plan exactly as the Action builds it (:func:`ci_swarm.jobs.written_plan`) at ``--base``;
    None for a ``task:`` job (the planner plans it). A shard job whose agent nobody ``chosen`` is exit 4."""
    root = git.open_repo(source.repo)
    commit = git.rev_parse(root, source.base)
    written = Written.of_job(job)
    return written_plan(
        root,
        commit,
        written,
        merge=config.merge,
        default=default,
        validators=OPTION_VALIDATORS,
        agent_chosen=chosen,
    )


def _terminal(console: Console, quiet: bool) -> Watch:
    """The live table on a terminal (plain lines otherwise); nothing with --quiet."""
    from ci_swarm.progress import TerminalProgress

    def watch(plan: Plan) -> AbstractContextManager[ProgressListener | None]:
        return nullcontext(None) if quiet else TerminalProgress(console, plan.subtasks)

    return watch


def _print_plan(plan: Plan, console: Console) -> None:
    console.print(f"[bold]plan[/]: {escape(one_line(plan.task))}", soft_wrap=True)
    if plan.rationale:
        console.print(f"rationale: {one_line(plan.rationale)}", markup=False, soft_wrap=True)
    for sub in plan.subtasks:
        deps = f" (after {', '.join(sub.depends_on)})" if sub.depends_on else ""
        line = one_line(f"  - {sub.id} [{sub.role}] {sub.title}{deps}")
        console.print(line, markup=False, soft_wrap=True)


def _write_reports(report: RunReport, report_json: Path | None, report_md: Path | None) -> None:
    if report_json:
        write_json(report, report_json)
    if report_md:
        write_markdown(report, report_md)


def _publisher(full_name: str, issue: int | None, pr: int | None, repo: Path, base: str) -> Publisher:
    """A Publisher for ``--publish OWNER/NAME`` (token from GITHUB_TOKEN, API from GITHUB_API_URL)."""
    import os

    from ci_swarm.github.inputs import secret_values
    from ci_swarm.github.publish import Publisher, Target
    from ci_swarm.merge_only import remerge

    if full_name.count("/") != 1 or not all(full_name.split("/")):
        raise errors.UsageError(f"--publish takes OWNER/NAME, got {full_name!r}")
    if issue and pr:
        raise errors.UsageError("--issue and --pr exclude each other")
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise errors.UsageError("--publish needs GITHUB_TOKEN in the environment")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com")
    root = git.open_repo(repo)
    base_branch = (
        git.current_branch(root) if base == "HEAD" else base if git.branch_exists(root, base) else None
    )
    return Publisher(
        api,
        token,
        Target(full_name, issue=issue, pr=pr),
        base_branch=None if pr else base_branch,
        remerge=remerge,
        secrets=tuple(secret_values(os.environ)),  # pushes are scanned for these and the token
    )


# --- plan --------------------------------------------------------------------------------------------


@cli.command("plan", epilog=EXIT_CODES_HELP)
@_plan_source_options
@click.argument("task_text", metavar="[TASK]", required=False)
@click.option(
    "--fan-out",
    is_flag=True,
    help="Record the run for agent jobs on separate runners: create the integration branch, the run state "
    "(refs/swarm/<run-id>/state) and write the first wave's matrix (see --matrix-out).",
)
@click.option(
    "--run-id", callback=_run_id, help="With --fan-out: use this run id (error if its branch exists)."
)
@click.option(
    "--matrix-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --fan-out: append run_id=, matrix=, matrix_<i>=, chunks=, waves=, wave=1, budget_share= and "
    "tokens_share= lines here (default: $GITHUB_OUTPUT when set, else stdout). A wave of more than 256 "
    "subtasks is cut into chunks; each share is the config's budget divided by min(max_agents, the "
    "wave's jobs).",
)
def plan_cmd(
    source: PlanSource, task_text: str | None, fan_out: bool, run_id: str | None, matrix_out: Path | None
) -> None:
    """Validate a plan (or ask Claude for one) and print its waves and critical path."""
    if task_text and not source.task:
        source = dataclasses.replace(source, task=task_text)
    config = _repo_config(source)
    default = _default_agent(source, False, config.agent)
    if fan_out:
        _plan_fan_out(source, config, default, run_id, matrix_out)
        return
    if run_id or matrix_out:
        raise errors.UsageError("--run-id and --matrix-out go with --fan-out")
    plan = _static_plan(source, default, config.merge) or plan_request(
        Request(task=source.task or ""), source.repo, lambda: _model_session(config, source), config.merge
    )
    warnings = validate(plan, max_subtasks=source.max_subtasks)
    click.echo(f"plan: {one_line(plan.task)}")
    if plan.rationale:
        click.echo(f"rationale: {one_line(plan.rationale)}")
    for sub in plan.subtasks:
        deps = f" (after {', '.join(sub.depends_on)})" if sub.depends_on else ""
        click.echo(one_line(f"  - {sub.id} [{sub.role}] {sub.title}{deps}"))
    for i, wave in enumerate(waves(plan), 1):
        click.echo(f"wave {i}: {', '.join(wave)}")
    durations = {
        s.id: float((s.agent.options.get("delay", 1.0) if s.agent else 1.0) or 1.0) for s in plan.subtasks
    }
    path, length = critical_path(plan, durations)
    click.echo(f"critical path: {' -> '.join(path)} ({length:g} units)")
    click.echo(one_line(_merge_line(plan.merge)))
    for warning in warnings:
        click.echo(f"warning: {one_line(warning)}", err=True)


# --- fan-out: plan --fan-out, agent, land ----------------------------------------------------------


def _plan_fan_out(
    source: PlanSource, config: Config, default: AgentSpec, run_id: str | None, matrix_out: Path | None
) -> None:
    """``plan --fan-out``: the service records the run; the matrix lines go to ``--matrix-out``."""

    from ci_swarm.fanout import plan_fan_out
    from ci_swarm.matrix import key_lines, output_lines

    static = _static_plan(source, default, config.merge)
    options = RunOptions(
        repo=source.repo,
        base=source.base,
        max_agents=config.max_agents,
        timeout=config.timeout,
        run_id=run_id,
        branch_prefix=config.branch_prefix,
        default_agent=default,
        pass_env=config.pass_env,
    )
    job = RunRequest(
        Request(task=source.task or (static.task if static else "")),
        options,
        static,
        merge=config.merge,
        max_subtasks=source.max_subtasks,
        checks=config.checks,
        review=config.review,  # refused by plan_fan_out: no fan-out job holds the panel's vote
    )
    wiring = _cli_wiring(config, lambda: _model_session(config, source))
    budget = config.budget
    fanned = plan_fan_out(
        job, wiring, _config_digest(source), budget_usd=budget.usd, budget_tokens=budget.tokens
    )
    for warning in fanned.warnings:
        click.echo(f"warning: {one_line(warning)}", err=True)
    lines = output_lines(fanned.state.run_id, fanned.matrix)
    _write_outputs((*lines, *key_lines((("wave", "1"), *fanned.shares.lines()))), matrix_out)
    click.echo(
        f"run {fanned.state.run_id}: {fanned.state.integration_branch} at {fanned.state.base}", err=True
    )


def _write_outputs(lines: Sequence[str], out: Path | None, echo: bool = True) -> None:
    """Append ``key=value`` lines to ``out``, else ``$GITHUB_OUTPUT`` when set, else stdout (if ``echo``)."""
    import os

    target = out or (Path(os.environ["GITHUB_OUTPUT"]) if os.environ.get("GITHUB_OUTPUT") else None)
    text = "".join(f"{line}\n" for line in lines)
    if target is None:
        if echo:
            click.echo(text, nl=False)
        return
    with target.open("a", encoding="utf-8") as fh:
        fh.write(text)


def _config_digest(source: PlanSource) -> str:
    """sha256 of the config file's bytes ("" without one)."""
    import hashlib

    path = source.config_file
    if path is None:
        try:
            path = git.open_repo(source.repo) / ".github" / "ci-swarm.yml"
        except errors.RepoError:
            return ""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _cli_wiring(config: Config, session: Callable[[], ModelSession] | None) -> ServiceOptions:
    """The CLI's service wiring for the fan-out commands: trusted plans, the config's sandbox."""
    return ServiceOptions(
        agents=AGENTS,
        commands=CommandPolicy(trust_plan_commands=True, allowed_commands=config.allowed_commands),
        sandbox=config.sandbox or None,
        session=session,
    )


_repo_option = click.option(
    "--repo", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True
)


@cli.command("agent", epilog=EXIT_CODES_HELP)
@click.option("--run-id", required=True, callback=_run_id, help="The run planned with plan --fan-out.")
@click.option("--subtask", "subtask_id", required=True, help="The one subtask this job runs.")
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the result as a git bundle here (and its sidecar as BUNDLE.json) for the land job.",
)
@click.option(
    "--max-usd",
    type=FiniteFloat(min=0),
    help="This job's share of the model budget in USD (plan --fan-out's budget_share output).",
)
@click.option(
    "--max-tokens", type=click.IntRange(min=0), help="This job's share of the token budget (tokens_share)."
)
@click.option(
    "--rpm", type=click.IntRange(min=1), help="This job's share of the model's requests per minute."
)
@_repo_option
def agent_cmd(
    run_id: str,
    subtask_id: str,
    bundle: Path | None,
    max_usd: float | None,
    max_tokens: int | None,
    rpm: int | None,
    repo: Path,
) -> None:
    """Run one subtask of a fanned-out run from its wave's start commit; commit it on its agent branch."""
    import os

    from ci_swarm.fanout import run_agent, write_agent_bundle
    from ci_swarm.github.inputs import secret_values
    from ci_swarm.github.runner import append_summary

    config = _config_at(None, repo)
    wiring = _cli_wiring(config, lambda: _agent_session(config, max_usd, max_tokens, rpm))
    ran = run_agent(repo, run_id, subtask_id, wiring, secret_values(os.environ))
    if bundle is not None:
        write_agent_bundle(repo, bundle, ran)
    result = ran.result
    append_summary(_agent_summary(ran))
    click.echo(one_line(f"subtask {result.subtask}: {result.status} ({result.seconds:.2f}s)"))
    click.echo(f"agent: {ran.branch} {result.commit or result.start}")
    if result.error:
        click.echo(f"ci-swarm: {one_line(result.error)}", err=True)
    sys.exit(exit_code(ran.report))


def _agent_session(
    config: Config, max_usd: float | None, max_tokens: int | None, rpm: int | None
) -> ModelSession:
    """The agent job's model session: the config's settings, this job's budget and rate shares."""
    from ci_swarm.llm.factory import ClaudeSession
    from ci_swarm.llm.session import LLMSettings

    settings = LLMSettings.from_config(config, max_usd=max_usd, max_tokens=max_tokens, rpm=rpm)
    return ClaudeSession.from_env(settings)


def _agent_summary(ran: AgentRun) -> str:
    """The agent job's one-screen summary (untrusted text through :mod:`ci_swarm.neutral`)."""
    from ci_swarm import neutral

    r = ran.result
    rows = [
        [
            neutral.code_cell(r.subtask),
            neutral.cell(r.status),
            f"{r.seconds:.1f}s",
            "–" if r.exit_status is None else str(r.exit_status),
            str(len(r.files)),
            str(r.usage.tokens) if r.usage.tokens else "–",
        ]
    ]
    parts = [
        f"### ci-swarm agent {neutral.code_span(r.subtask)} (run {neutral.code_span(r.run_id)})",
        neutral.table(["subtask", "status", "time", "exit", "files", "tokens"], rows),
        f"commit: {neutral.code_span(r.commit or 'none')} on {neutral.code_span(ran.branch)}",
    ]
    if r.error:
        parts.append(f"error: {neutral.inline(r.error)}")
    if r.output_tail:
        parts.append(neutral.fence(r.output_tail[-4000:]))
    return "\n\n".join(parts) + "\n"


@cli.command("land", epilog=EXIT_CODES_HELP)
@click.option("--run-id", required=True, callback=_run_id, help="The run planned with plan --fan-out.")
@click.option(
    "--bundles",
    "bundles_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory holding the agent jobs' bundles and sidecars (searched recursively).",
)
@click.option(
    "--check",
    "check_texts",
    multiple=True,
    metavar="COMMAND",
    help="A check on the integration (repeatable); replaces the plan's and the config's checks.",
)
@click.option("--report-json", type=click.Path(path_type=Path, dir_okay=False), help="Write the JSON report.")
@click.option(
    "--wave",
    type=click.IntRange(min=1),
    help="The wave to land (1 = the first; default: the wave the results belong to, else the next).",
)
@click.option(
    "--matrix-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append the outputs here (default: $GITHUB_OUTPUT when set): tip=, wave=, usage_usd=, "
    "usage_tokens=, then the next wave's run_id=, matrix=, matrix_<i>=, chunks=, waves=, budget_share=, "
    "tokens_share= — or, after the last wave, an empty matrix= and done=true.",
)
@click.option(
    "--all-remaining",
    is_flag=True,
    help="Then run every later wave here, on this machine (all of them when --bundles holds no result), "
    "and land the run: the workflow's last land job.",
)
@_repo_option
def land_cmd(
    run_id: str,
    bundles_dir: Path | None,
    check_texts: tuple[str, ...],
    report_json: Path | None,
    wave: int | None,
    matrix_out: Path | None,
    all_remaining: bool,
    repo: Path,
) -> None:
    """Land one wave of the agent jobs' results, merged in plan order; then the next wave's matrix, or
    after the last wave verify and report (idempotent: a wave lands once)."""
    import os

    from ci_swarm.fanout import land_run
    from ci_swarm.github.inputs import secret_values

    config = _config_at(None, repo)
    session = (lambda: _agent_session(config, None, None, None)) if all_remaining else None
    wiring = _cli_wiring(config, session)
    checks = _check_flags(check_texts)
    at = None if wave is None else wave - 1
    secrets = secret_values(os.environ)
    landing = land_run(
        repo, run_id, bundles_dir, wiring, checks, secrets, wave=at, all_remaining=all_remaining
    )
    if report_json is not None:
        report_json.write_text(landing.report_json)
    if landing.again:
        what = f"wave {landing.wave + 1}" if not landing.done else f"run {run_id}"
        click.echo(f"{what} had already landed: nothing merged", err=True)
    _write_outputs(_land_outputs(run_id, landing), matrix_out, echo=not landing.done)
    for line in landing.summary:
        click.echo(one_line(line))
    sys.exit(landing.exit_code)


def _land_outputs(run_id: str, landing: Landing) -> tuple[str, ...]:
    """``land``'s outputs: the tip, the usage of every job so far, and the next wave's matrix or done."""
    from ci_swarm.matrix import key_lines, output_lines

    usage = landing.usage
    head = key_lines(
        (
            ("tip", landing.integration_commit),
            ("wave", str(landing.wave + 1)),
            ("usage_usd", f"{usage.cost_usd:.6f}"),
            ("usage_tokens", str(usage.tokens)),
        )
    )
    if landing.next_matrix is None or landing.next_wave is None:
        return (*head, *key_lines((("run_id", run_id), ("matrix", ""), ("done", "true"))))
    following = output_lines(run_id, landing.next_matrix)
    rest = key_lines((("next_wave", str(landing.next_wave + 1)), *landing.shares.lines()))
    return (*head, *following, *rest, "done=false")


def _merge_line(policy: MergePolicy) -> str:
    """``ci-swarm plan``'s merge line: order, prefer, insertions, on_conflict (and the resolver's kind)."""
    line = (
        f"merge: order={policy.order.value}, prefer={policy.prefer_label}, "
        f"insertions={policy.insertions.value}, on_conflict={policy.on_conflict.value}"
    )
    if policy.on_conflict is OnConflict.RESOLVE:
        line += f", resolver={policy.resolver.kind if policy.resolver else 'the default agent'}"
    return line


# --- merge -------------------------------------------------------------------------------------------


@cli.command("merge", epilog=EXIT_CODES_HELP)
@click.argument("branches", nargs=-1, required=True)
@click.option("--base", required=True, help="Revision the integration branch starts from.")
@click.option(
    "--repo", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True
)
@click.option("--into", "integration", help="Integration branch to create (default swarm/merge-<id>).")
@click.option(
    "--prefer", default="first", show_default=True, help="'first' or roles by precedence, comma-separated."
)
@click.option("--report", "report_json", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--report-md", type=click.Path(path_type=Path, dir_okay=False))
def merge_cmd(
    branches: Sequence[str],
    base: str,
    repo: Path,
    integration: str | None,
    prefer: str,
    report_json: Path | None,
    report_md: Path | None,
) -> None:
    """Run the merge phase alone on existing branches."""
    from ci_swarm.merge_only import merge_report

    policy = MergePolicy(prefer=() if prefer == "first" else tuple(p.strip() for p in prefer.split(",")))
    report = merge_report(git.open_repo(repo), list(branches), base, integration, policy)
    _write_reports(report, report_json, report_md)
    print_terminal(report, Console(stderr=True))
    click.echo(report.integration_branch)
    sys.exit(exit_code(report))


# --- cleanup -----------------------------------------------------------------------------------------


@cli.command("cleanup", epilog=EXIT_CODES_HELP)
@click.option("--run-id", help="Delete this run's branches.")
@click.option(
    "--older-than",
    type=float,
    metavar="DAYS",
    help="Delete the branches of every run started more than DAYS days ago.",
)
@click.option("--remote", metavar="NAME", help="Also delete the runs' branches on this remote.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option(
    "--repo", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True
)
@click.option("--branch-prefix", help="Branch namespace (config; default swarm).")
def cleanup_cmd(
    run_id: str | None,
    older_than: float | None,
    remote: str | None,
    dry_run: bool,
    repo: Path,
    branch_prefix: str | None,
) -> None:
    """Delete runs' branches (never one holding commits that are not ci-swarm's) and killed runs' clones."""
    import time

    from ci_swarm import cleanup
    from ci_swarm.clones import remove_stale

    selection = cleanup.Selection(run_id, older_than, time.time())
    root = git.open_repo(repo)
    config = _config_at(None, root)
    prefix = branch_prefix or config.branch_prefix
    verdicts = cleanup.clean_local(root, prefix, selection, dry_run=dry_run)
    if remote:
        from ci_swarm.github.pushing import TokenRemote

        gone = TokenRemote(root, remote, "", name=remote)
        verdicts += cleanup.clean_remote(root, gone, prefix, selection, dry_run=dry_run)
    would = "would delete" if dry_run else "deleted"
    for v in verdicts:
        line = f"{would} {v.branch} ({v.where})" if v.deleted else f"kept {v.branch} ({v.where}): {v.why}"
        click.echo(one_line(line))
    for directory in remove_stale(dry_run=dry_run):
        click.echo(one_line(f"{'would remove' if dry_run else 'removed'} {directory} (its run is gone)"))
    if not verdicts:
        click.echo("no branches of the chosen runs")


# --- demo --------------------------------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Build the sample repo here (default: a new temp dir).",
)
@click.option("--max-agents", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option(
    "--speed",
    type=FiniteFloat(min=0.01),
    default=1.0,
    show_default=True,
    help="Multiply the simulated agent latency (0.1 = ten times faster).",
)
@click.option("--report", "report_json", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--report-md", type=click.Path(path_type=Path, dir_okay=False))
def demo(
    directory: Path | None, max_agents: int, speed: float, report_json: Path | None, report_md: Path | None
) -> None:
    """Offline demo: a sample repo, a five-role scripted swarm, merges and a recorded conflict."""
    from ci_swarm.demo import run_demo

    report = run_demo(directory, max_agents=max_agents, speed=speed, console=Console())
    _write_reports(report, report_json, report_md)
    sys.exit(0 if not report.failed else exit_code(report))


# --- action ------------------------------------------------------------------------------------------


@cli.command(context_settings={"ignore_unknown_options": True})
def action() -> None:
    """Entry point of the GitHub Action (reads the Actions environment)."""
    from ci_swarm.action import main as action_main

    sys.exit(action_main())


def main(argv: Sequence[str] | None = None) -> None:
    """Console script: map every error to one line on stderr and its exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="ci-swarm", standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted", errors.EXIT_INTERRUPTED)
    except click.exceptions.ClickException as exc:
        fail(exc.format_message(), errors.EXIT_BAD_INPUT)
    except errors.SwarmError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", errors.EXIT_INTERRUPTED)
