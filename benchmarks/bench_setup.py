"""Per-agent setup: a clone per agent (``clones.GitClones.make``: branch, ``git clone --shared
--no-checkout``, remote removed, hooks path, detached checkout, index copied) against the linked worktree it
replaced (``git worktree add -b``), side by side in one run, on a generated repository of 20k files and on a
2k-file one (the size of a real project's tree).

* per_agent: the median of 3 setups of one workspace, each kind, each size (ms), and clone / worktree;
* sandbox_handover: what the ``user`` sandbox adds to one agent's setup — handing its clone to the leased
  account before the process starts and back afterwards (``sandbox.prepare_dir`` + ``reclaim_dir``), median of
  3, as a share of the ``git worktree add`` the clone replaced (issue #9: at most 10%);
* batch_16: 16 workspaces made in parallel (16 threads; clones share nothing, so no lock) against the same 16
  made one after the other, and 16 worktree adds (which had to be serialized: concurrent adds read each
  other's half-written ``.git/worktrees/<id>``), seconds.

Run: ``python -m benchmarks.bench_setup`` (or ``python -m benchmarks setup``).
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from ci_swarm import git, sandbox
from ci_swarm.clones import GitClones
from ci_swarm.models import Subtask

SIZES = {"2k_files": 2_000, "20k_files": 20_000}
BATCH = 16


def _repo(root: Path, files: int) -> Path:
    """``files`` small files in 100-file directories, one commit."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git.run(repo, "init", "--quiet", "--initial-branch=main")
    for i in range(files):
        path = repo / f"d{i // 100:03}" / f"f{i:05}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# file {i}\nVALUE = {i}\n")
    git.commit_all(repo, "base\n", git.SWARM_IDENTITY)
    return repo


def _timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


class _Bench:
    def __init__(self, repo: Path, scratch: Path) -> None:
        self.repo, self.scratch, self.start = repo, scratch, git.rev_parse(repo, "main")
        self._names = itertools.count(1)  # next() is atomic: names stay unique across threads

    def _name(self) -> str:
        return f"s{next(self._names)}"

    def clone(self, spaces: GitClones) -> str:
        name = self._name()
        spaces.make(Subtask(name, "builder", name, ""), f"swarm/b-agents/{name}", self.start)
        return name

    def worktree(self) -> str:
        name = self._name()
        where = self.scratch / "wt" / name
        git.worktree_add_new_branch(self.repo, where, f"swarm/w-agents/{name}", self.start)
        return name

    def clones(self) -> GitClones:
        return GitClones(self.repo, self.scratch / "clones", "bench")

    def drop_worktrees(self) -> None:
        shutil.rmtree(self.scratch / "wt", ignore_errors=True)
        git.worktree_prune(self.repo)


def _per_agent(bench: _Bench) -> dict[str, float]:
    clone_times, worktree_times = [], []
    for _ in range(3):
        spaces = bench.clones()
        clone_times.append(_timed(partial(bench.clone, spaces)))
        spaces.close()
        shutil.rmtree(bench.scratch / "clones", ignore_errors=True)
        worktree_times.append(_timed(bench.worktree))
        bench.drop_worktrees()
    clone, worktree = statistics.median(clone_times), statistics.median(worktree_times)
    return {
        "clone_ms": round(clone * 1000, 1),
        "worktree_ms": round(worktree * 1000, 1),
        "clone_over_worktree": round(clone / worktree, 2),
    }


def _handover(bench: _Bench, worktree_ms: float) -> dict[str, float]:
    """prepare_dir + reclaim_dir of one fresh clone, the sandbox's own cost per agent start."""
    account = sandbox.ensure_account(sandbox.SandboxPolicy("user").account_name(0))
    times = []
    for _ in range(3):
        spaces = bench.clones()
        name = bench.clone(spaces)
        root = next(p for p in (bench.scratch / "clones").rglob(name) if p.is_dir())
        times.append(_timed(partial(_hand_over_and_back, root, account)))
        spaces.close()
        shutil.rmtree(bench.scratch / "clones", ignore_errors=True)
    handover_ms = statistics.median(times) * 1000
    share = round(handover_ms / worktree_ms, 3)
    return {"handover_ms": round(handover_ms, 1), "handover_over_worktree": share}


def _hand_over_and_back(root: Path, account: sandbox.Account) -> None:
    sandbox.prepare_dir(root, account)
    sandbox.reclaim_dir(root, account)


def _batch(bench: _Bench) -> dict[str, float]:
    spaces = bench.clones()
    with ThreadPoolExecutor(BATCH) as pool:
        parallel = _timed(lambda: list(pool.map(lambda _: bench.clone(spaces), range(BATCH))))
    spaces.close()
    shutil.rmtree(bench.scratch / "clones", ignore_errors=True)
    spaces = bench.clones()
    serial = _timed(lambda: [bench.clone(spaces) for _ in range(BATCH)])
    spaces.close()
    shutil.rmtree(bench.scratch / "clones", ignore_errors=True)
    worktrees = _timed(lambda: [bench.worktree() for _ in range(BATCH)])
    bench.drop_worktrees()
    return {
        "clones_parallel_s": round(parallel, 2),
        "clones_serial_s": round(serial, 2),
        "serial_over_parallel": round(serial / parallel, 2),
        "worktrees_serial_s": round(worktrees, 2),
    }


def main() -> dict[str, Any]:
    results: dict[str, Any] = {"per_agent": {}, "sandbox_handover": {}, "batch_16": {}}
    for label, files in SIZES.items():
        with tempfile.TemporaryDirectory(prefix="ci-swarm-bench-setup-") as tmp:
            bench = _Bench(_repo(Path(tmp), files), Path(tmp))
            results["per_agent"][label] = _per_agent(bench)
            worktree_ms = results["per_agent"][label]["worktree_ms"]
            results["sandbox_handover"][label] = _handover(bench, worktree_ms)
            print(label, json.dumps(results["sandbox_handover"][label]))
            results["batch_16"][label] = _batch(bench)
            print(label, json.dumps(results["per_agent"][label]), json.dumps(results["batch_16"][label]))
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
