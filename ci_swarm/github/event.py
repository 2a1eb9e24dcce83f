"""A GitHub event → a run of ci-swarm, or a refusal. Pure over the payload, plus one small Protocol.

``route(event_name, payload, config, access)`` decides, for the event at ``GITHUB_EVENT_PATH``:

- ``issues``/``labeled`` with the configured label → one job from the issue (a ```` ```swarm-plan ```` block
  in the body is the plan); the labeler must have write access (collaborator-permission API).
- ``issue_comment``/``created`` starting with the command → on a pull request, the rest of the comment
  plus the PR (same repository only, open); on a plain issue, as the label case. The commenter's
  ``author_association`` must be trusted.
- ``schedule`` → the maintenance jobs whose ``cron`` is the payload's ``schedule``.
- ``workflow_dispatch`` → inputs ``task``, ``plan`` or ``job``.
- anything else → a refusal (a one-line notice; the action exits 0).

Bots are ignored unless allowed by name, and ci-swarm's own comments never trigger it. The only I/O goes
through :class:`RepoAccess` (the PyGithub implementation is :class:`ci_swarm.github.trust.GithubAccess`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ci_swarm.config import Config, MaintenanceJob, Shard
from ci_swarm.errors import UsageError
from ci_swarm.models import AgentSpec, Request

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
SELF_MARKER = "<!-- ci-swarm"  # every comment ci-swarm writes carries an HTML comment starting like this
_PLAN_BLOCK = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*swarm-plan[ \t]*\r?\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$",
    re.M | re.S,
)
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
    """What routing needs to ask GitHub: a user's permission on the repository, and a pull request."""

    def permission(self, login: str) -> str:
        """``admin``, ``maintain``, ``write``, ``triage``, ``read`` or ``none``."""
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


Decision = Run | Refuse


def usage(command: str) -> str:
    return (
        f"Usage: `{command} <what to do>` — for example `{command} add tests for the parser`. "
        f"On a pull request the agents work on its branch; on an issue they open a pull request. "
        f"A fenced `swarm-plan` YAML block after the command is used as the plan as-is."
    )


def route(event_name: str, payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    """Decide what the event asks for. UsageError when the payload is not shaped like GitHub's."""
    if not isinstance(payload, Mapping):
        raise UsageError("event payload: expected a JSON object")
    handlers = {
        "issues": _issues,
        "issue_comment": _issue_comment,
        "schedule": _schedule,
        "workflow_dispatch": _dispatch,
    }
    handler = handlers.get(event_name)
    if handler is None:
        return Refuse(f"ci-swarm does not handle '{event_name or 'unknown'}' events: nothing to do")
    return handler(payload, config, access)


def plan_block(text: str) -> str:
    """The first ```` ```swarm-plan ```` fenced block's content, or ""."""
    match = _PLAN_BLOCK.search(text or "")
    return match.group("body") if match else ""


# -------------------------------------------------------------------------------------------- issues


def _issues(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    action = _get(payload, "action", str)
    if action != "labeled":
        return Refuse(
            f"issues/{action}: nothing to do (ci-swarm runs when the '{config.label}' label is added)"
        )
    label = _get(payload, "label.name", str)
    if label != config.label:
        return Refuse(f"label '{label}' is not '{config.label}': nothing to do")
    number = _get(payload, "issue.number", int)
    sender = _user(payload, "sender")
    refusal = _refuse_bot(sender, config) or _refuse_without_write(sender[0], access)
    if refusal:
        return refusal
    return _issue_run("issues", payload, number, sender[0], label=label)


def _issue_run(
    event: str,
    payload: Mapping[str, Any],
    number: int,
    actor: str,
    *,
    label: str = "",
    instructions: str = "",
    comment_id: int | None = None,
) -> Decision:
    title = _get(payload, "issue.title", str)
    body = _get_opt(payload, "issue.body", str) or ""
    plan_text = plan_block(instructions) or ("" if instructions else plan_block(body))
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
    return Run(event, repo, actor, (job,), issue=number, label=label, comment_id=comment_id)


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
    login, kind = _user(payload, "comment.user")
    association = _get_opt(payload, "comment.author_association", str) or "NONE"
    refusal = _refuse_bot((login, kind), config) or _refuse_association(login, association, config)
    if refusal:
        return refusal
    if not instructions.strip():
        return Refuse(
            f"empty {config.command} command on #{number}: replied with usage", usage(config.command), number
        )
    if _get_opt(payload, "issue.pull_request", dict) is None:
        return _issue_run(
            "issue_comment", payload, number, login, instructions=instructions, comment_id=comment_id
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
        title=pr.title,
        body=pr.body,
        actor=actor,
    )
    job = Job(request=request, plan_text=plan_block(instructions))
    return Run("issue_comment", repo, actor, (job,), issue=number, pr=pr, comment_id=comment_id)


def _after_command(text: str, command: str) -> str | None:
    """The text after ``command`` when the comment starts with it (as a whole word), else None."""
    stripped = text.lstrip()
    if not stripped.startswith(command):
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
    task = job.task or (job.shard.task if job.shard else "") or f"Maintenance job '{job.name}' ({job.plan})"
    request = Request(
        task=task, source="schedule", title=f"ci-swarm maintenance: {job.name}", actor="schedule"
    )
    return Job(request=request, name=job.name, plan_path=job.plan, shard=job.shard, agent=job.agent)


def _dispatch(payload: Mapping[str, Any], config: Config, access: RepoAccess) -> Decision:
    inputs = _get_opt(payload, "inputs", dict) or {}
    given = {k: str(inputs.get(k) or "") for k in ("task", "plan", "job")}
    chosen = [k for k, v in given.items() if v.strip()]
    if len(chosen) != 1:
        found = f" (got {' and '.join(chosen)})" if chosen else ""
        raise UsageError(f"workflow_dispatch needs exactly one of the inputs task, plan or job{found}")
    repo = _get(payload, "repository.full_name", str)
    actor = _user(payload, "sender")[0]
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


# ----------------------------------------------------------------------------------------------- trust


def _refuse_bot(user: tuple[str, str], config: Config) -> Refuse | None:
    login, kind = user
    if kind != "Bot" and not login.endswith("[bot]"):
        return None
    if login in config.allowed_bots:
        return None
    return Refuse(f"@{login} is a bot not listed in allowed_bots: ignored")


def _refuse_without_write(login: str, access: RepoAccess) -> Refuse | None:
    permission = access.permission(login)
    if permission in WRITE_PERMISSIONS:
        return None
    return Refuse(f"@{login} has '{permission}' permission, not write access: refused")


def _refuse_association(login: str, association: str, config: Config) -> Refuse | None:
    if association in config.trusted_associations:
        return None
    trusted = "/".join(config.trusted_associations)
    return Refuse(f"@{login} is {association}, not {trusted}: refused")


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
