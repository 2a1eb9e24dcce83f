"""Competing attempts (issue #14): the wall time of one subtask run as best-of-3 beside the same subtask run
once, under cap 4 and cap 2, in-process (the orchestrator, real clones and git, scripted agents that work
``agent_s`` seconds), interleaved and repeated (medians), side by side in one run.

* ``cap4.ratio`` = best-of-3 wall / single wall with cap 4: the three attempts run at once, so the bound
  is max(attempts) ≈ 1× (plus each attempt's clone and commit);
* ``cap2.ratio``: two attempts at once, the third after them: the bound is ≈ 2×;
* ``agent_seconds_multiplier``: Σ time of the three attempts / the single attempt's, each counting its
  clone, its agent and its commit (≈ 3×) — the cost multiplier measurable here: scripted and command
  agents cost no money (``cost_usd`` is 0);
* ``model_cost_multiplier``: for Claude attempts the model cost is N× by construction (N conversations
  of the same subtask), unless attempts stop early (a certain vote majority, a spent budget) — not measured
  here, since it needs no measurement.

The judge is ``checks`` (no checks configured: every attempt passes, the smallest diff wins), which waits
for every attempt — no early stop shortens the best-of-3 figures.

Run: ``python -m benchmarks.bench_attempts`` (or ``python -m benchmarks attempts``).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_verify import _repo  # one commit on main: README.md
from ci_swarm.agents import make_agent_factory
from ci_swarm.models import AgentSpec, Judge, Plan, RunReport, Subtask
from ci_swarm.run import RunOptions, run_plan_sync

AGENT_S = 1.0
REPEATS = 3
FACTORY = make_agent_factory(AgentSpec("scripted"))


def _plan(attempts: int) -> Plan:
    edits = ({"write": "out.txt", "content": "done\n"},)
    spec = AgentSpec("scripted", {"delay": AGENT_S, "edits": edits})
    sub = Subtask("feat", "builder", "feat", agent=spec, attempts=(None,) * attempts if attempts > 1 else ())
    return Plan("bench attempts", (sub,), judge=Judge.CHECKS)


def _run(repo: Path, work: Path, attempts: int, cap: int) -> tuple[float, float]:
    """(wall seconds, Σ attempt seconds: clone + agent + commit) of one run."""
    options = RunOptions(repo=repo, base="main", workdir=work, max_agents=cap)
    began = time.monotonic()
    report: RunReport = run_plan_sync(_plan(attempts), options, FACTORY)
    wall = time.monotonic() - began
    judgement = report.subtasks[0].judgement
    if judgement is not None:  # an attempt's seconds: its clone, its agent and its commit
        return wall, sum(a.seconds for a in judgement.attempts)
    sub = report.subtasks[0]
    return wall, sub.setup_seconds + sub.seconds + sub.collect_seconds


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> dict[str, Any]:
    results: dict[str, Any] = {"agent_s": AGENT_S, "repeats": REPEATS}
    single_agents: list[float] = []
    best_agents: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-attempts-") as tmp:
        repo = _repo(Path(tmp))
        for cap in (4, 2):
            walls: dict[int, list[float]] = {1: [], 3: []}
            for i in range(REPEATS):
                for n in (1, 3):  # interleaved: the same load for both
                    wall, agents = _run(repo, Path(tmp) / f"w{cap}-{i}-{n}", n, cap)
                    walls[n].append(wall)
                    (single_agents if n == 1 else best_agents).append(agents)
            single, best = _median(walls[1]), _median(walls[3])
            results[f"cap{cap}"] = {"single_s": single, "best_of_3_s": best, "ratio": round(best / single, 2)}
    results["agent_seconds_multiplier"] = round(_median(best_agents) / _median(single_agents), 2)
    results["model_cost_multiplier"] = (
        "3x by construction (N conversations), less only if attempts stop early"
    )
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
