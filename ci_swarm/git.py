"""The only module that runs git. Small typed functions over GitPython's command runner.

Every command goes through :func:`run`, which raises :class:`GitError` naming the command, its exit code
and the last line of its output; the merge queue's questions also go to long-lived processes
(:class:`MergeDiffs`: ``diff-tree --stdin``, :class:`RefUpdates`: ``update-ref --stdin``), one each per
queue instead of one process per question. :func:`counting` counts every git process started. Tokens
never reach argv: pushes and fetches take the auth header through ``GIT_CONFIG_*`` environment variables,
and any error text is redacted.
"""

from __future__ import annotations

import base64
import collections
import os
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import git as gitpython

from ci_swarm.errors import GitError, RepoError

ZERO_OID = "0" * 40
SWARM_NAME = "ci-swarm"
SWARM_EMAIL = "ci-swarm@users.noreply.github.com"

# Never let git prompt, page, sign or run the user's hooks inside a swarm.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_EDITOR": "true",
    "GIT_CONFIG_NOSYSTEM": "1",
}
_SAFE_FLAGS = (
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.quotepath=false",
    "-c",
    "core.fsmonitor=false",
)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


SWARM_IDENTITY = Identity(SWARM_NAME, SWARM_EMAIL)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run(
    cwd: Path,
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    ok: Sequence[int] = (0,),
    secrets: Sequence[str] = (),
) -> Result:
    """Run ``git <args>`` in ``cwd``; raise GitError unless the exit code is in ``ok``."""
    _started(args)
    runner = gitpython.Git(str(cwd))
    full_env = {**_BASE_ENV, **(env or {})}
    argv = ["git", *_SAFE_FLAGS, *args]
    with tempfile.TemporaryFile() as stdin:
        if input is not None:
            stdin.write(input)
            stdin.seek(0)
        try:
            code, out, err = runner.execute(
                argv,
                istream=stdin,
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
                env=full_env,
            )
        except gitpython.GitCommandNotFound as exc:
            raise RepoError("git is not installed or not on PATH") from exc
    stderr = err
    stdout = out
    if code not in ok:
        raise GitError(
            tuple(_redact(a, secrets) for a in args),
            code,
            _redact(stdout.decode("utf-8", "replace"), secrets),
            _redact(stderr, secrets),
        )
    return Result(code, stdout, stderr)


_observers: list[Callable[[str], None]] = []


def _started(args: Sequence[str]) -> None:
    """Tell the observers (:func:`counting`) that a git process with ``args`` is starting."""
    if _observers:
        rest = list(args)
        while rest and rest[0] == "-c":
            rest = rest[2:]
        sub = next((a for a in rest if not a.startswith("-")), "?")
        for observe in list(_observers):
            observe(sub)


@contextmanager
def counting() -> Iterator[collections.Counter[str]]:
    """Count the git processes started inside the block, by subcommand: every :func:`run` and every
    long-lived process (:class:`MergeDiffs`, :class:`RefUpdates`) — once, however many questions it answers.
    """
    counts: collections.Counter[str] = collections.Counter()

    def observe(sub: str) -> None:
        counts[sub] += 1

    _observers.append(observe)
    try:
        yield counts
    finally:
        _observers.remove(observe)


def out(cwd: Path, *args: str) -> str:
    """stdout of a git command, stripped."""
    return run(cwd, *args).text.strip()


# --- repositories and revisions -------------------------------------------------------------


def open_repo(path: Path) -> Path:
    """The top level of the work tree containing ``path``; RepoError if there is none."""
    try:
        repo = gitpython.Repo(str(path), search_parent_directories=True)
    except gitpython.NoSuchPathError as exc:
        raise RepoError(f"{path}: no such directory") from exc
    except gitpython.InvalidGitRepositoryError as exc:
        raise RepoError(f"{path}: not a git repository") from exc
    if repo.bare or repo.working_tree_dir is None:
        raise RepoError(f"{path}: is a bare repository; ci-swarm needs a work tree")
    return Path(repo.working_tree_dir).resolve()


def rev_parse(repo: Path, rev: str) -> str:
    """The commit id ``rev`` names; RepoError naming it when it names none."""
    result = run(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{rev}^{{commit}}",
        ok=(0, 1, 128),
    )
    if result.returncode != 0:
        raise RepoError(f"unknown revision {rev!r} in {repo}")
    return result.text.strip()


def try_rev_parse(repo: Path, rev: str) -> str | None:
    try:
        return rev_parse(repo, rev)
    except RepoError:
        return None


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return run(repo, "merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1)).returncode == 0


def merge_base(repo: Path, a: str, b: str) -> str:
    return out(repo, "merge-base", a, b)


def resolve_commits(repo: Path, names: Sequence[str]) -> dict[str, str | None]:
    """The commit each revision names (None: none), like :func:`try_rev_parse`, through one ``cat-file
    --batch-check`` process for them all."""
    asked = [n for n in dict.fromkeys(names) if n and "\n" not in n]
    found: dict[str, str | None] = dict.fromkeys(names)
    if not asked:
        return found
    data = "".join(f"{n}^{{commit}}\n" for n in asked).encode()
    lines = run(repo, "cat-file", "--batch-check=%(objectname) %(objecttype)", input=data).text.splitlines()
    for name, line in zip(asked, lines, strict=True):
        oid, _, kind = line.rpartition(" ")
        found[name] = oid if kind == "commit" and _is_object_id(oid) else None
    return found


def merge_bases_with(repo: Path, base: str, commits: Sequence[str]) -> dict[str, str | None]:
    """Each commit's merge base with ``base`` (None: no common history), like :func:`merge_base`, in one
    ``rev-list`` for them all: a commit ``base`` reaches is its own merge base, one whose every path back
    leads to ``base`` has ``base``; only the others (a branch forked below ``base``) ask ``merge-base``."""
    found: dict[str, str | None] = {}
    if not commits:
        return found
    stdin = "".join(f"{c}\n" for c in dict.fromkeys(commits)) + f"^{base}\n"
    text = run(repo, "rev-list", "--parents", "--topo-order", "--stdin", input=stdin.encode()).text
    graph = [line.split() for line in text.splitlines() if line]
    on_base: dict[str, bool] = {}  # commits base does not reach -> every path back leads to base
    for commit, *parents in reversed(graph):  # parents before children
        on_base[commit] = bool(parents) and all(p == base or on_base.get(p, False) for p in parents)
    for commit in commits:
        if commit not in on_base:
            found[commit] = commit  # base reaches it
        elif on_base[commit]:
            found[commit] = base
        else:
            result = run(repo, "merge-base", base, commit, ok=(0, 1))
            found[commit] = result.text.strip() or None
    return found


def trailers(repo: Path, commits: Sequence[str], keys: Sequence[str]) -> dict[str, tuple[str | None, ...]]:
    """For each commit, the value of each trailer ``keys[i]`` (None: absent), like :func:`trailer`, in
    one ``log`` for them all."""
    if not commits:
        return {}
    fields = "%x00".join(f"%(trailers:key={k},valueonly)" for k in keys)
    args = ["log", "--no-walk=unsorted", "--stdin", "--no-show-signature", f"--format=%H%x00{fields}%x01"]
    text = run(repo, *args, input="".join(f"{c}\n" for c in dict.fromkeys(commits)).encode()).text
    found: dict[str, tuple[str | None, ...]] = {}
    for record in text.split("\x01"):
        commit, *values = record.strip("\n").split("\0")
        if len(values) == len(keys):
            found[commit] = tuple(_first_line(v) for v in values)
    return found


def _first_line(text: str) -> str | None:
    text = text.strip()
    return text.splitlines()[0].strip() if text else None


def branch_exists(repo: Path, name: str) -> bool:
    return try_rev_parse(repo, f"refs/heads/{name}") is not None


def create_branch(repo: Path, name: str, commit: str) -> None:
    """Create ``refs/heads/<name>`` at ``commit``; RepoError if it already exists (never overwrite)."""
    result = run(
        repo,
        "update-ref",
        "--create-reflog",
        f"refs/heads/{name}",
        commit,
        ZERO_OID,
        ok=(0, 1, 128),
    )
    if result.returncode != 0:
        raise RepoError(f"branch {name!r} already exists in {repo}; refusing to overwrite it")


def update_ref(repo: Path, ref: str, new: str, old: str | None = None, message: str = "") -> None:
    args = ["update-ref"]
    if message:
        args += ["-m", message]
    args += [ref, new]
    if old is not None:
        args.append(old)
    run(repo, *args)


def head_commit(repo: Path) -> str:
    return rev_parse(repo, "HEAD")


def current_branch(repo: Path) -> str | None:
    result = run(repo, "symbolic-ref", "--quiet", "--short", "HEAD", ok=(0, 1, 128))
    return result.text.strip() or None


def config_keys(repo: Path, pattern: str) -> tuple[str, ...]:
    """The names of the config keys (all scopes) matching the regexp ``pattern``."""
    result = run(repo, "config", "--name-only", "--get-regexp", pattern, ok=(0, 1))
    return tuple(result.text.split())


def commit_message(repo: Path, commit: str) -> str:
    return run(repo, "log", "-1", "--format=%B", commit).text


def trailer(repo: Path, commit: str, key: str) -> str | None:
    """The value of trailer ``key`` in ``commit``'s message, if any."""
    text = out(repo, "log", "-1", f"--format=%(trailers:key={key},valueonly)", commit)
    return text.splitlines()[0].strip() if text else None


# --- worktrees and commits ---------------------------------------------------------------------


def worktree_add(repo: Path, path: Path, branch: str) -> None:
    """Check ``branch`` out into a new worktree at ``path`` (outside the user's checkout)."""
    run(repo, "worktree", "add", "--quiet", str(path), branch)


def worktree_add_new_branch(repo: Path, path: Path, branch: str, start: str) -> None:
    """Create ``branch`` at ``start`` and check it out into a new worktree at ``path``, in one command.
    RepoError if the branch already exists (never overwritten)."""
    result = run(repo, "worktree", "add", "--quiet", "-b", branch, str(path), start, ok=(0, 128))
    if result.returncode != 0:
        if branch_exists(repo, branch):
            raise RepoError(f"branch {branch!r} already exists in {repo}; refusing to overwrite it")
        raise GitError(
            ("worktree", "add", "-b", branch, str(path), start), result.returncode, "", result.stderr
        )


def worktree_remove(repo: Path, path: Path, *, prune: bool = True) -> None:
    """Remove a worktree, whatever its state; its branch (and commits) stay."""
    run(repo, "worktree", "remove", "--force", "--force", str(path), ok=(0, 128))
    if prune:
        worktree_prune(repo)


def worktree_prune(repo: Path) -> None:
    run(repo, "worktree", "prune")


def has_changes(worktree: Path) -> bool:
    return bool(run(worktree, "status", "--porcelain", "--untracked-files=all").stdout.strip())


def commit_all(worktree: Path, message: str, identity: Identity) -> str | None:
    """Stage everything in ``worktree`` and commit it; the new commit id, or None if nothing changed."""
    run(worktree, "add", "--all")
    result = run(worktree, "commit", "--quiet", "--no-verify", "-m", message, env=identity.env(), ok=(0, 1))
    if result.returncode == 1:
        if (
            "nothing to commit" in result.text + result.stderr
            or "nothing added" in result.text + result.stderr
        ):
            return None
        raise GitError(("commit", "-m", "…"), 1, result.text, result.stderr)
    return head_commit(worktree)


def commit_tree(
    repo: Path, tree: str, parents: Sequence[str], message: str, identity: Identity = SWARM_IDENTITY
) -> str:
    """Create a commit object (no checkout, no index)."""
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return run(repo, *args, input=message.encode(), env=identity.env()).text.strip()


# --- agents' clones and reading their trees (clones.py, collection.py) ----------------------------

# Reading a tree nobody reviewed: never a hook, an fsmonitor, a split index or a stat field an owner change
# touches (the clone may belong to the sandbox's account, hence safe.directory).
_FOREIGN_TREE = ("-c", "core.splitIndex=false", "-c", "core.untrackedCache=false", "-c", "safe.directory=*")
_COLLECT_FLAGS = ("-c", "core.checkStat=minimal", "-c", "core.trustctime=false", *_FOREIGN_TREE)


def git_dir(repo: Path) -> Path:
    """The absolute git directory of the repository whose work tree is ``repo``."""
    return Path(out(repo, "rev-parse", "--absolute-git-dir"))


def clone_shared(repo: Path, path: Path, template: Path) -> None:
    """A clone of ``repo`` at ``path`` borrowing its objects (alternates), no checkout, hooks from the
    (empty) ``template``."""
    args = ["clone", "--shared", "--no-checkout", "--quiet", f"--template={template}"]
    run(repo, *args, "--", str(repo), str(path))


def checkout_detached(clone: Path, commit: str) -> None:
    """Check ``commit`` out in ``clone`` on a detached HEAD, with a plain (unsplit) index."""
    run(clone, *_COLLECT_FLAGS, "checkout", "--quiet", "--detach", commit)


# Resetting a reused clone: stat data compared in full (ctime too, which nobody can set back), so a file an
# agent changed and gave its old size and mtime is still seen as changed; nothing of the clone's own config
# that could run code (the config was just restored from ci-swarm's template anyway).
_RESET_FLAGS = ("-c", "core.checkStat=default", "-c", "core.trustctime=true", *_FOREIGN_TREE)


def reset_clone(clone: Path, commit: str) -> None:
    """Make ``clone``'s work tree exactly ``commit``'s tree (HEAD must already be ``commit``): files whose
    stat data differ from the index are compared, changed ones rewritten, every untracked and ignored file
    and directory removed (nested repositories too). Only what differs is written."""
    run(clone, *_RESET_FLAGS, "update-index", "-q", "--refresh", ok=(0, 1))
    run(clone, *_RESET_FLAGS, "reset", "--quiet", "--hard", commit)
    run(clone, *_RESET_FLAGS, "clean", "-ffdxq")


def remove_remote(clone: Path, name: str) -> None:
    run(clone, "remote", "remove", name)


def set_config(repo: Path, key: str, value: str) -> None:
    run(repo, "config", "--local", key, value)


@dataclass(frozen=True)
class Reader:
    """How ci-swarm reads a foreign work tree into ``git_dir``'s object database: that repository's config
    and objects, the tree at ``work_tree`` and the index file ``index`` (nothing in the work tree's own
    ``.git`` is read)."""

    git_dir: Path
    work_tree: Path
    index: Path

    def env(self) -> dict[str, str]:
        return {
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(self.work_tree),
            "GIT_INDEX_FILE": str(self.index),
        }

    def run(self, *args: str, input: bytes | None = None, ok: Sequence[int] = (0,)) -> Result:
        return run(self.work_tree, *_COLLECT_FLAGS, *args, input=input, env=self.env(), ok=ok)


def add_all(reader: Reader, pathspecs: Sequence[str]) -> str:
    """``git add --all`` of ``pathspecs`` (magic allowed) into the reader's index; "" or git's last error
    line when git refused (the index is then unchanged)."""
    data = b"".join(os.fsencode(p) + b"\0" for p in pathspecs)
    args = ("add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul")
    result = reader.run(*args, input=data, ok=tuple(range(256)))
    if result.returncode == 0:
        return ""
    lines = [line for line in result.stderr.splitlines() if line.startswith(("fatal:", "error:"))]
    return (lines[0] if lines else result.stderr.strip() or f"exit {result.returncode}")[:300]


def changed_paths(reader: Reader, pathspecs: Sequence[str]) -> tuple[str, ...]:
    """Paths of ``pathspecs`` whose work-tree state differs from the reader's index: untracked (not
    ignored), modified or deleted."""
    result = reader.run("ls-files", "-z", "-o", "-m", "-d", "--exclude-standard", "--", *pathspecs)
    return tuple(dict.fromkeys(p for p in result.text.split("\0") if p))


def write_index_tree(reader: Reader) -> str:
    return reader.run("write-tree").text.strip()


def tree_of(repo: Path, commit: str) -> str:
    return out(repo, "rev-parse", "--verify", "--end-of-options", f"{commit}^{{tree}}")


def gitlinks(repo: Path, rev: str) -> tuple[str, ...]:
    """The paths of the submodules (gitlink entries) in ``rev``'s tree."""
    data = run(repo, "ls-tree", "-r", "-z", "--full-tree", rev).text
    return tuple(e.partition("\t")[2] for e in data.split("\0") if e.startswith("160000 "))


# --- merging in the object database ------------------------------------------------------------


@dataclass(frozen=True)
class ConflictEntry:
    mode: str
    oid: str
    stage: int  # 1 base, 2 ours, 3 theirs
    path: str


@dataclass(frozen=True)
class MergeMessage:
    paths: tuple[str, ...]
    kind: str  # e.g. "CONFLICT (contents)", "CONFLICT (modify/delete)", "Auto-merging"
    text: str


@dataclass(frozen=True)
class MergeTree:
    tree: str
    clean: bool
    entries: tuple[ConflictEntry, ...]
    messages: tuple[MergeMessage, ...]

    @property
    def conflicted_paths(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.path for e in self.entries))


def parse_merge_tree(data: bytes, clean: bool) -> MergeTree:
    """Parse ``git merge-tree --write-tree -z`` output (pure)."""
    text = data.decode("utf-8", "surrogateescape")
    head, _, rest = text.partition("\0")
    entries: list[ConflictEntry] = []
    messages: list[MergeMessage] = []
    if not clean:
        info, _, msgs = rest.partition("\0\0")
        for item in info.split("\0"):
            if not item:
                continue
            meta, _, path = item.partition("\t")
            mode, oid, stage = meta.split(" ")
            entries.append(ConflictEntry(mode, oid, int(stage), path))
        fields = msgs.split("\0")
        i = 0
        while i < len(fields) and fields[i]:
            count = int(fields[i])
            paths = tuple(fields[i + 1 : i + 1 + count])
            kind, message = fields[i + 1 + count], fields[i + 2 + count]
            messages.append(MergeMessage(paths, kind, message.strip()))
            i += count + 3
    return MergeTree(head.strip(), clean, tuple(entries), tuple(messages))


def merge_tree(repo: Path, ours: str, theirs: str) -> MergeTree:
    """Three-way merge of two commits into a tree object; no checkout, no index.

    Exit 1 means conflicts only when stdout starts with a tree id; anything else is an error.
    """
    result = run(repo, "merge-tree", "--write-tree", "-z", "--messages", ours, theirs, ok=(0, 1, 128))
    tree = result.stdout[:40].decode("ascii", "replace")
    if result.returncode not in (0, 1) or not _is_oid(tree):
        raise GitError(("merge-tree", ours, theirs), result.returncode, result.text, result.stderr)
    return parse_merge_tree(result.stdout, clean=result.returncode == 0)


def _is_oid(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


def merge_file(
    repo: Path,
    ours: bytes,
    base: bytes,
    theirs: bytes,
    *,
    favor: str | None = None,
    labels: tuple[str, str, str] = ("ours", "base", "theirs"),
) -> tuple[bytes, int]:
    """``git merge-file -p`` on three texts: (merged bytes, number of conflicts).

    ``favor`` is None (markers, diff3 style), "ours" or "theirs" (conflicting hunks take that side,
    non-conflicting hunks of both sides land).
    """
    with tempfile.TemporaryDirectory(prefix="ci-swarm-mf-") as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_bytes(data)
            paths.append(str(p))
        args = ["merge-file", "-p"]
        if favor:
            args.append(f"--{favor}")
        else:
            args.append("--diff3")
        for label in labels:
            args += ["-L", label]
        result = run(repo, *args, *paths, ok=tuple(range(128)))
    return result.stdout, result.returncode


def read_blob(repo: Path, oid_or_rev_path: str) -> bytes:
    return run(repo, "cat-file", "blob", oid_or_rev_path).stdout


def try_read_blob(repo: Path, rev: str, path: str) -> bytes | None:
    result = run(repo, "cat-file", "blob", f"{rev}:{path}", ok=(0, 128))
    return result.stdout if result.returncode == 0 else None


def write_blob(repo: Path, data: bytes) -> str:
    return run(repo, "hash-object", "-w", "--stdin", input=data).text.strip()


@contextmanager
def temp_index(repo: Path, tree: str) -> Iterator[dict[str, str]]:
    """A throwaway index loaded with ``tree``; yields the env to pass to :func:`run`."""
    with tempfile.TemporaryDirectory(prefix="ci-swarm-idx-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        run(repo, "read-tree", tree, env=env)
        yield env


def index_set(repo: Path, env: Mapping[str, str], path: str, mode: str, oid: str) -> None:
    run(repo, "update-index", "--add", "--cacheinfo", f"{mode},{oid},{path}", env=env)


def index_remove(repo: Path, env: Mapping[str, str], path: str) -> None:
    run(repo, "update-index", "--force-remove", "--", path, env=env)


def write_tree(repo: Path, env: Mapping[str, str]) -> str:
    return out_env(repo, env, "write-tree")


def out_env(repo: Path, env: Mapping[str, str], *args: str) -> str:
    return run(repo, *args, env=env).text.strip()


def merge_file_diff3(
    repo: Path, ours: bytes, base: bytes, theirs: bytes, labels: tuple[str, str, str], marker_size: int
) -> bytes:
    """``git merge-file -p --diff3`` with wide markers: conflicts show ours, base and theirs, unrefined."""
    with tempfile.TemporaryDirectory(prefix="ci-swarm-mf-") as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            (Path(tmp) / name).write_bytes(data)
            paths.append(str(Path(tmp) / name))
        args = ["merge-file", "-p", "--diff3", f"--marker-size={marker_size}"]
        for label in labels:
            args += ["-L", label]
        return run(repo, *args, *paths, ok=tuple(range(128))).stdout


# --- diffs and listings ------------------------------------------------------------------------


def diff(
    repo: Path, a: str, b: str, *, context: int = 0, paths: Sequence[str] = (), text: bool = False
) -> str:
    """Unified diff between two commits (renames detected, no colour, no external drivers); ``text``: every
    file as text (``--text``), so content git would call binary — a NUL byte, a ``-diff`` attribute — is
    shown, not summarised as "Binary files differ" (what a reviewer judges must be what it reads)."""
    args = [
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--find-renames",
        f"-U{context}",
        *(["--text"] * text),
        a,
        b,
    ]
    if paths:
        args += ["--", *paths]
    return run(repo, *args).text


def changed_files(repo: Path, a: str, b: str) -> tuple[str, ...]:
    data = run(repo, "diff", "--name-only", "-z", "--no-renames", a, b).text
    return tuple(p for p in data.split("\0") if p)


def tree_files(repo: Path, rev: str = "HEAD") -> tuple[str, ...]:
    data = run(repo, "ls-tree", "-r", "-z", "--name-only", rev).text
    return tuple(p for p in data.split("\0") if p)


def grep(repo: Path, pattern: str, path: str | None = None, max_count: int = 200) -> str:
    """``git grep`` over the files of an agent's work tree (``.gitignore`` honoured), never through its
    repository: an agent's clone holds config the agent wrote, so git is pointed at an empty directory
    (``GIT_DIR``) and searches with ``--no-index`` — no config, hook or attribute of the clone is read."""
    args = ["grep", "--no-index", "--exclude-standard", "-n", "-I", "-e", pattern]
    if path:
        args += ["--", path]
    with tempfile.TemporaryDirectory(prefix="ci-swarm-nogit-") as nowhere:
        result = run(repo, *args, ok=(0, 1), env={"GIT_DIR": nowhere})
    return "\n".join(result.text.splitlines()[:max_count])


def merge_diff(repo: Path, a: str, b: str, *, algorithm: str = "histogram") -> str:
    """One-line-context diff ``a..b`` as a three-way merge sees it (whatever the user's diff config).

    ``merge-tree`` (merge-ort) diffs with histogram, ``merge-file`` with myers; neither uses the indent
    heuristic. One line of context, not zero: with ``-U0`` git trims a long common tail before diffing
    (xdiff-interface's ``trim_common_tail``), which the merge never does, so hunks among repeated lines
    could align differently; the context lines are skipped by the reader (:mod:`ci_swarm.overlap`).
    No inter-hunk context, full blob ids, ``a/`` ``b/`` prefixes, renames, no textconv.
    """
    return run(repo, "diff", *_merge_diff_flags(algorithm), a, b).text


def _merge_diff_flags(algorithm: str) -> tuple[str, ...]:
    return (
        *("--no-color", "--no-ext-diff", "--no-textconv", "--find-renames", "--full-index"),
        *(f"--diff-algorithm={algorithm}", "--no-indent-heuristic", "--inter-hunk-context=0", "-U1"),
        *("--src-prefix=a/", "--dst-prefix=b/", "--no-relative"),
    )


# --- long-lived processes (the merge queue) -----------------------------------------------------


class _LongLived:
    """One ``git <args>`` process reading requests on stdin, one at a time: started on the first request,
    started again after it died (a failed request ends it: its stderr becomes the :class:`GitError`), ended
    by :meth:`close` or when its owner is garbage collected."""

    def __init__(self, cwd: Path, args: Sequence[str]) -> None:
        self._cwd = cwd
        self._args = tuple(args)
        self._lock = threading.Lock()
        self._live: list[_Live] = []  # at most one; shared with the finalizer
        weakref.finalize(self, _end_all, self._live)

    def exchange(self, request: bytes, done: Callable[[bytearray], bool]) -> bytes:
        """Write ``request``, then read until ``done(what was read)``; GitError if the process ends first."""
        with self._lock:
            live = self._process()
            stdin, stdout = live.proc.stdin, live.proc.stdout
            assert stdin is not None and stdout is not None
            answer = bytearray()
            try:
                stdin.write(request)
                stdin.flush()
                while not done(answer):
                    chunk = os.read(stdout.fileno(), 1 << 16)
                    if not chunk:
                        raise self._failed(live, answer)
                    answer += chunk
            except BrokenPipeError:
                raise self._failed(live, answer) from None
            return bytes(answer)

    def close(self) -> None:
        with self._lock:
            _end_all(self._live)

    def _process(self) -> _Live:
        if self._live:
            return self._live[0]
        _started(self._args)
        env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **_BASE_ENV}
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by _Live, closed by its end()
        try:
            proc = subprocess.Popen(
                ["git", *_SAFE_FLAGS, *self._args],
                cwd=self._cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        except FileNotFoundError as exc:
            stderr.close()
            raise RepoError("git is not installed or not on PATH") from exc
        self._live.append(_Live(proc, stderr))
        return self._live[0]

    def _failed(self, live: _Live, answer: bytearray) -> GitError:
        _end_all(self._live)
        return GitError(self._args, live.proc.returncode, answer.decode("utf-8", "replace"), live.stderr_text)


class _Live:
    """A running long-lived process and the file its stderr goes to (a pipe nobody reads could fill)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr
        self.stderr_text = ""

    def end(self) -> None:
        """stdin closed (git exits at EOF), killed if it has not after 10 s; reaped; stderr kept as text."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.seek(0)
        self.stderr_text = self.stderr.read().decode("utf-8", "replace")
        self.stderr.close()


def _end_all(live: list[_Live]) -> None:
    while live:
        live.pop().end()


def _is_object_id(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


class MergeDiffs:
    """:func:`merge_diff` between commits, the same text, answered by one long-lived ``git diff-tree
    --stdin -p`` process (plumbing: no diff config of the user's reaches it) instead of a process each.

    Each request is the line ``<b> <a>`` (commit ``b`` compared with ``a`` as its parent) and a line git
    echoes back once the diff is written (``diff-tree`` echoes and flushes any line that is not an object
    id), so the answer's end is known without closing the pipe; ``--always`` names ``b`` first even when
    the diff is empty, so a commit git could not read is an error, not an empty diff. Revisions that are
    not full object ids go to :func:`merge_diff`.
    """

    def __init__(self, repo: Path, algorithm: str = "histogram") -> None:
        self.repo = repo
        self._algorithm = algorithm
        flags = ("--stdin", "--always", "-r", "-p", *_merge_diff_flags(algorithm))
        self._process = _LongLived(repo, ("diff-tree", *flags))
        self._asked = 0

    def diff(self, a: str, b: str) -> str:
        if not (_is_object_id(a) and _is_object_id(b)):
            return merge_diff(self.repo, a, b, algorithm=self._algorithm)
        self._asked += 1
        end = f"#ci-swarm {self._asked}\n".encode()
        answer = self._process.exchange(
            f"{b} {a}\n".encode() + end, lambda got: got == end or got.endswith(b"\n" + end)
        )
        body = answer[: -len(end)]
        header = f"{b}\n".encode()  # --always: the commit is named, even before an empty diff
        if not body.startswith(header):  # diff-tree skips a first commit it cannot read, silently
            raise GitError(("diff-tree", "--stdin", b, a), 128, "", f"fatal: bad object {b}")
        return body[len(header) :].decode("utf-8", "surrogateescape")

    def close(self) -> None:
        self._process.close()


class RefUpdates:
    """Compare-and-swap ref updates through one long-lived ``git update-ref --stdin`` process: each update
    its own transaction (``start`` / ``update <ref> <new> <old>`` / ``prepare`` / ``commit``), so each
    one fails alone — :class:`GitError` with git's reason (the process then ends; the next update starts
    another). Every update is logged with ``message``."""

    _OK = b"start: ok\nprepare: ok\ncommit: ok\n"

    def __init__(self, repo: Path, message: str) -> None:
        self._process = _LongLived(repo, ("update-ref", "-m", message, "--stdin"))

    def update(self, ref: str, new: str, old: str) -> None:
        """Set ``ref`` to ``new`` only while it is ``old``."""
        if any(c.isspace() for c in ref + new + old):
            raise RepoError(f"invalid ref update: {ref!r} {new!r} {old!r}")
        request = f"start\nupdate {ref} {new} {old}\nprepare\ncommit\n".encode()
        answer = self._process.exchange(request, lambda got: got.count(b"\n") >= 3)
        if answer != self._OK:
            self._process.close()
            raise GitError(("update-ref", "--stdin", ref, new, old), 0, answer.decode("utf-8", "replace"), "")

    def close(self) -> None:
        self._process.close()


# --- remotes ------------------------------------------------------------------------------------


def auth_env(token: str, url: str) -> dict[str, str]:
    """Pass the token as an http.extraheader through the environment: never in argv or a URL.

    The header is scoped to ``url``'s origin, and the same key is first reset to empty: git prefers the most
    specific URL match, so a header that ``actions/checkout`` persisted for the origin in .git/config would
    otherwise win over (or be sent beside) ours.
    """
    parts = urlsplit(url)
    key = f"http.{parts.scheme}://{parts.netloc}/.extraheader"
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": key,
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": key,
        "GIT_CONFIG_VALUE_1": f"AUTHORIZATION: basic {basic}",
    }


def _auth(token: str, url: str) -> tuple[dict[str, str], list[str]]:
    if not token:
        return {}, []
    env = auth_env(token, url)
    return env, [token, env["GIT_CONFIG_VALUE_1"], env["GIT_CONFIG_VALUE_1"].rsplit(" ", 1)[-1]]


def push(
    repo: Path,
    url: str,
    refspecs: Sequence[str],
    token: str = "",
    *,
    force: bool = False,
    lease: Mapping[str, str] | None = None,
) -> Result:
    """``git push --porcelain``; ``lease`` ({ref: expected commit, "" = must not exist}) forces each named ref
    only while the remote still has the expected commit (``--force-with-lease``); ``force`` without a lease
    is plain ``--force``."""
    env, secrets = _auth(token, url)
    args = ["push", "--porcelain"]
    if lease:
        args += [f"--force-with-lease={ref}:{expected}" for ref, expected in lease.items()]
    elif force:
        args.append("--force")
    return run(repo, *args, url, *refspecs, env=env, secrets=secrets)


def fetch(repo: Path, url: str, refspecs: Sequence[str], token: str = "") -> None:
    env, secrets = _auth(token, url)
    run(repo, "fetch", "--quiet", "--no-tags", url, *refspecs, env=env, secrets=secrets)


# --- reading what a push would carry (secretscan.py) -------------------------------------------


def _range_args(base: str | None, tip: str) -> list[str]:
    return ["--end-of-options", tip] if base is None else ["--end-of-options", f"^{base}", tip]


def _run_quiet(repo: Path, *args: str, input: bytes | None = None, secrets: Sequence[str] = ()) -> bytes:
    """stdout of a command whose output may hold secrets: a failure's GitError carries stderr only."""
    result = run(repo, *args, input=input, ok=tuple(range(256)), secrets=secrets)
    if result.returncode != 0:
        raise GitError(args[:2], result.returncode, "", _redact(result.stderr, secrets))
    return result.stdout


def log_patches(repo: Path, base: str | None, tip: str, secrets: Sequence[str] = ()) -> bytes:
    """Each commit of ``base..tip`` (all of ``tip`` when ``base`` is None), oldest first, as a line
    ``\\x01<commit id>`` followed by its own zero-context patch against its first parent (a root commit
    against the empty tree): one process for the whole range. Full blob ids, ``a/`` ``b/`` prefixes, no
    renames, textconv, external drivers or colour, whatever the user's config."""
    args = ["log", "--reverse", "--root", "--diff-merges=first-parent", "-p", "-U0", "--format=format:%x01%H"]
    args += ["--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", "--full-index", "--no-relative"]
    args += ["--src-prefix=a/", "--dst-prefix=b/", "--submodule=short", "--no-show-signature"]
    return _run_quiet(repo, *args, *_range_args(base, tip), secrets=secrets)


def log_messages(repo: Path, base: str | None, tip: str, secrets: Sequence[str] = ()) -> bytes:
    """``<commit id>\\n<message>\\0`` for each commit of ``base..tip``, oldest first, in one process."""
    args = ["log", "--reverse", "-z", "--format=%H%n%B", "--no-show-signature"]
    return _run_quiet(repo, *args, *_range_args(base, tip), secrets=secrets)


def read_blobs(repo: Path, oids: Sequence[str], secrets: Sequence[str] = ()) -> dict[str, bytes]:
    """The raw bytes of each blob (missing ones left out), through one ``cat-file --batch`` process."""
    if not oids:
        return {}
    data = _run_quiet(
        repo, "cat-file", "--batch", input="".join(f"{o}\n" for o in oids).encode(), secrets=secrets
    )
    blobs: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        header = data[pos:end].decode("ascii", "replace").split()
        pos = end + 1
        if len(header) == 3:
            size = int(header[2])
            blobs[header[0]] = data[pos : pos + size]
            pos += size + 1
    return blobs


# --- clean-up (cleanup.py) -----------------------------------------------------------------------


@dataclass(frozen=True)
class RefTip:
    ref: str  # the full ref name
    commit: str
    time: int  # the tip's committer date (Unix seconds)


@dataclass(frozen=True)
class CommitInfo:
    commit: str
    committer: str  # "Name <email>"
    committer_email: str
    author_email: str
    parents: int
    runs: tuple[str, ...]  # the values of its Swarm-Run trailers


def list_refs(repo: Path, *patterns: str) -> tuple[RefTip, ...]:
    """Every ref matching ``patterns`` (``for-each-ref`` prefixes; none: all refs) that names a commit
    (an annotated tag: the commit it points at), with that commit; refs to trees or blobs are left out."""
    fields = ("refname", "objecttype", "objectname", "*objecttype", "*objectname", "committerdate:unix")
    fmt = "--format=" + "%00".join(f"%({f})" for f in fields)
    rows = []
    for line in run(repo, "for-each-ref", fmt, "--end-of-options", *patterns).text.splitlines():
        ref, kind, oid, peeled_kind, peeled, when = line.split("\0")
        if kind == "commit":
            rows.append(RefTip(ref, oid, int(when or 0)))
        elif peeled_kind == "commit":
            rows.append(RefTip(ref, peeled, 0))
    return tuple(rows)


def exclusive_commits(repo: Path, tip: str, hidden: Sequence[str], limit: int) -> tuple[CommitInfo, ...]:
    """The commits reachable from ``tip`` and from none of ``hidden`` (commit ids), newest first, at most
    ``limit`` + 1 of them: what deleting a ref at ``tip`` would lose once the others stay."""
    fmt = "%H%x00%cn <%ce>%x00%ce%x00%ae%x00%P%x00%(trailers:key=Swarm-Run,valueonly,separator=%x2C)%x01"
    stdin = "".join(f"^{h}\n" for h in hidden).encode()
    args = ["log", f"--format={fmt}", f"--max-count={limit + 1}", "--stdin", "--end-of-options", tip]
    found = []
    for record in run(repo, *args, input=stdin).text.split("\x01"):
        fields = record.strip("\n").split("\0")
        if len(fields) == 6:
            commit, who, email, author, parents, runs = fields
            values = tuple(r.strip() for r in runs.split(",") if r.strip())
            found.append(CommitInfo(commit, who, email, author, len(parents.split()), values))
    return tuple(found)


def delete_ref(repo: Path, ref: str, old: str) -> None:
    """Delete ``ref`` only while it still points at ``old``."""
    run(repo, "update-ref", "-d", ref, old)


def worktree_branches(repo: Path) -> tuple[str, ...]:
    """The refs checked out in the repository's work trees (the main one and every linked one)."""
    text = run(repo, "worktree", "list", "--porcelain").text
    return tuple(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("branch "))


def ls_remote(repo: Path, url: str, patterns: Sequence[str], token: str = "") -> dict[str, str]:
    """{ref: commit} of the remote's refs matching ``patterns``."""
    env, secrets = _auth(token, url)
    text = run(repo, "ls-remote", "--refs", url, *patterns, env=env, secrets=secrets).text
    return {ref: oid for oid, _, ref in (line.partition("\t") for line in text.splitlines()) if ref}


# --- fan-out: the run state's commit and agent bundles (runstate.py, bundles.py) ----------------------


def make_tree(repo: Path, blobs: Mapping[str, str]) -> str:
    """A tree of regular files (``{name: blob id}``, names without ``/``) written to the object DB."""
    lines = "".join(f"100644 blob {oid}\t{name}\n" for name, oid in sorted(blobs.items()))
    return run(repo, "mktree", input=lines.encode()).text.strip()


def try_ref(repo: Path, ref: str) -> str | None:
    """The object ``ref`` (a full ref name) points at, or None when it does not exist."""
    result = run(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", ref, ok=(0, 1, 128))
    return result.text.strip() if result.returncode == 0 else None


def parents(repo: Path, commit: str) -> tuple[str, ...]:
    """The parents of ``commit`` in order."""
    line = out(repo, "rev-list", "--parents", "--max-count=1", "--end-of-options", commit)
    return tuple(line.split()[1:])


def bundle_create(repo: Path, path: Path, ref: str, exclude: str) -> None:
    """A bundle at ``path`` holding ``ref`` (a full ref name) with the commits of ``exclude..ref``."""
    run(repo, "bundle", "create", "--quiet", str(path), ref, f"^{exclude}")


def bundle_verify(repo: Path, path: Path) -> str:
    """ "" when ``git bundle verify`` accepts the bundle in ``repo`` (its prerequisites present), else the
    last line of git's complaint."""
    result = run(repo, "bundle", "verify", "--quiet", str(path), ok=tuple(range(256)))
    if result.returncode == 0:
        return ""
    lines = (result.stderr or result.text).strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def fetch_bundle(repo: Path, path: Path, ref: str, into: str) -> None:
    """Fetch ``ref`` of the bundle at ``path`` into the local ref ``into`` (forced; no tags, no hooks)."""
    run(repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(path), f"+{ref}:{into}")
