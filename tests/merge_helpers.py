"""Helpers for the merge engine's tests: branches, reads, line-edited texts and random edits (repositories and
commits come from :mod:`tests.fixtures`)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

from ci_swarm import git


def branch(repo: Path, name: str, commit_id: str) -> str:
    git.update_ref(repo, f"refs/heads/{name}", commit_id)
    return commit_id


def read(repo: Path, rev: str, path: str) -> str | None:
    data = git.try_read_blob(repo, rev, path)
    return None if data is None else data.decode("utf-8", "surrogateescape")


def lines(n: int, prefix: str = "line") -> str:
    return "".join(f"{prefix} {i}\n" for i in range(1, n + 1))


def edit_lines(text: str, edits: Mapping[int, str | None]) -> str:
    """Replace (or, with None, delete) 1-based lines of ``text``."""
    out = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if number not in edits:
            out.append(line)
        elif edits[number] is not None:
            out.append(f"{edits[number]}\n")
    return "".join(out)


def random_edit(rng: random.Random, base: list[str], alphabet: str) -> list[str]:
    """A random edit of ``base``: one to three replacements, insertions or deletions, sometimes adjacent."""
    text = list(base)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randint(0, len(text))
        op = rng.choice(("replace", "insert", "delete", "replace2"))
        new = [f"{rng.choice(alphabet)}\n" for _ in range(rng.randint(1, 2))]
        if op == "insert" or not text or pos == len(text):
            text[pos:pos] = new
        elif op == "delete":
            del text[pos : pos + rng.randint(1, 2)]
        else:
            text[pos : pos + (1 if op == "replace" else 2)] = new
    return text
