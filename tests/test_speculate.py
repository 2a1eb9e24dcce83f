"""Speculative checks (issue #12): while agents run, the checks judge the integration tips the merge queue
makes — one at a time, the newest tip first — and verification reuses what they found by tree. Counted
with a recording check runner and a real run; no timing is asserted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ci_swarm import git
from ci_swarm.agents import AGENTS
from ci_swarm.models import Check, CheckResult, MergeOrder, Request, VerificationStatus
from ci_swarm.report import to_markdown
from ci_swarm.run import RunOptions
from ci_swarm.service import CommandPolicy, RunRequest, ServiceOptions, run_request
from ci_swarm.speculate import Speculation
from tests.fixtures import commit, make_repo
from tests.helpers import SANDBOX_PY, plan_of, scripted


class Gated:
    """A check runner that records each commit and waits for a go before answering (no timing)."""

    def __init__(self) -> None:
        self.commits: list[str] = []
        self.go = asyncio.Event()

    async def __call__(self, commit: str) -> tuple[CheckResult, ...]:
        self.commits.append(commit)
        await self.go.wait()
        return (CheckResult("c", True, 0, 0.0),)


def test_one_run_at_a_time_and_the_newest_waiting_tip_replaces_older_ones(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    base = git.head_commit(repo)
    tips = [commit(repo, base, {f"f{i}.txt": f"{i}\n"}, f"tip {i}") for i in range(4)]
    runner = Gated()

    async def go() -> Speculation:
        spec = Speculation(repo, runner)
        for tip in tips:
            spec.offer(tip)
            await asyncio.sleep(0)  # let the first run start
        while not runner.commits:
            await asyncio.sleep(0)
        runner.go.set()
        await spec.drain()
        return spec

    spec = asyncio.run(go())
    assert runner.commits == [tips[0], tips[3]]  # tips 1 and 2 were replaced while tip 0 ran
    assert spec.runs == 2 and set(spec.known) == {git.tree_of(repo, tips[0]), git.tree_of(repo, tips[3])}


def test_a_run_with_checks_verifies_its_tip_from_what_speculation_found(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    subs = [scripted(f"s{i}", edits=[{"write": f"f{i}.txt", "content": "x\n"}]) for i in range(3)]
    options = RunOptions(repo=repo, max_agents=1, merge_order=MergeOrder.PLAN)
    check = Check("ok", (SANDBOX_PY, "-c", "pass"), timeout=60)
    job = RunRequest(Request(task="t"), options, plan_of(*subs), checks=(check,), speculate=True)
    report = run_request(job, ServiceOptions(CommandPolicy(trust_plan_commands=True), AGENTS)).report
    v = report.verification
    assert v.status is VerificationStatus.PASSED
    assert v.speculative_runs >= 1  # the final tip at least: the queue offered it after the last merge
    assert v.check_runs == 0  # the drained speculation had judged the final tip's tree
    assert "more while agents ran" in to_markdown(report)


def test_without_speculate_nothing_runs_early(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    options = RunOptions(repo=repo, max_agents=1, merge_order=MergeOrder.PLAN)
    check = Check("ok", (SANDBOX_PY, "-c", "pass"), timeout=60)
    plan = plan_of(scripted("s0", edits=[{"write": "f.txt", "content": "x\n"}]))
    job = RunRequest(Request(task="t"), options, plan, checks=(check,))
    v = run_request(job, ServiceOptions(CommandPolicy(trust_plan_commands=True), AGENTS)).report.verification
    assert (v.speculative_runs, v.check_runs) == (0, 1)


def test_cancel_passes_on_its_callers_own_cancellation(tmp_path: Path) -> None:
    """Stopping the speculation must not swallow a cancellation aimed at whoever is stopping it."""
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    runner = Gated()  # never answers: the speculative check runs until it is cancelled

    async def go() -> bool:
        spec = Speculation(repo, runner)
        spec.offer(git.head_commit(repo))
        while not runner.commits:
            await asyncio.sleep(0)
        stopping = asyncio.get_running_loop().create_task(spec.cancel())
        await asyncio.sleep(0)  # it is now waiting for the speculative check to end
        stopping.cancel()
        try:
            await stopping
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(go())
