"""Maintenance jobs (``maintenance:`` in ``.github/ci-swarm.yml``) and written plans: a job by name, the
request a job makes, and the plan written down for a run (a YAML text such as a ``swarm-plan`` block, a plan
file read at the base commit, or a shard of the base's files).

The Action (:mod:`ci_swarm.action`) and ``ci-swarm run --job`` (:mod:`ci_swarm.cli`) build a job's plan
through :func:`written_plan`, so a job run locally is planned exactly as the Action plans it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ci_swarm import git
from ci_swarm.config import Config, MaintenanceJob, Shard
from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import AgentSpec, MergePolicy, Plan, Request
from ci_swarm.plan import NO_VALIDATORS, Validators, did_you_mean, plan_from_dict
from ci_swarm.safeyaml import load_yaml
from ci_swarm.workspace import check_relative


def find_job(config: Config, name: str) -> MaintenanceJob:
    """The maintenance job called ``name``; UsageError (exit 4) naming the closest one or the known ones."""
    for job in config.maintenance:
        if job.name == name:
            return job
    names = [job.name for job in config.maintenance]
    where = config.source or "the config (none found)"
    hint = did_you_mean(name, names) or f" (known: {', '.join(names) or 'none'})"
    raise UsageError(f"no maintenance job named {name!r} in {where}{hint}")


def job_request(job: MaintenanceJob) -> Request:
    """What a maintenance job asks for (the task the planner or the report shows)."""
    task = job.task or (job.shard.task if job.shard else "") or f"Maintenance job '{job.name}' ({job.plan})"
    return Request(task=task, source="schedule", title=f"ci-swarm maintenance: {job.name}", actor="schedule")


@dataclass(frozen=True)
class Written:
    """Where a run's plan is written, if anywhere: a YAML ``text`` (named ``source``), a plan file ``path``
    in the repository, or a ``shard``; none of them: the planner plans."""

    text: str = ""
    source: str = "the plan input"
    path: str = ""
    shard: Shard | None = None

    @classmethod
    def of_job(cls, job: MaintenanceJob) -> Written:
        return cls(source=f"maintenance job {job.name!r}", path=job.plan, shard=job.shard)


def written_plan(
    repo: Path,
    commit: str,
    written: Written,
    *,
    merge: MergePolicy,
    default: AgentSpec,
    validators: Validators = NO_VALIDATORS,
    agent_chosen: bool = True,
) -> Plan | None:
    """The plan written down, or None when it must be planned. ``merge`` (the config's policy) applies
    unless a written plan states its own; a plan file is read at ``commit``, a shard splits its files —
    refused (exit 4) when ``default`` is the fallback agent nobody chose, which would change nothing."""
    if written.text:
        return plan_from_text(written.text, written.source, validators, merge)
    if written.path:
        text = read_at(repo, commit, written.path)
        return plan_from_text(text, written.path, validators, merge)
    if written.shard is not None:
        from ci_swarm.shard import require_editing_agent, shard_plan

        require_editing_agent(default, agent_chosen, f"the shard of {written.source}")
        shard = written.shard
        files = git.tree_files(repo, commit)
        plan = shard_plan(files, shard.pattern, shard.agents, shard.task, agent=default)
        return dataclasses.replace(plan, merge=merge)
    return None


def plan_from_text(
    text: str, source: str, validators: Validators = NO_VALIDATORS, default_merge: MergePolicy | None = None
) -> Plan:
    """A plan written in YAML (a ``swarm-plan`` block, a dispatch input, a plan file's content); without a
    ``merge:`` key it gets ``default_merge`` (the config's)."""
    try:
        data = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise PlanError(f"{where}: malformed YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: malformed YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise PlanError(f"{source}: a plan must be a mapping with 'subtasks'")
    plan = plan_from_dict(data, source=source, validators=validators)
    if default_merge is not None and "merge" not in data:
        plan = dataclasses.replace(plan, merge=default_merge)
    return plan if plan.task else dataclasses.replace(plan, task=source)


def read_at(repo: Path, commit: str, path: str) -> str:
    """A plan file's text at ``commit``; PlanError when it is not there."""
    rel = check_relative(path).as_posix()
    data = git.try_read_blob(repo, commit, rel)
    if data is None:
        raise PlanError(f"plan file {rel} does not exist at {commit[:10]}")
    return data.decode("utf-8", "replace")
