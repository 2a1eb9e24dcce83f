"""A fan-out land job that landed a wave with another to follow (issue #13): what it publishes.

Nothing of the pull request: the wave's agent branches are pushed (scanned; one holding a secret stops the
run here, exit 7), then the landed state (``refs/swarm/<run>/state``, whose commit keeps the wave's tip
reachable: the next wave's agent jobs start from it) with a lease on the state the job fetched; the sticky
progress comment shows the landed rows and "wave k of n landed, wave k+1 queued"; the outputs are the
next wave's (``matrix``, ``matrix_<i>``, ``chunks``, ``waves``, ``next_wave``, ``budget_share``,
``tokens_share``, ``done=false``) beside ``tip``, ``wave`` and the usage so far. The integration branch
stays where the plan job pushed it: the last land job publishes it (verification may rebuild it).

The last land job fetches the agent branches the earlier land jobs pushed (:func:`fetch_earlier_agents`),
so it can publish every wave's branches (a failed subtask's commit is on no integration tip).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ci_swarm import runstate
from ci_swarm.dag import waves
from ci_swarm.errors import EXIT_OK, SecretFound
from ci_swarm.fanout import Landing
from ci_swarm.github import log as runner_log
from ci_swarm.github import runner
from ci_swarm.github.progress import ProgressComment
from ci_swarm.github.pushing import TokenRemote, push_agents, push_refs
from ci_swarm.github.runner import OutputValue
from ci_swarm.matrix import key_lines, output_lines
from ci_swarm.models import RunReport
from ci_swarm.naming import agent_branch

EARLIER = "refs/ci-swarm/earlier-agents"  # where the last land job fetches the earlier waves' agent branches


@dataclass(frozen=True)
class JobRemote:
    """The repository a land job pushes to: clone URL, token, and the secrets its pushes are scanned for."""

    url: str
    token: str
    secrets: tuple[str, ...] = ()

    @property
    def scanned(self) -> tuple[str, ...]:
        return (self.token, *self.secrets)


def wave_outputs(run_id: str, branch: str, landing: Landing) -> dict[str, OutputValue]:
    """The land job's outputs: the tip, the wave landed, the usage so far; the next wave's matrix and
    shares with ``done=false`` — or ``done=true`` once the run landed."""
    usage = landing.usage
    pairs = [
        ("tip", landing.integration_commit),
        ("wave", str(landing.wave + 1)),
        ("usage_usd", f"{usage.cost_usd:.6f}"),
        ("usage_tokens", str(usage.tokens)),
    ]
    lines = key_lines(pairs)
    if landing.next_matrix is not None and landing.next_wave is not None:
        lines += output_lines(run_id, landing.next_matrix)
        lines += key_lines((("next_wave", str(landing.next_wave + 1)), *landing.shares.lines()))
    outputs: dict[str, OutputValue] = {"run_id": run_id, "branch": branch}
    for line in lines:
        key, _, value = line.partition("=")
        outputs[key] = value
    outputs["done"] = landing.done
    return outputs


def queued_text(landing: Landing) -> str:
    """The progress comment's line once wave k landed and wave k+1's agent jobs are queued."""
    matrix = landing.next_matrix
    count = matrix.waves if matrix is not None else landing.wave + 1
    jobs = len(matrix.first) if matrix is not None else 0
    following = (landing.next_wave or 0) + 1
    return (
        f"**Wave {landing.wave + 1} of {count} landed** (`{landing.integration_commit[:10]}`), "
        f"**wave {following} queued:** {jobs} agent job(s). The last land job opens the pull request."
    )


def publish_wave(
    repo: Path,
    fetched: runstate.Recorded,
    landing: Landing,
    progress: ProgressComment,
    remote: JobRemote,
    env: Mapping[str, str] | None,
) -> int:
    """A wave landed and another follows: its agent branches and the landed state pushed, the progress
    comment updated, the next wave's outputs written (exit 0)."""
    state = fetched.state
    report = landing.report
    if report is not None:  # None: the wave had landed before — pushed then, nothing to push again
        push_wave_agents(repo, report, wave_ids(fetched, landing), remote)
        ref = runstate.state_ref(state.run_id)
        commit = runstate.load(repo, state.run_id).commit
        push_refs(
            repo,
            remote.url,
            remote.token,
            {ref: (commit, fetched.commit)},
            secrets=remote.scanned,
            since=fetched.commit,
        )
        progress.finish(queued_text(landing), usage=landing.usage, phase="running")
    outputs = wave_outputs(state.run_id, state.integration_branch, landing)
    runner.set_outputs(outputs, env)
    runner.append_summary(wave_summary(state.run_id, landing), env)
    runner_log.info(
        f"run {state.run_id}: wave {landing.wave + 1} landed at {landing.integration_commit[:10]}; "
        f"wave {outputs.get('next_wave', '?')} queued ({outputs.get('chunks', '0')} matrix chunk(s))"
    )
    return EXIT_OK


def wave_ids(fetched: runstate.Recorded, landing: Landing) -> set[str]:
    """The subtasks this job landed: the waves from the one it landed up to the next one to fan out."""
    plan_waves = waves(fetched.state.plan)
    upto = landing.next_wave if landing.next_wave is not None else len(plan_waves)
    return {sub for wave in plan_waves[landing.wave : upto] for sub in wave}


def push_wave_agents(repo: Path, report: RunReport, ids: set[str], remote: JobRemote) -> None:
    """The wave's agent branches pushed (scanned); SecretFound names any held back — the run stops here,
    since the next wave would start from work holding it."""
    wave = replace(report, subtasks=tuple(s for s in report.subtasks if s.id in ids))
    pushed = push_agents(repo, remote.url, wave, remote.token, remote.scanned)
    if pushed.held:
        findings = tuple(f for held in pushed.held for f in held.findings)
        names = "; ".join(str(held) for held in pushed.held)
        raise SecretFound(f"the run stops at this wave: {names}", findings)


def fetch_earlier_agents(repo: Path, prefix: str, run_id: str, remote: JobRemote) -> None:
    """The agent branches earlier land jobs pushed, fetched aside (their commits are published again)."""
    branches = f"refs/heads/{agent_branch(prefix, run_id, '*')}"
    TokenRemote(repo, remote.url, remote.token).fetch([f"+{branches}:{EARLIER}/{run_id}/*"])


def wave_summary(run_id: str, landing: Landing) -> str:
    matrix = landing.next_matrix
    ids = ", ".join(f"`{sub}`" for sub in (matrix.first if matrix is not None else ()))
    again = " (it had landed before: nothing merged or pushed)" if landing.again else ""
    return (
        f"### ci-swarm fan-out: run `{run_id}`, wave {landing.wave + 1} landed{again}\n\n"
        f"Next: wave {(landing.next_wave or 0) + 1}, {len(matrix.first) if matrix else 0} agent job(s): "
        f"{ids}\n"
    )
