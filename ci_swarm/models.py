"""Immutable values passed between the layers. No I/O here.

Request → Plan (Subtasks) → AgentOutcome per subtask → SubtaskRecord + MergeRecord + Conflict → RunReport.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ci_swarm import __version__

EMPTY: Mapping[str, Any] = MappingProxyType({})


class SubtaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # its work broke the integration's checks: set aside (its branch kept)


class MergeStatus(StrEnum):
    CLEAN = "clean"
    CONFLICTED = "conflicted"
    SKIPPED = "skipped"


class ConflictKind(StrEnum):
    CONTENT = "content"
    MODIFY_DELETE = "modify/delete"
    ADD_ADD = "add/add"
    BINARY = "binary"
    RENAME = "rename"


class OverlapKind(StrEnum):
    DISJOINT = "disjoint"
    TOUCHING = "touching"
    OVERLAPPING = "overlapping"


class MergeOrder(StrEnum):
    COMPLETION = "completion"
    PLAN = "plan"


@dataclass(frozen=True)
class Request:
    """What was asked: one sentence, an issue, a PR comment, a maintenance job."""

    task: str
    source: str = "cli"  # cli | issue | pull_request | schedule | workflow_dispatch
    number: int | None = None  # issue / PR number when it came from GitHub
    title: str = ""
    body: str = ""
    actor: str = ""
    context: str = ""  # extra context for the planner (PR diff, …)


@dataclass(frozen=True)
class AgentSpec:
    """Which agent backend runs a subtask, with its backend-specific options (kept as given)."""

    kind: str = "scripted"  # scripted | command | claude
    options: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


class Judge(StrEnum):
    """How a subtask's attempts are judged (issue #14): ``checks`` (failing attempts out, the smallest
    passing diff wins), ``vote`` (equal trees grouped, the largest group wins), ``reviewer`` (a reviewer
    agent scores each passing attempt), ``weighted`` (reviewers' or roles' votes with configured weights)."""

    CHECKS = "checks"
    VOTE = "vote"
    REVIEWER = "reviewer"
    WEIGHTED = "weighted"


@dataclass(frozen=True)
class Subtask:
    id: str
    role: str
    title: str
    instructions: str = ""
    paths: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    agent: AgentSpec | None = None
    attempts: tuple[AgentSpec | None, ...] = ()  # issue #14: () one attempt; each entry an agent (None: the
    # subtask's own agent, else the default) — `attempts: N` is N × None
    judge: Judge | None = (
        None  # how attempts are judged (None: the plan's, else checks when checks exist, else vote)
    )


class Insertions(StrEnum):
    """What lands where both sides only insert at one point: both (ours then theirs) or one side kept."""

    BOTH = "both"
    KEEP = "keep"


class OnConflict(StrEnum):
    """What happens to a conflicted merge (``merge.on_conflict``): the policy keeps one side per region
    (``keep``); the later subtask's agent redoes its work on the integration tip (``redo``); or a resolver
    agent writes the resolution on the conflicted merge (``resolve``). A redo or resolution lands only when
    it passes the checks (:mod:`ci_swarm.repair`); otherwise ``keep`` stands."""

    KEEP = "keep"
    REDO = "redo"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class MergePolicy:
    order: MergeOrder = MergeOrder.COMPLETION
    prefer: tuple[str, ...] = ()  # () = "first" (what is already merged wins); else role precedence
    insertions: Insertions = Insertions.BOTH  # insert/insert regions: both sides land, or one is kept
    on_conflict: OnConflict = OnConflict.KEEP  # keep one side, or have an agent redo / resolve it
    resolver: AgentSpec | None = None  # on_conflict: resolve — the resolver (None: the run's default agent)

    @property
    def prefer_label(self) -> str:
        return "first" if not self.prefer else " > ".join(self.prefer)


@dataclass(frozen=True)
class Plan:
    task: str
    subtasks: tuple[Subtask, ...]
    merge: MergePolicy = MergePolicy()
    version: int = 1
    rationale: str = ""
    checks: tuple[Check, ...] = ()  # the plan's own checks (issue #12; () = the config's or the CLI's)
    merge_failing: bool | None = None  # merge a command agent whose own checks fail (None: the config's)
    judge: Judge | None = None  # issue #14: the plan's judge for subtasks with attempts (None: the default)
    review: ReviewPolicy | None = None  # issue #14: a review panel on the whole result (None: the config's)
    weights: Mapping[str, float] = field(default_factory=lambda: EMPTY)  # `weighted` judge: {role: weight}

    def subtask(self, subtask_id: str) -> Subtask:
        for sub in self.subtasks:
            if sub.id == subtask_id:
                return sub
        raise KeyError(subtask_id)


@dataclass(frozen=True)
class Usage:
    """Model usage and cost; zero for scripted and command agents."""

    requests: int = 0
    retries: int = 0
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            retries=self.retries + other.retries,
            turns=self.turns + other.turns,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
        )

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class AgentOutcome:
    """What an agent reports back. The orchestrator commits the worktree afterwards."""

    ok: bool
    summary: str = ""
    error: str = ""
    log: str = ""
    usage: Usage = Usage()
    outside_paths: tuple[str, ...] = ()  # files written outside the subtask's `paths`
    budget_stopped: bool = False
    command: tuple[str, ...] = ()  # the argv a command agent ran (after substitution); () for other kinds
    exit_status: int | None = None  # a command agent's exit code (None: no process, or ended by a signal)


@dataclass(frozen=True)
class Diffstat:
    """What one agent's commit changed against its start: ``git diff --numstat start..commit`` summed
    (a binary file counts as changed with no lines)."""

    files: int = 0
    insertions: int = 0
    deletions: int = 0


@dataclass(frozen=True)
class SubtaskRecord:
    id: str
    role: str
    title: str
    status: SubtaskStatus
    branch: str = ""
    start_commit: str = ""
    commit: str = ""
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    seconds: float = 0.0  # agent time
    files: tuple[str, ...] = ()
    error: str = ""
    summary: str = ""
    log: str = ""
    usage: Usage = Usage()
    outside_paths: tuple[str, ...] = ()  # changed files outside `paths`, whatever the agent kind
    paths: tuple[str, ...] = ()  # the paths the subtask owns (its plan entry)
    command: tuple[str, ...] = ()  # command agents: the argv that ran
    exit_status: int | None = None  # command agents: the process's exit code
    output_tail: str = ""  # the agent's last output lines, secrets redacted
    diffstat: Diffstat = Diffstat()
    setup_seconds: float = 0.0  # making the agent's clone
    collect_seconds: float = 0.0  # committing its work (and its diffstat)
    checks: tuple[CheckResult, ...] = ()  # a command agent's own checks on its commit (issue #12)
    judgement: Judgement | None = None  # issue #14: its attempts and why the winner won (None: one attempt)


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt at a subtask (issue #14), on branch ``<agent branch>.<index>``."""

    index: int  # 1-based
    agent: str  # the agent that made it, e.g. "command" or "claude (claude-sonnet-4-5, t=0.7)"
    status: SubtaskStatus
    branch: str = ""
    commit: str = ""
    tree: str = ""  # the commit's tree (vote groups equal trees)
    checks: tuple[CheckResult, ...] = ()
    diff_lines: int = 0  # insertions + deletions against the start
    score: float | None = None  # reviewer / weighted judges
    votes: float = 0.0  # vote / weighted judges: the size (or weight) of its group
    reason: str = ""  # why it is out, or the reviewer's reason (untrusted text)
    usage: Usage = Usage()
    seconds: float = 0.0


@dataclass(frozen=True)
class Judgement:
    """How a subtask's attempts were judged: the judge, the winning attempt's index (None: every attempt
    failed — the subtask fails, every attempt branch kept) and why, in one line; ``usage``: what the
    reviewers' scoring of these attempts cost (zero for ``checks`` and ``vote``)."""

    judge: Judge
    winner: int | None
    why: str
    attempts: tuple[AttemptRecord, ...] = ()
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ReviewPolicy:
    """``review:`` — a panel of reviewer agents votes on the whole integration (issue #14): the PR is
    opened ready for review only with ``approve`` approvals of ``voters``, else as a draft."""

    voters: int = 3
    approve: int = 2
    roles: tuple[str, ...] = ()  # each voter's focus, e.g. security, correctness, style (cycled)


@dataclass(frozen=True)
class PanelVote:
    voter: str  # e.g. "reviewer 1 (security)"
    role: str
    approve: bool
    reasons: str = ""  # untrusted model text
    abstained: bool = False  # malformed twice: no vote
    usage: Usage = Usage()


@dataclass(frozen=True)
class Panel:
    votes: tuple[PanelVote, ...]
    required: int

    @property
    def approvals(self) -> int:
        return sum(v.approve and not v.abstained for v in self.votes)

    @property
    def ready(self) -> bool:
        """The PR is opened ready for review (else as a draft with the reasons)."""
        return self.approvals >= self.required


@dataclass(frozen=True)
class Overlap:
    """How two subtasks' diffs relate on one path (git's adjacency rules)."""

    a: str
    b: str
    path: str
    kind: OverlapKind


@dataclass(frozen=True)
class Conflict:
    """One conflicting region: the side that lost (`subtask`) is recorded here in full."""

    path: str
    kind: ConflictKind
    subtask: str  # the side that lost
    kept_subtask: str
    lines: tuple[int, int]  # [start, end] in the integration file (1-based, inclusive); (0, 0) = none
    kept_text: str
    other_text: str
    base_text: str
    reason: str = ""
    resolution: Resolved | None = None  # how the region ended (None: kept by the policy, no repair tried)
    resolved_by: str = ""  # who redid or resolved it (or whose attempt was refused)


class Resolved(StrEnum):
    """How a conflict ended: the policy's side ``kept`` (no repair tried), ``redone`` by the later subtask's
    agent, ``resolved`` by a resolver, or a repair ``refused`` (then ``kept`` stands; the reason is on the
    merge's :class:`Repair`)."""

    KEPT = "kept"
    REDONE = "redone"
    RESOLVED = "resolved"
    REFUSED = "refused"


@dataclass(frozen=True)
class Repair:
    """An agent's attempt at a conflicted merge (``on_conflict: redo | resolve``): ``outcome`` is
    ``redone``/``resolved`` when it landed, ``refused`` (with ``reason``) when the policy's result stands.
    ``commit`` is the redone subtask's commit (on ``<agent branch>.redo``) or the resolver's (on
    ``<agent branch>.resolve``); ``start`` where it started; ``checks`` the gate's results."""

    outcome: Resolved
    by: str  # the agent, e.g. "command (redo of b)" or "claude (resolver)"
    commit: str = ""
    start: str = ""
    onto: str = ""  # the integration tip the conflicted merge was made onto
    reason: str = ""  # why refused, one line ("" when it landed)
    checks: tuple[CheckResult, ...] = ()
    seconds: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage())


@dataclass(frozen=True)
class MergeRecord:
    subtask: str
    order: int
    status: MergeStatus
    commit: str = ""
    predicted_conflicts: tuple[str, ...] = ()  # paths predicted to conflict
    conflicts: tuple[Conflict, ...] = ()
    seconds: float = 0.0
    joined: int = 0  # insert/insert regions where both sides landed (merge.insertions: both); no Conflict
    repair: Repair | None = None  # on_conflict redo/resolve: the agent's attempt at this merge's conflicts

    @property
    def resolution(self) -> Resolved | None:
        """How this merge's conflicts ended (None: no conflict)."""
        if not self.conflicts:
            return None
        return self.repair.outcome if self.repair is not None else Resolved.KEPT


@dataclass(frozen=True)
class RunStats:
    """A run's figures. ``wall_seconds`` runs from the start of the run (validation, the integration
    branch) to the final report: every clone's setup, the collections, the merges and the clean-up
    included. ``parallelism`` = Σ agent seconds / wall (how many agents worked on average) — not a
    comparison with a serial run (``--compare-serial`` measures that); ``speedup`` is its deprecated
    alias. ``bound_seconds`` = max(critical path, Σ/cap); the fixed costs are reported apart: the run's
    own setup before the first agent and its clean-up after the last merge, and per agent Σ clone setup,
    Σ collection and Σ merge seconds."""

    wall_seconds: float
    agent_seconds_sum: float
    parallelism: float
    bound_seconds: float
    efficiency: float
    max_agents: int
    max_in_flight: int
    critical_path_seconds: float = 0.0
    run_setup_seconds: float = 0.0  # before the scheduler started (validation, the integration branch)
    cleanup_seconds: float = 0.0  # after the scheduler ended (merges in flight, clones removed)
    setup_seconds_sum: float = 0.0  # Σ per-agent clone setup
    collect_seconds_sum: float = 0.0  # Σ per-agent collection (commit + diffstat)
    merge_seconds_sum: float = 0.0  # Σ merge seconds

    @property
    def speedup(self) -> float:
        """Deprecated alias of :attr:`parallelism` (kept in the JSON report and the Action's outputs)."""
        return self.parallelism


@dataclass(frozen=True)
class SerialComparison:
    """``--compare-serial``: the same command run once over the union of the shards' paths in a scratch
    clone at the base, after the swarm. ``ratio`` = serial seconds / swarm wall (above 1: the swarm was
    faster). ``same_tree``: the serial result's tree equals the swarm's integration tree."""

    seconds: float  # clone setup + the command + collection, like the swarm's wall
    agent_seconds: float  # the command alone
    swarm_seconds: float
    ratio: float
    commit: str
    same_tree: bool
    exit_status: int | None = None
    error: str = ""


@dataclass(frozen=True)
class RunReport:
    run_id: str
    task: str
    repo: str
    base: str
    integration_branch: str
    integration_commit: str
    stats: RunStats
    subtasks: tuple[SubtaskRecord, ...]
    merges: tuple[MergeRecord, ...]
    overlap: tuple[Overlap, ...]
    merge_policy: MergePolicy = MergePolicy()
    rationale: str = ""
    usage: Usage = Usage()
    budget_stopped: bool = False
    interrupted: bool = False
    notes: tuple[str, ...] = ()
    request: Request | None = None
    sandbox: str = "not needed"  # how agents' commands ran: user | none | not needed (service.choose_sandbox)
    version: str = __version__  # the ci-swarm that wrote the report
    serial: SerialComparison | None = None  # --compare-serial
    timeout_seconds: float | None = None  # the per-subtask timeout that applied (None: none)
    verification: Verification = field(default_factory=lambda: Verification())  # issue #12
    panel: Panel | None = None  # issue #14: the review panel's votes on the integration (None: no panel)

    @property
    def conflicts(self) -> tuple[Conflict, ...]:
        return tuple(c for m in self.merges for c in m.conflicts)

    @property
    def unrepaired_conflicts(self) -> tuple[Conflict, ...]:
        """The conflicts whose losing side is only in the report: no agent's repair landed for them."""
        repaired = (Resolved.REDONE, Resolved.RESOLVED)
        return tuple(c for c in self.conflicts if c.resolution not in repaired)

    @property
    def failed(self) -> tuple[SubtaskRecord, ...]:
        return tuple(s for s in self.subtasks if s.status is not SubtaskStatus.SUCCEEDED)


# --- verification (issue #12): checks, their results, the verified integration --------------------------


DEFAULT_CHECK_TIMEOUT = 600.0  # seconds a check may run before it is killed (and counted failed)


@dataclass(frozen=True)
class Check:
    """A command that judges a tree: exit 0 passes. Runs through the sandbox in a clone at the commit."""

    name: str
    run: tuple[str, ...]
    timeout: float | None = DEFAULT_CHECK_TIMEOUT


@dataclass(frozen=True)
class CheckResult:
    """One check on one commit. ``flipped``: it failed once and passed when re-checked (flaky)."""

    name: str
    ok: bool
    exit_status: int | None
    seconds: float
    output_tail: str = ""  # the last lines, secrets redacted
    timed_out: bool = False
    flipped: bool = False


class VerificationStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"


@dataclass(frozen=True)
class Culprit:
    """Subtasks set aside because the integration's checks failed with them and passed without them."""

    subtask: str
    check: str  # the failing check's name
    reason: str  # why, in one line
    output_tail: str = ""  # the failing check's log tail (redacted)
    partner: str = ""  # an interaction of two: the earlier subtask it fails with (that one stays)


@dataclass(frozen=True)
class Verification:
    """The integration tip checked like a merge queue: ``status``, the final tip's results, how many check
    runs verification took (re-check and bisection included), in how many rounds (runs started together:
    units of wall time) and the culprits set aside."""

    status: VerificationStatus = VerificationStatus.NOT_RUN
    checks: tuple[CheckResult, ...] = ()
    check_runs: int = 0
    culprits: tuple[Culprit, ...] = ()
    seconds: float = 0.0
    note: str = "no checks configured: the integration was not verified"
    check_rounds: int = 0  # runs started together count once: units of wall time
    speculative_runs: int = 0  # check runs on intermediate tips while agents ran (not in check_runs)
