"""Merge replay: real two-parent merges of public projects re-done by the merge engine and compared with git.

For each repository of the corpus (a directory of git directories fetched beforehand — CI has no network),
a fixed-seed sample of the two-parent merges reachable from its HEAD (single merge base only) is replayed
the way ``ci-swarm merge`` does it: the first parent is the base branch, the second parent the branch merged
onto it, its start the merge base (:func:`ci_swarm.merge_only.merge_branches`). Each replay is compared with
``git merge-tree --write-tree`` of the two parents and with the merge the project's people committed:

* conflicted files agree with git: the merge's ``Conflict`` records (``insertions: keep``, so every
  conflicting region is recorded) name exactly git's conflicted files;
* strict false-clean: git-conflicted files (post-rename name) the predictor called clean — must be 0;
  precision: the share of predicted files (post-rename names; a renamed file's old name is not counted),
  over clean and conflicted merges, that git conflicted on;
* clean trees identical: where git merges cleanly, the engine's tree equals git's;
* conflicted files byte-identical to the human merge, with ``insertions: both`` and with ``keep``, and the
  insert/insert regions joined.

The engine works in a throwaway repository that borrows the corpus's objects (``alternates``): the
corpus is only read. Run: ``python -m benchmarks.bench_replay CORPUS [--per-repo N] [--seed S] [--write]``
(``--write`` puts the section into docs/performance.md); ``make bench`` runs it with ``REPLAY_CORPUS`` and
skips it, saying so, when that directory is absent.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.merge_only import merge_branches
from ci_swarm.models import Insertions, MergePolicy, MergeRecord
from ci_swarm.overlap import FileStatus, changes

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261207
PER_REPO = 150
SECTION = "## Merge replay"


@dataclass
class Tally:
    """One repository's figures (counts; shares are computed when rendered)."""

    name: str
    merges: int = 0
    criss_cross_skipped: int = 0
    range: str = ""
    clean: int = 0
    clean_identical: int = 0
    clean_equal_human: int = 0
    conflicted: int = 0
    agree: int = 0
    git_files: int = 0
    false_clean: int = 0
    predicted: int = 0
    predicted_true: int = 0
    human_both: int = 0
    human_keep: int = 0
    joined: int = 0
    misses: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)


def repositories(corpus: Path) -> list[Path]:
    """The git directories of ``corpus``: each child that is one, or holds one as ``repo`` or ``.git``."""
    found = []
    for child in sorted(p for p in corpus.iterdir() if p.is_dir()):
        for candidate in (child, child / "repo", child / ".git"):
            if (candidate / "objects").is_dir() and (candidate / "HEAD").is_file():
                found.append(candidate)
                break
    return found


def two_parent_merges(repo: Path) -> tuple[list[str], str]:
    """The two-parent merges reachable from HEAD, newest first, and 'oldest .. newest' (commit dates)."""
    merges = git.run(repo, "rev-list", "--merges", "--max-parents=2", "--date-order", "HEAD").text.split()
    span = f"{git.run(repo, 'log', '-1', '--format=%h (%cs)', merges[-1]).text.strip()}"
    span += f" .. {git.run(repo, 'log', '-1', '--format=%h (%cs)', merges[0]).text.strip()}"
    span += f", HEAD {git.run(repo, 'log', '-1', '--format=%h', 'HEAD').text.strip()}"
    return merges, span


def git_conflicted(work: Path, merge: str) -> bool:
    """git's own verdict on re-merging ``merge``'s two parents."""
    return not git.merge_tree(work, f"{merge}^1", f"{merge}^2").clean


@dataclass(frozen=True)
class Replay:
    record: MergeRecord
    tip: str


def replay(work: Path, first: str, second: str, insertions: Insertions, n: int) -> Replay:
    """``ci-swarm merge`` of ``second`` onto ``first`` (integration branch at ``first``)."""
    name = f"replay/{n}-{insertions.value}"
    git.run(work, "update-ref", f"refs/heads/{name}-theirs", second)
    tip, records, _ = merge_branches(
        work, [f"{name}-theirs"], first, name, MergePolicy(insertions=insertions)
    )
    return Replay(records[0], tip)


def old_names(work: Path, base: str, *sides: str) -> set[str]:
    """Old paths of files renamed on either side (the predictor names them too; git reports the new)."""
    return {
        c.path
        for side in sides
        for c in changes(git.merge_diff(work, base, side)).values()
        if c.status is FileStatus.RENAMED
    }


def measure(tally: Tally, work: Path, merge: str, n: int) -> None:
    first, second = git.run(work, "rev-parse", f"{merge}^1", f"{merge}^2").text.split()
    bases = git.run(work, "merge-base", "--all", first, second, ok=(0, 1)).text.split()
    if len(bases) != 1:
        tally.criss_cross_skipped += 1
        return
    truth = git.merge_tree(work, first, second)
    keep = replay(work, first, second, Insertions.KEEP, n)
    conflicted = set(truth.conflicted_paths)
    predicted = set(keep.record.predicted_conflicts) - old_names(work, bases[0], first, second)
    tally.git_files += len(conflicted)
    tally.false_clean += len(conflicted - predicted)
    tally.misses += [f"{merge[:10]}:{p}" for p in sorted(conflicted - predicted)]
    tally.predicted += len(predicted)
    tally.predicted_true += len(predicted & conflicted)
    if truth.clean:
        tally.clean += 1
        tree = git.tree_of(work, keep.tip)
        tally.clean_identical += tree == truth.tree
        tally.clean_equal_human += tree == git.tree_of(work, merge)
        return
    tally.conflicted += 1
    recorded = {c.path for c in keep.record.conflicts}
    if recorded == conflicted:
        tally.agree += 1
    else:
        tally.disagreements.append(f"{merge[:10]}: git {sorted(conflicted)} engine {sorted(recorded)}")
    both = replay(work, first, second, Insertions.BOTH, n)
    tally.joined += both.record.joined
    for path in conflicted:
        human = git.try_read_blob(work, merge, path)
        tally.human_keep += git.try_read_blob(work, keep.tip, path) == human
        tally.human_both += git.try_read_blob(work, both.tip, path) == human


def borrowed(repo: Path, root: Path) -> Path:
    """A repository whose object store falls back on ``repo``'s (alternates): writes stay here. Not bare:
    resolving a deletion runs ``git update-index``, which needs a work tree (it stays empty)."""
    work = root / repo.parent.name
    git.run(root, "init", "--quiet", str(work))
    alternates = work / ".git" / "objects" / "info" / "alternates"
    alternates.write_text(str((repo / "objects").resolve()) + "\n")
    git.run(work, "config", "user.name", "Bench")
    git.run(work, "config", "user.email", "bench@example.com")
    return work


def run_repo(repo: Path, root: Path, per_repo: int, seed: int) -> tuple[Tally, Tally]:
    """Two samples of ``per_repo`` merges (fixed seed): among all merges, and among those git conflicts on."""
    name = (repo.parent.name if repo.name in ("repo", ".git") else repo.name).replace("+", "/")
    merges, span = two_parent_merges(repo)
    work = borrowed(repo, root)
    rng = random.Random(seed)
    uniform = rng.sample(merges, min(per_repo, len(merges)))
    pool = [m for m in merges if git_conflicted(work, m)]
    conflicted = rng.sample(pool, min(per_repo, len(pool)))
    tallies: list[Tally] = []
    for label, chosen in (("all merges", uniform), (f"conflicted merges ({len(pool)} in all)", conflicted)):
        tally = Tally(f"{name}, {label}", merges=len(chosen), range=span)
        for n, merge in enumerate(chosen):
            measure(tally, work, merge, n + (0 if tallies else 100_000))
        tallies.append(tally)
    print(f"  {name}: {len(merges)} merges, {len(pool)} conflicted, {per_repo} sampled of each", flush=True)
    return tallies[0], tallies[1]


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"


def figures(tallies: Sequence[Tally], seed: int, per_repo: int, seconds: float) -> dict[str, Any]:
    def total(attr: str) -> int:
        return sum(getattr(t, attr) for t in tallies)

    repos = {
        t.name: {
            "merges_sampled": t.merges,
            "commit_range": t.range,
            "criss_cross_skipped": t.criss_cross_skipped,
            "clean": t.clean,
            "conflicted": t.conflicted,
            "conflicted_files": t.git_files,
        }
        for t in tallies
    }
    return {
        "repos": repos,
        "seed": seed,
        "per_repo": per_repo,
        "conflicted_merges_agreeing_with_git": _share(total("agree"), total("conflicted")),
        "strict_false_clean_files": total("false_clean"),
        "precision": _share(total("predicted_true"), total("predicted")),
        "clean_trees_identical_to_git": _share(total("clean_identical"), total("clean")),
        "clean_trees_equal_to_the_human_merge": _share(total("clean_equal_human"), total("clean")),
        "conflicted_files_identical_to_human_insertions_both": _share(
            total("human_both"), total("git_files")
        ),
        "conflicted_files_identical_to_human_insertions_keep": _share(
            total("human_keep"), total("git_files")
        ),
        "insert_insert_regions_joined": total("joined"),
        "false_clean_files": [m for t in tallies for m in t.misses],
        "disagreements": [d for t in tallies for d in t.disagreements],
        "wall_seconds": round(seconds, 1),
    }


def section(groups: dict[str, dict[str, Any]]) -> str:
    first = next(iter(groups.values()))
    lines = [SECTION, "", (__doc__ or "").strip().split("\n\n")[0], ""]
    lines += [
        "Measured by `python -m benchmarks.bench_replay CORPUS --write` "
        f"(seed {first['seed']}, {first['per_repo']} merges per repository and sample: one drawn among all "
        "two-parent merges reachable from HEAD, one among those git conflicts on), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {first['wall_seconds']} s in all.",
        "",
    ]
    for data in groups.values():
        lines += _table(data)
    return "\n".join(lines) + "\n"


def _table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| repository, sample | merges sampled | commit range (oldest .. newest merge, HEAD) "
        "| clean | conflicted | conflicted files | criss-cross skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in data["repos"].items():
        lines.append(
            f"| {name} | {r['merges_sampled']} | {r['commit_range']} | {r['clean']} | {r['conflicted']} "
            f"| {r['conflicted_files']} | {r['criss_cross_skipped']} |"
        )
    lines += ["", "| figure | value |", "|---|---|"]
    for key, value in data.items():
        if key not in ("repos", "seed", "per_repo", "wall_seconds"):
            shown = json.dumps(value) if isinstance(value, list) else value
            lines.append(f"| {key.replace('_', ' ')} | {shown} |")
    return [*lines, ""]


def write(doc: Path, text: str) -> None:
    """Replace (or append) the :data:`SECTION` of ``doc``; it ends at the next ``## `` heading."""
    old = doc.read_text(encoding="utf-8") if doc.exists() else ""
    start = old.find(f"\n{SECTION}\n")
    if start < 0:
        doc.write_text(old.rstrip("\n") + "\n\n" + text, encoding="utf-8")
        return
    end = old.find("\n## ", start + 1)
    rest = old[end + 1 :] if end >= 0 else ""
    doc.write_text(old[: start + 1] + text + ("\n" + rest if rest else ""), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_replay", description=__doc__)
    parser.add_argument("corpus", type=Path, help="directory of git directories (fetched beforehand)")
    parser.add_argument("--per-repo", type=int, default=PER_REPO)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--write", action="store_true", help="put the section into docs/performance.md")
    args = parser.parse_args(argv)
    repos = repositories(args.corpus) if args.corpus.is_dir() else []
    if not repos:
        print(f"merge replay skipped: no corpus at {args.corpus} (fetch repositories there first)")
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        pairs = [run_repo(repo, Path(tmp), args.per_repo, args.seed) for repo in repos]
    seconds = time.perf_counter() - started
    data = {
        "all merges": figures([p[0] for p in pairs], args.seed, args.per_repo, seconds),
        "conflicted merges": figures([p[1] for p in pairs], args.seed, args.per_repo, seconds),
    }
    text = section(data)
    print(text)
    print(json.dumps(data))
    if args.write:
        write(ROOT / "docs" / "performance.md", text)
        print("wrote the merge replay section of docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
