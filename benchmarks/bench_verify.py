"""Verification overhead (issue #12): a 16-subtask run (scripted agents, merged in plan order) in which one
subtask — the 11th — breaks the check, verified through the sandbox like a merge queue: the check on the
tip, bisection over the 16 prefix tips, then one round of the re-verification of the integration rebuilt
without the culprit beside the culprit merged alone on the base (when it started there: is it an
interaction?). The check (``sh -c 'sleep 1; ! test -e poison'``) runs in a scratch clone, so one check run
costs the clone, the sandbox's account hand-over and the second of work.

* ``one_check_s``: one check run on the base (clone + sandbox + check), the unit;
* ``verification_s``: the whole verification; ``ratio`` = verification / one check run;
* ``check_runs``: check runs started, ``check_rounds``: rounds of runs started together (units of wall
  time), side by side in the same verification, with their bounds from :mod:`ci_swarm.verify`
  (``runs_bound`` 1 + ⌈log₂ 16⌉ + 2 = 7, ``rounds_bound`` 1 + ⌈log₂ 16⌉ + 1 = 6) and the issue's
  (``bound`` 1 + ⌈log₂ 16⌉ = 5, which counts the tip and the bisection, not the re-verification);
* ``culprit_found``: the set-aside subtask is the one that broke the check.

Run: ``python -m benchmarks.bench_verify`` (or ``python -m benchmarks verify``).
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.agents import AGENTS
from ci_swarm.models import AgentSpec, Check, MergeOrder, Plan, Request, Subtask
from ci_swarm.run import RunOptions
from ci_swarm.sandbox import resolve_policy
from ci_swarm.service import CommandPolicy, RunRequest, ServiceOptions, run_request
from ci_swarm.verify import run_checks

SUBTASKS = 16
CULPRIT = 10
LOG2 = math.ceil(math.log2(SUBTASKS))
CHECK = Check("poison", ("sh", "-c", "sleep 1; ! test -e poison"), timeout=60)


def _repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git.run(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "README.md").write_text("bench\n")
    git.commit_all(repo, "initial\n", git.Identity("bench", "bench@example.invalid"))
    return repo


def _plan() -> Plan:
    def sub(i: int) -> Subtask:
        path = "poison" if i == CULPRIT else f"f{i}.txt"
        edits = ({"write": path, "content": f"{i}\n"},)
        return Subtask(f"s{i}", "builder", f"s{i}", agent=AgentSpec("scripted", {"edits": edits}))

    return Plan("bench verify", tuple(sub(i) for i in range(SUBTASKS)))


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        repo = _repo(Path(tmp))
        policy = resolve_policy(None)
        began = time.perf_counter()
        asyncio.run(run_checks(repo, git.rev_parse(repo, "HEAD"), (CHECK,), policy))
        one = time.perf_counter() - began
        options = RunOptions(repo=repo, max_agents=4, merge_order=MergeOrder.PLAN)
        job = RunRequest(Request(task="bench"), options, _plan(), checks=(CHECK,))
        report = run_request(job, ServiceOptions(CommandPolicy(trust_plan_commands=True), AGENTS)).report
    v = report.verification
    results = {
        "subtasks": SUBTASKS,
        "one_check_s": round(one, 3),
        "verification_s": v.seconds,
        "check_runs": v.check_runs,
        "check_rounds": v.check_rounds,
        "ratio": round(v.seconds / one, 2),
        "runs_bound": 1 + LOG2 + 2,
        "rounds_bound": 1 + LOG2 + 1,
        "bound": 1 + LOG2,
        "culprit_found": [c.subtask for c in v.culprits] == [f"s{CULPRIT}"],
        "status": v.status.value,
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
