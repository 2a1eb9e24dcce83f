"""The Action's fan-out jobs (input ``fan_out: plan | land``): the plan and land jobs of the reusable workflow
``swarm-fan-out.yml`` route, admit and publish like a normal run (issue #13).

* **plan** — the routed job's plan (its ``swarm-plan`` block, plan file or shard; else Claude's) goes to
  :func:`ci_swarm.fanout.plan_fan_out` instead of the run; the sticky progress comment is started ("planned,
  N agent jobs queued") and its id kept beside the run state (the state commit's ``progress-comment``
  file); the integration branch (at the base) and ``refs/swarm/<run>/state`` are pushed through
  :func:`ci_swarm.github.pushing.push_refs` (scanned, each with a lease); outputs ``run_id``, ``branch``,
  ``matrix``, every ``matrix_<i>``, ``chunks``, ``waves``, ``wave=1``, and each agent job's share of the
  config's model budget (``budget_share``, ``tokens_share``: "" without a budget).
* **land** — the state fetched, one wave landed (:func:`ci_swarm.fanout.land_run`: the ``wave`` input, else
  the wave its bundles belong to; with ``all_remaining`` every later wave then runs in this job). While
  another wave follows, :mod:`ci_swarm.github.fanout_wave` publishes only the wave's agent branches, the
  landed state, the progress comment's "wave k of n landed, wave k+1 queued" and the next wave's outputs.
  Once the run landed, the report is published by the Action's own publisher (every wave's agent branches
  and the integration commit scanned and pushed, the pull request, review comments, the progress comment
  finished; a held-back branch is exit 7), the outputs (with ``done=true``) and job summary
  (:func:`ci_swarm.github.runner.emit_job`); then the landed state, with what was published
  (``published.json``: outputs and exit status), pushed with a lease on the state the job fetched. A second
  land of the same run publishes nothing, writes the same outputs and exits as the first did.

Every wave is one matrix job in the workflow: a plan with a wave of more than 256 subtasks (more than one
matrix chunk) is refused by the plan job before anything is pushed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ci_swarm import git, runstate
from ci_swarm.config import Config
from ci_swarm.dag import waves
from ci_swarm.errors import EXIT_FAILED_SUBTASKS, EXIT_OK, UsageError
from ci_swarm.fanout import FanOut, Landing, land_run, plan_fan_out
from ci_swarm.github import log as runner_log
from ci_swarm.github import runner
from ci_swarm.github.event import Job, Run
from ci_swarm.github.fanout_wave import JobRemote, fetch_earlier_agents, publish_wave
from ci_swarm.github.progress import ProgressComment
from ci_swarm.github.pushing import TokenRemote, fetch_tip, push_refs
from ci_swarm.github.runner import OutputValue
from ci_swarm.matrix import MAX_JOBS, key_lines, output_lines
from ci_swarm.models import Plan, RunReport
from ci_swarm.naming import new_run_id
from ci_swarm.ports import ProgressEvent
from ci_swarm.service import RunOutcome, RunRequest

if TYPE_CHECKING:
    from ci_swarm.action import Action
    from ci_swarm.github.publish import Publisher

PROGRESS_FILE = "progress-comment"  # in the state commit: the id of the plan job's progress comment
PUBLISHED_FILE = "published.json"  # in the landed state commit: the land job's outputs and exit status


def run_fan_out(action: Action, config: Config, run: Run, job: Job) -> int:
    """The ``fan_out`` input's job: plan or land."""
    inputs = action.settings.inputs
    if inputs.dry_run:
        raise UsageError(
            "input fan_out does not go with dry_run: the land job needs what the plan job pushes"
        )
    if inputs.fan_out == "plan" and (inputs.wave is not None or inputs.all_remaining):
        raise UsageError("inputs wave and all_remaining go with fan_out: land")
    if job.name:
        raise UsageError(
            f"maintenance job {job.name!r}: scheduled maintenance jobs do not fan out "
            "(use swarm-maintenance.yml)"
        )
    if inputs.fan_out == "plan":
        return plan_job(action, config, run, job)
    return land_job(action, config, run, job)


# --- plan ---------------------------------------------------------------------------------------------


def plan_job(action: Action, config: Config, run: Run, job: Job) -> int:
    settings = action.settings
    repo = git.open_repo(settings.workspace)
    publisher = action.publisher(config, run, job)
    progress: ProgressComment | None = None
    try:
        base_ref, base = action.resolve_base(repo, run)
        request = action.request_with_context(repo, run, job.request)
        default = action.job_agent(config, job)
        static = action.static_plan(repo, config, run, job, base, default)
        run_id = settings.inputs.run_id or new_run_id()
        options = action.run_options(repo, config, base, default, run_id)
        planned = RunRequest(
            request,
            options,
            static,
            config.merge,
            config.max_subtasks,
            checks=config.checks,
            review=config.review,  # plan_fan_out refuses a review panel: none holds the vote yet
        )
        wiring = action.wiring(config, run_id, f"from {base_ref} ({base[:10]})", None, lambda _: None)
        digest = config_digest(settings.workspace, settings.inputs.config)
        budget = config.budget  # shared by the agent jobs: each gets budget_share / tokens_share
        fanned = plan_fan_out(planned, wiring, digest, budget_usd=budget.usd, budget_tokens=budget.tokens)
        for warning in fanned.warnings:
            runner.warning(warning, title="ci-swarm plan")
        one_chunk_per_wave(fanned.state.plan)
        state = fanned.state
        progress = publisher.start(request, state.run_id, state.plan.subtasks)
        progress.finish(queued_text(fanned), phase="running")
        commit = remember_progress(repo, state.run_id, progress.comment_id)
        refs = {
            f"refs/heads/{state.integration_branch}": (state.base, ""),
            runstate.state_ref(state.run_id): (commit, ""),
        }
        github = action.github
        secrets = (github.token, *settings.secrets)
        push_refs(repo, github.repo.clone_url, github.token, refs, secrets=secrets, since=state.base)
    except BaseException as exc:
        action.report_failure(run, exc, progress)
        publisher.react("confused")
        raise
    emit_plan(fanned, action.env)
    runner_log.info(
        f"run {state.run_id}: {len(fanned.matrix.first)} agent job(s) queued from {base_ref} "
        f"({state.base[:10]}); {state.integration_branch} and {runstate.state_ref(state.run_id)} pushed"
    )
    return EXIT_OK


def one_chunk_per_wave(plan: Plan) -> None:
    """The workflow runs each wave in one matrix job (at most 256 jobs): a larger wave is refused before
    any push."""
    for number, wave in enumerate(waves(plan), 1):
        if len(wave) > MAX_JOBS:
            raise UsageError(
                f"wave {number} of this plan has {len(wave)} subtasks; the fan-out workflow runs each wave "
                f"in one matrix of at most {MAX_JOBS} jobs (split the wave, or use swarm-on-label.yml)"
            )


def queued_text(fanned: FanOut) -> str:
    jobs, count = len(fanned.matrix.first), fanned.matrix.waves
    later = " then the next wave's" if count > 1 else ""
    return (
        f"**Planned:** wave 1 of {count}: {jobs} agent job(s) queued, one subtask each (fan-out run "
        f"`{fanned.state.run_id}`). A land job merges their work,{later} and the last one finishes this "
        "comment."
    )


def remember_progress(repo: Path, run_id: str, comment_id: int | None) -> str:
    """The state commit to push: with the progress comment's id beside the state, when there is one."""
    recorded = runstate.load(repo, run_id)
    if comment_id is None:
        return recorded.commit
    files = {PROGRESS_FILE: str(comment_id).encode()}
    return runstate.record(repo, recorded.state, recorded.commit, files)


def emit_plan(fanned: FanOut, env: Mapping[str, str] | None) -> None:
    state = fanned.state
    outputs: dict[str, OutputValue] = {"branch": state.integration_branch}
    pairs = (("wave", "1"), *fanned.shares.lines())
    for line in (*output_lines(state.run_id, fanned.matrix), *key_lines(pairs)):
        key, _, value = line.partition("=")
        outputs[key] = value
    runner.set_outputs(outputs, env)
    ids = ", ".join(f"`{sub}`" for sub in fanned.matrix.first)
    runner.append_summary(
        f"### ci-swarm fan-out: run `{state.run_id}` planned\n\n"
        f"{len(fanned.matrix.first)} agent job(s): {ids}\n",
        env,
    )


def config_digest(workspace: Path, relative: str) -> str:
    """sha256 of the config file's bytes ("" without one), recorded in the run state."""
    path = workspace / relative
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


# --- land ---------------------------------------------------------------------------------------------


def land_job(action: Action, config: Config, run: Run, job: Job) -> int:
    settings = action.settings
    inputs = settings.inputs
    run_id = inputs.run_id
    if not run_id:
        raise UsageError("fan_out: land needs the run_id input (the plan job's run_id output)")
    repo = git.open_repo(settings.workspace)
    github = action.github
    remote = JobRemote(github.repo.clone_url, github.token, settings.secrets)
    ref = runstate.state_ref(run_id)
    TokenRemote(repo, remote.url, remote.token).fetch([f"+{ref}:{ref}"])
    fetched = runstate.load(repo, run_id)
    if fetched.state.landed:
        return landed_before(action, repo, fetched)
    state = fetched.state
    fetch_tip(repo, remote.url, state.integration_branch, remote.token)  # the base's objects
    publisher = action.publisher(config, run, job)
    progress = resume_progress(repo, publisher, fetched)
    try:
        base_ref, _ = action.resolve_base(repo, run)
        if run.pr is None:
            publisher.base_branch = base_ref
        wiring = action.wiring(config, run_id, "", None, lambda _: None)
        bundles = bundles_dir(inputs.bundles_dir)
        at = None if inputs.wave is None else inputs.wave - 1
        landing = land_run(
            repo, run_id, bundles, wiring, (), settings.secrets, wave=at, all_remaining=inputs.all_remaining
        )
        if state.wave > 0:  # earlier waves' agent branches (a failed one's commit is on no tip)
            fetch_earlier_agents(repo, state.policy.branch_prefix, run_id, remote)
        if landing.report is not None:
            action.refuse_protected(repo, landing.report, config)
            show_results(progress, landing.report)
        if not landing.done:
            return publish_wave(repo, fetched, landing, progress, remote, action.env)
        report = landed_report(landing, job, run)
    except BaseException as exc:
        action.report_failure(run, exc, progress)
        publisher.react("confused")
        raise
    finished = action.published(repo, RunOutcome(report, progress), publisher)
    outputs = runner.run_outputs(
        finished.report,
        branch=finished.result.branch if finished.result else "",
        pr_number=finished.result.pr_number if finished.result else None,
        pr_url=finished.result.pr_url if finished.result else "",
    )
    last: dict[str, OutputValue] = {"wave": landing.wave + 1, "done": True}  # beside emit_job's outputs
    runner.set_outputs(last, action.env)
    record_published(repo, run_id, fetched, {**outputs, **last}, finished.code, remote)
    return finished.code


def bundles_dir(given: str) -> Path | None:
    """The downloaded bundles; none when no agent job handed one over (no artifact: no directory)."""
    if not given:
        return None
    path = Path(given)
    if not path.is_dir():
        runner_log.info(f"no bundles at {given}: every subtask is reported without a result")
        return None
    return path


def resume_progress(repo: Path, publisher: Publisher, recorded: runstate.Recorded) -> ProgressComment:
    """The plan job's progress comment (by the id beside the state), else a new one."""
    state = recorded.state
    raw = (runstate.attachment(repo, recorded, PROGRESS_FILE) or b"").decode().strip()
    if raw.isdigit():
        return publisher.resume(state.run_id, state.plan.subtasks, int(raw))
    return publisher.start(None, state.run_id, state.plan.subtasks)


def landed_report(landing: Landing, job: Job, run: Run) -> RunReport:
    """The landing's report with the routed request (the PR's title) and the routing's notes."""
    report = landing.report
    if report is None:  # pragma: no cover - land_run returns a report unless the state had landed
        raise UsageError("the run had already landed")
    return dataclasses.replace(report, request=job.request, notes=(*report.notes, *run.notes))


def show_results(progress: ProgressComment, report: RunReport) -> None:
    """Each agent job's outcome and merge in the progress comment's rows (they ran in other jobs)."""
    for sub in report.subtasks:
        progress(ProgressEvent("subtask_finished", sub.id, sub.status.value, sub.error))
    for merge in report.merges:
        progress(ProgressEvent("merge_finished", merge.subtask, merge.status.value))


def record_published(
    repo: Path,
    run_id: str,
    fetched: runstate.Recorded,
    outputs: dict[str, OutputValue],
    code: int,
    remote: JobRemote,
) -> None:
    """The landed state (with what was published) pushed over the state this job fetched (a lease)."""
    recorded = runstate.load(repo, run_id)  # the landing land_run recorded
    files = {
        name: runstate.attachment(repo, recorded, name) or b""
        for name in recorded.files
        if name != runstate.STATE_FILE
    }
    files[PUBLISHED_FILE] = json.dumps({"exit": code, "outputs": outputs}, sort_keys=True).encode()
    commit = runstate.record(repo, recorded.state, recorded.commit, files)
    ref = runstate.state_ref(run_id)
    leased = {ref: (commit, fetched.commit)}
    push_refs(repo, remote.url, remote.token, leased, secrets=remote.scanned, since=fetched.commit)


def landed_before(action: Action, repo: Path, recorded: runstate.Recorded) -> int:
    """A second land: nothing merged or published; the first land's outputs, and its exit status."""
    run_id = recorded.state.run_id
    raw = runstate.attachment(repo, recorded, PUBLISHED_FILE)
    if raw is None:  # landed by `ci-swarm land`, not by the Action: nothing was published then either
        code = int((runstate.attachment(repo, recorded, "exit") or b"0").decode().strip() or 0)
        runner.notice(f"run {run_id} had already landed (by ci-swarm land): nothing published")
        return EXIT_FAILED_SUBTASKS if code == EXIT_FAILED_SUBTASKS else EXIT_OK
    published = json.loads(raw)
    runner.set_outputs(published["outputs"], action.env)
    runner.notice(f"run {run_id} had already landed and was published: nothing published again")
    return int(published["exit"])
