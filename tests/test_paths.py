"""The indexed ownership overlap, dependency reachability and serialization against all-pairs references
on random plans (fixed seeds): the fast paths report exactly what comparing every pair reports."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from ci_swarm.dag import Reach, find_cycle, reachability, topological_order
from ci_swarm.models import Plan, Subtask
from ci_swarm.paths import (
    GlobIndex,
    globs_may_overlap,
    literal_prefix,
    ownership_overlaps,
    serialize_overlaps,
)
from ci_swarm.shard import shard_plan

SEGMENTS = ("src", "a", "b", "ab", "x.py", "*", "**", "a*", "*.py", "?", "b?", "tests")


def random_glob(rng: random.Random) -> str:
    parts = [rng.choice(SEGMENTS) for _ in range(rng.randint(1, 4))]
    glob = "/".join(parts)
    return rng.choice(("", "/")) + glob + rng.choice(("", "", "/"))


def random_plan(rng: random.Random, size: int) -> Plan:
    subtasks = []
    for i in range(size):
        earlier = [f"s{j}" for j in range(i)]
        deps = tuple(rng.sample(earlier, k=min(len(earlier), rng.choice((0, 0, 1, 2)))))
        paths = tuple(random_glob(rng) for _ in range(rng.randint(0, 3)))
        subtasks.append(Subtask(id=f"s{i}", role="builder", title="t", paths=paths, depends_on=deps))
    return Plan(task="t", subtasks=tuple(subtasks))


def brute_force_overlaps(plan: Plan) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The quadratic definition: every pair in plan order, concurrency from full reachability."""
    reach = reachability({s.id: s.depends_on for s in plan.subtasks})
    found = []
    subs = plan.subtasks
    for i, a in enumerate(subs):
        for b in subs[i + 1 :]:
            if a.id in reach[b.id] or b.id in reach[a.id]:
                continue
            labels: list[str] = []
            for pa in a.paths:
                for pb in b.paths:
                    if globs_may_overlap(pa, pb):
                        label = pa if pa == pb else f"{pa} ~ {pb}"
                        if label not in labels:
                            labels.append(label)
            if labels:
                found.append((a.id, b.id, tuple(labels)))
    return tuple(found)


@pytest.mark.parametrize("seed", range(25))
def test_indexed_overlaps_equal_the_all_pairs_reference(seed: int) -> None:
    plan = random_plan(random.Random(seed), size=random.Random(seed).randint(2, 25))
    expected = brute_force_overlaps(plan)
    assert ownership_overlaps(plan) == expected


def test_the_random_plans_hold_overlapping_and_disjoint_pairs() -> None:
    # the reference comparison above has teeth only if the random plans hold both outcomes
    overlapping = disjoint = 0
    for seed in range(10):
        plan = random_plan(random.Random(seed), 15)
        reported = {(a, b) for a, b, _ in brute_force_overlaps(plan)}
        owning = [s.id for s in plan.subtasks if s.paths]
        pairs = {(a, b) for i, a in enumerate(owning) for b in owning[i + 1 :]}
        overlapping += len(reported)
        disjoint += len(pairs - reported)
    assert overlapping > 0 and disjoint > 0


@pytest.mark.parametrize("seed", range(20))
def test_every_overlapping_glob_pair_is_a_candidate(seed: int) -> None:
    rng = random.Random(1000 + seed)
    globs = [random_glob(rng) for _ in range(30)]
    index = GlobIndex()
    for k, glob in enumerate(globs):
        index.add(glob, (k, 0))
    candidates = {frozenset((a[0], b[0])) for a, b in index.candidate_pairs()}
    pairs = [frozenset((i, j)) for i in range(30) for j in range(i + 1, 30)]
    assert len(candidates) == len(set(candidates))
    for pair in pairs:
        i, j = sorted(pair)
        if globs_may_overlap(globs[i], globs[j]):
            assert pair in candidates, (globs[i], globs[j])


def test_unrelated_directories_and_files_are_never_compared() -> None:
    index = GlobIndex()
    globs = (
        "src/a/x.py",
        "src/b/y.py",
        "docs/**",
        "src/a/**/*.py",
        "**/*.md",
        "src/a/test_1*",
        "src/a/test_2*",
    )
    for k, glob in enumerate(globs):
        index.add(glob, (k, 0))
    pairs = {frozenset((a[0], b[0])) for a, b in index.candidate_pairs()}
    # the root glob meets everything; src/a/** meets what is under src/a; siblings never meet
    assert pairs == {
        frozenset(p) for p in ((4, 0), (4, 1), (4, 2), (4, 3), (4, 5), (4, 6), (3, 0), (3, 5), (3, 6))
    }


def test_literal_prefix() -> None:
    assert literal_prefix("/src/app/**/*.py") == "src/app/"
    assert literal_prefix("src/app/test_*.py") == "src/app/test_"
    assert literal_prefix("src/app/x.py/") == "src/app/x.py"
    assert literal_prefix("*.py") == ""


def test_sharded_plans_are_disjoint() -> None:
    files = [f"pkg{i % 7}/sub{i % 3}/m{i}.py" for i in range(700)]
    plan = shard_plan(files, "**/*.py", 8, "modernise")
    assert ownership_overlaps(plan) == ()


@pytest.mark.parametrize("seed", range(20))
def test_reach_agrees_with_reachability(seed: int) -> None:
    plan = random_plan(random.Random(seed), 30)
    deps = {s.id: s.depends_on for s in plan.subtasks}
    reach, slow = Reach(deps), reachability(deps)
    for a in deps:
        assert reach.ancestors(a) == slow[a]
        for b in deps:
            assert reach.depends(a, b) is (b in slow[a])


@pytest.mark.parametrize("seed", range(20))
def test_serialized_plans_keep_no_concurrent_overlap_and_no_cycle(seed: int) -> None:
    plan = random_plan(random.Random(seed), 20)
    serial = serialize_overlaps(plan)
    deps = {s.id: s.depends_on for s in serial.subtasks}
    assert find_cycle(deps) == ()
    assert ownership_overlaps(serial) == ()
    assert brute_force_overlaps(serial) == ()
    added = _added_edges(plan.subtasks, serial.subtasks)
    order = [s.id for s in plan.subtasks]
    assert all(order.index(dep) < order.index(sub) for sub, dep in added)


def _added_edges(before: Sequence[Subtask], after: Sequence[Subtask]) -> list[tuple[str, str]]:
    return [
        (b.id, dep)
        for a, b in zip(before, after, strict=True)
        for dep in b.depends_on
        if dep not in a.depends_on
    ]


def test_long_chains_need_no_recursion() -> None:
    subtasks = tuple(
        Subtask(id=f"s{i}", role="r", title="t", depends_on=(f"s{i - 1}",) if i else ()) for i in range(5000)
    )
    plan = Plan(task="t", subtasks=tuple(reversed(subtasks)))
    assert topological_order(plan) == tuple(f"s{i}" for i in range(5000))
    assert Reach({s.id: s.depends_on for s in subtasks}).depends("s4999", "s0")


def test_owned_paths_matcher_agrees_with_the_one_pattern_rule() -> None:
    """matches_any (a set of literal paths plus one regex) gives what checking pattern by pattern gives."""
    import random

    from ci_swarm.workspace import OwnedPaths, match_one

    rng = random.Random(20261207)
    names = ["src", "a", "b.py", "c.txt", "docs", "x y", "ü.md"]
    globs = ["*", "**", "*.py", "src/*", "src/**", "**/b.py", "d?cs", "[ab]*"]

    def path(depth: int) -> str:
        return "/".join(rng.choice(names) for _ in range(depth))

    for _ in range(400):
        patterns = [path(rng.randint(1, 3)) for _ in range(rng.randint(0, 6))]
        patterns += rng.sample(globs, rng.randint(0, 2))
        rng.shuffle(patterns)
        matcher = OwnedPaths(patterns)
        for _ in range(10):
            candidate = path(rng.randint(1, 4))
            assert matcher.covers(candidate) == any(match_one(candidate, p) for p in patterns), (
                candidate,
                patterns,
            )
