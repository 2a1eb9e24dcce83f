"""A fan-out run's state: what ``plan --fan-out`` decided, read by every later ``agent`` and ``land`` job.

The state is ``state.json`` in a commit on ``refs/swarm/<run-id>/state`` (beside it, once landed, the
report the land job wrote), so it travels with the repository — pushed by the plan job, fetched by the
others — and is never a job output (capped at 1 MB). Each write is a new commit on the previous one, set
with compare-and-swap: two land jobs cannot both record a landing. ``format`` is this file's format
(:data:`FORMAT`); a state of another format is refused with one line saying which.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ci_swarm import __version__, git
from ci_swarm.errors import NoRunState, PlanError, RunStateError, RunStateFormat
from ci_swarm.models import AgentSpec, Check, Plan
from ci_swarm.plan import agent_to_dict, freeze, plan_from_dict, plan_to_dict

FORMAT = 1
STATE_FILE = "state.json"


def state_ref(run_id: str) -> str:
    return f"refs/swarm/{run_id}/state"


@dataclass(frozen=True)
class RunPolicy:
    """How the run's agents run and land: what ``run`` takes as flags and config."""

    max_agents: int = 4
    timeout: float | None = None
    merge_order: str = ""  # "" = the plan's own order; "plan" | "completion" overrides it
    checks: tuple[Check, ...] = ()
    default_agent: AgentSpec = field(default_factory=lambda: AgentSpec("scripted"))
    branch_prefix: str = "swarm"
    sandbox: str = ""  # the sandbox asked for ("": whatever is available)
    budget_usd: float | None = None  # the model budget of the whole run, divided across the jobs at once
    budget_tokens: int | None = None


@dataclass(frozen=True)
class RunState:
    run_id: str
    base: str  # the commit every first-wave agent starts from
    integration_branch: str
    plan: Plan
    policy: RunPolicy = RunPolicy()
    config_digest: str = ""  # sha256 of the config file's bytes ("" without one)
    landed: str = ""  # the integration commit once landed
    format: int = FORMAT
    version: str = __version__  # the ci-swarm that wrote it
    tips: tuple[str, ...] = ()  # the integration tip each landed wave produced (wave k → tips[k])
    done: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # landed id → status

    @property
    def wave(self) -> int:
        """The wave whose results land next (0: the first); every earlier wave has landed."""
        return len(self.tips)

    @property
    def start(self) -> str:
        """Where the current wave's agents start: the base, or the tip the previous wave produced."""
        return self.tips[-1] if self.tips else self.base


@dataclass(frozen=True)
class Recorded:
    """A state as read from its ref: the commit holding it and that commit's other files."""

    state: RunState
    commit: str
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # name -> blob id


def record(
    repo: Path,
    state: RunState,
    previous: str | None = None,
    attachments: Mapping[str, bytes] | None = None,
    anchor: str = "",
) -> str:
    """Write ``state`` (and ``attachments``, beside the previous commit's, which are kept) as a new commit
    on the state ref; ``previous`` is the state commit it replaces (None: there must be none); ``anchor``, a
    commit made its second parent so that fetching the state ref fetches it (a wave's integration tip).
    RunStateError when the ref moved meanwhile."""
    blobs = dict(_files(repo, previous)) if previous else {}
    blobs[STATE_FILE] = git.write_blob(repo, to_json(state).encode())
    for name, data in (attachments or {}).items():
        blobs[name] = git.write_blob(repo, data)
    tree = git.make_tree(repo, blobs)
    message = f"ci-swarm run state of {state.run_id}{' (landed)' if state.landed else ''}\n"
    parents = [p for p in (previous, anchor) if p]
    commit = git.commit_tree(repo, tree, parents, message)
    ref = state_ref(state.run_id)
    current = git.try_ref(repo, ref)
    if current != previous:
        raise RunStateError(f"the state of run {state.run_id} changed meanwhile (another job wrote it)")
    git.update_ref(repo, ref, commit, old=previous or git.ZERO_OID, message="ci-swarm: run state")
    return commit


def load(repo: Path, run_id: str) -> Recorded:
    """The recorded state of ``run_id``; NoRunState, RunStateFormat or RunStateError (malformed)."""
    commit = git.try_ref(repo, state_ref(run_id) + "^{commit}")
    if commit is None:
        raise NoRunState(
            f"no state for run {run_id} in {repo} (plan it with `ci-swarm plan --fan-out`, or fetch "
            f"{state_ref(run_id)})"
        )
    files = _files(repo, commit)
    if STATE_FILE not in files:
        raise RunStateError(f"the state of run {run_id} is malformed: its commit has no {STATE_FILE}")
    state = from_json(git.read_blob(repo, files[STATE_FILE]), run_id)
    return Recorded(state, commit, MappingProxyType(files))


def _files(repo: Path, commit: str) -> dict[str, str]:
    """The files of a state commit: name -> blob id."""
    listing = git.out(repo, "ls-tree", "-z", commit).split("\0")
    return {name: meta.split()[2] for meta, _, name in (e.partition("\t") for e in listing if e) if name}


def attachment(repo: Path, recorded: Recorded, name: str) -> bytes | None:
    oid = recorded.files.get(name)
    return None if oid is None else git.read_blob(repo, oid)


def landed(state: RunState, commit: str) -> RunState:
    return replace(state, landed=commit)


# --- JSON -----------------------------------------------------------------------------------------


def to_json(state: RunState) -> str:
    return json.dumps(to_dict(state), indent=1, sort_keys=True) + "\n"


def to_dict(state: RunState) -> dict[str, Any]:
    policy = state.policy
    return {
        "format": state.format,
        "version": state.version,
        "run_id": state.run_id,
        "base": state.base,
        "integration_branch": state.integration_branch,
        "plan": plan_to_dict(state.plan),
        "policy": {
            "max_agents": policy.max_agents,
            "timeout": policy.timeout,
            "merge_order": policy.merge_order,
            "checks": [{"name": c.name, "run": list(c.run), "timeout": c.timeout} for c in policy.checks],
            "default_agent": agent_to_dict(policy.default_agent),
            "branch_prefix": policy.branch_prefix,
            "sandbox": policy.sandbox,
            "budget_usd": policy.budget_usd,
            "budget_tokens": policy.budget_tokens,
        },
        "config_digest": state.config_digest,
        "landed": state.landed,
        "tips": list(state.tips),
        "done": dict(state.done),
    }


def from_json(data: bytes, run_id: str) -> RunState:
    """The state in ``data``; RunStateFormat for another format, RunStateError naming what is wrong."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _malformed(run_id, f"not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise _malformed(run_id, "not a JSON object")
    number = raw.get("format")
    if isinstance(number, bool) or not isinstance(number, int):
        raise _malformed(run_id, "'format' is not a number")
    if number != FORMAT:
        newer = "newer" if number > FORMAT else "older"
        raise RunStateFormat(
            f"run state format {number} is {newer} than this ci-swarm ({__version__} reads format {FORMAT})"
        )
    try:
        return _from_dict(raw)
    except KeyError as exc:
        raise _malformed(run_id, f"missing key {exc}") from exc
    except (TypeError, ValueError, PlanError) as exc:
        raise _malformed(run_id, str(exc) or type(exc).__name__) from exc


def _from_dict(raw: Mapping[str, Any]) -> RunState:
    policy = raw["policy"]
    agent = dict(policy["default_agent"])
    timeout = policy["timeout"]
    return RunState(
        run_id=_text(raw["run_id"], "run_id"),
        base=_text(raw["base"], "base"),
        integration_branch=_text(raw["integration_branch"], "integration_branch"),
        plan=plan_from_dict(raw["plan"], source="the state's plan"),
        policy=RunPolicy(
            max_agents=int(policy["max_agents"]),
            timeout=None if timeout is None else float(timeout),
            merge_order=_text(policy["merge_order"], "merge_order", empty=True),
            checks=tuple(
                Check(_text(c["name"], "check name"), tuple(map(str, c["run"])), _opt_float(c["timeout"]))
                for c in policy["checks"]
            ),
            default_agent=AgentSpec(_text(agent.pop("kind"), "agent kind"), freeze(agent)),
            branch_prefix=_text(policy["branch_prefix"], "branch_prefix"),
            sandbox=_text(policy["sandbox"], "sandbox", empty=True),
            budget_usd=_opt_float(policy.get("budget_usd")),
            budget_tokens=None if policy.get("budget_tokens") is None else int(policy["budget_tokens"]),
        ),
        config_digest=_text(raw["config_digest"], "config_digest", empty=True),
        landed=_text(raw["landed"], "landed", empty=True),
        format=int(raw["format"]),
        version=_text(raw["version"], "version"),
        tips=tuple(_text(tip, "tips") for tip in raw.get("tips", ())),
        done=MappingProxyType(
            {_text(k, "done"): _text(v, "done") for k, v in dict(raw.get("done", {})).items()}
        ),
    )


def _text(value: Any, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise ValueError(f"{key!r} must be a {'' if empty else 'non-empty '}string")
    return value


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _malformed(run_id: str, why: str) -> RunStateError:
    return RunStateError(f"the state of run {run_id} is malformed: {why}")
