"""LLM layer against the fake Anthropic API (real SDK, real HTTP), a 60 s minute scaled down to 2 s.

*throughput*: 16 subtasks × 6 turns under a server limit of R requests and T input tokens per window, which
the server enforces with 429s (retry-after-ms, scaled like the window). The shared limiter (limits learned
from the `anthropic-ratelimit-*` headers, 8 in flight) against a plain `asyncio.Semaphore(8)` with the SDK's
default retries, side by side. `of_allowed` = successful requests / what the server's bucket could admit
in the elapsed time (its capacity plus its refill). Target: ≥ 0.90 with 0 failed subtasks.

*cache*: 8 Claude agents in parallel, real worktrees of a 400-file repo, 4 turns each. `prefix_read_share`
= of all the shared-prefix tokens (tools + shared system block) sent, the share read from the cache;
`input_read_share` = of all input tokens, the share read from the cache. Target: prefix share ≥ 0.80. The
same run without the warm-up gate (all first requests at once) for comparison.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anthropic

from ci_swarm import git
from ci_swarm.agents.claude import ClaudeAgent
from ci_swarm.errors import LLMError
from ci_swarm.llm.session import LLMSession, LLMSettings
from ci_swarm.models import AgentSpec, Plan, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.testing import anthropic_api
from ci_swarm.testing.anthropic_script import Conversation, Limits, Script
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from ci_swarm.workspace import Workspace

KEY = "sk-ant-bench"
MODEL = "claude-sonnet-4-6"
WINDOW = 2.0  # seconds standing in for the API's minute
RPM = 40  # requests per window
ITPM = 60_000  # input tokens per window
SUBTASKS = 16
TURNS = 6
IN_FLIGHT = 8
LATENCY = 0.02

Create = Callable[[str, dict[str, Any]], Awaitable[Any]]


# --- throughput under rate limits ---------------------------------------------------------------------


def _throughput_script() -> Script:
    steps = [{"tool": "list_files", "input": {}} for _ in range(TURNS - 1)]
    replies = (*steps, {"tool": "finish", "input": {"summary": "done"}})
    conv = Conversation("agents", r"Subtask id: (?P<id>\S+)\n", replies)
    limits = Limits(rpm=RPM, itpm=ITPM, window=WINDOW, precise_retry_after=True)
    return Script(conversations=(conv,), limits=limits, latency=LATENCY, min_cache_tokens=10**9)


async def _drive(create: Create, subtask_id: str) -> bool:
    """A minimal agent loop: answer every tool call with an ok result until `finish`."""
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": f"Overall request: bench\n\nSubtask id: {subtask_id}\nDo it." + " pad" * 200,
        }
    ]
    for _ in range(TURNS + 1):
        try:
            reply = await create(
                subtask_id,
                {"model": MODEL, "max_tokens": 1024, "messages": messages, "system": "bench agent"},
            )
        except (LLMError, anthropic.APIError):
            return False
        blocks = [{"type": "tool_use", "id": b.id, "name": b.name, "input": b.input} for b in reply.content]
        messages.append({"role": "assistant", "content": blocks})
        if any(b["name"] == "finish" for b in blocks):
            return True
        results = [{"type": "tool_result", "tool_use_id": b["id"], "content": "ok"} for b in blocks]
        messages.append({"role": "user", "content": results})
    return False


async def _swarm(create: Create) -> tuple[int, float]:
    start = time.monotonic()
    done = await asyncio.gather(*(_drive(create, f"s{i}") for i in range(SUBTASKS)))
    return sum(1 for ok in done if not ok), time.monotonic() - start


def _figures(fake: FakeAnthropic, failed: int, elapsed: float) -> dict[str, Any]:
    ok = sum(1 for r in fake.requests if r.status == 200)
    allowed = RPM + RPM / WINDOW * elapsed
    return {
        "failed_subtasks": failed,
        "requests_ok": ok,
        "http_429": sum(1 for r in fake.requests if r.status == 429),
        "seconds": round(elapsed, 2),
        "of_allowed": round(ok / allowed, 3),
        "max_in_flight": fake.max_in_flight,
    }


async def _with_limiter(fake: FakeAnthropic) -> dict[str, Any]:
    settings = LLMSettings(max_concurrency=IN_FLIGHT, rate_window=WINDOW, max_retries=8, warm_cache=False)
    session = LLMSession(settings, KEY, fake.base_url)
    try:
        failed, elapsed = await _swarm(lambda key, params: session.create(key, params))
    finally:
        await session.aclose()
    return {**_figures(fake, failed, elapsed), "learned_limits": session.limiter.limits()}


async def _with_semaphore(fake: FakeAnthropic) -> dict[str, Any]:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.base_url)  # the SDK's default retries
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def create(key: str, params: dict[str, Any]) -> Any:
        async with gate:
            return await client.messages.create(**params)

    try:
        failed, elapsed = await _swarm(create)
    finally:
        await client.close()
    return _figures(fake, failed, elapsed)


def throughput() -> dict[str, Any]:
    results = {}
    for name, run in (("limiter", _with_limiter), ("semaphore", _with_semaphore)):
        with FakeAnthropic(_throughput_script()) as fake:
            results[name] = asyncio.run(run(fake))
    return results


# --- prompt caching across parallel agents ------------------------------------------------------------


def _repo(root: Path, files: int = 400) -> Path:
    root.mkdir(parents=True)
    git.run(root, "init", "--quiet", "--initial-branch=main")
    for i in range(files):
        path = root / f"src/pkg{i % 20}/module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE_{i} = {i}\n")
    (root / "README.md").write_text("# bench\n\n" + "A benchmark repository. " * 80 + "\n")
    git.commit_all(root, "initial\n", git.Identity("bench", "bench@example.com"))
    return root


def _cache_script() -> Script:
    replies = (
        {"tool": "list_files", "input": {"path": "src/pkg1"}},
        {"tool": "write_file", "input": {"path": "src/${id}.py", "content": "X = 1\n"}},
        {"tool": "read_file", "input": {"path": "src/${id}.py"}},
        {"tool": "finish", "input": {"summary": "done"}},
    )
    conv = Conversation("agents", r"Subtask id: (?P<id>\S+)\n", replies)
    return Script(conversations=(conv,), latency=LATENCY, min_cache_tokens=1024)


def _prefix_tokens(body: Mapping[str, Any]) -> int:
    """Tokens up to the first cache breakpoint (tools + the shared system block)."""
    segments = anthropic_api.segments(body)
    total = 0
    for seg in segments:
        total += seg.tokens
        if seg.breakpoint:
            return total
    return 0


async def _agents(repo: Path, tmp: Path, fake: FakeAnthropic, warm: bool) -> list[bool]:
    settings = LLMSettings(max_concurrency=8, warm_cache=warm)
    session = LLMSession(settings, KEY, fake.base_url)
    subtasks = [Subtask(f"a{i}", "builder", f"part {i}", paths=(f"src/a{i}.py",)) for i in range(8)]
    start = git.head_commit(repo)
    runs = []
    for sub in subtasks:
        branch = f"bench/{tmp.name}/{sub.id}"
        git.create_branch(repo, branch, start)
        git.worktree_add(repo, tmp / sub.id, branch)
        ws = Workspace(tmp / sub.id, branch, start, sub.id, sub.paths)
        ctx = AgentContext("bench", "bench", Plan("bench", tuple(subtasks)))
        runs.append(ClaudeAgent(session, AgentSpec("claude")).run(sub, ws, ctx))
    try:
        outcomes = await asyncio.gather(*runs)
    finally:
        await session.aclose()
    return [o.ok for o in outcomes]


def _cache_figures(fake: FakeAnthropic, oks: list[bool]) -> dict[str, Any]:
    ok = [r for r in fake.requests if r.status == 200 and r.body is not None]
    prefix = sum(_prefix_tokens(r.body) for r in ok if r.body is not None)
    prefix_read = sum(min(r.usage["cache_read_input_tokens"], _prefix_tokens(r.body)) for r in ok if r.body)
    reads = sum(r.usage["cache_read_input_tokens"] for r in ok)
    inputs = sum(r.usage["input_tokens"] + r.usage["cache_creation_input_tokens"] for r in ok) + reads
    return {
        "agents_ok": sum(oks),
        "requests": len(ok),
        "prefix_tokens": prefix // max(1, len(ok)),
        "prefix_read_share": round(prefix_read / prefix, 3),
        "input_read_share": round(reads / inputs, 3),
    }


def cache() -> dict[str, Any]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="ci-swarm-bench-llm-") as tmp:
        repo = _repo(Path(tmp) / "repo")
        for name, warm in (("warm_gate", True), ("no_gate", False)):
            with FakeAnthropic(_cache_script()) as fake:
                oks = asyncio.run(_agents(repo, Path(tmp) / name, fake, warm))
                results[name] = _cache_figures(fake, oks)
    return results


def main() -> dict[str, Any]:
    result = {"throughput": throughput(), "cache": cache()}
    lim, sem = result["throughput"]["limiter"], result["throughput"]["semaphore"]
    print(
        f"throughput, {SUBTASKS} subtasks x {TURNS} turns, {RPM} req / {WINDOW:g}s: "
        f"limiter {lim['of_allowed']} of allowed, {lim['failed_subtasks']} failed, {lim['http_429']} x 429 | "
        f"semaphore {sem['of_allowed']}, {sem['failed_subtasks']} failed, {sem['http_429']} x 429 "
        "(target >= 0.90, 0 failed)"
    )
    warm, cold = result["cache"]["warm_gate"], result["cache"]["no_gate"]
    print(
        f"cache, 8 agents: prefix read share {warm['prefix_read_share']} "
        f"(no gate {cold['prefix_read_share']}), input read share {warm['input_read_share']} "
        "(target prefix >= 0.80)"
    )
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main()))
