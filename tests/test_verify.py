"""Verified integration (issue #12): checks through the sandbox on real repositories, the integration tip
re-checked once and bisected over the merge sequence, culprits set aside as ``rejected``, command agents'
own checks, and the bisection's cost counted with a check runner that records every commit it judges."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.agents import AGENTS
from ci_swarm.errors import EXIT_FAILED_SUBTASKS, exit_code
from ci_swarm.models import (
    Check,
    CheckResult,
    MergeOrder,
    Plan,
    Request,
    RunReport,
    SubtaskStatus,
    VerificationStatus,
)
from ci_swarm.report import verification_dict, verification_section
from ci_swarm.run import RunOptions
from ci_swarm.sandbox import resolve_policy
from ci_swarm.service import CommandPolicy, RunRequest, ServiceOptions, run_request
from ci_swarm.verify import run_checks, verify_integration
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, plan_of, scripted, sh_agent

TRUSTED = CommandPolicy(trust_plan_commands=True)
APP_CHECK = Check("app", (SANDBOX_PY, "app.py"), timeout=60)
LIB = "def greet():\n    return 'hi'\n"
APP = "import lib\n\nprint(lib.greet())\n\n\n\n# more calls below\n"


def _run(
    repo: Path, plan: Plan, checks: tuple[Check, ...] = (), cap: int = 4, **request: object
) -> RunReport:
    options = RunOptions(repo=repo, max_agents=cap, merge_order=MergeOrder.PLAN)
    job = RunRequest(Request(task="t"), options, plan, checks=checks, **request)  # type: ignore[arg-type]
    return run_request(job, ServiceOptions(TRUSTED, AGENTS)).report


def _status(report: RunReport) -> dict[str, SubtaskStatus]:
    return {s.id: s.status for s in report.subtasks}


# --- the semantic conflict ------------------------------------------------------------------------------


def test_a_rename_and_a_call_to_the_old_name_are_caught_and_the_later_one_set_aside(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"lib.py": LIB, "app.py": APP})
    rename = scripted("rename", edits=[{"replace": "lib.py", "old": "def greet", "new": "def hello"}])
    rename["agent"]["edits"].append({"replace": "app.py", "old": "lib.greet", "new": "lib.hello"})
    caller = scripted("caller", edits=[{"append": "app.py", "text": "print(lib.greet())\n"}])
    report = _run(repo, plan_of(rename, caller), (APP_CHECK,))
    v = report.verification
    assert v.status is VerificationStatus.PASSED
    assert [c.subtask for c in v.culprits] == ["caller"]
    assert "AttributeError" in v.culprits[0].output_tail and "app" in v.culprits[0].reason
    assert _status(report) == {"rename": SubtaskStatus.SUCCEEDED, "caller": SubtaskStatus.REJECTED}
    caller_record = next(s for s in report.subtasks if s.id == "caller")
    assert "AttributeError" in caller_record.error
    tip = report.integration_commit
    assert git.rev_parse(repo, report.integration_branch) == tip
    assert b"def hello" in git.read_blob(repo, f"{tip}:lib.py")
    assert git.read_blob(repo, f"{tip}:app.py").count(b"greet") == 0  # the caller's line is not there
    assert git.branch_exists(repo, caller_record.branch)  # its work is kept on its branch
    assert [m.subtask for m in report.merges] == ["rename"]
    assert exit_code(report) == EXIT_FAILED_SUBTASKS


def test_no_checks_is_not_run_said_plainly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _run(repo, plan_of(scripted("a", edits=[{"write": "b.txt", "content": "b\n"}])))
    assert report.verification.status is VerificationStatus.NOT_RUN
    assert report.verification.check_runs == 0 and "not verified" in report.verification.note


def test_every_subtask_a_culprit_leaves_the_base_and_exit_3_with_branches_kept(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ok.txt": "fine\n"})
    breaks = [scripted(n, edits=[{"write": f"{n}.txt", "content": "broken\n"}]) for n in ("a", "b")]
    check = Check("no-broken", ("sh", "-c", "! grep -rl broken --include='*.txt' ."), timeout=60)
    report = _run(repo, plan_of(*breaks), (check,))
    assert report.verification.status is VerificationStatus.PASSED
    assert report.integration_commit == report.base
    assert git.rev_parse(repo, report.integration_branch) == report.base
    assert set(_status(report).values()) == {SubtaskStatus.REJECTED}
    assert exit_code(report) == EXIT_FAILED_SUBTASKS
    assert all(git.branch_exists(repo, s.branch) for s in report.subtasks)


def test_a_hanging_check_is_killed_at_its_timeout_and_counted_failed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    hang = Check("hang", ("sh", "-c", "sleep 300"), timeout=1)
    results = asyncio.run(run_checks(repo, git.rev_parse(repo, "HEAD"), (hang,), resolve_policy(None)))
    assert len(results) == 1 and not results[0].ok and results[0].timed_out
    assert results[0].exit_status is None and "killed at its timeout" in results[0].output_tail
    assert not git.out(repo, "branch", "--list", "ci-swarm-check/*")  # the scratch branch is gone


def test_a_flaky_check_is_rechecked_once_and_reported_flipped(tmp_path: Path) -> None:
    """The check fails once: it removes a marker in a world-writable directory under /tmp (the sandbox
    account can reach it, unlike the test's own 0700 temp dir) and fails while the marker was there."""
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    flag_dir = Path(tempfile.mkdtemp(prefix="ci-swarm-test-flaky-", dir="/tmp"))
    try:
        flag_dir.chmod(0o777)
        (flag_dir / "once").write_text("x")
        script = f"if [ -e {flag_dir}/once ]; then rm -f {flag_dir}/once; echo flaky; exit 1; fi"
        check = Check("flaky", ("sh", "-c", script), timeout=60)
        plan = plan_of(scripted("a", edits=[{"write": "b.txt", "content": "b\n"}]))
        report = _run(repo, plan, (check,))
    finally:
        shutil.rmtree(flag_dir, ignore_errors=True)
    v = report.verification
    assert v.status is VerificationStatus.PASSED and v.check_runs == 2 and not v.culprits
    assert v.checks[0].flipped and "flaky" in v.note
    assert _status(report) == {"a": SubtaskStatus.SUCCEEDED}


# --- bisection's cost -----------------------------------------------------------------------------------


class Recording:
    """A check runner judging commits by their tree: fails while ``bad`` holds a file named ``poison``."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.commits: list[str] = []

    async def __call__(self, commit: str) -> tuple[CheckResult, ...]:
        self.commits.append(commit)
        ok = git.try_read_blob(self.repo, commit, "poison") is None
        return (CheckResult("poison", ok, 0 if ok else 1, 0.0, "" if ok else "poison found"),)


@pytest.mark.parametrize("culprit", [0, 3, 7])
def test_bisection_of_8_subtasks_with_one_culprit_uses_at_most_4_check_runs(
    tmp_path: Path, culprit: int
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    subs = [
        scripted(f"s{i}", edits=[{"write": "poison" if i == culprit else f"f{i}.txt", "content": "x\n"}])
        for i in range(8)
    ]
    # all eight start from the base: a subtask that started on a tip holding the culprit's merge is set
    # aside with it (and listed), which under load made the culprit list depend on timing
    report = _run(repo, plan_of(*subs), cap=8)
    runner = Recording(repo)
    verified = asyncio.run(verify_integration(repo, report, runner))
    v = verified.verification
    assert v.status is VerificationStatus.PASSED
    assert [c.subtask for c in v.culprits] == [f"s{culprit}"]
    assert v.check_runs == len(runner.commits)
    bisection_runs = v.check_runs - 2  # the tip and its one re-check come first
    assert bisection_runs <= 4  # ⌈log₂ 8⌉ + 1
    assert git.try_read_blob(repo, verified.integration_commit, "poison") is None
    assert all(
        git.try_read_blob(repo, verified.integration_commit, f"f{i}.txt") == b"x\n"
        for i in range(8)
        if i != culprit
    )


def test_an_interaction_of_two_sets_aside_the_later_one(tmp_path: Path) -> None:
    """Each of a and c passes alone; together they fail: the later one is set aside."""
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    subs = [scripted(n, edits=[{"write": f"{n}.part", "content": "x\n"}]) for n in "abcd"]
    report = _run(repo, plan_of(*subs))

    async def both(commit: str) -> tuple[CheckResult, ...]:
        has = [git.try_read_blob(repo, commit, f"{n}.part") is not None for n in "ac"]
        ok = not all(has)
        return (CheckResult("pair", ok, 0 if ok else 1, 0.0, "" if ok else "a and c together"),)

    v = asyncio.run(verify_integration(repo, report, both)).verification
    assert v.status is VerificationStatus.PASSED and [c.subtask for c in v.culprits] == ["c"]


def test_a_base_that_fails_sets_nothing_aside(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _run(repo, plan_of(scripted("a", edits=[{"write": "b.txt", "content": "b\n"}])))

    async def never(commit: str) -> tuple[CheckResult, ...]:
        return (CheckResult("never", False, 1, 0.0, "always red"),)

    verified = asyncio.run(verify_integration(repo, report, never))
    assert verified.verification.status is VerificationStatus.FAILED
    assert "base itself fails" in verified.verification.note and not verified.verification.culprits
    assert verified.integration_commit == report.integration_commit
    assert _status(verified) == {"a": SubtaskStatus.SUCCEEDED}
    assert exit_code(verified) == EXIT_FAILED_SUBTASKS  # failing checks: never a success


# --- command agents check their own work ----------------------------------------------------------------


def test_a_command_agent_whose_own_checks_fail_is_not_merged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ok.txt": "fine\n"})
    check = Check("no-broken", ("sh", "-c", "! grep -rl broken --include='*.txt' ."), timeout=60)
    plan = plan_of(sh_agent("good", "echo good > good.txt"), sh_agent("bad", "echo broken > bad.txt"))
    report = _run(repo, plan, (check,))
    records = {s.id: s for s in report.subtasks}
    assert records["good"].status is SubtaskStatus.SUCCEEDED and records["good"].checks[0].ok
    assert records["bad"].status is SubtaskStatus.FAILED and not records["bad"].checks[0].ok
    assert "own checks failed" in records["bad"].error
    assert git.try_read_blob(repo, report.integration_commit, "bad.txt") is None
    assert git.branch_exists(repo, records["bad"].branch)
    assert report.verification.status is VerificationStatus.PASSED


def test_merge_failing_merges_it_anyway_and_the_integration_check_then_sets_it_aside(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ok.txt": "fine\n"})
    check = Check("no-broken", ("sh", "-c", "! grep -rl broken --include='*.txt' ."), timeout=60)
    plan = replace(plan_of(sh_agent("bad", "echo broken > bad.txt")), merge_failing=True)
    report = _run(repo, plan, (check,))
    bad = report.subtasks[0]
    assert not bad.checks[0].ok
    assert bad.status is SubtaskStatus.REJECTED  # merged, then found by verification
    assert [c.subtask for c in report.verification.culprits] == ["bad"]


# --- an interaction of two, and what verification costs (runs and rounds) -----------------------------


def _trees(repo: Path, commits: list[str]) -> list[str]:
    return [git.tree_of(repo, c) for c in commits]


def test_an_interaction_of_two_names_the_partner_and_rejects_only_the_later(tmp_path: Path) -> None:
    """A real check: it fails iff both a's and c's markers are in the tree; each alone passes."""
    repo = make_repo(tmp_path / "repo", {"ok.txt": "ok\n"})
    subs = [scripted(n, edits=[{"write": f"{n}.marker", "content": "x = 1\n"}]) for n in "abcd"]
    both = Check("pair", ("sh", "-c", "if test -e a.marker && test -e c.marker; then echo both; exit 1; fi"))
    report = _run(repo, plan_of(*subs), (both,))
    v = report.verification
    assert v.status is VerificationStatus.PASSED
    assert [(c.subtask, c.partner) for c in v.culprits] == [("c", "a")]
    reason = v.culprits[0].reason
    assert "together with a" in reason and "each passes without the other" in reason
    assert "only c, the later one, is set aside" in reason
    assert _status(report) == {
        "a": SubtaskStatus.SUCCEEDED,
        "b": SubtaskStatus.SUCCEEDED,
        "c": SubtaskStatus.REJECTED,
        "d": SubtaskStatus.SUCCEEDED,
    }
    tip = report.integration_commit
    assert git.try_read_blob(repo, tip, "a.marker") == b"x = 1\n"
    assert git.try_read_blob(repo, tip, "c.marker") is None
    assert v.check_runs <= 1 + 1 + 2 + 1 + 2  # 1 + 1 + ⌈log₂ 4⌉ + 1 + ⌈log₂ 4⌉
    shown = verification_dict(v)["culprits"][0]
    assert shown["subtask"] == "c" and shown["partner"] == "a"
    assert "(with `a`, which stays)" in verification_section(v)


class Pair:
    """A check runner failing while both ``first`` and ``second`` are merged; records each commit it
    judges and how many runs overlapped (started before another ended) — no timing."""

    def __init__(self, repo: Path, first: str, second: str, flaky_once: bool = False) -> None:
        self.repo, self.names = repo, (first, second)
        self.commits: list[str] = []
        self.active = self.most_at_once = 0
        self.flaky_once = flaky_once

    async def __call__(self, commit: str) -> tuple[CheckResult, ...]:
        self.commits.append(commit)
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        for _ in range(3):
            await asyncio.sleep(0)  # let a run started with it begin
        self.active -= 1
        if self.flaky_once:
            self.flaky_once = False
            return (CheckResult("pair", False, 1, 0.0, "flaked"),)
        ok = not all(git.try_read_blob(self.repo, commit, f"{n}.part") is not None for n in self.names)
        return (CheckResult("pair", ok, 0 if ok else 1, 0.0, "" if ok else "both"),)


def _parts(repo: Path, count: int, poison: int = -1) -> RunReport:
    """``count`` subtasks all started on the base (as many agents as subtasks), merged in plan order: each
    writes ``s<i>.part``, or ``poison`` for the one at ``poison``."""
    subs = [scripted(f"s{i}", edits=[{"write": "poison" if i == poison else f"s{i}.part", "content": "x\n"}])
            for i in range(count)]  # fmt: skip
    options = RunOptions(repo=repo, max_agents=count, merge_order=MergeOrder.PLAN)
    report = run_request(
        RunRequest(Request(task="t"), options, plan_of(*subs)), ServiceOptions(TRUSTED, AGENTS)
    )
    assert {s.start_commit for s in report.report.subtasks} == {report.report.base}
    return report.report


@pytest.mark.parametrize(("first", "second"), [(0, 15), (2, 10), (8, 9), (13, 14)])
def test_an_interaction_among_16_is_found_within_the_stated_bound_of_runs(
    tmp_path: Path, first: int, second: int
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _parts(repo, 16)
    runner = Pair(repo, f"s{first}", f"s{second}")
    verified = asyncio.run(verify_integration(repo, report, runner))
    v = verified.verification
    assert v.status is VerificationStatus.PASSED
    assert [(c.subtask, c.partner) for c in v.culprits] == [(f"s{second}", f"s{first}")]
    assert v.check_runs == len(runner.commits) <= 1 + 1 + 4 + 1 + 4  # 1 + 1 + ⌈log₂ 16⌉ + 1 + ⌈log₂ 16⌉
    assert v.check_rounds < v.check_runs  # the re-verification and the culprit alone ran together
    rechecked = 1 if second == 15 else 0  # the tip re-checked when the culprit is its last entry
    assert len(set(_trees(repo, runner.commits))) == len(runner.commits) - rechecked  # else no tree twice
    assert _status(verified)[f"s{first}"] is SubtaskStatus.SUCCEEDED
    assert _status(verified)[f"s{second}"] is SubtaskStatus.REJECTED


@pytest.mark.parametrize("culprit", [0, 10, 15])
def test_one_culprit_among_16_costs_at_most_log_n_plus_3_runs_in_log_n_plus_2_rounds(
    tmp_path: Path, culprit: int
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _parts(repo, 16, poison=culprit)
    runner = Recording(repo)
    v = asyncio.run(verify_integration(repo, report, runner)).verification
    assert [(c.subtask, c.partner) for c in v.culprits] == [(f"s{culprit}", "")]
    assert v.check_runs == len(runner.commits) <= 1 + 4 + 2
    assert v.check_rounds <= 1 + 4 + 1
    trees = _trees(repo, runner.commits)
    if culprit == 15:  # the integration without the last entry is the prefix bisection checked
        assert trees.count(trees[0]) == 2 and len(set(trees)) == len(trees) - 1  # only the tip, re-checked
    else:
        assert len(set(trees)) == len(trees)
    if culprit > 0:
        assert "fails merged alone on the base too" in v.culprits[0].reason


def test_the_round_after_bisection_runs_its_checks_at_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _parts(repo, 4)
    runner = Pair(repo, "s0", "s2")
    v = asyncio.run(verify_integration(repo, report, runner)).verification
    assert [c.subtask for c in v.culprits] == ["s2"]
    assert runner.most_at_once == 2
    assert v.check_rounds == v.check_runs - 1  # exactly one round held two runs


def test_a_culprit_last_is_rechecked_together_with_its_classification(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _parts(repo, 4)
    runner = Pair(repo, "s1", "s3")
    v = asyncio.run(verify_integration(repo, report, runner)).verification
    assert [(c.subtask, c.partner) for c in v.culprits] == [("s3", "s1")]
    assert runner.commits.count(report.integration_commit) == 2  # the tip, and its one re-check
    assert runner.most_at_once == 2


def test_a_tip_that_fails_once_is_found_flaky_after_bisection_and_nothing_is_set_aside(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = _parts(repo, 4)
    runner = Pair(repo, "nobody", "none", flaky_once=True)
    verified = asyncio.run(verify_integration(repo, report, runner))
    v = verified.verification
    assert v.status is VerificationStatus.PASSED and not v.culprits
    assert v.checks[0].flipped and "flaky" in v.note
    assert verified.integration_commit == report.integration_commit
    assert set(_status(verified).values()) == {SubtaskStatus.SUCCEEDED}
    assert v.check_runs == 1 + 2 + 2  # the tip, ⌈log₂ 4⌉ probes, the re-check beside the last alone
