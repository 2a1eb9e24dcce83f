"""worktrees.py: the workspace seam — make, collect, dispose, close — over a clone per agent (clones.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.clones import GitClones
from ci_swarm.errors import SwarmError
from ci_swarm.models import Subtask
from ci_swarm.worktrees import Workspaces
from tests.fixtures import USER, make_repo


def test_a_worktree_is_made_collected_disposed_and_its_branch_stays(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": "f\n"})
    base = git.rev_parse(repo, "main")
    spaces: Workspaces = GitClones(repo, None, "r1")
    sub = Subtask("a", "builder", "do a", "instructions", paths=("docs/**",))
    ws = spaces.make(sub, "swarm/r1-agents/a", base)
    assert ws.root.is_dir() and ws.root.name == "a" and ws.owned == ("docs/**",)
    assert not ws.root.is_relative_to(repo)  # never inside the user's checkout
    ws.write_text("docs/a.md", "a\n")
    tip, files = spaces.collect(ws, "work\n", USER)
    assert files == ("docs/a.md",)
    assert git.rev_parse(repo, "swarm/r1-agents/a") == tip
    assert spaces.collect(ws, "nothing new\n", USER) == (tip, files)  # no empty commit
    spaces.dispose(ws)
    assert not ws.root.exists()
    spaces.close()
    assert not ws.root.parent.exists()  # its own temp dir is gone
    assert git.out(repo, "worktree", "list").count("\n") == 0  # pruned
    assert git.branch_exists(repo, "swarm/r1-agents/a")


def test_a_given_root_is_kept_and_an_existing_branch_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": "f\n"})
    base = git.rev_parse(repo, "main")
    spaces = GitClones(repo, tmp_path / "wt", "r2")
    sub = Subtask("b", "builder", "do b", "instructions")
    ws = spaces.make(sub, "swarm/r2-agents/b", base)
    assert ws.root == (tmp_path / "wt" / "b").resolve()
    with pytest.raises(SwarmError, match="already exists"):  # never overwritten
        spaces.make(Subtask("c", "builder", "do c", "instructions"), "swarm/r2-agents/b", base)
    spaces.dispose(ws)
    spaces.close()
    assert (tmp_path / "wt").is_dir()  # the caller's directory stays
