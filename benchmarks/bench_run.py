"""Scheduler + merge queue figures on real repositories with scripted agents.

* efficiency: 16 scripted subtasks with fixed 2 s delays, cap 4 → bound / wall (target ≥ 0.95), the median
  of three runs. The overhead is about one worktree creation (~12 ms) per agent start plus the last
  landings and merges, a fixed cost: real agents run for minutes, so it shrinks further there; the same
  swarm with 1 s agents is reported beside it (0.94–0.96 in runs on this 2-core machine).
* overhead: 100 subtasks, cap 16 → wall − bound, the cost of worktrees, commits and merges (target < 3 s),
  and the peak RSS of the process (target < 300 MB), measured in a fresh subprocess.

Run: ``python -m benchmarks.bench_run`` (``… pool``: the workspace pool's table, :func:`pool_table`).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from ci_swarm import git
from ci_swarm.agents import make_agent_factory
from ci_swarm.clones import GitClones
from ci_swarm.models import AgentSpec, Plan, RunReport
from ci_swarm.plan import plan_from_dict
from ci_swarm.run import RunOptions, run_plan_sync


def _repo(root: Path, files: int = 50) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    git.run(repo, "init", "--quiet", "--initial-branch=main")
    for i in range(files):
        (repo / f"f{i:03}.txt").write_text(f"file {i}\n")
    git.commit_all(repo, "base\n", git.SWARM_IDENTITY)
    return repo


def _plan(n: int, delay: float) -> Plan:
    """``n`` scripted subtasks of ``delay`` seconds, each writing its own file."""
    edit = [{"write": "out/s{i}.txt", "content": "{i}\n"}]
    subtasks = [
        {
            "id": f"s{i}",
            "role": "builder",
            "title": f"s{i}",
            "agent": {
                "kind": "scripted",
                "delay": delay,
                "edits": [{k: v.format(i=i) for k, v in edit[0].items()}],
            },
        }
        for i in range(n)
    ]
    return plan_from_dict({"version": 1, "task": "bench", "subtasks": subtasks})


def _swarm(n: int, delay: float, cap: int) -> RunReport:
    with tempfile.TemporaryDirectory(prefix="ci-swarm-bench-") as tmp:
        repo = _repo(Path(tmp))
        plan = _plan(n, delay)
        options = RunOptions(repo=repo, base="main", max_agents=cap, workdir=Path(tmp) / "wt")
        return run_plan_sync(plan, options, make_agent_factory(AgentSpec("scripted")))


def efficiency(n: int = 16, delay: float = 2.0, cap: int = 4, runs: int = 3) -> dict[str, Any]:
    """The median of ``runs`` runs (all of them are reported): one run is at the mercy of a load spike."""
    reports = sorted((_swarm(n, delay, cap) for _ in range(runs)), key=lambda r: r.stats.efficiency)
    st = reports[len(reports) // 2].stats
    return {
        "runs": [r.stats.efficiency for r in reports],
        "subtasks": n,
        "cap": cap,
        "delay_s": delay,
        "wall_s": st.wall_seconds,
        "bound_s": st.bound_seconds,
        "efficiency": st.efficiency,
        "speedup": st.speedup,
        "max_in_flight": st.max_in_flight,
    }


def overhead(n: int = 100, delay: float = 0.5, cap: int = 16) -> dict[str, Any]:
    report = _swarm(n, delay, cap)
    st = report.stats
    return {
        "subtasks": n,
        "cap": cap,
        "delay_s": delay,
        "wall_s": st.wall_seconds,
        "bound_s": st.bound_seconds,
        "overhead_s": round(st.wall_seconds - st.bound_seconds, 3),
        "merges": len(report.merges),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> dict[str, Any]:
    eff = efficiency()
    short = efficiency(delay=1.0)  # for reference: the same swarm with agents half as long
    # the 100-subtask run in a fresh interpreter, so its peak RSS is its own
    code = "import json; from benchmarks.bench_run import overhead; print(json.dumps(overhead()))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    over = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {"efficiency_16_cap4": eff, "efficiency_16_cap4_1s_agents": short, "overhead_100_cap16": over}
    print(
        f"scheduler, 16 × {eff['delay_s']}s, cap 4: wall {eff['wall_s']}s, bound {eff['bound_s']}s, "
        f"efficiency {eff['efficiency']} (target ≥ 0.95); with 1 s agents {short['efficiency']}"
    )
    print(
        f"100 subtasks, cap 16: wall {over['wall_s']}s, bound {over['bound_s']}s, overhead "
        f"{over['overhead_s']}s (target < 3 s), peak RSS {over['peak_rss_mb']} MB (target < 300 MB)"
    )
    return result


# --- the workspace pool (issue #15): setup proportional to the cap, not to the subtasks -------------------


class _Unpooled(GitClones):
    """The behaviour before the pool, for the side-by-side figures: a clone per subtask, removed after."""

    def __init__(self, repo: Path, root: Path | None, run_id: str, *, pool: int | None = None) -> None:
        super().__init__(repo, root, run_id)


def _pool_run(repo: Path, n: int, delay: float, cap: int, pooled: bool) -> dict[str, Any]:
    plan = _plan(n, delay)
    options = RunOptions(repo=repo, base="main", max_agents=cap)
    cpu = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with mock.patch("ci_swarm.run.GitClones", GitClones if pooled else _Unpooled):
        report = run_plan_sync(plan, options, make_agent_factory(AgentSpec("scripted")))
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    st, starts = report.stats, [s.started_at for s in report.subtasks if s.started_at is not None]
    return {
        "subtasks": n,
        "cap": cap,
        "delay_s": delay,
        "pooled": pooled,
        "wall_s": st.wall_seconds,
        "bound_s": st.bound_seconds,
        "efficiency": st.efficiency,
        "last_start_skew_s": round(max(starts) - min(starts), 2),
        "system_cpu_s": round(sum(a.ru_stime - b.ru_stime for a, b in zip(after, cpu, strict=True)), 2),
        "setup_sum_s": st.setup_seconds_sum,
        "run_setup_s": st.run_setup_seconds,
        "cleanup_s": st.cleanup_seconds,
        "fixed_s": round(st.wall_seconds - st.bound_seconds, 2),
    }


def pool_table(files: tuple[int, ...] = (2, 20_000), caps: tuple[int, ...] = (4, 16)) -> dict[str, Any]:
    """Issue #15's table (16 × 2 s): each repository size and cap, pooled and (2 files only: the old way
    costs minutes on 20k files) unpooled; then the fixed cost at 8, 16 and 32 subtasks of 0.5 s, cap 4, on the
    largest repository — it may not grow with the subtasks."""
    from benchmarks.bench_setup import _repo as generated

    rows: list[dict[str, Any]] = []
    growth: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ci-swarm-bench-pool-") as tmp:
        for size in files:
            repo = generated(Path(tmp) / f"r{size}", size)
            for cap in caps:
                for pooled in (True, False) if size <= 2_000 else (True,):
                    rows.append({"files": size, **_pool_run(repo.resolve(), 16, 2.0, cap, pooled)})
                    print(json.dumps(rows[-1]), flush=True)
        for n in (8, 16, 32):
            growth.append({"files": files[-1], **_pool_run(repo.resolve(), n, 0.5, 4, True)})
            print(json.dumps(growth[-1]), flush=True)
    return {"table_16x2s": rows, "fixed_cost_by_subtasks": growth}


if __name__ == "__main__":
    print(json.dumps(pool_table() if sys.argv[1:] == ["pool"] else main()))
