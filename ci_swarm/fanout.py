"""Fan-out across runners: the three application functions behind ``plan --fan-out``, ``agent`` and ``land``.

* :func:`plan_fan_out` — plan (or take the plan), validate, create the integration branch at the base
  (never overwriting one), record the run state (:mod:`ci_swarm.runstate`) and return the first wave's
  matrix (:mod:`ci_swarm.matrix`).
* :func:`run_agent` — exactly one subtask, through the service's own run (:func:`service.run_request`:
  same backends, command policy and sandbox) as a one-subtask plan from the state's start commit under a
  scratch branch prefix; its commit then set on ``<prefix>/<run>-agents/<id>`` and the scratch branches
  deleted; the result as an :class:`bundles.AgentResult` (written as a bundle by the entry point).
* :func:`land_run` — every agent's result admitted (:mod:`ci_swarm.bundles`), subtasks without one
  ``failed``, the merge queue in plan order onto the integration branch, the checks
  (:func:`service.verified`), the report; the landing recorded in the state with the report, so a second
  ``land`` returns the same report and merges nothing.

Only the first wave fans out: a subtask with dependencies is refused by ``agent`` (it would need the
integration tip after its dependencies landed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ci_swarm import bundles, git, runstate
from ci_swarm.dag import critical_path
from ci_swarm.errors import RepoError, UsageError, exit_code
from ci_swarm.matrix import Matrix, wave_matrix
from ci_swarm.merge import MergeQueue
from ci_swarm.models import (
    Check,
    MergeOrder,
    MergeRecord,
    OnConflict,
    Plan,
    Request,
    RunReport,
    RunStats,
    Subtask,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
)
from ci_swarm.naming import agent_branch, check_run_id, integration_branch, new_run_id
from ci_swarm.plan import did_you_mean, validate
from ci_swarm.report import summary_lines, to_json
from ci_swarm.run import RunOptions
from ci_swarm.runstate import RunPolicy, RunState
from ci_swarm.runtime import run_sync
from ci_swarm.sandbox import resolve_policy
from ci_swarm.service import (
    RunRequest,
    ServiceOptions,
    check_commands,
    check_plan_checks,
    plan_request,
    run_checks_of,
    run_request,
    sandboxed,
    verified,
)

SCRATCH_PREFIX = "ci-swarm-agent-job"  # the one-subtask run's own branches, deleted when it ends
NO_RESULT = "no result from its job"
NOT_FANNED_OUT = "not run: only the first wave fans out (it depends on other subtasks)"
REPORT_FILE, SUMMARY_FILE, EXIT_FILE = "report.json", "summary.txt", "exit"
FANNED_OUT = "fanned out across jobs: wall time is the land job's; each agent ran in its own job"


# --- plan --fan-out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FanOut:
    state: RunState
    matrix: Matrix
    warnings: tuple[str, ...]


def plan_fan_out(job: RunRequest, wiring: ServiceOptions, config_digest: str = "") -> FanOut:
    """Plan, validate, create ``<prefix>/<run>`` at the base and record the run state."""
    options = job.options
    plan = job.plan or plan_request(job.request, options.repo, wiring.session, job.merge)
    warnings = tuple(validate(plan, max_subtasks=job.max_subtasks))
    check_commands(plan, options.default_agent, wiring.commands, options.repo, wiring.agents)
    check_plan_checks(plan, wiring.commands)
    repo = git.open_repo(options.repo)
    base = git.rev_parse(repo, options.base)
    run_id = _claim(repo, options.branch_prefix, base, options.run_id)
    policy = RunPolicy(
        max_agents=options.max_agents,
        timeout=options.timeout,
        merge_order=options.merge_order.value if options.merge_order else "",
        checks=run_checks_of(job, plan),
        default_agent=options.default_agent,
        branch_prefix=options.branch_prefix,
        sandbox=wiring.sandbox or "",
    )
    branch = integration_branch(options.branch_prefix, run_id)
    state = RunState(run_id, base, branch, plan, policy, config_digest)
    runstate.record(repo, state)
    return FanOut(state, wave_matrix(plan), warnings)


def _claim(repo: Path, prefix: str, base: str, wanted: str | None) -> str:
    """The run id whose integration branch this call created at ``base`` (never overwriting one)."""
    if wanted:
        git.create_branch(repo, integration_branch(prefix, check_run_id(wanted)), base)
        return wanted
    for _ in range(5):
        run_id = new_run_id()
        try:
            git.create_branch(repo, integration_branch(prefix, run_id), base)
        except RepoError:
            continue
        return run_id
    raise RepoError("could not find a free run id (swarm branches keep colliding)")


# --- agent ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRun:
    """One agent job's outcome: its result (the sidecar), the agent branch and the one-subtask report."""

    result: bundles.AgentResult
    branch: str
    report: RunReport


def run_agent(
    repo_path: Path, run_id: str, subtask_id: str, wiring: ServiceOptions, secrets: tuple[str, ...] = ()
) -> AgentRun:
    """Run exactly ``subtask_id`` of the recorded run from its start commit; commit on its agent branch."""
    repo = git.open_repo(repo_path)
    state = runstate.load(repo, run_id).state
    sub = _subtask(state, subtask_id)
    if sub.depends_on:
        raise UsageError(
            f"subtask {sub.id!r} depends on {', '.join(sub.depends_on)}: only the first wave fans out"
        )
    policy = state.policy
    scratch = f"{SCRATCH_PREFIX}/{sub.id}"
    options = RunOptions(
        repo=repo,
        base=state.base,
        max_agents=1,
        timeout=policy.timeout,
        run_id=run_id,
        branch_prefix=scratch,
        default_agent=policy.default_agent,
        secrets=secrets,
    )
    keep = replace(state.plan.merge, on_conflict=OnConflict.KEEP)  # one subtask: nothing to conflict with
    one = replace(state.plan, subtasks=(sub,), checks=(), merge=keep, review=None)  # no panel on a part
    job = RunRequest(Request(task=state.plan.task, source="cli"), options, one)
    try:
        report = run_request(job, replace(wiring, sandbox=policy.sandbox or wiring.sandbox)).report
    finally:
        _drop_scratch(repo, scratch, run_id, sub.id)
    record = report.subtasks[0]
    branch = agent_branch(policy.branch_prefix, run_id, sub.id)
    commit = record.commit if record.commit and record.commit != state.base else ""
    if commit:
        git.create_branch(repo, branch, commit)
    result = bundles.AgentResult(
        run_id=run_id,
        subtask=sub.id,
        start=state.base,
        commit=commit,
        status=record.status.value,
        error=record.error,
        summary=record.summary,
        exit_status=record.exit_status,
        seconds=record.seconds,
        usage=report.usage if report.usage.tokens else record.usage,
        attempt=bundles.attempt_from_env(),
        files=record.files,
        output_tail=record.output_tail,
    )
    return AgentRun(result, branch, report)


def _subtask(state: RunState, subtask_id: str) -> Subtask:
    try:
        return state.plan.subtask(subtask_id)
    except KeyError:
        ids = [s.id for s in state.plan.subtasks]
        hint = did_you_mean(subtask_id, ids)
        raise UsageError(f"run {state.run_id} has no subtask {subtask_id!r}{hint}") from None


def _drop_scratch(repo: Path, scratch: str, run_id: str, subtask_id: str) -> None:
    for name in (integration_branch(scratch, run_id), agent_branch(scratch, run_id, subtask_id)):
        tip = git.try_ref(repo, f"refs/heads/{name}")
        if tip is not None:
            git.delete_ref(repo, f"refs/heads/{name}", tip)


def write_agent_bundle(repo_path: Path, out: Path, run: AgentRun) -> None:
    """The agent job's hand-over: the bundle of ``start..commit`` on the agent branch and its sidecar."""
    bundles.make(git.open_repo(repo_path), out, run.result, f"refs/heads/{run.branch}")


# --- land -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """What ``land`` reports: the JSON report, the summary lines, the exit code; ``report`` is None when
    the run had already landed (``again``: the stored report is returned, nothing merged)."""

    report: RunReport | None
    report_json: str
    summary: tuple[str, ...]
    exit_code: int
    integration_commit: str
    again: bool = False


def land_run(
    repo_path: Path,
    run_id: str,
    bundles_dir: Path | None,
    wiring: ServiceOptions,
    check_flags: tuple[Check, ...] = (),
    secrets: tuple[str, ...] = (),
) -> Landing:
    """Admit the agents' results, merge them in plan order, verify, report, and record the landing."""
    repo = git.open_repo(repo_path)
    recorded = runstate.load(repo, run_id)
    state = recorded.state
    if state.landed:
        return _landed_before(repo, recorded)
    started = time.monotonic()
    _integration_at_base(repo, state)
    records, notes = _results(repo, state, bundles_dir)
    report = _merged(repo, state, records, notes, started)
    job = _verification_job(repo, state, secrets, check_flags)
    checks = run_checks_of(job, state.plan)
    if checks:
        sandbox = resolve_policy(state.policy.sandbox or wiring.sandbox or None)
        report = sandboxed(run_sync(lambda: verified(report, state.plan, job, checks, sandbox)), sandbox)
    landing = Landing(
        report, to_json(report), summary_lines(report), exit_code(report), report.integration_commit
    )
    attachments = {
        REPORT_FILE: landing.report_json.encode(),
        SUMMARY_FILE: "\n".join(landing.summary).encode(),
        EXIT_FILE: str(landing.exit_code).encode(),
    }
    runstate.record(repo, runstate.landed(state, landing.integration_commit), recorded.commit, attachments)
    return landing


def _landed_before(repo: Path, recorded: runstate.Recorded) -> Landing:
    report = (runstate.attachment(repo, recorded, REPORT_FILE) or b"").decode()
    summary = (runstate.attachment(repo, recorded, SUMMARY_FILE) or b"").decode().splitlines()
    code = (runstate.attachment(repo, recorded, EXIT_FILE) or b"0").decode().strip()
    return Landing(
        None, report, tuple(summary), int(code) if code.isdigit() else 1, recorded.state.landed, True
    )


def _integration_at_base(repo: Path, state: RunState) -> None:
    """The integration branch exists at the base (created here in a fresh clone); RepoError if it moved."""
    ref = f"refs/heads/{state.integration_branch}"
    tip = git.try_ref(repo, ref)
    if tip is None:
        git.create_branch(repo, state.integration_branch, state.base)
    elif tip != state.base:
        raise RepoError(
            f"integration branch {state.integration_branch} is at {tip[:12]}, not at the run's base "
            f"{state.base[:12]}: refusing to land onto it"
        )


def _results(repo: Path, state: RunState, directory: Path | None) -> tuple[list[SubtaskRecord], list[str]]:
    """Each subtask's record in plan order from its newest admitted result; notes for unreadable ones."""
    found = bundles.find(directory) if directory is not None else ()
    notes = [f"result {item.sidecar.name} refused: {item.problem}" for item in found if item.result is None]
    chosen = bundles.newest(found)
    prefix = state.policy.branch_prefix
    expected = bundles.Expected(
        state.run_id,
        [s.id for s in state.plan.subtasks],
        state.base,
        {s.id: agent_branch(prefix, state.run_id, s.id) for s in state.plan.subtasks},
    )
    for item in found:  # results for other runs or unknown subtasks are named, not used
        if item.result is not None and item.result.subtask not in expected.branch_of:
            notes.append(f"result {item.sidecar.name} refused: unknown subtask {item.result.subtask!r}")
    records = [_record(repo, sub, chosen.get(sub.id), expected) for sub in state.plan.subtasks]
    return records, notes


def _record(
    repo: Path, sub: Subtask, item: bundles.Found | None, expected: bundles.Expected
) -> SubtaskRecord:
    base = SubtaskRecord(
        id=sub.id,
        role=sub.role,
        title=sub.title,
        status=SubtaskStatus.FAILED,
        branch=expected.branch_of[sub.id],
        start_commit=expected.start,
        paths=sub.paths,
    )
    if item is None or item.result is None:
        return replace(base, error=NOT_FANNED_OUT if sub.depends_on else NO_RESULT)
    result = item.result
    try:
        status = SubtaskStatus(result.status)
        bundles.check_result(result, expected)
        commit = bundles.admit(repo, item.bundle, result, expected) if result.has_work else expected.start
    except bundles.BundleRefused as exc:
        return replace(base, error=f"result refused: {exc}")
    except ValueError:
        return replace(base, error=f"result refused: unknown status {result.status!r}")
    return replace(
        base,
        status=status,
        commit=commit,
        seconds=result.seconds,
        files=result.files,
        error=result.error,
        summary=result.summary,
        usage=result.usage,
        exit_status=result.exit_status,
        output_tail=result.output_tail,
    )


def _merged(
    repo: Path, state: RunState, records: list[SubtaskRecord], notes: list[str], started: float
) -> RunReport:
    """The succeeded subtasks merged in plan order (the merge queue), and the run's report."""
    plan = state.plan
    order = MergeOrder(state.policy.merge_order) if state.policy.merge_order else plan.merge.order
    policy = replace(plan.merge, order=order)
    roles = {s.id: s.role for s in plan.subtasks}
    queue = MergeQueue(repo, state.integration_branch, state.base, policy, roles)
    merges: list[MergeRecord] = []
    for rec in records:
        if rec.status is SubtaskStatus.SUCCEEDED:
            merges.append(queue.merge(rec.id, rec.commit, rec.start_commit, len(merges) + 1))
    usage = sum((r.usage for r in records), Usage())
    return RunReport(
        run_id=state.run_id,
        task=plan.task,
        repo=str(repo),
        base=state.base,
        integration_branch=state.integration_branch,
        integration_commit=queue.tip,
        stats=_stats(plan, records, state.policy.max_agents, time.monotonic() - started),
        subtasks=tuple(records),
        merges=tuple(merges),
        overlap=queue.overlaps,
        merge_policy=policy,
        rationale=plan.rationale,
        usage=usage,
        notes=(FANNED_OUT, *notes),
        request=Request(task=plan.task, source="cli"),
        timeout_seconds=state.policy.timeout,
    )


def _stats(plan: Plan, records: list[SubtaskRecord], cap: int, wall: float) -> RunStats:
    seconds = {r.id: r.seconds for r in records}
    total = sum(seconds.values())
    _, path = critical_path(plan, seconds)
    bound = max(path, total / max(cap, 1))
    return RunStats(
        wall_seconds=round(wall, 6),
        agent_seconds_sum=round(total, 6),
        parallelism=0.0,  # the agents ran in other jobs: Σ agent time / the land job's wall means nothing
        bound_seconds=round(bound, 6),
        efficiency=0.0,
        max_agents=cap,
        max_in_flight=len(records),
        critical_path_seconds=round(path, 6),
    )


def _verification_job(
    repo: Path, state: RunState, secrets: tuple[str, ...], flags: tuple[Check, ...]
) -> RunRequest:
    """The request :func:`service.verified` reads: the state's checks (``--check`` flags replace them)."""
    options = RunOptions(repo=repo, default_agent=state.policy.default_agent, secrets=secrets)
    request = Request(task=state.plan.task)
    return RunRequest(request, options, state.plan, checks=state.policy.checks, check_flags=flags)
