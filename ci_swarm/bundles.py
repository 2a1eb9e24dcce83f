"""Agent bundles: one fan-out agent job's result, handed to the land job as a file, never pushed.

An agent job writes ``OUT`` — a git bundle of ``start..commit`` holding exactly one ref,
``refs/heads/<prefix>/<run>-agents/<id>`` — and ``OUT.json``, a small sidecar (:class:`AgentResult`: run id,
subtask, start, commit, status, exit status, seconds, usage, attempt; counts whole and ≥ 0, cost and seconds
finite and ≥ 0, else the sidecar is unreadable). A subtask whose agent committed
nothing (no commit, or the commit is its start) has a sidecar and no bundle.

The land job treats both files as untrusted input. :func:`admit` refuses, with a reason
(:class:`BundleRefused`), a bundle: larger than :data:`MAX_BUNDLE_BYTES`; for another run or an unknown
subtask; holding another ref (or several); holding another commit than its sidecar names; started
elsewhere than the recorded start commit (sidecar, prerequisite or the commit's parent); or one
``git bundle verify`` rejects, or whose objects git cannot read. Its commit is fetched into a quarantine ref
(``refs/ci-swarm/incoming/<run>/<id>``, hooks off as for every git command) and set on the agent branch
only once every check passed. :func:`newest` picks one result per subtask: the highest ``attempt``
(``$GITHUB_RUN_ATTEMPT`` of the job that made it), ties broken by the later sidecar path in sort order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.errors import GitError, UsageError
from ci_swarm.models import Usage

MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a bundle larger than this is refused unread
MAX_SIDECAR_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024  # a bundle's text header (signature, prerequisites, refs)
SIDECAR_SUFFIX = ".json"
_SIGNATURES = (b"# v2 git bundle", b"# v3 git bundle")


class BundleRefused(UsageError):
    """An agent's result the land job will not use; the message is the reason, one line."""


@dataclass(frozen=True)
class AgentResult:
    """The sidecar: what one agent job says it did (checked against the bundle before it is believed)."""

    run_id: str
    subtask: str
    start: str
    commit: str  # "" when the agent committed nothing
    status: str  # a SubtaskStatus value
    error: str = ""
    summary: str = ""
    exit_status: int | None = None
    seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    attempt: int = 1
    files: tuple[str, ...] = ()
    output_tail: str = ""

    @property
    def has_work(self) -> bool:
        return bool(self.commit) and self.commit != self.start


@dataclass(frozen=True)
class Found:
    """A sidecar found in the bundles directory: its result, or why it cannot be read."""

    sidecar: Path
    result: AgentResult | None
    problem: str = ""

    @property
    def bundle(self) -> Path:
        return bundle_of(self.sidecar)


def sidecar_of(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + SIDECAR_SUFFIX)


def bundle_of(sidecar: Path) -> Path:
    return sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])


def attempt_from_env() -> int:
    """This job's attempt (``$GITHUB_RUN_ATTEMPT``; 1 outside Actions or when it is not a number)."""
    text = os.environ.get("GITHUB_RUN_ATTEMPT", "1")
    return int(text) if text.isdigit() and int(text) > 0 else 1


# --- making -----------------------------------------------------------------------------------------


def make(repo: Path, out: Path, result: AgentResult, ref: str) -> None:
    """Write the bundle of ``result.start..result.commit`` holding ``ref`` (a full ref name pointing at
    the commit) to ``out`` — none when there is no work — and the sidecar to ``out.json``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.has_work:
        git.bundle_create(repo, out, ref, result.start)
    sidecar_of(out).write_text(json.dumps(asdict(result), indent=1, sort_keys=True) + "\n")


# --- finding and reading --------------------------------------------------------------------------


def find(directory: Path) -> tuple[Found, ...]:
    """Every sidecar under ``directory`` (artifacts may sit in sub-directories), in path order."""
    sidecars = sorted(p for p in directory.rglob(f"*{SIDECAR_SUFFIX}") if p.is_file())
    return tuple(_read_sidecar(p) for p in sidecars)


def newest(found: Iterable[Found]) -> dict[str, Found]:
    """One result per subtask: the highest attempt wins, then the later sidecar path."""
    best: dict[str, Found] = {}
    for item in found:
        if item.result is None:
            continue
        key = (item.result.attempt, str(item.sidecar))
        held = best.get(item.result.subtask)
        if held is None or key > (held.result.attempt if held.result else 0, str(held.sidecar)):
            best[item.result.subtask] = item
    return best


def _read_sidecar(path: Path) -> Found:
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            return Found(path, None, f"sidecar larger than {MAX_SIDECAR_BYTES} bytes")
        return Found(path, parse_result(json.loads(path.read_bytes())))
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        return Found(path, None, f"unreadable sidecar: {exc}")


def parse_result(raw: Any) -> AgentResult:
    """An :class:`AgentResult` from parsed JSON; ValueError/TypeError/KeyError when it is not one."""
    if not isinstance(raw, Mapping):
        raise ValueError("not a JSON object")
    usage = raw.get("usage") or {}
    if not isinstance(usage, Mapping):
        raise ValueError("'usage' is not an object")
    exit_status = raw.get("exit_status")
    return AgentResult(
        run_id=_str(raw, "run_id"),
        subtask=_str(raw, "subtask"),
        start=_str(raw, "start"),
        commit=_str(raw, "commit"),
        status=_str(raw, "status"),
        error=_str(raw, "error"),
        summary=_str(raw, "summary"),
        exit_status=None if exit_status is None else int(exit_status),
        seconds=_amount(raw, "seconds"),
        usage=_usage(usage),
        attempt=_count(raw, "attempt", 1, least=1),
        files=tuple(str(f) for f in raw.get("files", ())),
        output_tail=_str(raw, "output_tail"),
    )


def _usage(raw: Mapping[str, Any]) -> Usage:
    counts = {name: _count(raw, name, 0) for name in _USAGE_COUNTS}
    return Usage(**counts, cost_usd=_amount(raw, "cost_usd"))


def _count(raw: Mapping[str, Any], key: str, default: int, *, least: int = 0) -> int:
    """A whole number ≥ ``least`` (a negative count would give budget back to the jobs that follow)."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{key!r} must be a whole number ≥ {least}")
    return value


def _amount(raw: Mapping[str, Any], key: str) -> float:
    """A finite number ≥ 0 (NaN makes every comparison with a budget false; a negative cost gives it back)."""
    value = raw.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key!r} must be a finite number ≥ 0")
    return float(value)


_USAGE_COUNTS = (
    "requests",
    "retries",
    "turns",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string")
    return value


@dataclass(frozen=True)
class Header:
    """A bundle's text header: its prerequisite commits and its refs ``(commit, name)``."""

    prerequisites: tuple[str, ...]
    refs: tuple[tuple[str, str], ...]


def read_header(path: Path) -> Header:
    """The header of the bundle at ``path``; BundleRefused when it is not a git bundle."""
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    lines = head.split(b"\n")
    if lines[0] not in _SIGNATURES:
        raise BundleRefused("not a git bundle (v2 or v3)")
    prerequisites: list[str] = []
    refs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            return Header(tuple(prerequisites), tuple(refs))
        text = line.decode("utf-8", "replace")
        if text.startswith("@"):
            continue  # v3 capabilities
        if text.startswith("-"):
            prerequisites.append(text[1:].split(" ", 1)[0])
        else:
            oid, _, name = text.partition(" ")
            refs.append((oid, name))
    raise BundleRefused(f"the bundle's header is longer than {MAX_HEADER_BYTES} bytes or truncated")


# --- admitting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What the land job's state says a result must be."""

    run_id: str
    subtasks: Sequence[str]
    start: str
    branch_of: Mapping[str, str]  # subtask -> agent branch name (without refs/heads/)


def check_result(result: AgentResult, expected: Expected) -> None:
    """BundleRefused when the sidecar itself disagrees with the state."""
    if result.run_id != expected.run_id:
        raise BundleRefused(f"made for run {result.run_id!r}, not {expected.run_id!r}")
    if result.subtask not in expected.subtasks:
        raise BundleRefused(f"unknown subtask {result.subtask!r}")
    if result.start != expected.start:
        raise BundleRefused(f"started at {result.start[:12]}, not the recorded start {expected.start[:12]}")


def admit(repo: Path, bundle: Path, result: AgentResult, expected: Expected) -> str:
    """Check ``bundle`` against its sidecar and the state, fetch it through quarantine and set the agent
    branch; returns the commit. BundleRefused with the reason otherwise."""
    check_result(result, expected)
    if not bundle.is_file():
        raise BundleRefused(f"its bundle {bundle.name} is missing")
    if bundle.stat().st_size > MAX_BUNDLE_BYTES:
        raise BundleRefused(f"the bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    branch = expected.branch_of[result.subtask]
    header = read_header(bundle)
    if len(header.refs) != 1:
        raise BundleRefused(f"the bundle holds {len(header.refs)} refs, not one")
    commit, name = header.refs[0]
    if name != f"refs/heads/{branch}":
        raise BundleRefused(f"the bundle's ref is {name!r}, not 'refs/heads/{branch}'")
    if commit != result.commit:
        raise BundleRefused(f"the bundle holds commit {commit[:12]}, its sidecar names {result.commit[:12]}")
    if header.prerequisites != (expected.start,):
        shown = ", ".join(p[:12] for p in header.prerequisites) or "none"
        raise BundleRefused(
            f"the bundle's prerequisite is {shown}, not the recorded start {expected.start[:12]}"
        )
    complaint = git.bundle_verify(repo, bundle)
    if complaint:
        raise BundleRefused(f"git bundle verify: {complaint}")
    return _import(repo, bundle, name, commit, expected, result.subtask)


def _import(repo: Path, bundle: Path, name: str, commit: str, expected: Expected, subtask: str) -> str:
    quarantine = f"refs/ci-swarm/incoming/{expected.run_id}/{subtask}"
    try:
        git.fetch_bundle(repo, bundle, name, quarantine)
    except GitError as exc:
        raise BundleRefused(f"the bundle's objects cannot be read ({exc.stderr.strip()[-200:]})") from exc
    try:
        if git.try_ref(repo, quarantine) != commit:
            raise BundleRefused("the bundle's ref did not hold the commit its header names")
        found = git.parents(repo, commit)
        if found != (expected.start,):
            raise BundleRefused(f"its commit's parent is not the recorded start {expected.start[:12]}")
        git.update_ref(repo, name, commit, message=f"ci-swarm: agent result of {subtask}")
    finally:
        held = git.try_ref(repo, quarantine)
        if held is not None:
            git.delete_ref(repo, quarantine, held)
    return commit
