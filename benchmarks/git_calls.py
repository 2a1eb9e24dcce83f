"""Git processes per merge, counted by subcommand: ``python -m benchmarks.git_calls`` (not part of the suite).

Counts every ``git`` process started while merging (:func:`ci_swarm.git.counting`: each
:func:`ci_swarm.git.run`, and each long-lived process once), in five scenarios on small temp repositories:
the orchestrator's first wave (all branches started at the base), a dependent chain (each branch started at
the tip), conflicting branches, ``ci-swarm merge`` (:func:`merge_report`) and publishing's :func:`remerge`
onto a moved target. Prints one line per scenario: processes per merge and the subcommands. Counts, not
times: the figure is deterministic.
"""

from __future__ import annotations

import collections
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ci_swarm import git
from ci_swarm.merge import MergeQueue
from ci_swarm.merge_only import merge_report, remerge
from ci_swarm.models import MergePolicy
from tests.fixtures import commit, make_repo
from tests.merge_helpers import branch, lines

N = 8
INTEGRATION = "swarm/count"


def _base(tmp: Path) -> tuple[Path, str]:
    files = {f"f{i}.txt": lines(20) for i in range(N)}
    repo = make_repo(tmp / "repo", {**files, "shared.txt": lines(20)})
    return repo, git.head_commit(repo)


def _edit(i: int, shared: bool) -> dict[str, str | bytes | None]:
    path = "shared.txt" if shared else f"f{i}.txt"
    return {path: lines(20).replace("line 5\n", f"agent {i}\n")}


def first_wave(tmp: Path, shared: bool = False) -> tuple[int, collections.Counter[str]]:
    repo, base = _base(tmp)
    commits = [commit(repo, base, _edit(i, shared), subtask=f"s{i}") for i in range(N)]
    git.create_branch(repo, INTEGRATION, base)
    queue = MergeQueue(repo, INTEGRATION, base, MergePolicy(), {})
    with git.counting() as counts:
        for i, c in enumerate(commits):
            queue.merge(f"s{i}", c, base, i + 1)
    return N, counts


def chain(tmp: Path) -> tuple[int, collections.Counter[str]]:
    repo, base = _base(tmp)
    git.create_branch(repo, INTEGRATION, base)
    queue = MergeQueue(repo, INTEGRATION, base, MergePolicy(), {})
    merges: collections.Counter[str] = collections.Counter()
    for i in range(N):
        start = queue.tip
        c = commit(repo, start, _edit(i, False), subtask=f"s{i}")
        with git.counting() as counts:
            queue.merge(f"s{i}", c, start, i + 1)
        merges += counts
    return N, merges


def _agent_branches(repo: Path, base: str) -> list[str]:
    names = [f"agents/s{i}" for i in range(N)]
    for i, name in enumerate(names):
        branch(repo, name, commit(repo, base, _edit(i, False), subtask=f"s{i}"))
    return names


def merge_command(tmp: Path) -> tuple[int, collections.Counter[str]]:
    repo, base = _base(tmp)
    names = _agent_branches(repo, base)
    with git.counting() as counts:
        merge_report(repo, names, base, INTEGRATION, MergePolicy())
    return N, counts


def remerge_moved(tmp: Path) -> tuple[int, collections.Counter[str]]:
    repo, base = _base(tmp)
    names = _agent_branches(repo, base)
    report = merge_report(repo, names, base, INTEGRATION, MergePolicy())
    moved = commit(repo, base, {"NOTES.md": "upstream\n"})
    with git.counting() as counts:
        remerge(repo, report, moved)
    return N, counts


SCENARIOS: dict[str, Callable[[Path], tuple[int, collections.Counter[str]]]] = {
    "first wave, disjoint": first_wave,
    "first wave, one shared file": lambda tmp: first_wave(tmp, shared=True),
    "dependent chain": chain,
    "ci-swarm merge": merge_command,
    "remerge onto moved target": remerge_moved,
}


def main() -> int:
    for name, scenario in SCENARIOS.items():
        with tempfile.TemporaryDirectory(prefix="ci-swarm-gitcalls-") as tmp:
            merges, counts = scenario(Path(tmp))
        total = sum(counts.values())
        detail = ", ".join(f"{sub} {n}" for sub, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"{name:30} {total / merges:5.2f} per merge ({total} for {merges}): {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
