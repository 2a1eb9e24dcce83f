from __future__ import annotations

from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.dag import waves
from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import AgentSpec
from ci_swarm.plan import freeze, validate
from ci_swarm.shard import select, shard_plan, split
from tests.fixtures import make_repo

FILES = (
    "README.md",
    "src/b.py",
    "src/a.py",
    "src/pkg/c.py",
    "src/pkg/deep/d.py",
    "src/pkg/e.txt",
    "tests/test_a.py",
    "setup.py",
)


def test_glob_double_star_spans_directories_and_results_are_sorted() -> None:
    assert select(FILES, "src/**/*.py") == ("src/a.py", "src/b.py", "src/pkg/c.py", "src/pkg/deep/d.py")
    assert select(FILES, "src/*.py") == ("src/a.py", "src/b.py")
    assert select(FILES, "**/*.py") == (
        "setup.py",
        "src/a.py",
        "src/b.py",
        "src/pkg/c.py",
        "src/pkg/deep/d.py",
        "tests/test_a.py",
    )
    assert select(FILES, "src/pkg") == ("src/pkg/c.py", "src/pkg/deep/d.py", "src/pkg/e.txt")
    assert select([*FILES, "src/a.py"], "src/a.py") == ("src/a.py",)


def test_split_is_balanced_and_contiguous() -> None:
    items = [f"f{i:02d}" for i in range(10)]
    chunks = split(items, 4)
    assert [len(c) for c in chunks] == [3, 3, 2, 2]
    assert [x for c in chunks for x in c] == items
    for n in range(1, 13):
        sizes = [len(c) for c in split(items, n)]
        assert max(sizes) - min(sizes) <= 1
        assert sum(sizes) == 10
        assert len(sizes) == min(n, 10)


def test_shard_plan_shape() -> None:
    agent = AgentSpec("command", freeze({"run": ["aider", "--message", "{instructions}"]}))
    plan = shard_plan(FILES, "**/*.py", 4, "Add type hints", agent=agent, role="refactorer")
    assert [s.id for s in plan.subtasks] == ["shard-1", "shard-2", "shard-3", "shard-4"]
    assert [s.paths for s in plan.subtasks] == [
        ("setup.py", "src/a.py"),
        ("src/b.py", "src/pkg/c.py"),
        ("src/pkg/deep/d.py",),
        ("tests/test_a.py",),
    ]
    first = plan.subtasks[0]
    assert first.role == "refactorer"
    assert first.agent is agent
    assert first.instructions.startswith("Add type hints\n")
    assert "- setup.py\n- src/a.py" in first.instructions
    assert "src/b.py" not in first.instructions
    assert first.title == "Add type hints (2 files, shard 1/4)"
    assert plan.task == "Add type hints"
    assert validate(plan) == ()  # disjoint shards: no overlap warnings
    assert waves(plan) == (tuple(s.id for s in plan.subtasks),)


def test_fewer_subtasks_when_fewer_files() -> None:
    plan = shard_plan(FILES, "src/*.py", 8, "lint")
    assert [s.id for s in plan.subtasks] == ["shard-1", "shard-2"]
    assert plan.subtasks[1].title == "lint (1 file, shard 2/2)"


def test_deterministic_whatever_the_input_order() -> None:
    a = shard_plan(FILES, "**/*.py", 3, "t")
    b = shard_plan(tuple(reversed(FILES)), "**/*.py", 3, "t")
    assert a == b


def test_no_match_and_bad_arguments() -> None:
    with pytest.raises(PlanError, match=r"no file matches '\*\*/\*\.rs': nothing to shard"):
        shard_plan(FILES, "**/*.rs", 2, "t")
    with pytest.raises(UsageError, match="at least 1"):
        shard_plan(FILES, "**/*.py", 0, "t")
    with pytest.raises(UsageError, match="needs a task"):
        shard_plan(FILES, "**/*.py", 2, "  ")


def test_shards_from_a_real_repository(tmp_path: Path) -> None:
    names = ("lib/x.py", "lib/y.py", "lib/sub/z.py", "docs/index.md")
    repo = make_repo(tmp_path / "repo", {name: f"# {name}\n" for name in names})
    plan = shard_plan(git.tree_files(repo), "lib/**/*.py", 2, "Rename foo to bar")
    assert [s.paths for s in plan.subtasks] == [("lib/sub/z.py", "lib/x.py"), ("lib/y.py",)]
