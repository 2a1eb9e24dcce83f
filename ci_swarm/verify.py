"""Verified integration (issue #12): checks judge commits, the integration tip is verified like a merge
queue, and the subtasks that break it are found and set aside.

* :func:`run_checks` — the checks on one commit: a scratch clone at the commit (:mod:`ci_swarm.clones`),
  each check through the sandbox with its timeout (a hanging check is killed and counted failed), its
  output tail redacted. The first failing check ends the run (the rest would only cost time).
* :func:`check_agents` — command agents check their own work: the checks on each succeeded command
  agent's commit, recorded on its subtask; a failing one is taken out of the integration (``FAILED``)
  unless ``merge_failing``.
* :func:`verify_integration` — the checks on the integration tip; a failure is re-checked once (a check
  that passes then is reported ``flipped``), then the merge sequence is bisected: prefix tips of the
  sequence (rebuilt in the object database by the merge queue, cheap) are checked to find the first
  prefix that fails — its last subtask is the culprit (≤ ⌈log₂ n⌉ runs) — the integration is rebuilt
  without it (≤ 1 run to re-verify), and the search repeats while the checks still fail (a second culprit,
  or the later half of an interaction of two), at most :data:`MAX_CULPRITS` times. Culprits are
  ``REJECTED`` with the failing check's log tail; their branches are kept.

A subtask whose branch started from a tip that holds a set-aside subtask's merge is set aside with it (its
history carries the culprit's work: merging it would bring that back). When every subtask is set aside the
integration is the base; when the base itself fails the checks nothing is set aside (no subtask is to
blame) and verification says ``failed``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ci_swarm import git, sandbox
from ci_swarm.clones import GitClones
from ci_swarm.concurrency import in_thread
from ci_swarm.merge import MergeQueue
from ci_swarm.models import (
    Check,
    CheckResult,
    Culprit,
    MergeRecord,
    MergeStatus,
    Overlap,
    Repair,
    Resolved,
    RunReport,
    Subtask,
    SubtaskRecord,
    SubtaskStatus,
    Verification,
    VerificationStatus,
)
from ci_swarm.outputtail import Redactor
from ci_swarm.sandbox import ProcessResult, ProcessSpec, SandboxPolicy

MAX_CULPRITS = 4  # bisection rounds before verification gives up (each sets one subtask aside)
TAIL_LINES = 30

CheckRunner = Callable[[str], Awaitable[tuple[CheckResult, ...]]]  # a commit → its checks' results


def passed(results: Sequence[CheckResult]) -> bool:
    return all(r.ok for r in results)


def first_failure(results: Sequence[CheckResult]) -> CheckResult | None:
    return next((r for r in results if not r.ok), None)


# --- running checks -------------------------------------------------------------------------------------


async def run_checks(
    repo: Path,
    commit: str,
    checks: Sequence[Check],
    policy: SandboxPolicy,
    *,
    redactor: Redactor | None = None,
) -> tuple[CheckResult, ...]:
    """``checks`` on ``commit`` in a scratch clone, in order, through the sandbox; stops at the first
    failure. The scratch clone and its branch are removed afterwards."""
    token = secrets.token_hex(6)
    spaces = GitClones(repo, None, f"check-{token}")
    branch = f"ci-swarm-check/{token}"
    sub = Subtask(id="check", role="check", title="check")
    ws = await in_thread(spaces.make, sub, branch, commit, undo=spaces.dispose)
    results: list[CheckResult] = []
    try:
        for check in checks:
            spec = ProcessSpec(argv=check.run, cwd=ws.root, timeout=check.timeout, writable_dirs=(ws.root,))
            result = await sandbox.run(spec, policy)
            results.append(_result(check, result, redactor or Redactor()))
            if not results[-1].ok:
                break
    finally:
        await in_thread(spaces.dispose, ws)
        await in_thread(spaces.close)
        git.run(repo, "update-ref", "-d", f"refs/heads/{branch}", ok=(0, 1))
    return tuple(results)


def _result(check: Check, result: ProcessResult, redactor: Redactor) -> CheckResult:
    tail = redactor.tail(result.output, TAIL_LINES)
    if result.timed_out:
        tail = f"{tail}\n(killed at its timeout of {check.timeout:g}s)".lstrip()
    return CheckResult(
        name=check.name,
        ok=result.ok,
        exit_status=result.returncode,
        seconds=round(result.duration, 3),
        output_tail=tail,
        timed_out=result.timed_out,
    )


def checker(
    repo: Path, checks: Sequence[Check], policy: SandboxPolicy, redactor: Redactor | None = None
) -> CheckRunner:
    """A :data:`CheckRunner` running ``checks`` through :func:`run_checks`."""

    async def run(commit: str) -> tuple[CheckResult, ...]:
        return await run_checks(repo, commit, checks, policy, redactor=redactor)

    return run


class _Counted:
    """A runner that counts its runs (the report's ``check_runs``)."""

    def __init__(self, run: CheckRunner) -> None:
        self._run = run
        self.runs = 0

    async def __call__(self, commit: str) -> tuple[CheckResult, ...]:
        self.runs += 1
        return await self._run(commit)


# --- rebuilding integrations in the object database ------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One merged subtask of the sequence: its commit, where it started and its merge on the integration
    (with the repair that landed there, if one did)."""

    subtask: str
    commit: str
    start: str
    merge: str
    repair: Repair | None = None

    @property
    def holds(self) -> str:
        """Where the work merged here started: a redo started at the tip before its merge."""
        redone = self.repair is not None and self.repair.outcome is Resolved.REDONE
        return self.repair.start if redone and self.repair is not None else self.start


@dataclass(frozen=True)
class _Built:
    tips: tuple[str, ...]  # tips[0] = the base, tips[i] = after the first i merges
    merges: tuple[MergeRecord, ...]
    overlaps: tuple[Overlap, ...]


def _sequence(report: RunReport) -> list[_Entry]:
    subs = {s.id: s for s in report.subtasks}
    entries = []
    for m in sorted(report.merges, key=lambda m: m.order):
        sub = subs.get(m.subtask)
        if sub is not None and sub.commit and m.status is not MergeStatus.SKIPPED:
            landed = m.repair if m.repair is not None and m.repair.outcome is not Resolved.REFUSED else None
            entries.append(_Entry(sub.id, sub.commit, sub.start_commit, m.commit, landed))
    return entries


def _build(repo: Path, report: RunReport, entries: Sequence[_Entry]) -> _Built:
    """``entries`` merged onto the base, in order, on a scratch branch (deleted after): every prefix tip.
    A merge whose repair landed is replayed as it landed when the rebuilt tip is the one it was made onto;
    on another tip the repair does not apply (it was judged there) and the policy's merge lands instead."""
    branch = f"{report.integration_branch}-verify-{secrets.token_hex(4)}"
    git.create_branch(repo, branch, report.base)
    roles = {s.id: s.role for s in report.subtasks}
    queue = MergeQueue(repo, branch, report.base, report.merge_policy, roles)
    tips, merges = [report.base], []
    try:
        for order, e in enumerate(entries, 1):
            merges.append(_replay(queue, e, order))
            tips.append(queue.tip)
    finally:
        git.run(repo, "update-ref", "-d", f"refs/heads/{branch}", ok=(0, 1))
    return _Built(tuple(tips), tuple(merges), queue.overlaps)


def _replay(queue: MergeQueue, e: _Entry, order: int) -> MergeRecord:
    if e.repair is None or queue.tip != e.repair.onto:
        return queue.merge(e.subtask, e.commit, e.start, order)
    pending = queue.attempt(e.subtask, e.commit, e.start, order)
    return pending.record if pending.landed else queue.land(pending, e.repair, e.merge)


def _with_dependents(repo: Path, entries: Sequence[_Entry], out: set[str]) -> dict[str, str]:
    """``out`` and every entry whose start holds the merge of one of them: {subtask: the culprit it holds}."""
    merges = {e.subtask: e.merge for e in entries}
    held: dict[str, str] = {s: s for s in out}
    for e in entries:
        if e.subtask in held:
            continue
        for culprit in list(held):
            if git.is_ancestor(repo, merges[culprit], e.holds):
                held[e.subtask] = held[culprit]
                break
    return held


def set_aside(repo: Path, report: RunReport, reasons: Mapping[str, tuple[SubtaskStatus, str]]) -> RunReport:
    """The integration rebuilt without the subtasks of ``reasons`` (and those built on them), its branch
    moved to the new tip; each set-aside subtask gets its status and reason (branches kept)."""
    entries = _sequence(report)
    held = _with_dependents(repo, entries, set(reasons))
    kept = [e for e in entries if e.subtask not in held]
    built = _build(repo, report, kept)
    tip = built.tips[-1]
    git.update_ref(
        repo,
        f"refs/heads/{report.integration_branch}",
        tip,
        old=report.integration_commit,
        message="ci-swarm: integration without the subtasks set aside",
    )
    skipped = tuple(m for m in report.merges if m.status is MergeStatus.SKIPPED and m.subtask not in held)
    merges = tuple(sorted((*built.merges, *skipped), key=lambda m: m.order))
    refused = {m.subtask: m.repair for m in report.merges if m.resolution is Resolved.REFUSED and m.repair}

    def mark(s: SubtaskRecord) -> SubtaskRecord:
        if s.id not in held:
            return s
        if s.id in reasons:
            status, why = reasons[s.id]
        else:
            status, why = SubtaskStatus.REJECTED, f"set aside: built on {held[s.id]}, which was set aside"
        if s.id in refused:  # its merge leaves the report: say what was tried on its conflicts
            tried = refused[s.id]
            why = f"{why} (a repair of its conflicts by {tried.by} was refused: {tried.reason})"
        return replace(s, status=status, error=why)

    subtasks = tuple(mark(s) for s in report.subtasks)
    return replace(report, integration_commit=tip, merges=merges, overlap=built.overlaps, subtasks=subtasks)


# --- command agents check their own work -----------------------------------------------------------------


async def check_agents(
    repo: Path,
    report: RunReport,
    command_agents: Sequence[str],
    run: CheckRunner,
    *,
    merge_failing: bool = False,
) -> RunReport:
    """The checks on each succeeded command agent's commit (ids in ``command_agents``), recorded on its
    subtask; failing ones taken out of the integration as ``FAILED`` unless ``merge_failing``."""
    checked: dict[str, tuple[CheckResult, ...]] = {}
    for s in report.subtasks:
        if s.id in command_agents and s.status is SubtaskStatus.SUCCEEDED and s.commit:
            checked[s.id] = await run(s.commit)
    subtasks = tuple(replace(s, checks=checked.get(s.id, s.checks)) for s in report.subtasks)
    report = replace(report, subtasks=subtasks)
    failing = {sid: first_failure(results) for sid, results in checked.items()}
    reasons = {
        sid: (SubtaskStatus.FAILED, f"its own checks failed: {_said(bad)} (not merged: merge_failing is off)")
        for sid, bad in failing.items()
        if bad is not None
    }
    if not reasons or merge_failing:
        return report
    return set_aside(repo, report, reasons)


def _said(result: CheckResult) -> str:
    how = "timed out" if result.timed_out else f"exit {result.exit_status}"
    return f"{result.name} ({how})"


# --- the integration verified like a merge queue --------------------------------------------------------


def not_run(report: RunReport) -> RunReport:
    return replace(report, verification=Verification())


async def verify_integration(repo: Path, report: RunReport, run: CheckRunner) -> RunReport:
    """The report with its integration verified (see the module doc): ``integration_commit`` is the
    verified tip, ``verification`` says how, culprits are ``REJECTED``."""
    began = time.monotonic()
    counted = _Counted(run)
    first = await counted(report.integration_commit)
    if passed(first):
        return _done(report, VerificationStatus.PASSED, first, counted, began, (), "")
    again = await counted(report.integration_commit)
    if passed(again):
        flipped = {r.name for r in first if not r.ok}
        results = tuple(replace(r, flipped=r.name in flipped) for r in again)
        note = "a check failed, then passed when re-checked (flaky): " + ", ".join(sorted(flipped))
        return _done(report, VerificationStatus.PASSED, results, counted, began, (), note)
    return await _bisect_all(repo, report, counted, again, began)


async def _bisect_all(
    repo: Path, report: RunReport, counted: _Counted, failing: tuple[CheckResult, ...], began: float
) -> RunReport:
    entries = _sequence(report)
    tips = (report.base, *(e.merge for e in entries))  # the merge queue's own prefix tips
    culprits: list[Culprit] = []
    while entries and len(culprits) < MAX_CULPRITS:
        index, failing = await _first_failing(tips, counted, failing)
        bad = first_failure(failing)
        assert bad is not None  # _first_failing returns a failing prefix's results
        culprit = entries[index - 1]
        after = entries[index - 2].subtask if index > 1 else "the base"
        why = (
            f"check {_said(bad)} fails once {culprit.subtask} is merged (after {after}) and passes without it"
        )
        culprits.append(Culprit(culprit.subtask, bad.name, why, bad.output_tail))
        held = _with_dependents(repo, entries, {culprit.subtask})
        entries = [e for e in entries if e.subtask not in held]
        tips = _build(repo, report, entries).tips
        failing = await counted(tips[-1])
        if passed(failing):
            return _finish(repo, report, culprits, failing, counted, began)
    if not entries:  # even the base fails: no subtask is to blame
        note = "the base itself fails the checks: nothing was set aside"
        return _done(report, VerificationStatus.FAILED, failing, counted, began, (), note)
    note = f"the checks still fail after setting {len(culprits)} subtask(s) aside: gave up"
    return _done(report, VerificationStatus.FAILED, failing, counted, began, (), note)


async def _first_failing(
    tips: Sequence[str], counted: _Counted, last: tuple[CheckResult, ...]
) -> tuple[int, tuple[CheckResult, ...]]:
    """The first prefix whose tip fails, by bisection: ``tips[0]`` (the base) is taken to pass, the last
    is known to fail with ``last``. ⌈log₂ n⌉ runs for n merges."""
    low, high, failing = 0, len(tips) - 1, last
    while high - low > 1:
        middle = (low + high) // 2
        results = await counted(tips[middle])
        if passed(results):
            low = middle
        else:
            high, failing = middle, results
    return high, failing


def _finish(
    repo: Path,
    report: RunReport,
    culprits: Sequence[Culprit],
    results: tuple[CheckResult, ...],
    counted: _Counted,
    began: float,
) -> RunReport:
    reasons = {
        c.subtask: (SubtaskStatus.REJECTED, f"{c.reason}: {_last_line(c.output_tail)}") for c in culprits
    }
    rebuilt = set_aside(repo, report, reasons)
    extra = tuple(
        Culprit(s.id, culprits[0].check, s.error)
        for s in rebuilt.subtasks
        if s.status is SubtaskStatus.REJECTED and s.id not in reasons
    )
    shown = (*culprits, *extra)
    note = f"{len(shown)} subtask(s) set aside: the checks pass without them"
    return _done(rebuilt, VerificationStatus.PASSED, results, counted, began, shown, note)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _done(
    report: RunReport,
    status: VerificationStatus,
    results: tuple[CheckResult, ...],
    counted: _Counted,
    began: float,
    culprits: tuple[Culprit, ...],
    note: str,
) -> RunReport:
    verification = Verification(
        status=status,
        checks=results,
        check_runs=counted.runs,
        culprits=culprits,
        seconds=round(time.monotonic() - began, 3),
        note=note or ("the integration passes its checks" if status is VerificationStatus.PASSED else ""),
    )
    return replace(report, verification=verification)
