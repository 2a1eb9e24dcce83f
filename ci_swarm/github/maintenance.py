"""A maintenance job's branch: whose commits it holds, and where the next scheduled run starts.

A scheduled job reuses one branch (``<prefix>/maintenance/<name>``) and its open pull request; each run
replaces the branch with its own work. It may only replace commits that are ci-swarm's own: author and
committer ``git.SWARM_EMAIL`` and a ``Swarm-Run`` (agent commits) or ``Swarm-Subtask`` (merge commits)
trailer. When the remote branch holds any other commit since the base — a maintainer's fix-up, a rebase by
hand — the run starts from that tip instead, so the push is a fast-forward that keeps those commits, and the
report says so (its notes reach the pull request body and the progress comment). Either way the push is
forced only with a lease on the tip inspected here (:func:`ci_swarm.git.push`'s ``lease``), so a commit
pushed while the swarm ran is never overwritten either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ci_swarm import git
from ci_swarm.errors import ForgeError, GitError
from ci_swarm.github.pushing import fetch_tip
from ci_swarm.naming import RUN_TRAILER, TRAILER


@dataclass(frozen=True)
class Start:
    """Where a maintenance run starts, the lease for its forced push, and what to tell the reader."""

    commit: str
    lease: str  # the remote tip the push may replace ("" = the branch must not exist yet)
    note: str = ""
    foreign: tuple[str, ...] = ()  # the commits that are not ci-swarm's, short ids


def remote_tip(repo: Path, url: str, branch: str, token: str) -> str:
    """The commit ``branch`` points to on the remote, "" when it does not exist (``git ls-remote``)."""
    ref = f"refs/heads/{branch}"
    env = git.auth_env(token, url) if token else {}
    try:
        text = git.run(repo, "ls-remote", url, ref, env=env, secrets=[token] if token else []).text
    except GitError as err:
        raise ForgeError(f"reading {branch} from {url} failed: {err}") from err
    for line in text.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return ""


def foreign_commits(repo: Path, base: str, tip: str) -> tuple[str, ...]:
    """Commits in ``base..tip`` that are not ci-swarm's (by identity and trailer), newest first."""
    keys = f"key={RUN_TRAILER},key={TRAILER},valueonly,separator=%x2C"
    fmt = f"%H%x1f%ae%x1f%ce%x1f%(trailers:{keys})%x1e"
    text = git.run(repo, "log", f"--format={fmt}", "--end-of-options", f"^{base}", tip).text
    found = []
    for record in text.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) != 4:
            continue
        sha, author, committer, trailers = fields
        if author != git.SWARM_EMAIL or committer != git.SWARM_EMAIL or not trailers.strip():
            found.append(sha)
    return tuple(found)


def start_for(repo: Path, url: str, token: str, branch: str, base: str) -> Start:
    """Where the run of the job whose branch is ``branch`` starts: ``base``, or the branch's tip when it holds
    commits that are not ci-swarm's (fetched, so the run can build on it)."""
    tip = remote_tip(repo, url, branch, token)
    if not tip:
        return Start(base, "")
    fetched = fetch_tip(repo, url, branch, token)
    foreign = foreign_commits(repo, base, fetched)
    if not foreign:
        return Start(base, fetched)
    ids = ", ".join(sha[:10] for sha in foreign[:5]) + (" …" if len(foreign) > 5 else "")
    note = (
        f"`{branch}` has {len(foreign)} commit(s) not made by ci-swarm ({ids}): this run started from its "
        f"tip ({fetched[:10]}) and keeps them instead of replacing the branch"
    )
    return Start(fetched, fetched, note, tuple(sha[:10] for sha in foreign))
