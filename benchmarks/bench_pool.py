"""The workspace pool (issue #15): a run's setup grows with its cap, not with its subtasks, and the clones'
removal is off the critical path. Scripted subtasks each writing one file, ``run_plan_sync`` in-process, on
a generated repository of 2 and of 20k files, side by side in one run:

* table: 16 subtasks of 2 s at cap 4 and 16, pooled (the orchestrator's ``GitClones(pool=max_agents)``) and,
  on 2 files only, a clone per subtask (the behaviour before the pool; it costs minutes on 20k files);
* goal: 20k files, cap 4, 16 subtasks of 30 s — efficiency (bound / wall) ≥ 0.9;
* fixed_cost: wall − bound at 8, 16 and 32 subtasks of 2 s (20k files, cap 4): it may not grow with them.

Each row: wall, bound, efficiency, start skew of the last agent, kernel time (the process's and its git
children's system CPU up to the report), and where the time went: Σ first clones, Σ reuses (checkout of the
files that differ), Σ resets (dispose), Σ collections, Σ merges, the run's clean-up (``cleanup_seconds``:
after the scheduler ended, the clones' move to the trash included) and the removal itself — the background
deletion of the trash (``trash.wait()``, its own duration: after the report, not in the wall).

Run: ``python -m benchmarks pool`` (or ``python -m benchmarks.bench_run pool``).
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

from benchmarks.bench_run import _plan
from benchmarks.bench_setup import _repo as generated
from ci_swarm import trash
from ci_swarm.agents import make_agent_factory
from ci_swarm.clones import GitClones
from ci_swarm.models import AgentSpec
from ci_swarm.run import RunOptions, run_plan_sync


class _Seen(GitClones):
    """The orchestrator's clones, kept for their phase times."""

    pools: ClassVar[list[GitClones]] = []

    def __init__(self, repo: Path, root: Path | None, run_id: str, *, pool: int | None = None) -> None:
        super().__init__(repo, root, run_id, pool=pool)
        if pool is not None:
            _Seen.pools.append(self)


class _Unpooled(_Seen):
    """The behaviour before the pool, for the side-by-side figures: a clone per subtask, removed after."""

    def __init__(self, repo: Path, root: Path | None, run_id: str, *, pool: int | None = None) -> None:
        GitClones.__init__(self, repo, root, run_id)
        if pool is not None:
            _Seen.pools.append(self)


def _system_cpu() -> float:
    return sum(resource.getrusage(who).ru_stime for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def run_row(repo: Path, n: int, delay: float, cap: int, pooled: bool = True) -> dict[str, Any]:
    """One run and its figures (the previous run's removal finished first)."""
    trash.wait()
    _Seen.pools.clear()
    plan, options = _plan(n, delay), RunOptions(repo=repo, base="main", max_agents=cap)
    cpu, load = _system_cpu(), os.getloadavg()[0]
    with mock.patch("ci_swarm.run.GitClones", _Seen if pooled else _Unpooled):
        report = run_plan_sync(plan, options, make_agent_factory(AgentSpec("scripted")))
    kernel = _system_cpu() - cpu
    waited = time.monotonic()
    removal = trash.wait()
    waited = time.monotonic() - waited
    st, starts = report.stats, [s.started_at for s in report.subtasks if s.started_at is not None]
    (spaces,) = _Seen.pools
    return {
        "subtasks": n,
        "cap": cap,
        "delay_s": delay,
        "pooled": pooled,
        "clones": spaces.created,
        "wall_s": st.wall_seconds,
        "bound_s": st.bound_seconds,
        "efficiency": st.efficiency,
        "fixed_s": round(st.wall_seconds - st.bound_seconds, 2),
        "last_start_skew_s": round(max(starts) - min(starts), 2),
        "system_cpu_s": round(kernel, 2),
        "run_setup_s": st.run_setup_seconds,
        "first_clones_sum_s": round(spaces.spent.create, 2),
        "reuse_sum_s": round(spaces.spent.reuse, 2),
        "reset_sum_s": round(spaces.spent.reset, 2),
        "collect_sum_s": st.collect_seconds_sum,
        "merge_sum_s": st.merge_seconds_sum,
        "cleanup_s": st.cleanup_seconds,
        "close_s": round(spaces.close_seconds, 3),
        "removal_s": removal,
        "removal_wait_after_report_s": round(waited, 2),
        "load_1min": round(load, 1),
    }


def main(big: int = 20_000) -> dict[str, Any]:
    """Every row, in one run; printed as it is measured."""
    rows: dict[str, Any] = {"table": [], "goal": None, "fixed_cost": []}

    def show(row: dict[str, Any]) -> dict[str, Any]:
        print(json.dumps(row), flush=True)
        return row

    with tempfile.TemporaryDirectory(prefix="ci-swarm-bench-pool-") as tmp:
        small, large = (generated(Path(tmp) / f"r{size}", size).resolve() for size in (2, big))
        for files, repo in ((2, small), (big, large)):
            for cap in (4, 16):
                for pooled in (True, False) if repo is small else (True,):
                    rows["table"].append(show({"files": files, **run_row(repo, 16, 2.0, cap, pooled)}))
        rows["goal"] = show({"files": big, **run_row(large, 16, 30.0, 4)})
        for n in (8, 16, 32):
            rows["fixed_cost"].append(show({"files": big, **run_row(large, n, 2.0, 4)}))
    fixed = [r["fixed_s"] for r in rows["fixed_cost"]]
    rows["fixed_cost_growth_32_over_8"] = round(fixed[-1] / fixed[0], 2) if fixed[0] > 0 else None
    rows["goal_efficiency"] = rows["goal"]["efficiency"]
    print(
        f"pool: 20k files, cap 4, 16 × 30 s: efficiency {rows['goal_efficiency']} (goal ≥ 0.9); fixed cost "
        f"at 8/16/32 subtasks: {fixed} s"
    )
    return rows


if __name__ == "__main__":
    print(json.dumps(main()))
