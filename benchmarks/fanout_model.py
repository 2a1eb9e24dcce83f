"""A model of the fan-out (issue #13): one runner holding every agent against one GitHub Actions job per
agent (``.github/workflows/swarm-fan-out.yml``), for CPU-bound agents, fed by per-job overhead measured on
this machine.

Measured (median of 3, on a copy of this repository):

* checkout — ``git clone --no-local`` of the project (what ``actions/checkout`` with ``fetch-depth: 0``
  transfers, without the network);
* install — ``python -m venv`` + ``pip install`` of ci-swarm from its source (``setup/action.yml``; from the
  machine's local wheel mirror, so without PyPI's download time);
* state fetch — ``git fetch`` of the integration branch and ``refs/swarm/<run>/state`` from a bare remote;
* clone — the agent's sandbox clone (``git clone --shared --no-checkout`` + checkout);
* bundle — ``git bundle create`` of the agent's one commit + ``git bundle verify`` + ``git fetch`` from it.

Modelled: agents of 30–300 s of CPU each (seeded, uniform), one core each. One runner with ``c`` cores and cap
``K`` is processor sharing: ``m = min(K, left)`` agents at once, each at ``min(1, c / m)`` of a core, plus one
install and one clone per agent. Fan-out: a plan job, then agent jobs on their own runners, at most ``K`` at
once, in matrix order, each ``queue + checkout + install + state fetch + clone + t + bundle``, then a land job
(``queue + checkout + install + state fetch + one bundle import per agent``). Merge and verification time are
the same on both sides and left out. The crossover is the smallest number of agents for which fan-out is
faster.

Run: ``python -m benchmarks.fanout_model`` (prints the Markdown for docs/performance.md).
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ci_swarm import git

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261207
CAPS = (1, 4, 16, 64)
CORES = (2, 4)
QUEUE_DELAYS = (0.0, 30.0)
AGENT_COUNTS = (4, 16, 64)


@dataclass(frozen=True)
class Overhead:
    """Seconds of one job's fixed costs, measured."""

    checkout: float
    install: float
    state_fetch: float
    clone: float
    bundle: float

    @property
    def agent_job(self) -> float:
        """An agent job's fixed cost, its queue delay aside."""
        return self.checkout + self.install + self.state_fetch + self.clone + self.bundle

    @property
    def land_job(self) -> float:
        return self.checkout + self.install + self.state_fetch


def _median(action: Callable[[int], object]) -> float:
    """The median of 3 timed calls, ``action(0)`` … ``action(2)``."""
    times = []
    for i in range(3):
        began = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _project(scratch: Path) -> Path:
    """A committed copy of this repository's tracked files (the work tree's own history left out)."""
    repo = scratch / "project"
    git.run(scratch, "clone", "--quiet", "--no-local", "--depth", "1", f"file://{ROOT}", str(repo))
    return repo


def _install(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(ROOT)], check=True)


def measure(scratch: Path) -> Overhead:
    project = _project(scratch)
    bare = scratch / "remote.git"
    git.run(scratch, "clone", "--quiet", "--bare", str(project), str(bare))
    base = git.rev_parse(bare, "HEAD")
    git.run(bare, "update-ref", "refs/heads/swarm/r1", base)
    git.run(bare, "update-ref", "refs/swarm/r1/state", base)
    refs = ["+refs/heads/swarm/r1:refs/heads/swarm/r1", "+refs/swarm/r1/state:refs/swarm/r1/state"]

    def checkout(i: int) -> None:
        git.run(scratch, "clone", "--quiet", "--no-local", str(bare), str(scratch / f"checkout{i}"))

    def state_fetch(i: int) -> None:
        git.run(scratch / f"checkout{i}", "fetch", "--quiet", "--no-tags", str(bare), *refs)

    def clone(i: int) -> None:
        dest = scratch / f"agent{i}"
        git.run(
            scratch, "clone", "--quiet", "--shared", "--no-checkout", str(scratch / f"checkout{i}"), str(dest)
        )
        git.run(dest, "checkout", "--quiet", "--detach", base)

    def bundle(i: int) -> None:
        work = scratch / f"agent{i}"
        (work / "AGENT_WORK.md").write_text(f"agent {i}\n")
        git.run(work, "add", "AGENT_WORK.md")
        git.run(work, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "--quiet", "-m", "work")
        git.run(work, "branch", "--quiet", "swarm/r1-agents/a")
        out = scratch / f"a{i}.bundle"
        git.run(work, "bundle", "create", "--quiet", str(out), f"^{base}", "swarm/r1-agents/a")
        land = scratch / f"checkout{i}"
        git.run(land, "bundle", "verify", "--quiet", str(out))
        git.run(land, "fetch", "--quiet", str(out), "+refs/heads/swarm/r1-agents/a:refs/ci-swarm/incoming/a")

    return Overhead(
        checkout=_median(checkout),
        install=_median(lambda i: _install(scratch / f"venv{i}")),
        state_fetch=_median(state_fetch),
        clone=_median(clone),
        bundle=_median(bundle),
    )


# --- the model ------------------------------------------------------------------------------------------


def agent_times(count: int, seed: int = SEED) -> list[float]:
    rng = random.Random(seed * 1000 + count)
    return [rng.uniform(30.0, 300.0) for _ in range(count)]


def one_runner(times: Sequence[float], cap: int, cores: int, overhead: Overhead) -> float:
    """Processor sharing on one runner: the first ``cap`` agents in plan order run, each at ``min(1, cores
    / running)`` of a core, the next starts when one finishes; plus one checkout + install, a clone per
    agent."""
    left = list(times)
    running: list[float] = []
    wall = 0.0
    while left or running:
        while left and len(running) < cap:
            running.append(left.pop(0))
        rate = min(1.0, cores / len(running))
        step = min(running) / rate
        wall += step
        running = [r - step * rate for r in running if r - step * rate > 1e-9]
    return overhead.checkout + overhead.install + wall + overhead.clone * len(times)


def fan_out(times: Sequence[float], cap: int, queue: float, overhead: Overhead) -> float:
    """Plan job, then agent jobs on their own runners (at most ``cap`` at once, in matrix order), then the
    land job importing one bundle per agent."""
    plan = queue + overhead.land_job
    slots = [0.0] * cap
    for t in times:
        slot = slots.index(min(slots))
        slots[slot] += queue + overhead.agent_job + t
    land = queue + overhead.land_job + overhead.bundle * len(times)
    return plan + max(slots) + land


def crossover(cap: int, cores: int, queue: float, overhead: Overhead, limit: int = 256) -> int | None:
    """The smallest number of agents for which fan-out is faster than one runner (None up to ``limit``)."""
    for count in range(1, limit + 1):
        times = agent_times(count)
        if fan_out(times, cap, queue, overhead) < one_runner(times, cap, cores, overhead):
            return count
    return None


def table(overhead: Overhead) -> str:
    lines = [
        "| agents | cap K | queue (s) | one runner, 2 cores (s) | one runner, 4 cores (s) | fan-out (s) "
        "| fan-out / one runner (2 / 4 cores) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for count in AGENT_COUNTS:
        times = agent_times(count)
        for cap in CAPS:
            for queue in QUEUE_DELAYS:
                one = [one_runner(times, cap, cores, overhead) for cores in CORES]
                fan = fan_out(times, cap, queue, overhead)
                lines.append(
                    f"| {count} | {cap} | {queue:g} | {one[0]:.0f} | {one[1]:.0f} | {fan:.0f} "
                    f"| {fan / one[0]:.2f} / {fan / one[1]:.2f} |"
                )
    lines += ["", "| cap K | queue (s) | crossover, 2 cores (agents) | crossover, 4 cores (agents) |"]
    lines.append("|---:|---:|---:|---:|")
    for cap in CAPS:
        for queue in QUEUE_DELAYS:
            found = [crossover(cap, cores, queue, overhead) for cores in CORES]
            shown = ["never (≤ 256)" if n is None else str(n) for n in found]
            lines.append(f"| {cap} | {queue:g} | {shown[0]} | {shown[1]} |")
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ci-swarm-fanout-model-") as scratch:
        overhead = measure(Path(scratch))
    print(
        f"measured per job (s): checkout {overhead.checkout:.2f}, install {overhead.install:.2f}, "
        f"state fetch {overhead.state_fetch:.3f}, clone {overhead.clone:.3f}, bundle {overhead.bundle:.3f}; "
        f"agent job {overhead.agent_job:.2f}, land job {overhead.land_job:.2f}"
    )
    print()
    print(table(overhead))


if __name__ == "__main__":
    main()
