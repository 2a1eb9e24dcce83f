"""Verified integration (issue #12): checks judge commits, the integration tip is verified like a merge
queue, and the subtasks that break it are found and set aside.

* :func:`run_checks` — the checks on one commit: a scratch clone at the commit (:mod:`ci_swarm.clones`),
  each check through the sandbox with its timeout (a hanging check is killed and counted failed), its
  output tail redacted. The first failing check ends the run (the rest would only cost time).
* :func:`check_agents` — command agents check their own work: the checks on each succeeded command
  agent's commit, recorded on its subtask; a failing one is taken out of the integration (``FAILED``)
  unless ``merge_failing``.
* :func:`verify_integration` — the checks on the integration tip; when they fail the merge sequence is
  bisected: prefix tips of the sequence (rebuilt in the object database by the merge queue, cheap) are
  checked to find the first prefix that fails — its last subtask B is the culprit (⌈log₂ n⌉ runs). Then one
  round runs at once (each run has its own scratch clone; a round is one unit of wall time): the
  integration rebuilt without B (no run when B is the last entry: bisection checked that tree), B merged
  alone on the base when B started there and is not the first entry (is it an interaction?), and — only
  when B is the last entry, so that the blame rests on the tip's single failure — the tip re-checked once:
  a pass there means the check is flaky (reported ``flipped``, nothing set aside). When B passes alone, it
  fails only together with something earlier: the earlier entries are bisected with B merged after them
  (⌈log₂ (i−1)⌉ runs for B at position i) to name its partner A; only B, the later one, is set aside (A
  landed first and later work may build on it). The search repeats while the checks still fail (a second
  culprit), at most :data:`MAX_CULPRITS` times. Culprits are ``REJECTED`` with the failing check's log
  tail; their branches are kept. Results are remembered by tree: a tree is checked once.

  Cost for n merged subtasks and one culprit: ≤ 1 + ⌈log₂ n⌉ + 2 runs in ≤ 1 + ⌈log₂ n⌉ + 1 rounds (one
  more round when n = 1: the re-check, then the base); for an interaction of two, ≤ 1 + 1 + ⌈log₂ n⌉ + 1 +
  ⌈log₂ n⌉ runs (the partner's bisection added). The tip is not re-checked before bisecting: when B is
  not the last entry, the failing probe at B's prefix already confirms the failure, and a re-check would
  cost a run on every culprit found; a flaky tip costs the bisection before it is found flaky.

A subtask whose branch started from a tip that holds a set-aside subtask's merge is set aside with it (its
history carries the culprit's work: merging it would bring that back). When every subtask is set aside the
integration is the base; when the base itself fails the checks nothing is set aside (no subtask is to
blame) and verification says ``failed``.
"""

from __future__ import annotations

import asyncio
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
from ci_swarm.workspace import Workspace

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
    results: list[CheckResult] = []
    ws: Workspace | None = None
    try:  # the clone is made inside: a cancellation while it is made still removes it and its branch
        ws = await in_thread(spaces.make, sub, branch, commit, undo=spaces.dispose)
        for check in checks:
            spec = ProcessSpec(argv=check.run, cwd=ws.root, timeout=check.timeout, writable_dirs=(ws.root,))
            result = await sandbox.run(spec, policy)
            results.append(_result(check, result, redactor or Redactor()))
            if not results[-1].ok:
                break
    finally:
        if ws is not None:
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


Results = tuple[CheckResult, ...]


class _Checks:
    """The check runs of one verification: counted, started together in rounds (a round is one unit of
    wall time: each run has its own scratch clone), and remembered by tree — two commits with the same
    tree are checked once."""

    def __init__(self, repo: Path, run: CheckRunner, known: Mapping[str, Results] | None = None) -> None:
        self._repo = repo
        self._run = run
        self._by_tree: dict[str, Results] = dict(known or {})  # tree → results (speculative ones first)
        self.runs = 0
        self.rounds = 0

    async def one(self, commit: str) -> Results:
        return (await self.round(commit))[0]

    async def round(self, *commits: str, again: str = "") -> tuple[Results, ...]:
        """Each commit's results — remembered ones without a run, the others run at once — and last, when
        ``again`` is given, that commit checked once more whatever is remembered (the flakiness re-check)."""
        trees = [git.tree_of(self._repo, c) for c in commits]
        todo = {t: c for t, c in zip(trees, commits, strict=True) if t not in self._by_tree}
        jobs = [*todo.values(), *([again] if again else [])]
        ran: list[Results] = []
        if jobs:
            self.runs += len(jobs)
            self.rounds += 1
            ran = list(await asyncio.gather(*(self._run(c) for c in jobs)))
            self._by_tree.update(zip(todo, ran, strict=False))
        return (*(self._by_tree[t] for t in trees), *(ran[-1:] if again else ()))


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
        with queue:
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


async def verify_integration(
    repo: Path,
    report: RunReport,
    run: CheckRunner,
    *,
    known: Mapping[str, Results] | None = None,
    speculative_runs: int = 0,
) -> RunReport:
    """The report with its integration verified (see the module doc): ``integration_commit`` is the
    verified tip, ``verification`` says how, culprits are ``REJECTED``. ``known``: results by tree that
    speculative checks (:mod:`ci_swarm.speculate`, ``speculative_runs`` of them) found while agents ran —
    a tree found there is not checked again."""
    began = time.monotonic()
    checks = _Checks(repo, run, known)
    first = await checks.one(report.integration_commit)
    if passed(first):
        verified = _done(report, VerificationStatus.PASSED, first, checks, began, (), "")
    else:
        verified = await _bisect_all(repo, report, checks, first, began)
    return replace(verified, verification=replace(verified.verification, speculative_runs=speculative_runs))


@dataclass(frozen=True)
class _Found:
    """What one search found: the culprit (``None``: the failing tip passed when re-checked, ``results``
    are then the re-check's), the entries without it (and those built on it) and their tip's results."""

    culprit: Culprit | None
    without: tuple[_Entry, ...]
    results: Results


async def _bisect_all(
    repo: Path, report: RunReport, checks: _Checks, failing: Results, began: float
) -> RunReport:
    entries = _sequence(report)
    tips = (report.base, *(e.merge for e in entries))  # the merge queue's own prefix tips
    culprits: list[Culprit] = []
    while entries and len(culprits) < MAX_CULPRITS:
        recheck = report.integration_commit if not culprits else ""  # the tip's failure, once
        found = await _find(repo, report, checks, entries, tips, failing, recheck)
        if found.culprit is None:
            return _flaky(report, found.results, failing, checks, began)
        culprits.append(found.culprit)
        entries, failing = list(found.without), found.results
        if passed(failing):
            return _finish(repo, report, culprits, failing, checks, began)
        tips = _build(repo, report, entries).tips
    if not entries:  # even the base fails: no subtask is to blame
        note = "the base itself fails the checks: nothing was set aside"
        return _done(report, VerificationStatus.FAILED, failing, checks, began, (), note)
    note = f"the checks still fail after setting {len(culprits)} subtask(s) aside: gave up"
    return _done(report, VerificationStatus.FAILED, failing, checks, began, (), note)


async def _find(
    repo: Path,
    report: RunReport,
    checks: _Checks,
    entries: Sequence[_Entry],
    tips: Sequence[str],
    failing: Results,
    recheck: str,
) -> _Found:
    """One culprit: bisection names the entry whose merge makes the checks fail; then, in one round, the
    integration without it (remembered when it was the last entry), it merged alone on the base (is it an
    interaction?) and — only when it was the last entry, whose blame then rests on the tip's one failure —
    the tip checked again (``recheck``; a pass there means the check is flaky, nothing is set aside)."""
    index, at = await _first_failing(len(entries), lambda k: checks.one(tips[k]), failing)
    culprit = entries[index - 1]
    held = _with_dependents(repo, entries, {culprit.subtask})
    without = tuple(e for e in entries if e.subtask not in held)
    rebuilt = _build(repo, report, without).tips[-1]
    alone = [_build(repo, report, [culprit]).tips[-1]] if index > 1 and culprit.start == report.base else []
    if recheck and index == len(entries):
        *alone_results, again = await checks.round(*alone, again=recheck)
        if passed(again):
            return _Found(None, tuple(entries), again)
        results = await checks.one(rebuilt)  # the prefix bisection passed, unless that is the base
    else:
        results, *alone_results = await checks.round(rebuilt, *alone)
    if alone_results and passed(alone_results[0]):
        return await _interaction(repo, report, checks, entries[: index - 1], culprit, at, without, results)
    return _Found(_solo(culprit, entries, index, at, bool(alone_results)), without, results)


def _solo(culprit: _Entry, entries: Sequence[_Entry], index: int, at: Results, alone: bool) -> Culprit:
    bad = first_failure(at)
    assert bad is not None  # bisection returns a failing prefix's results
    after = entries[index - 2].subtask if index > 1 else "the base"
    why = f"check {_said(bad)} fails once {culprit.subtask} is merged (after {after}) and passes without it"
    if alone:
        why += "; it fails merged alone on the base too"
    return Culprit(culprit.subtask, bad.name, why, bad.output_tail)


async def _interaction(
    repo: Path,
    report: RunReport,
    checks: _Checks,
    earlier: Sequence[_Entry],
    culprit: _Entry,
    at: Results,
    without: tuple[_Entry, ...],
    results: Results,
) -> _Found:
    """The culprit passes merged alone on the base and fails after ``earlier``: its partner is the first of
    ``earlier`` whose prefix, with the culprit merged after it, fails (bisection: ⌈log₂ len(earlier)⌉ runs;
    the whole of ``earlier`` with it is known to fail). Only the later of the two is set aside."""

    async def with_culprit(k: int) -> Results:
        return await checks.one(_build(repo, report, [*earlier[:k], culprit]).tips[-1])

    k, pair = await _first_failing(len(earlier), with_culprit, at)
    partner = earlier[k - 1].subtask
    bad = first_failure(pair)
    assert bad is not None  # bisection returns a failing probe's results
    why = (
        f"check {_said(bad)} fails when {culprit.subtask} is merged together with {partner}: each passes "
        f"without the other; only {culprit.subtask}, the later one, is set aside ({partner} landed first "
        "and later work may build on it)"
    )
    return _Found(Culprit(culprit.subtask, bad.name, why, bad.output_tail, partner), without, results)


async def _first_failing(
    count: int, probe: Callable[[int], Awaitable[Results]], last: Results
) -> tuple[int, Results]:
    """The smallest k in 1..``count`` whose ``probe(k)`` fails, by bisection: ``probe(0)`` is taken to pass
    and ``probe(count)`` is known to fail with ``last``. ⌈log₂ count⌉ probes."""
    low, high, failing = 0, count, last
    while high - low > 1:
        middle = (low + high) // 2
        results = await probe(middle)
        if passed(results):
            low = middle
        else:
            high, failing = middle, results
    return high, failing


def _flaky(report: RunReport, again: Results, first: Results, checks: _Checks, began: float) -> RunReport:
    flipped = {r.name for r in first if not r.ok}
    results = tuple(replace(r, flipped=r.name in flipped) for r in again)
    note = "a check failed, then passed when re-checked (flaky): " + ", ".join(sorted(flipped))
    return _done(report, VerificationStatus.PASSED, results, checks, began, (), note)


def _finish(
    repo: Path,
    report: RunReport,
    culprits: Sequence[Culprit],
    results: tuple[CheckResult, ...],
    checks: _Checks,
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
    return _done(rebuilt, VerificationStatus.PASSED, results, checks, began, shown, note)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _done(
    report: RunReport,
    status: VerificationStatus,
    results: tuple[CheckResult, ...],
    checks: _Checks,
    began: float,
    culprits: tuple[Culprit, ...],
    note: str,
) -> RunReport:
    verification = Verification(
        status=status,
        checks=results,
        check_runs=checks.runs,
        check_rounds=checks.rounds,
        culprits=culprits,
        seconds=round(time.monotonic() - began, 3),
        note=note or ("the integration passes its checks" if status is VerificationStatus.PASSED else ""),
    )
    return replace(report, verification=verification)
