"""The one application service both entry points call: a request or a plan in, a run and its accounted
report out.

``run_request`` is the flow ``ci-swarm run``, the GitHub Action and the demo share: decide whether the run
needs a model (:func:`needs_model`), build the model session only then (through the factory the entry point
wires in), plan when there is no plan, validate (warnings returned and handed to ``on_warning``), check agent
kinds and command agents (:class:`CommandPolicy`), choose the sandbox (:func:`choose_sandbox`: a run that
would start an untrusted process and has no sandbox stops here), start the progress comment, run the
orchestrator inside one event loop, verify, let the review panel vote (:mod:`ci_swarm.panel`, ``review:``),
close the session, and fold its usage, notes and budget stop into the report, once.

The service is core: it sees the model session and the publisher only through :mod:`ci_swarm.ports`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from ci_swarm import git, panel
from ci_swarm.allowlist import command_allowed
from ci_swarm.attempts import agents_view, reviewer_judged, with_best_of, with_judge
from ci_swarm.config import DEFAULT_PATH
from ci_swarm.errors import LLMError, UsageError
from ci_swarm.models import (
    EMPTY,
    AgentSpec,
    Check,
    Judge,
    MergePolicy,
    OnConflict,
    Plan,
    Request,
    ReviewPolicy,
    RunReport,
)
from ci_swarm.naming import new_run_id
from ci_swarm.outputtail import Redactor
from ci_swarm.plan import validate
from ci_swarm.ports import (
    AgentBackend,
    AgentKit,
    ModelSession,
    ProgressComment,
    ProgressEvent,
    ProgressListener,
    ProgressStarter,
)
from ci_swarm.run import RunOptions, run_plan
from ci_swarm.runtime import run_sync
from ci_swarm.sandbox import SandboxPolicy, resolve_policy
from ci_swarm.speculate import Speculation
from ci_swarm.verify import check_agents, checker, not_run, verify_integration

MODEL_AGENT = "claude"  # the agent kind that talks to the model
COMMAND_AGENT = "command"  # the agent kind that runs an external program
UNSANDBOXED = "agents ran unsandboxed (sandbox: none): their commands ran as ci-swarm's own user"
REVIEW_NEEDS_MODEL = (
    "review: the review panel votes through a model: set ANTHROPIC_API_KEY, or remove review: from the "
    "plan and the config"
)

SessionFactory = Callable[[], ModelSession]
Watch = Callable[[Plan], AbstractContextManager[ProgressListener | None]]


def needs_model(plan: Plan | None, default: AgentSpec, review: ReviewPolicy | None = None) -> bool:
    """The one rule: a run needs a model when there is no plan yet (the planner writes it), when any
    subtask's agent — its own, else the default — or the conflict resolver (``on_conflict: resolve``) is a
    Claude agent, when a subtask's attempts are judged by ``reviewer`` or ``weighted`` (the reviewer is a
    model call), or when a review panel (``review:``, its voters are model calls) votes on the result. A
    default nobody uses needs nothing."""
    if plan is None or review is not None or reviewer_judged(plan) is not None:
        return True
    return MODEL_AGENT in agent_kinds(plan, default)


def agent_kinds(plan: Plan, default: AgentSpec) -> set[str]:
    """Every agent kind a run may start: each subtask's (its own, else the default), and the resolver's
    when ``merge.on_conflict`` is ``resolve`` (its own, else the default)."""
    kinds = {(sub.agent or default).kind for sub in plan.subtasks}
    if plan.merge.on_conflict is OnConflict.RESOLVE:
        kinds.add((plan.merge.resolver or default).kind)
    return kinds


def needs_sandbox(plan: Plan, default: AgentSpec, allowed_commands: tuple[tuple[str, ...], ...]) -> bool:
    """A run starts untrusted processes when a subtask's agent (its own, else the default) is a command
    agent, or a Claude agent while ``allowed_commands`` lets it use ``run_command``. Scripted agents and
    Claude agents without commands need no sandbox."""
    kinds = agent_kinds(plan, default)
    return COMMAND_AGENT in kinds or (MODEL_AGENT in kinds and bool(allowed_commands))


def choose_sandbox(
    plan: Plan, default: AgentSpec, allowed_commands: tuple[tuple[str, ...], ...], requested: str | None
) -> SandboxPolicy | None:
    """The sandbox the run's agents use (None: the run starts no untrusted process). ``requested`` is
    ``--sandbox`` / config ``sandbox`` / the Action's input (None: whatever is available, never ``none``);
    UsageError (exit 4, one line naming the option) when it is needed and there is none."""
    if not needs_sandbox(plan, default, allowed_commands):
        return None
    return resolve_policy(requested or None)


def sandboxed(report: RunReport, policy: SandboxPolicy | None) -> RunReport:
    """The report says how agents' commands ran; an unsandboxed run carries a note saying so."""
    if policy is None:
        return replace(report, sandbox="not needed")
    notes = report.notes + ((UNSANDBOXED,) if policy.unsandboxed else ())
    return replace(report, sandbox=policy.backend, notes=notes)


@dataclass(frozen=True)
class CommandPolicy:
    """Which ``command`` agents a plan may name. Command agents are external programs ci-swarm cannot
    confine.

    ``trust_plan_commands=True`` (the CLI): the person running ci-swarm wrote or chose the plan on their own
    machine, and the Claude planner cannot choose agent backends, so any command runs.
    ``trust_plan_commands=False`` (the Action: plans come from issue and comment text): a subtask may name a
    command agent only when its argv is allowed by ``allowed_commands`` of the repository's config (the
    default agent comes from the maintainers' config or inputs and is trusted), and no command agent runs
    while a credential sits in ``.git/config`` (``actions/checkout`` persists one unless
    ``persist-credentials: false``): the agent could read it from its worktree.
    """

    trust_plan_commands: bool
    allowed_commands: tuple[tuple[str, ...], ...] = ()
    config_source: str = DEFAULT_PATH  # named in the refusal


def check_commands(
    plan: Plan, default: AgentSpec, policy: CommandPolicy, repo: Path, agents: AgentKit
) -> None:
    """UsageError when ``policy`` does not let ``plan`` run one of its command agents."""
    if policy.trust_plan_commands:
        return
    commands = [
        (f"subtask {sub.id!r}", sub.agent)
        for sub in plan.subtasks
        if (sub.agent or default).kind == "command"
    ]
    resolver = plan.merge.resolver
    if plan.merge.on_conflict is OnConflict.RESOLVE and resolver is not None and resolver.kind == "command":
        commands.append(("the resolver (merge.resolver)", resolver))
    for who, spec in commands:
        if spec is None:  # the default agent: trusted
            continue
        argv = agents.command_argv(spec, who)
        if not command_allowed(argv, policy.allowed_commands):
            raise UsageError(
                f"{who} would run {' '.join(argv[:3])!r}, which allowed_commands in "
                f"{policy.config_source} does not allow (a plan may only run allowed commands)"
            )
    if commands:
        refuse_credentials_in_config(repo)


_USERINFO = re.compile(r"(https?://)[^/@\s]*@", re.IGNORECASE)  # user info in an http(s) URL


def refuse_credentials_in_config(repo: Path) -> None:
    """UsageError when git's config (any scope) holds a credential a command agent could read: an
    ``http.*.extraheader`` (what actions/checkout persists), a ``remote.*.url``/``pushurl`` with user info
    (``https://x:TOKEN@github.com/…``), or a ``url.<base>.insteadOf`` whose *base* carries one. The message
    names the config key (with any user info replaced by ``***``), never the value."""
    if git.config_keys(repo, r"^http\..*extraheader$"):
        raise UsageError(
            "a command agent could read the token actions/checkout left in .git/config: "
            "set `persist-credentials: false` on the checkout step"
        )
    keys = [key for key in git.config_keys(repo, r"^url\..*\.(push)?insteadof$") if _USERINFO.search(key)]
    keys += [
        key for key, value in _config_values(repo, r"^remote\..*\.(push)?url$") if _USERINFO.match(value)
    ]
    if keys:
        shown = _USERINFO.sub(r"\1***@", keys[0])
        raise UsageError(
            f"a command agent could read the credential in git config key {shown}: "
            "remove it (let ci-swarm push with its token) before running command agents"
        )


def _config_values(repo: Path, pattern: str) -> list[tuple[str, str]]:
    """(key, value) of the config entries matching ``pattern`` (values never leave this module's checks)."""
    data = git.run(repo, "config", "-z", "--get-regexp", pattern, ok=(0, 1)).text
    entries = []
    for entry in data.split("\0"):
        key, _, value = entry.partition("\n")
        if key:
            entries.append((key, value))
    return entries


@dataclass(frozen=True)
class RunRequest:
    """One run: the request, the plan (None: the model plans ``request``) and the orchestrator's options
    (``options.default_agent`` is the agent of subtasks that name none)."""

    request: Request
    options: RunOptions
    plan: Plan | None = None
    merge: MergePolicy | None = None  # a planned plan follows this merge policy (the repository's)
    max_subtasks: int | None = None  # for validation
    checks: tuple[Check, ...] = ()  # the config's checks (a plan's own checks replace them)
    check_flags: tuple[Check, ...] = ()  # ``run --check``: replace the plan's and the config's
    merge_failing: bool = False  # the config's (a plan's own setting replaces it)
    speculate: bool = (
        False  # checks on intermediate tips while agents run (config speculate_checks, --speculate)
    )
    on_conflict: OnConflict | None = None  # ``run --on-conflict``: replaces the plan's and the config's
    best_of: int | None = (
        None  # ``run --best-of N``: N attempts for every subtask that names none (issue #14)
    )
    review: ReviewPolicy | None = None  # the config's review panel (a plan's own ``review:`` replaces it)
    judge: Judge | None = None  # the config's ``judge:`` for attempts (a plan's own replaces it)
    weights: Mapping[str, float] = field(default_factory=lambda: EMPTY)  # the config's ``weights:``


def contested(job: RunRequest, plan: Plan) -> Plan:
    """``best_of`` (``--best-of``, else the config's) and the config's ``judge:``/``weights:`` applied to
    ``plan``: the plan the run and every pre-run check see."""
    return with_judge(with_best_of(plan, job.best_of), job.judge, job.weights)


def review_of(job: RunRequest, plan: Plan | None) -> ReviewPolicy | None:
    """The review panel a run has: the plan's own ``review:``, else the config's (None: no panel)."""
    return (plan.review if plan is not None else None) or job.review


def run_checks_of(job: RunRequest, plan: Plan | None) -> tuple[Check, ...]:
    """The checks a run uses: ``--check`` flags, else the plan's own, else the config's."""
    return job.check_flags or (plan.checks if plan is not None else ()) or job.checks


def with_on_conflict(job: RunRequest) -> RunRequest:
    """``run --on-conflict`` applied to the plan given and to the merge policy a planned plan gets."""
    if job.on_conflict is None:
        return job
    plan = job.plan
    if plan is not None:
        plan = replace(plan, merge=replace(plan.merge, on_conflict=job.on_conflict))
    merge = replace(job.merge or MergePolicy(), on_conflict=job.on_conflict)
    return replace(job, plan=plan, merge=merge)


def require_checks(job: RunRequest) -> None:
    """UsageError (exit 4) before anything starts when conflicts go to agents (``on_conflict: redo`` or
    ``resolve``) and the run has no checks to gate their work: no ``--check``, none in the plan, none in
    the config."""
    merge = job.plan.merge if job.plan is not None else job.merge or MergePolicy()
    if merge.on_conflict is not OnConflict.KEEP and not run_checks_of(job, job.plan):
        raise UsageError(
            f"on_conflict: {merge.on_conflict.value} needs checks to gate the agents' resolutions "
            "(add checks: or --check)"
        )


def check_plan_checks(plan: Plan, policy: CommandPolicy) -> None:
    """UsageError when an untrusted plan (the Action's) names a check ``allowed_commands`` does not allow:
    a check runs a command like a command agent does."""
    if policy.trust_plan_commands:
        return
    for check in plan.checks:
        if not command_allowed(check.run, policy.allowed_commands):
            raise UsageError(
                f"the plan's check {check.name!r} would run {' '.join(check.run[:3])!r}, which "
                f"allowed_commands in {policy.config_source} does not allow"
            )


def _ignore_plan(plan: Plan, planned: bool) -> None:
    return None


def _ignore_warning(warning: str) -> None:
    return None


def _ignore_progress(progress: ProgressComment) -> None:
    return None


def _no_watch(plan: Plan) -> AbstractContextManager[ProgressListener | None]:
    return nullcontext(None)


@dataclass(frozen=True)
class ServiceOptions:
    """How an entry point wires the service: its command policy, its adapters (created only when used) and
    what it shows along the way."""

    commands: CommandPolicy
    agents: AgentKit  # the agent backends (``ci_swarm.agents.AGENTS``)
    session: SessionFactory | None = None  # the model session's factory (None: no model available)
    progress: ProgressStarter | None = None  # the publisher: starts the progress comment
    watch: Watch = _no_watch  # the entry's own listener for the plan (terminal table, log lines)
    on_plan: Callable[[Plan, bool], None] = _ignore_plan  # the plan is known (and was planned: True)
    on_warning: Callable[[str], None] = _ignore_warning  # a validation warning
    on_progress: Callable[[ProgressComment], None] = _ignore_progress  # started: failures are told there
    sandbox: str | None = None  # the sandbox asked for (user | none; None: user where available)


@dataclass(frozen=True)
class RunOutcome:
    """The accounted report, the progress comment (None without a publisher) and the plan's warnings."""

    report: RunReport
    progress: ProgressComment | None
    warnings: tuple[str, ...] = ()


def run_request(job: RunRequest, wiring: ServiceOptions) -> RunOutcome:
    """Plan (when needed), check, run and account: planning and the run share one event loop, so the
    model session (its connection pool, the shared limiter) lives and dies in the loop that uses it."""
    job = with_on_conflict(job)
    require_checks(job)
    options = job.options
    if wiring.progress is not None and options.run_id is None:  # the progress comment names it up front
        options = replace(options, run_id=new_run_id())
    default = options.default_agent
    session = _session_for(job, default, wiring.session)
    progress: ProgressComment | None = None
    warnings: tuple[str, ...] = ()

    async def plan_and_run() -> RunReport:
        nonlocal progress, warnings
        try:
            plan = contested(job, job.plan or await _plan(job.request, options.repo, session, job.merge))
            every_agent = agents_view(plan)  # the attempts' own agents are checked like subtasks' agents
            warnings = tuple(validate(plan, max_subtasks=job.max_subtasks))
            for warning in warnings:
                wiring.on_warning(warning)
            backends: dict[str, AgentBackend] = {}
            if session is not None:
                backends[MODEL_AGENT] = session.agent_backend()
            wiring.agents.check(every_agent, default, backends)
            check_commands(every_agent, default, wiring.commands, options.repo, wiring.agents)
            check_plan_checks(plan, wiring.commands)
            checks = run_checks_of(job, plan)
            sandbox = choose_sandbox(every_agent, default, wiring.commands.allowed_commands, wiring.sandbox)
            if checks and sandbox is None:  # checks run agent-written code: always sandboxed
                sandbox = resolve_policy(wiring.sandbox or None)
            wiring.on_plan(plan, job.plan is None)
            if wiring.progress is not None:
                usage = session.usage if session is not None else None
                progress = wiring.progress.start(
                    job.request, options.run_id or "", plan.subtasks, usage=usage
                )
                wiring.on_progress(progress)
            with wiring.watch(plan) as watcher:
                listener = fan_out(watcher, progress)
                factory = wiring.agents.factory(default, backends)
                gate = (
                    checker(options.repo, checks, sandbox, Redactor(options.secrets))
                    if checks and sandbox
                    else None
                )
                speculating = gate is not None and job.speculate
                speculation = Speculation(Path(options.repo), gate) if gate and speculating else None
                run_options = replace(
                    options, sandbox=sandbox, check=gate, checks=checks, speculation=speculation
                )
                if session is not None:  # competing attempts: the reviewer judges and the budget (issue #14)
                    run_options = replace(
                        run_options, reviewer=session.reviewer(), budget=session.budget_reason
                    )
                try:
                    report = await run_plan(plan, run_options, factory, listener, job.request)
                    if speculation is not None and not report.interrupted:
                        await speculation.drain()
                finally:
                    if speculation is not None:
                        await speculation.cancel()
                if checks and sandbox is not None:
                    report = await verified(report, plan, job, checks, sandbox, speculation)
                review = review_of(job, plan)
                if review is not None and session is not None:
                    report = await panel.review(Path(report.repo), report, review, session.panel_voter())
                return sandboxed(report, sandbox)
        finally:
            if session is not None:
                with suppress(Exception):  # closing never hides the run's own outcome
                    await session.aclose()

    report = run_sync(plan_and_run)
    return RunOutcome(account(report, session), progress, warnings)


async def verified(
    report: RunReport,
    plan: Plan,
    job: RunRequest,
    checks: tuple[Check, ...],
    policy: SandboxPolicy,
    speculation: Speculation | None = None,
) -> RunReport:
    """Command agents' own checks, then the integration verified (:mod:`ci_swarm.verify`), with what the
    speculative checks found while agents ran; an interrupted run is not verified."""
    if report.interrupted:
        return not_run(report)
    repo = Path(report.repo)
    run = checker(repo, checks, policy, Redactor(job.options.secrets))
    default = job.options.default_agent
    commands = [s.id for s in plan.subtasks if (s.agent or default).kind == COMMAND_AGENT]
    merge_failing = job.merge_failing if plan.merge_failing is None else plan.merge_failing
    if commands:
        report = await check_agents(repo, report, commands, run, merge_failing=merge_failing)
    if speculation is None:
        return await verify_integration(repo, report, run)
    known, runs = speculation.known, speculation.runs
    return await verify_integration(repo, report, run, known=known, speculative_runs=runs)


def plan_request(
    request: Request, repo: Path, session: SessionFactory | None, merge: MergePolicy | None = None
) -> Plan:
    """Only the planning part of :func:`run_request` (``ci-swarm plan --task``), in its own event loop."""
    model = open_session(session)

    async def go() -> Plan:
        try:
            return await _plan(request, repo, model, merge)
        finally:
            with suppress(Exception):
                await model.aclose()

    return run_sync(go)


def open_session(factory: SessionFactory | None) -> ModelSession:
    if factory is None:
        raise UsageError("this run needs a model (a Claude agent or the planner), and none is configured")
    return factory()


def _session_for(job: RunRequest, default: AgentSpec, factory: SessionFactory | None) -> ModelSession | None:
    """The run's model session (None: it needs none); UsageError before anything starts, naming
    ``review:`` or the judge, when only the review panel or a reviewer judge needs a model and none can
    be opened."""
    # claude attempts need a model too: agents_view names their agents
    plan = agents_view(contested(job, job.plan)) if job.plan is not None else None
    if plan is None or MODEL_AGENT in agent_kinds(plan, default):
        return open_session(factory)
    review = review_of(job, job.plan)
    if not needs_model(plan, default, review):
        return None
    refusal = (None if review is not None else reviewer_judged(plan)) or UsageError(REVIEW_NEEDS_MODEL)
    if factory is None:
        raise refusal
    try:
        return factory()
    except LLMError as exc:
        raise refusal from exc


async def _plan(
    request: Request, repo: Path, session: ModelSession | None, merge: MergePolicy | None
) -> Plan:
    """The model's plan for ``request``; it follows ``merge`` (the repository's policy) when given."""
    if session is None:  # needs_model() said no: there was a plan
        raise AssertionError("planning without a model session")
    plan = await session.planner().plan(request, git.open_repo(repo))
    return plan if merge is None else replace(plan, merge=merge)


def account(report: RunReport, session: ModelSession | None) -> RunReport:
    """The session's usage, notes (budget stop, unpriced models) and budget stop, folded into the report.
    ``budget_stopped`` means the budget stopped an agent, not merely that usage reached the limit."""
    if session is None:
        return report
    return replace(
        report,
        usage=session.usage(),
        notes=report.notes + tuple(session.notes()),
        budget_stopped=report.budget_stopped or session.budget_stopped,
    )


def fan_out(*listeners: ProgressListener | None) -> ProgressListener:
    """One listener calling each given one in turn (None: skipped)."""
    active = [listener for listener in listeners if listener is not None]

    def listen(event: ProgressEvent) -> None:
        for listener in active:
            listener(event)

    return listen
