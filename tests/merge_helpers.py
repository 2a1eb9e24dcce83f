"""Builders for the merge engine's tests: real repositories, commits made straight in the object database."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

from ci_swarm import git

USER = git.Identity("Test User", "test@example.com")
Content = str | bytes | tuple[str, str | bytes] | None  # text, bytes, (mode, content) or None = delete


def init_repo(path: Path, files: Mapping[str, str | bytes], branch: str = "main") -> tuple[Path, str]:
    """A repository with a real checkout on ``branch`` holding ``files``; (repo, base commit)."""
    path.mkdir(parents=True, exist_ok=True)
    git.run(path, "init", "--quiet", f"--initial-branch={branch}")
    git.run(path, "config", "core.autocrlf", "false")
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    git.run(path, "add", "--all")
    git.run(path, "commit", "--quiet", "--no-verify", "-m", "base", env=USER.env())
    return path, git.head_commit(path)


def commit(
    repo: Path,
    parent: str,
    changes: Mapping[str, Content],
    message: str = "change",
    *,
    subtask: str | None = None,
    role: str | None = None,
) -> str:
    """A commit on top of ``parent`` with ``changes`` applied, made without touching any checkout."""
    tree = git.out(repo, "rev-parse", f"{parent}^{{tree}}")
    with git.temp_index(repo, tree) as env:
        for path, content in changes.items():
            if content is None:
                git.index_remove(repo, env, path)
                continue
            mode, data = content if isinstance(content, tuple) else ("100644", content)
            blob = git.write_blob(repo, data if isinstance(data, bytes) else data.encode())
            git.index_set(repo, env, path, mode, blob)
        new_tree = git.write_tree(repo, env)
    trailers = [f"Swarm-Subtask: {subtask}"] * bool(subtask) + [f"Swarm-Role: {role}"] * bool(role)
    text = message + ("\n\n" + "\n".join(trailers) if trailers else "") + "\n"
    return git.commit_tree(repo, new_tree, [parent], text, USER)


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
