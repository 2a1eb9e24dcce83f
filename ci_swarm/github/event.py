"""A GitHub event → a run of ci-swarm, or a refusal. Pure over the payload, plus one small Protocol.

``route(event_name, payload, config, access)`` decides, for the event at ``GITHUB_EVENT_PATH``:

- ``issues``/``labeled`` with the configured label (any case) on an open issue → one job from the issue.
- ``issue_comment``/``created`` starting with the command (any case) → on a pull request, the rest of the
  comment plus the PR (same repository only, open); on an open plain issue, a job from the issue.
- ``schedule`` → the maintenance jobs whose ``cron`` is the payload's ``schedule`` (a payload without
  ``repository``, as older GHES sends, runs on the ``repository`` given, i.e. ``GITHUB_REPOSITORY``).
- ``workflow_dispatch`` → inputs ``task``, ``plan`` or ``job``.
- ``pull_request``/``closed`` (merged or not) whose head is a run's integration branch ``<prefix>/<run>`` in
  this repository → a :class:`Cleanup` of that run's agent branches (:func:`_pull_request_closed`).
- anything else → a refusal (a one-line notice; the action exits 0).

Whoever labels, comments or dispatches must pass :class:`ci_swarm.github.admission.Gate` (repository
permission, ``allowed_bots``, never ci-swarm's own identity). A ```` ```swarm-plan ```` block is the plan
only when the author of the text it is in (the issue's author for the issue body, the commenter for a
comment) passes the same gate, and only as a visible top-level fence (:mod:`ci_swarm.github.bodies`);
otherwise the text is task text for the planner, and the run's ``notes`` say which it was. The only I/O
goes through :class:`RepoAccess` (the PyGithub implementation is :class:`ci_swarm.github.trust.GithubAccess`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ci_swarm.cleanup import run_of_branch
from ci_swarm.config import Config, MaintenanceJob, Shard
from ci_swarm.errors import UsageError
from ci_swarm.github.admission import Gate, Verdict
from ci_swarm.github.bodies import has_plan_block, plan_block, task_text
from ci_swarm.jobs import job_request
from ci_swarm.models import AgentSpec, Request

__all__ = [
    "SELF_MARKER",
    "Cleanup",
    "Decision",
    "Job",
    "PullRequestInfo",
    "Refuse",
    "RepoAccess",
    "Run",
    "plan_block",
]
__all__ += ["route", "usage"]

SELF_MARKER = "<!-- ci-swarm"  # every comment ci-swarm writes carries an HTML comment starting like this
_PLAN_FILE = re.compile(r"^[\w./-]+\.(?:ya?ml|json)$")

T = TypeVar("T")


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    title: str
    body: str
    state: str  # open | closed
    merged: bool
    head_ref: str
    head_sha: str
    head_repo: str  # "owner/name"; "" when the head repository was deleted
    base_ref: str
    base_sha: str

    def is_fork(self, repo: str) -> bool:
        return self.head_repo.lower() != repo.lower()


class RepoAccess(Protocol):
    """What routing needs to ask GitHub: a user's permission on the repository, the token's own login, and
    a pull request."""

    def permission(self, login: str) -> str:
        """``admin``, ``maintain``, ``write``, ``triage``, ``read`` or ``none``."""
        ...

    def identity(self) -> str:
        """The login the token acts as; "" when GitHub does not say."""
        ...

    def pull_request(self, number: int) -> PullRequestInfo: ...


@dataclass(frozen=True)
class Job:
    """One run of the swarm: a request and where its plan comes from (else the planner)."""

    request: Request
    name: str = ""  # maintenance job name
    plan_text: str = ""  # a swarm-plan block or a dispatch input (YAML)
    plan_path: str = ""  # a plan file in the repository
    shard: Shard | None = None
    agent: AgentSpec | None = None


@dataclass(frozen=True)
class Run:
    event: str
    repo: str  # owner/name
    actor: str
    jobs: tuple[Job, ...]
    issue: int | None = None  # the issue or PR to comment on
    pr: PullRequestInfo | None = None  # results go onto this PR's branch
    label: str = ""  # removed at the end so it can be added again
    comment_id: int | None = None  # the triggering comment (for reactions)
    notes: tuple[str, ...] = ()  # for the log: where the plan came from, or why a body was only task text

    @property
    def requests(self) -> tuple[Request, ...]:
        return tuple(job.request for job in self.jobs)


@dataclass(frozen=True)
class Refuse:
    """Nothing runs. ``notice`` is one line for the log; ``reply`` (if any) is posted on ``issue``."""

    notice: str
    reply: str | None = None
    issue: int | None = None
    label: str = ""  # remove this label so it can be added again


@dataclass(frozen=True)
class Cleanup:
    """A run's pull request was merged or closed: delete the run's agent branches on the remote."""

    repo: str  # owner/name
    run_id: str
    pr: int
    head_ref: str  # the run's integration branch (the PR's own branch: left to GitHub)
    base_ref: str  # fetched first, so commits already in it do not count as lost
    merged: bool


Decision = Run | Refuse | Cleanup


def usage(command: str) -> str:
    return (
        f"Usage: `{command} <what to do>` — for example `{command} add tests for the parser`. "
        f"On a pull request the agents work on its branch; on an issue they open a pull request. "
        f"A fenced `swarm-plan` YAML block after the command is used as the plan as-is."
    )


def route(
    event_name: str, payload: Mapping[str, Any], config: Config, access: RepoAccess, *, repository: str = ""
) -> Decision:
    """Decide what the event asks for. UsageError when the payload is not shaped like GitHub's.
    ``repository`` (``GITHUB_REPOSITORY``) stands in for a payload without one."""
    if not isinstance(payload, Mapping):
        raise UsageError("event payload: expected a JSON object")
    if repository and not _get_opt(payload, "repository.full_name", str):
        payload = {
            **payload,
            "repository": {**(_get_opt(payload, "repository", dict) or {}), "full_name": repository},
        }
    handlers = {
        "issues": _issues,
        "issue_comment": _issue_comment,
        "schedule": _schedule,
        "workflow_dispatch": _dispatch,
        "pull_request": _pull_request_closed,
    }
    handler = handlers.get(event_name)
    if handler is None:
        return Refuse(f"ci-swarm does not handle '{event_name or 'unknown'}' events: nothing to do")
    return handler(payload, config, access)


# -------------------------------------------------------------------------------------------- issues


def _issues(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    action = _get(payload, "action", str)
    if action != "labeled":
        return Refuse(
            f"issues/{action}: nothing to do (ci-swarm runs when the '{config.label}' label is added)"
        )
    label = _get(payload, "label.name", str)
    if label.casefold() != config.label.casefold():
        return Refuse(f"label '{label}' is not '{config.label}': nothing to do")
    number = _get(payload, "issue.number", int)
    gate = Gate(config, access)
    sender = _user(payload, "sender")
    refusal = _refusal(gate.judge(*sender), number, label)
    if refusal:
        return refusal
    if _get_opt(payload, "issue.state", str) == "closed":
        reply = "This issue is closed: ci-swarm only works on open issues. Reopen it and add the label again."
        return Refuse(f"issue #{number} is closed: nothing to do", reply, number, label)
    return _issue_run("issues", payload, number, sender[0], gate, label=label)


def _issue_run(
    event: str,
    payload: Mapping[str, Any],
    number: int,
    actor: str,
    gate: Gate,
    *,
    label: str = "",
    instructions: str = "",
    comment_id: int | None = None,
) -> Decision:
    title = task_text(_get(payload, "issue.title", str))
    body = task_text(_get_opt(payload, "issue.body", str) or "")
    if instructions:  # the commenter passed the gate: their comment's block is theirs to give
        plan_text, notes = plan_block(instructions), _plan_note(instructions, f"@{actor}'s comment")
    else:
        plan_text, notes = _body_plan(payload, "issue", gate)
    if not plan_text and not instructions and not body.strip():
        reply = (
            f"This issue has no description, so there is nothing to plan from. Describe the work in the "
            f"issue body (or add a `swarm-plan` block){' and add the label again' if label else ''}."
        )
        return Refuse(f"issue #{number} has an empty body: nothing to plan", reply, number, label)
    request = Request(
        task=instructions or f"{title}\n\n{body}".strip(),
        source="issue",
        number=number,
        title=title,
        body=body,
        actor=actor,
    )
    job = Job(request=request, plan_text=plan_text)
    repo = _get(payload, "repository.full_name", str)
    return Run(event, repo, actor, (job,), number, label=label, comment_id=comment_id, notes=notes)


def _body_plan(payload: Mapping[str, Any], where: str, gate: Gate) -> tuple[str, tuple[str, ...]]:
    """The plan block of the ``where`` body (``issue``) when its author passes the gate, and a note."""
    body = _get_opt(payload, f"{where}.body", str) or ""
    if not has_plan_block(body):
        return "", ()
    author = _user(payload, f"{where}.user")
    verdict = gate.judge(*author)
    if verdict.admitted:
        return plan_block(body), (f"plan from @{author[0]}'s {where} body",)
    return "", (f"task text only: the swarm-plan block of the {where} body is ignored ({verdict.why})",)


def _plan_note(text: str, whose: str) -> tuple[str, ...]:
    return (f"plan from {whose}",) if has_plan_block(text) else ()


# ------------------------------------------------------------------------------------------ comments


def _issue_comment(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    action = _get(payload, "action", str)
    if action != "created":
        return Refuse(f"issue_comment/{action}: nothing to do (only new comments trigger ci-swarm)")
    comment_id = _get(payload, "comment.id", int)
    text = _get_opt(payload, "comment.body", str) or ""
    number = _get(payload, "issue.number", int)
    if SELF_MARKER in text:
        return Refuse(f"comment on #{number} was written by ci-swarm: ignored")
    instructions = _after_command(text, config.command)
    if instructions is None:
        return Refuse(f"comment on #{number} does not start with {config.command}: nothing to do")
    gate = Gate(config, access)
    login, kind = _user(payload, "comment.user")
    refusal = _refusal(gate.judge(login, kind), number)
    if refusal:
        return refusal
    instructions = task_text(instructions)
    if not instructions.strip():
        return Refuse(
            f"empty {config.command} command on #{number}: replied with usage", usage(config.command), number
        )
    if _get_opt(payload, "issue.pull_request", dict) is None:
        if _get_opt(payload, "issue.state", str) == "closed":
            reply = "This issue is closed: ci-swarm only works on open issues."
            return Refuse(f"issue #{number} is closed: nothing to do", reply, number)
        return _issue_run(
            "issue_comment", payload, number, login, gate, instructions=instructions, comment_id=comment_id
        )
    return _pr_run(payload, number, login, instructions.strip(), comment_id, access)


def _pr_run(
    payload: Mapping[str, Any],
    number: int,
    actor: str,
    instructions: str,
    comment_id: int,
    access: RepoAccess,
) -> Decision:
    repo = _get(payload, "repository.full_name", str)
    pr = access.pull_request(number)
    if pr.is_fork(repo):
        reply = (
            f"ci-swarm does not run on pull requests from forks ({pr.head_repo or 'a deleted fork'}): it "
            f"would have to run the fork's code with this repository's secrets and could not push to the "
            f"fork. A maintainer can push the branch to {repo} and ask again there."
        )
        return Refuse(f"pull request #{number} comes from a fork: refused", reply, number)
    if pr.state != "open":
        state = "merged" if pr.merged else "closed"
        reply = f"This pull request is {state}: ci-swarm only works on open pull requests."
        return Refuse(f"pull request #{number} is {state}: nothing to do", reply, number)
    request = Request(
        task=instructions,
        source="pull_request",
        number=number,
        title=task_text(pr.title),
        body=task_text(pr.body),
        actor=actor,
    )
    job = Job(request=request, plan_text=plan_block(instructions))
    notes = _plan_note(instructions, f"@{actor}'s comment")
    return Run("issue_comment", repo, actor, (job,), number, pr, comment_id=comment_id, notes=notes)


def _after_command(text: str, command: str) -> str | None:
    """The text after ``command`` when the comment starts with it (as a whole word, in any case: workflow
    ``if:`` comparisons ignore case, so ``/SWARM`` starts a runner too), else None."""
    stripped = text.lstrip()
    if stripped[: len(command)].casefold() != command.casefold():
        return None
    rest = stripped[len(command) :]
    if rest and not rest[0].isspace():
        return None  # "/swarmy" is not "/swarm"
    return rest.strip()


# ---------------------------------------------------------------------------------- schedule, dispatch


def _schedule(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    cron = _get(payload, "schedule", str)
    jobs = config.jobs_for_cron(cron)
    if not jobs:
        where = config.source or "the config (none found)"
        return Refuse(f"no maintenance job in {where} has cron '{cron}': nothing to do")
    repo = _get(payload, "repository.full_name", str)
    return Run("schedule", repo, "schedule", tuple(_maintenance_job(job) for job in jobs))


def _maintenance_job(job: MaintenanceJob) -> Job:
    return Job(request=job_request(job), name=job.name, plan_path=job.plan, shard=job.shard, agent=job.agent)


def _dispatch(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    inputs = _get_opt(payload, "inputs", dict) or {}
    given = {k: str(inputs.get(k) or "") for k in ("task", "plan", "job")}
    chosen = [k for k, v in given.items() if v.strip()]
    if len(chosen) != 1:
        found = f" (got {' and '.join(chosen)})" if chosen else ""
        raise UsageError(f"workflow_dispatch needs exactly one of the inputs task, plan or job{found}")
    repo = _get(payload, "repository.full_name", str)
    sender = _user(payload, "sender")
    refusal = _refusal(Gate(config, access).judge(*sender), None)
    if refusal:
        return refusal
    actor = sender[0]
    if given["job"]:
        matching = [j for j in config.maintenance if j.name == given["job"].strip()]
        if not matching:
            known = ", ".join(j.name for j in config.maintenance) or "none configured"
            raise UsageError(f"workflow_dispatch: no maintenance job named '{given['job']}' (known: {known})")
        return Run("workflow_dispatch", repo, actor, (_maintenance_job(matching[0]),))
    plan = given["plan"] if given["plan"].strip() else ""
    request = Request(
        task=given["task"] or "Run the dispatched plan", source="workflow_dispatch", actor=actor
    )
    if plan and _PLAN_FILE.match(plan.strip()):
        return Run("workflow_dispatch", repo, actor, (Job(request=request, plan_path=plan.strip()),))
    return Run("workflow_dispatch", repo, actor, (Job(request=request, plan_text=plan),))


# ------------------------------------------------------------------------------------ closed pull request


def _pull_request_closed(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    """A closed pull request whose head is a run's integration branch in this repository → its cleanup.
    Nothing is asked of GitHub: who closed it does not matter, the cleanup keeps anything not ci-swarm's."""
    if _get_opt(payload, "action", str) != "closed":  # ci-swarm does not run on pull request events
        return Refuse("ci-swarm does not handle 'pull_request' events: nothing to do")
    number = _get(payload, "pull_request.number", int)
    head = _get(payload, "pull_request.head.ref", str)
    run_id = run_of_branch(config.branch_prefix, head)
    if not run_id:
        return Refuse(f"pull request #{number} ({head}) is not a ci-swarm run's: nothing to clean up")
    repo = _get(payload, "repository.full_name", str)
    head_repo = _get_opt(payload, "pull_request.head.repo.full_name", str) or ""
    if head_repo.lower() != repo.lower():
        return Refuse(
            f"pull request #{number} comes from {head_repo or 'a deleted fork'}: nothing to clean up"
        )
    base = _get(payload, "pull_request.base.ref", str)
    merged = bool(_get_opt(payload, "pull_request.merged", bool))
    return Cleanup(repo, run_id, number, head, base, merged)


# ----------------------------------------------------------------------------------------------- trust


def _refusal(verdict: Verdict, issue: int | None, label: str = "") -> Refuse | None:
    """None when admitted; else the refusal (a reply only for a person, only where there is an issue)."""
    if verdict.admitted:
        return None
    if verdict.reply is None or issue is None:
        return Refuse(verdict.why)
    return Refuse(verdict.why, verdict.reply, issue, label)


# -------------------------------------------------------------------------------------- payload access


def _get_opt(payload: Mapping[str, Any], dotted: str, kind: type[T]) -> T | None:
    value: Any = payload
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"event payload: '{dotted}' should be {kind.__name__}, got {type(value).__name__}")
    return value


def _get(payload: Mapping[str, Any], dotted: str, kind: type[T]) -> T:
    value = _get_opt(payload, dotted, kind)
    if value is None:
        raise UsageError(f"event payload: '{dotted}' is missing (is this a GitHub event of the right kind?)")
    return value


def _user(payload: Mapping[str, Any], dotted: str) -> tuple[str, str]:
    return _get(payload, f"{dotted}.login", str), _get_opt(payload, f"{dotted}.type", str) or "User"
