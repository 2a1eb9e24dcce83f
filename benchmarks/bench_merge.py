"""Merge phase: object-database merges (the merge queue) vs the same merges through a checkout.

* speedup: 32 agent branches (each editing its own files) merged onto a fresh integration branch of a
  generated 20k-file repository, (a) by :class:`ci_swarm.merge.MergeQueue` (``merge-tree`` +
  ``commit-tree`` + ``update-ref``, overlap prediction included) and (b) by ``git worktree add`` of the
  integration branch + ``git merge --no-ff`` per branch; ratio (b) / (a), target ≥ 10×. Both produce the
  same final tree (checked).
* size: the object-DB merges of the same 32 branches on a 2k-file and on a 20k-file repository; cost
  ratio 20k / 2k, target ≤ 1.5× (the cost grows with the changed paths, not with the repository).

Run: ``python -m benchmarks.bench_merge`` (prints a table; the last line is the figures as JSON).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.merge import MergeQueue
from ci_swarm.models import MergePolicy, MergeStatus

BRANCHES = 32
FILES_PER_DIR = 100
EDITS_PER_BRANCH = 3
IDENT = "Bench <bench@example.com> 1700000000 +0000"


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def _path(i: int) -> str:
    return f"src/d{i // FILES_PER_DIR:03}/f{i % FILES_PER_DIR:02}.txt"


def _content(i: int, tag: str = "") -> str:
    body = "".join(f"file {i} line {k}\n" for k in range(12))
    return body.replace("line 5\n", f"line 5 {tag}\n") if tag else body


def build_repo(root: Path, files: int) -> tuple[Path, str, list[tuple[str, str, str]]]:
    """A repository of ``files`` files in nested directories, with BRANCHES agent branches (each editing
    its own files), built in one ``git fast-import`` stream. Returns (repo, base, [(id, commit, start)])."""
    repo = root / f"repo-{files}"
    repo.mkdir(parents=True)
    git.run(repo, "init", "--quiet", "--initial-branch=main")
    stream = [b"commit refs/heads/main\nmark :1\ncommitter " + IDENT.encode() + b"\n" + _data("base")]
    stream += [b"M 100644 inline " + _path(i).encode() + b"\n" + _data(_content(i)) for i in range(files)]
    step = files // (BRANCHES * EDITS_PER_BRANCH)
    for b in range(BRANCHES):
        message = f"agent {b}\n\nSwarm-Subtask: s{b:02}"
        stream.append(f"commit refs/heads/agents/s{b:02}\ncommitter {IDENT}\n".encode() + _data(message))
        stream.append(b"from :1\n")
        for e in range(EDITS_PER_BRANCH):
            i = (b * EDITS_PER_BRANCH + e) * step
            stream.append(f"M 100644 inline {_path(i)}\n".encode() + _data(_content(i, f"by s{b:02}")))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(stream), check=True)
    base = git.rev_parse(repo, "main")
    subs = [(f"s{b:02}", git.rev_parse(repo, f"agents/s{b:02}"), base) for b in range(BRANCHES)]
    return repo, base, subs


def object_db(repo: Path, base: str, subs: list[tuple[str, str, str]], name: str) -> tuple[float, str]:
    """Seconds for the merge queue to merge every branch onto a new integration branch; final tip."""
    git.create_branch(repo, name, base)
    started = time.perf_counter()
    queue = MergeQueue(repo, name, base, MergePolicy(), {s: "agent" for s, _, _ in subs})
    records = [queue.merge(s, commit, start, n) for n, (s, commit, start) in enumerate(subs, 1)]
    seconds = time.perf_counter() - started
    assert all(r.status is MergeStatus.CLEAN for r in records)
    return seconds, queue.tip


def checkout(repo: Path, base: str, subs: list[tuple[str, str, str]], work: Path) -> tuple[float, str]:
    """Seconds for ``worktree add`` + ``merge --no-ff`` of every branch; final commit."""
    git.create_branch(repo, "swarm/checkout", base)
    tree = work / "checkout"
    started = time.perf_counter()
    subprocess.run(["git", "worktree", "add", "--quiet", str(tree), "swarm/checkout"], cwd=repo, check=True)
    who = ["-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    for sub, commit, _ in subs:
        argv = ["git", *who, "merge", "--no-ff", "--quiet", "-m", f"Merge subtask {sub}", commit]
        subprocess.run(argv, cwd=tree, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    tip = git.rev_parse(tree, "HEAD")
    git.worktree_remove(repo, tree)
    return seconds, tip


def _tree(repo: Path, commit: str) -> str:
    return git.out(repo, "rev-parse", f"{commit}^{{tree}}")


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ci-swarm-bench-merge-") as tmp:
        root = Path(tmp)
        small, small_base, small_subs = build_repo(root, 2_000)
        big, big_base, big_subs = build_repo(root, 20_000)
        # warm the object stores (first reads pay for page cache), then measure side by side
        object_db(small, small_base, small_subs, "swarm/warm")
        object_db(big, big_base, big_subs, "swarm/warm")
        small_s = min(object_db(small, small_base, small_subs, f"swarm/odb{k}")[0] for k in range(2))
        runs = [object_db(big, big_base, big_subs, f"swarm/odb{k}") for k in range(2)]
        big_s, big_tip = min(runs)
        checkout_s, checkout_tip = checkout(big, big_base, big_subs, root)
        same_tree = _tree(big, big_tip) == _tree(big, checkout_tip)
    result = {
        "branches": BRANCHES,
        "files": 20_000,
        "object_db_s": round(big_s, 3),
        "checkout_s": round(checkout_s, 3),
        "speedup": round(checkout_s / big_s, 1),
        "per_merge_ms": round(big_s / BRANCHES * 1000, 1),
        "same_final_tree": same_tree,
        "object_db_2k_s": round(small_s, 3),
        "object_db_20k_s": round(big_s, 3),
        "size_cost_ratio": round(big_s / small_s, 2),
    }
    print(f"{'figure':<42} {'value':>10}")
    print(f"{'object-DB merges, 32 branches, 20k files':<42} {result['object_db_s']:>9}s")
    print(f"{'worktree add + merge --no-ff, same merges':<42} {result['checkout_s']:>9}s")
    print(f"{'speedup (target >= 10x)':<42} {result['speedup']:>9}x")
    print(f"{'same final tree':<42} {same_tree!s:>10}")
    print(f"{'object-DB merges, 2k files':<42} {result['object_db_2k_s']:>9}s")
    print(f"{'cost ratio 20k / 2k (target <= 1.5x)':<42} {result['size_cost_ratio']:>9}x")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
