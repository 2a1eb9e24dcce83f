"""Fan-out across runners: the three application functions behind ``plan --fan-out``, ``agent`` and ``land``.

* :func:`plan_fan_out` — plan (or take the plan), validate, create the integration branch at the base
  (never overwriting one), record the run state (:mod:`ci_swarm.runstate`) and return the first wave's
  matrix (:mod:`ci_swarm.matrix`).
* :func:`run_agent` — exactly one subtask, through the service's own run (:func:`service.run_request`:
  same backends, command policy and sandbox) as a one-subtask plan from the state's start commit under a
  scratch branch prefix; its commit then set on ``<prefix>/<run>-agents/<id>`` and the scratch branches
  deleted; the result as an :class:`bundles.AgentResult` (written as a bundle by the entry point).
* :func:`land_run` — one wave (:mod:`ci_swarm.fanwaves`): every agent's result admitted
  (:mod:`ci_swarm.bundles`), subtasks without one ``failed``, those whose dependencies did not succeed
  ``skipped``, the merge queue in plan order onto the integration branch, the wave's tip and records kept
  in the state; then the next wave's matrix — or, after the last wave, the checks
  (:func:`service.verified`) and the run's report, the landing recorded with it. Landing a wave again
  returns what the first landing produced and merges nothing.

Every wave fans out: wave ``k``'s agents start from the integration tip wave ``k-1`` produced (the state
commit keeps that tip reachable, so fetching the state ref is enough).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from ci_swarm import bundles, fanwaves, git, runstate
from ci_swarm.dag import critical_path, waves
from ci_swarm.diffstat import outside_paths
from ci_swarm.errors import RepoError, UsageError, exit_code
from ci_swarm.fanrest import run_rest
from ci_swarm.fanwaves import WaveLanding, blank_record, blocked, runnable, wave_of
from ci_swarm.matrix import Matrix, chunked
from ci_swarm.merge import MergeQueue
from ci_swarm.models import (
    Check,
    MergeOrder,
    MergePolicy,
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
    review_of,
    run_checks_of,
    run_request,
    sandboxed,
    verified,
)

SCRATCH_PREFIX = "ci-swarm-agent-job"  # the one-subtask run's own branches, deleted when it ends
NO_RESULT = "no result from its job"
NO_PANEL = (
    "review: the review panel is not supported with --fan-out yet (its pull request would open ready for "
    "review without the panel's vote): remove review: from the plan and the config, or run without --fan-out"
)
REPORT_FILE, SUMMARY_FILE, EXIT_FILE = "report.json", "summary.txt", "exit"
FANNED_OUT = "fanned out across jobs: wall time is the land job's; each agent ran in its own job"


# --- plan --fan-out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shares:
    """One agent job's share of the run's model budget: what is left, divided by the jobs that run at
    once (min(cap, the wave's jobs)); None where the run has no such budget."""

    usd: float | None = None
    tokens: int | None = None

    def lines(self) -> tuple[tuple[str, str], ...]:
        usd = "" if self.usd is None else f"{self.usd:.6f}"
        return (("budget_share", usd), ("tokens_share", "" if self.tokens is None else str(self.tokens)))


def shares(policy: RunPolicy, jobs: int, spent: Usage | None = None) -> Shares:
    """Each of ``jobs`` jobs' share of what is left of the budget after ``spent``."""
    spent = spent or Usage()
    at_once = max(1, min(policy.max_agents, jobs))
    usd = None if policy.budget_usd is None else max(0.0, policy.budget_usd - spent.cost_usd) / at_once
    tokens = None if policy.budget_tokens is None else max(0, policy.budget_tokens - spent.tokens) // at_once
    return Shares(None if usd is None else round(usd, 6), tokens)


@dataclass(frozen=True)
class FanOut:
    state: RunState
    matrix: Matrix
    warnings: tuple[str, ...]
    shares: Shares = field(default_factory=Shares)


def plan_fan_out(
    job: RunRequest,
    wiring: ServiceOptions,
    config_digest: str = "",
    *,
    budget_usd: float | None = None,
    budget_tokens: int | None = None,
) -> FanOut:
    """Plan, validate, create ``<prefix>/<run>`` at the base and record the run state (with the run's
    model budget, which the matrix jobs share)."""
    options = job.options
    plan = job.plan or plan_request(job.request, options.repo, wiring.session, job.merge)
    warnings = tuple(validate(plan, max_subtasks=job.max_subtasks))
    if plan.merge.on_conflict is not OnConflict.KEEP:
        raise UsageError(f"on_conflict: {plan.merge.on_conflict.value} is not supported with --fan-out yet")
    if review_of(job, plan) is not None:  # no job holds the vote: the PR would open as if it approved
        raise UsageError(NO_PANEL)
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
        budget_usd=budget_usd,
        budget_tokens=budget_tokens,
    )
    branch = integration_branch(options.branch_prefix, run_id)
    state = RunState(run_id, base, branch, plan, policy, config_digest)
    runstate.record(repo, state)
    first = runnable(state, 0)
    return FanOut(state, Matrix(chunked(first), len(waves(plan))), warnings, shares(policy, len(first)))


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
    """Run exactly ``subtask_id`` of the recorded run from its wave's start commit (the tip the previous
    wave produced); commit on its agent branch."""
    repo = git.open_repo(repo_path)
    state = runstate.load(repo, run_id).state
    sub = _subtask(state, subtask_id)
    _require_current(state, sub.id)
    start = state.start
    if git.try_rev_parse(repo, f"{start}^{{commit}}") is None:
        raise RepoError(
            f"the start of wave {state.wave + 1} ({start[:12]}) is not in {repo}: fetch "
            f"{runstate.state_ref(run_id)} again"
        )
    policy = state.policy
    scratch = f"{SCRATCH_PREFIX}/{sub.id}"
    options = RunOptions(
        repo=repo,
        base=start,
        max_agents=1,
        timeout=policy.timeout,
        run_id=run_id,
        branch_prefix=scratch,
        default_agent=policy.default_agent,
        secrets=secrets,
    )
    keep = replace(state.plan.merge, on_conflict=OnConflict.KEEP)  # one subtask: nothing to conflict with
    alone = replace(sub, depends_on=())  # its dependencies landed: their work is in the start
    one = replace(state.plan, subtasks=(alone,), checks=(), merge=keep, review=None)  # no panel on a part
    job = RunRequest(Request(task=state.plan.task, source="cli"), options, one)
    try:
        report = run_request(job, replace(wiring, sandbox=policy.sandbox or wiring.sandbox)).report
    finally:
        _drop_scratch(repo, scratch, run_id, sub.id)
    record = report.subtasks[0]
    branch = agent_branch(policy.branch_prefix, run_id, sub.id)
    commit = record.commit if record.commit and record.commit != start else ""
    if commit:
        git.create_branch(repo, branch, commit)
    result = bundles.AgentResult(
        run_id=run_id,
        subtask=sub.id,
        start=start,
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


def _require_current(state: RunState, subtask_id: str) -> None:
    """UsageError unless ``subtask_id`` is in the wave that lands next and its dependencies succeeded."""
    if state.landed:
        raise UsageError(f"run {state.run_id} has landed: subtask {subtask_id!r} cannot run again")
    wave = wave_of(state.plan, subtask_id)
    if wave < state.wave:
        raise UsageError(f"subtask {subtask_id!r} is in wave {wave + 1}, which has landed")
    if wave > state.wave:
        raise UsageError(
            f"subtask {subtask_id!r} is in wave {wave + 1}: wave {state.wave + 1} has not landed yet"
        )
    reason = blocked(state, subtask_id)
    if reason:
        raise UsageError(f"subtask {subtask_id!r} cannot run: {reason}")


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
    the wave had already landed (``again``: what it produced is returned, nothing merged). ``wave`` is the
    wave landed (0-based); ``next_wave`` the wave whose matrix ``next_matrix`` is (None: the run landed);
    ``usage`` the usage of every job so far; ``shares`` each next-wave job's share of the budget."""

    report: RunReport | None
    report_json: str
    summary: tuple[str, ...]
    exit_code: int
    integration_commit: str
    again: bool = False
    wave: int = 0
    next_wave: int | None = None
    next_matrix: Matrix | None = None
    usage: Usage = field(default_factory=Usage)
    shares: Shares = field(default_factory=Shares)

    @property
    def done(self) -> bool:
        return self.next_wave is None


def land_run(
    repo_path: Path,
    run_id: str,
    bundles_dir: Path | None,
    wiring: ServiceOptions,
    check_flags: tuple[Check, ...] = (),
    secrets: tuple[str, ...] = (),
    *,
    wave: int | None = None,
    all_remaining: bool = False,
) -> Landing:
    """Land one wave — ``wave`` (0-based), else the one the results in ``bundles_dir`` belong to, else
    the next — : admit its agents' results, merge them in plan order, keep its tip and records; then the
    next wave's matrix, or after the last wave verify, report, and record the landing. ``all_remaining``:
    every later wave then runs here (:mod:`ci_swarm.fanrest`) — all of them when no result was handed
    over — and the run lands."""
    repo = git.open_repo(repo_path)
    recorded = runstate.load(repo, run_id)
    state = recorded.state
    found = bundles.find(bundles_dir) if bundles_dir is not None else ()
    target = _target_wave(state, found) if wave is None else wave
    if state.landed or target < state.wave:
        return _landed_before(repo, recorded, min(target, state.wave))
    if target > state.wave:
        raise UsageError(f"wave {target + 1} cannot land before wave {state.wave + 1}")
    started = time.monotonic()
    earlier = fanwaves.landed_waves(repo, recorded)
    landed: list[WaveLanding] = []
    if found or not all_remaining:
        landed.append(_land_wave(repo, state, found, _merge_count(earlier)))
        state = _advanced(state, landed[-1])
    else:
        _integration_at(repo, state)
    while state.wave < len(waves(state.plan)) and not runnable(state, state.wave):
        landed.append(_skipped_wave(state))  # nothing of it can run: every subtask skipped
        state = _advanced(state, landed[-1])
    if all_remaining and state.wave < len(waves(state.plan)):
        merged = _merge_count((*earlier, *landed))
        for rest in run_rest(repo, state, wiring, secrets, merged):
            landed.append(rest)
            state = _advanced(state, rest)
    attachments = {fanwaves.attachment_name(w.wave): fanwaves.encode(w) for w in landed}
    report = _report(repo, state, (*earlier, *landed), started)
    if state.wave < len(waves(state.plan)):
        return _wave_landed(repo, recorded, state, report, attachments)
    job = _verification_job(repo, state, secrets, check_flags)
    checks = run_checks_of(job, state.plan)
    if checks:
        sandbox = resolve_policy(state.policy.sandbox or wiring.sandbox or None)
        report = sandboxed(run_sync(lambda: verified(report, state.plan, job, checks, sandbox)), sandbox)
    landing = Landing(
        report,
        to_json(report),
        summary_lines(report),
        exit_code(report),
        report.integration_commit,
        wave=landed[0].wave if landed else recorded.state.wave,
        usage=report.usage,
    )
    attachments |= {
        REPORT_FILE: landing.report_json.encode(),
        SUMMARY_FILE: "\n".join(landing.summary).encode(),
        EXIT_FILE: str(landing.exit_code).encode(),
    }
    final = runstate.landed(state, landing.integration_commit)
    runstate.record(repo, final, recorded.commit, attachments, anchor=landing.integration_commit)
    return landing


def _target_wave(state: RunState, found: tuple[bundles.Found, ...]) -> int:
    """The wave the results belong to: the next one if any result is of it (or none is of an earlier
    one), else the latest earlier wave a result is of (that wave is landing again)."""
    known = {s.id for s in state.plan.subtasks}
    seen = {wave_of(state.plan, f.result.subtask) for f in found if f.result and f.result.subtask in known}
    earlier = [w for w in seen if w < state.wave]
    return state.wave if state.wave in seen or not earlier else max(earlier)


def _merge_count(earlier: tuple[WaveLanding, ...]) -> int:
    return sum(len(w.merges) for w in earlier)


def _advanced(state: RunState, landed: WaveLanding) -> RunState:
    done = {**state.done, **{r.id: r.status.value for r in landed.subtasks}}
    return replace(state, tips=(*state.tips, landed.tip), done=MappingProxyType(done))


def _wave_landed(
    repo: Path,
    recorded: runstate.Recorded,
    state: RunState,
    report: RunReport,
    attachments: dict[str, bytes],
) -> Landing:
    """A wave landed and another follows: record it, return the next wave's matrix (exit 0)."""
    text = to_json(report)
    attachments[REPORT_FILE] = text.encode()
    runstate.record(repo, state, recorded.commit, attachments, anchor=state.start)
    return _next(state, report, text, recorded.state.wave)


def _next(state: RunState, report: RunReport, text: str, wave: int, again: bool = False) -> Landing:
    following = runnable(state, state.wave)
    return Landing(
        None if again else report,
        text,
        (f"wave {wave + 1} of {len(waves(state.plan))} landed: {state.start}",),
        0,
        state.start,
        again=again,
        wave=wave,
        next_wave=state.wave,
        next_matrix=Matrix(chunked(following), len(waves(state.plan))),
        usage=report.usage,
        shares=shares(state.policy, len(following), report.usage),
    )


def _landed_before(repo: Path, recorded: runstate.Recorded, wave: int) -> Landing:
    """``wave`` had landed: what landing it produced — the next wave's matrix, or the run's report."""
    state = recorded.state
    upto = wave + 1  # the waves landed by then (waves with nothing to run landed with it)
    while upto < state.wave and not runnable(replace(state, tips=state.tips[:upto]), upto):
        upto += 1
    landed = fanwaves.landed_waves(repo, recorded)
    if upto < len(waves(state.plan)):
        at = replace(state, tips=state.tips[:upto])
        partial = _report(repo, at, landed[:upto], time.monotonic())
        return _next(at, partial, to_json(partial), wave, again=True)
    report = (runstate.attachment(repo, recorded, REPORT_FILE) or b"").decode()
    summary = (runstate.attachment(repo, recorded, SUMMARY_FILE) or b"").decode().splitlines()
    code = (runstate.attachment(repo, recorded, EXIT_FILE) or b"0").decode().strip()
    usage = sum((r.usage for w in landed for r in w.subtasks), Usage())
    return Landing(
        None,
        report,
        tuple(summary),
        int(code) if code.isdigit() else 1,
        state.landed,
        True,
        wave=wave,
        usage=usage,
    )


def _integration_at(repo: Path, state: RunState) -> None:
    """The integration branch exists at the wave's start (created here in a fresh clone); RepoError if it
    is elsewhere."""
    ref = f"refs/heads/{state.integration_branch}"
    tip = git.try_ref(repo, ref)
    if tip is None:
        git.create_branch(repo, state.integration_branch, state.start)
    elif tip != state.start:
        raise RepoError(
            f"integration branch {state.integration_branch} is at {tip[:12]}, not at the start of wave "
            f"{state.wave + 1} ({state.start[:12]}): refusing to land onto it"
        )


def _land_wave(repo: Path, state: RunState, found: tuple[bundles.Found, ...], merged: int) -> WaveLanding:
    """The current wave: its results admitted, its succeeded subtasks merged in plan order."""
    _integration_at(repo, state)
    records, notes = _results(repo, state, found)
    merges: list[MergeRecord] = []
    policy, roles = _merge_policy(state), _roles(state.plan)
    with MergeQueue(repo, state.integration_branch, state.start, policy, roles) as queue:
        for rec in records:
            if rec.status is SubtaskStatus.SUCCEEDED:
                merges.append(queue.merge(rec.id, rec.commit, rec.start_commit, merged + len(merges) + 1))
    return WaveLanding(state.wave, queue.tip, tuple(records), tuple(merges), tuple(notes))


def _skipped_wave(state: RunState) -> WaveLanding:
    ids = waves(state.plan)[state.wave]
    skip = SubtaskStatus.SKIPPED
    records = tuple(
        replace(blank_record(state, state.plan.subtask(i)), status=skip, error=blocked(state, i)) for i in ids
    )
    return WaveLanding(state.wave, state.start, records, ())


def _roles(plan: Plan) -> dict[str, str]:
    return {s.id: s.role for s in plan.subtasks}


def _merge_policy(state: RunState) -> MergePolicy:
    plan = state.plan
    order = MergeOrder(state.policy.merge_order) if state.policy.merge_order else plan.merge.order
    return replace(plan.merge, order=order)


def _results(
    repo: Path, state: RunState, found: tuple[bundles.Found, ...]
) -> tuple[list[SubtaskRecord], list[str]]:
    """Each subtask of the current wave, in plan order, from its newest admitted result (skipped when a
    dependency did not succeed); notes for results that cannot be read or name no subtask."""
    notes = [f"result {item.sidecar.name} refused: {item.problem}" for item in found if item.result is None]
    chosen = bundles.newest(found)
    prefix = state.policy.branch_prefix
    expected = bundles.Expected(
        state.run_id,
        [s.id for s in state.plan.subtasks],
        state.start,
        {s.id: agent_branch(prefix, state.run_id, s.id) for s in state.plan.subtasks},
    )
    for item in found:  # results for other runs or unknown subtasks are named, not used
        if item.result is not None and item.result.subtask not in expected.branch_of:
            notes.append(f"result {item.sidecar.name} refused: unknown subtask {item.result.subtask!r}")
    records = []
    for sub_id in waves(state.plan)[state.wave]:
        sub = state.plan.subtask(sub_id)
        reason = blocked(state, sub_id)
        if reason:
            records.append(replace(blank_record(state, sub), status=SubtaskStatus.SKIPPED, error=reason))
        else:
            records.append(_record(repo, blank_record(state, sub), chosen.get(sub_id), expected))
    return records, notes


def _record(
    repo: Path, base: SubtaskRecord, item: bundles.Found | None, expected: bundles.Expected
) -> SubtaskRecord:
    if item is None or item.result is None:
        return replace(base, error=NO_RESULT)
    result = item.result
    try:
        status = SubtaskStatus(result.status)
        bundles.check_result(result, expected)
        commit = bundles.admit(repo, item.bundle, result, expected) if result.has_work else expected.start
    except bundles.BundleRefused as exc:
        return replace(base, error=f"result refused: {exc}")
    except ValueError:
        return replace(base, error=f"result refused: unknown status {result.status!r}")
    files = git.changed_files(repo, expected.start, commit)  # the commit's, never the sidecar's word
    return replace(
        base,
        status=status,
        commit=commit,
        seconds=result.seconds,
        files=files,
        outside_paths=outside_paths(files, base.paths),
        error=result.error,
        summary=result.summary,
        usage=result.usage,
        exit_status=result.exit_status,
        output_tail=result.output_tail,
    )


def _report(repo: Path, state: RunState, landed: tuple[WaveLanding, ...], started: float) -> RunReport:
    """The run's report over every landed wave: records in plan order, merges in landing order."""
    plan = state.plan
    position = {s.id: i for i, s in enumerate(plan.subtasks)}
    records = sorted((r for w in landed for r in w.subtasks), key=lambda r: position[r.id])
    merges = tuple(m for w in landed for m in w.merges)
    usage = sum((r.usage for r in records), Usage())
    return RunReport(
        run_id=state.run_id,
        task=plan.task,
        repo=str(repo),
        base=state.base,
        integration_branch=state.integration_branch,
        integration_commit=state.start,
        stats=_stats(plan, records, state.policy.max_agents, time.monotonic() - started),
        subtasks=tuple(records),
        merges=merges,
        overlap=(),
        merge_policy=_merge_policy(state),
        rationale=plan.rationale,
        usage=usage,
        notes=(FANNED_OUT, *(n for w in landed for n in w.notes)),
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
