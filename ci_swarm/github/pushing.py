"""Pushing a run: every agent branch, then the integration commit onto the target branch.

The token reaches git only through ``http.extraheader`` in the environment of that one command
(:func:`ci_swarm.git.push`), never in a URL, argv, log line or error message. When the target branch moved
on the remote (the push is rejected as non-fast-forward / fetch first), the remote tip is fetched, the
merges are re-run onto it by the ``remerge`` callback, and the push is retried, a bounded number of times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ci_swarm import git
from ci_swarm.errors import ForgeError, GitError
from ci_swarm.models import RunReport

log = logging.getLogger(__name__)
MOVED = ("fetch first", "non-fast-forward", "stale info")
FETCHED = "refs/ci-swarm/remote"

# Re-run the merges onto a new tip; returns the report whose integration_commit sits on that tip.
Remerge = Callable[[RunReport, str], RunReport]


@dataclass(frozen=True)
class RefStatus:
    flag: str  # " " fast-forward, "+" forced, "-" deleted, "*" new, "!" rejected, "=" up to date
    src: str
    dst: str
    summary: str

    @property
    def rejected(self) -> bool:
        return self.flag == "!"

    @property
    def moved(self) -> bool:
        return self.rejected and any(reason in self.summary for reason in MOVED)


@dataclass(frozen=True)
class PushOutcome:
    report: RunReport  # with the integration commit actually pushed
    pushed: tuple[str, ...]  # branch names now on the remote
    attempts: int
    notes: tuple[str, ...] = ()


def parse_porcelain(text: str) -> tuple[RefStatus, ...]:
    """``git push --porcelain`` ref lines (pure)."""
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and len(parts[0]) == 1:
            src, _, dst = parts[1].partition(":")
            rows.append(RefStatus(parts[0], src, dst, parts[2]))
    return tuple(rows)


def _why(err: GitError) -> str:
    text = f"{err.stderr}\n{err.stdout}"
    if "returned error: 403" in text or "Write access to repository not granted" in text:
        return "the token may not push to this repository (HTTP 403)"
    if "returned error: 401" in text or "Authentication failed" in text or "could not read Username" in text:
        return "the token was refused (HTTP 401)"
    if "returned error: 404" in text or "not found" in text.lower():
        return "repository not found (HTTP 404)"
    rejected = [f"{r.dst} {r.summary}" for r in parse_porcelain(err.stdout) if r.rejected]
    return "; ".join(rejected) or str(err)


def _push(repo: Path, url: str, refspecs: Sequence[str], token: str) -> tuple[RefStatus, ...] | GitError:
    try:
        return parse_porcelain(git.push(repo, url, refspecs, token).text)
    except GitError as err:
        return err


def push_agents(repo: Path, url: str, report: RunReport, token: str) -> tuple[str, ...]:
    """Push every agent branch that has a commit; the branch names pushed. ForgeError names the failure."""
    specs = [f"{s.commit}:refs/heads/{s.branch}" for s in report.subtasks if s.branch and s.commit]
    if not specs:
        return ()
    result = _push(repo, url, specs, token)
    if isinstance(result, GitError):
        raise ForgeError(f"pushing the agent branches to {url} failed: {_why(result)}")
    return tuple(r.dst.removeprefix("refs/heads/") for r in result if not r.rejected)


def push_integration(
    repo: Path,
    url: str,
    report: RunReport,
    branch: str,
    token: str,
    remerge: Remerge,
    attempts: int = 3,
) -> PushOutcome:
    """Push the integration commit to ``branch``; when the branch moved, fetch, re-merge, retry."""
    notes: list[str] = []
    for attempt in range(1, attempts + 1):
        result = _push(repo, url, [f"{report.integration_commit}:refs/heads/{branch}"], token)
        if not isinstance(result, GitError):
            return PushOutcome(report, (branch,), attempt, tuple(notes))
        if not any(r.moved for r in parse_porcelain(result.stdout)):
            raise ForgeError(f"pushing {branch} to {url} failed: {_why(result)}")
        if attempt == attempts:
            break
        tip = fetch_tip(repo, url, branch, token)
        log.info("%s moved on the remote to %s; re-running the merges onto it", branch, tip[:10])
        notes.append(f"`{branch}` moved on the remote (now {tip[:10]}): the merges were re-run onto it")
        report = remerge(report, tip)
    raise ForgeError(
        f"pushing {branch} to {url} failed: the branch kept moving ({attempts} attempts); "
        f"the work is on {report.integration_branch} and the agent branches"
    )


def fetch_tip(repo: Path, url: str, branch: str, token: str) -> str:
    local = f"{FETCHED}/{branch}"
    try:
        git.fetch(repo, url, [f"+refs/heads/{branch}:{local}"], token)
    except GitError as err:
        raise ForgeError(f"fetching {branch} from {url} failed: {_why(err)}") from err
    return git.rev_parse(repo, local)
