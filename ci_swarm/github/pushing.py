"""Pushing a run: every agent branch, then the integration commit onto the target branch.

The token reaches git only through ``http.extraheader`` in the environment of that one command
(:func:`ci_swarm.git.push`), never in a URL, argv, log line or error message. When the target branch moved
on the remote (the push is rejected as non-fast-forward / fetch first), the remote tip is fetched, the
merges are re-run onto it by the ``remerge`` callback, and the push is retried, a bounded number of times.

Nothing secret is pushed. Every commit a push would carry — from the commit the remote already has (the run's
base, or the remote tip a re-merge went onto) to the pushed tip — is scanned first
(:func:`ci_swarm.secretscan.scan_range`) for the run's secrets and the token formats. An agent branch with a
finding is **held back** (:class:`HeldBack`, naming commit, file and line, never the value) while the other
branches push; :func:`withhold` takes held-back subtasks out of the integration branch (re-merging the rest
onto the base) so the pull request carries none of their commits. The integration push is guarded the same
way: a finding there raises :class:`~ci_swarm.errors.SecretFound` and nothing is pushed. This module is the
only place ci-swarm pushes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ci_swarm import git
from ci_swarm.errors import ForgeError, GitError
from ci_swarm.models import MergeStatus, RunReport, SubtaskStatus
from ci_swarm.secretscan import Finding, ensure_no_secrets, scan_range

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


@dataclass(frozen=True)
class HeldBack:
    """An agent branch that was not pushed: its commits hold a secret. Names places, never values."""

    subtask: str
    branch: str
    findings: tuple[Finding, ...]

    @property
    def places(self) -> str:
        shown = "; ".join(str(f) for f in self.findings[:3])
        more = f"; and {len(self.findings) - 3} more" if len(self.findings) > 3 else ""
        return shown + more

    def __str__(self) -> str:
        count = len(self.findings)
        return f"`{self.branch}` was held back (not pushed): {count} secret(s) in its commits: {self.places}"


@dataclass(frozen=True)
class AgentPush:
    pushed: tuple[str, ...]  # branch names now on the remote
    held: tuple[HeldBack, ...] = ()  # branches not pushed because they hold a secret


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


@dataclass(frozen=True)
class Guard:
    """What a push is scanned for (the run's secret values; the token formats always) and from where: the
    commit the remote already has (None: the whole history)."""

    secrets: tuple[str, ...] = ()
    since: str | None = None

    def __repr__(self) -> str:  # never show the values
        return f"Guard({len(self.secrets)} secret(s), since={self.since!r})"


def _push(
    repo: Path,
    url: str,
    refspecs: Sequence[str],
    token: str,
    guard: Guard,
    *,
    lease: Mapping[str, str] | None = None,
) -> tuple[RefStatus, ...] | GitError:
    """The one push: every refspec's commits scanned first (SecretFound: nothing is pushed). A ref is
    replaced only with a ``lease`` ({ref: the commit it must still hold}): never a bare ``--force``."""
    for spec in refspecs:
        ensure_no_secrets(repo, guard.since, spec.split(":", 1)[0], guard.secrets)
    try:
        return parse_porcelain(git.push(repo, url, refspecs, token, lease=lease).text)
    except GitError as err:
        return err


def scan_agents(repo: Path, report: RunReport, secrets: Sequence[str]) -> tuple[HeldBack, ...]:
    """Each agent branch (whatever its subtask's status) whose commits since the base hold a secret."""
    held = []
    for sub in report.subtasks:
        if sub.branch and sub.commit:
            findings = scan_range(repo, report.base or None, sub.commit, secrets)
            if findings:
                held.append(HeldBack(sub.id, sub.branch, findings))
    return tuple(held)


def push_agents(
    repo: Path, url: str, report: RunReport, token: str, secrets: Sequence[str] = ()
) -> AgentPush:
    """Push every agent branch that has a commit and holds no secret (the others are held back).
    ForgeError names a push failure."""
    held = scan_agents(repo, report, secrets)
    blocked = {h.branch for h in held}
    specs = [
        f"{s.commit}:refs/heads/{s.branch}"
        for s in report.subtasks
        if s.branch and s.commit and s.branch not in blocked
    ]
    if not specs:
        return AgentPush((), held)
    result = _push(repo, url, specs, token, Guard(tuple(secrets), report.base or None))
    if isinstance(result, GitError):
        raise ForgeError(f"pushing the agent branches to {url} failed: {_why(result)}")
    return AgentPush(tuple(r.dst.removeprefix("refs/heads/") for r in result if not r.rejected), held)


def withhold(report: RunReport, held: Sequence[HeldBack], remerge: Remerge) -> RunReport:
    """``report`` without the held-back subtasks: each is marked failed with where its secret is, and when
    any of them was merged, the other merges are re-run onto the base (the integration branch keeps its
    name), so the integration commit carries none of their commits."""
    if not held:
        return report
    why = {h.subtask: h for h in held}
    subtasks = tuple(
        replace(
            s, status=SubtaskStatus.FAILED, error=f"held back: a secret in its commits ({why[s.id].places})"
        )
        if s.id in why
        else s
        for s in report.subtasks
    )
    note = (
        f"{len(held)} agent branch(es) held back: their commits hold a secret (named by place in the table)"
    )
    merged = [m for m in report.merges if m.subtask in why and m.status is not MergeStatus.SKIPPED]
    if not merged:
        return replace(report, subtasks=subtasks, notes=(*report.notes, note))
    kept = replace(report, subtasks=subtasks, merges=tuple(m for m in report.merges if m.subtask not in why))
    remerged = remerge(kept, report.base)
    return replace(remerged, integration_branch=report.integration_branch, notes=(*report.notes, note))


def push_integration(
    repo: Path,
    url: str,
    report: RunReport,
    branch: str,
    token: str,
    remerge: Remerge,
    attempts: int = 3,
    *,
    secrets: Sequence[str] = (),
    lease: str | None = None,
) -> PushOutcome:
    """Push the integration commit to ``branch`` (scanned first: SecretFound pushes nothing); when the
    branch moved, fetch, re-merge, retry. With ``lease`` (the tip last seen, "" = none) the branch is
    replaced (a maintenance job's own, see :mod:`ci_swarm.github.maintenance`), but only while the remote
    still holds that tip; after a re-merge the lease is the new tip."""
    notes: list[str] = []
    guard = Guard(tuple(secrets), report.base or None)
    ref = f"refs/heads/{branch}"
    for attempt in range(1, attempts + 1):
        spec = f"{report.integration_commit}:{ref}"
        result = _push(repo, url, [spec], token, guard, lease=None if lease is None else {ref: lease})
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
        lease = None if lease is None else tip  # built on the new tip: it may replace only that
        guard = replace(guard, since=tip)  # the remote has the new tip: scan only what it lacks
    raise ForgeError(
        f"pushing {branch} to {url} failed: the branch kept moving ({attempts} attempts); "
        f"the work is on {report.integration_branch} and the agent branches"
    )


def push_refs(
    repo: Path,
    url: str,
    token: str,
    refs: Mapping[str, tuple[str, str]],
    *,
    secrets: Sequence[str] = (),
    since: str | None = None,
) -> None:
    """Push each ``{ref: (commit, the commit the remote must still hold — "" = none)}`` with a lease, every
    commit scanned first (SecretFound: nothing is pushed): a fan-out run's integration branch at its base
    and its state ref (``refs/swarm/<run>/state``). ForgeError when the remote refuses or a ref moved."""
    specs = [f"{commit}:{ref}" for ref, (commit, _) in refs.items()]
    lease = {ref: expected for ref, (_, expected) in refs.items()}
    result = _push(repo, url, specs, token, Guard(tuple(secrets), since), lease=lease)
    if isinstance(result, GitError):
        raise ForgeError(f"pushing {', '.join(refs)} to {url} failed: {_why(result)}")
    rejected = [f"{r.dst} {r.summary}" for r in result if r.rejected]
    if rejected:
        raise ForgeError(f"pushing to {url} failed: {'; '.join(rejected)}")


def fetch_tip(repo: Path, url: str, branch: str, token: str) -> str:
    local = f"{FETCHED}/{branch}"
    try:
        git.fetch(repo, url, [f"+refs/heads/{branch}:{local}"], token)
    except GitError as err:
        raise ForgeError(f"fetching {branch} from {url} failed: {_why(err)}") from err
    return git.rev_parse(repo, local)


def delete_branches(repo: Path, url: str, token: str, branches: Mapping[str, str]) -> tuple[str, ...]:
    """Delete ``branches`` ({name: the commit it must still hold}) on the remote: a deletion carries no
    commit, so nothing is scanned; each branch goes only while it still holds that commit (a lease). The
    names deleted; ForgeError when the push fails for another reason than a moved branch."""
    if not branches:
        return ()
    specs = [f":refs/heads/{name}" for name in branches]
    lease = {f"refs/heads/{name}": commit for name, commit in branches.items()}
    try:
        rows = parse_porcelain(git.push(repo, url, specs, token, lease=lease).text)
    except GitError as err:
        rows = parse_porcelain(err.stdout)
        if not rows:
            raise ForgeError(f"deleting branches on {url} failed: {_why(err)}") from err
    return tuple(r.dst.removeprefix("refs/heads/") for r in rows if r.flag == "-")


@dataclass(frozen=True)
class TokenRemote:
    """A remote by URL with a token (the Action's) or by name with git's own credentials (``token`` "": the
    CLI's ``cleanup --remote NAME``): the :class:`ci_swarm.cleanup.Remote` runs' branches are deleted on."""

    repo: Path
    url: str
    token: str
    name: str = "origin"

    def branches(self, prefix: str) -> Mapping[str, str]:
        try:
            refs = git.ls_remote(self.repo, self.url, [f"refs/heads/{prefix}/*"], self.token)
        except GitError as err:
            raise ForgeError(f"listing the branches of {self.url} failed: {_why(err)}") from err
        return {ref.removeprefix("refs/heads/"): oid for ref, oid in refs.items()}

    def fetch(self, refspecs: Sequence[str]) -> None:
        try:
            git.fetch(self.repo, self.url, refspecs, self.token)
        except GitError as err:
            raise ForgeError(f"fetching from {self.url} failed: {_why(err)}") from err

    def delete(self, branches: Mapping[str, str]) -> tuple[str, ...]:
        return delete_branches(self.repo, self.url, self.token, branches)
