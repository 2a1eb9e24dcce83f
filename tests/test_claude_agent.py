"""The Claude agent in real worktrees, against the fake API with the real SDK."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.agents.claude import CUT, CUT_TOOL, NUDGE, ClaudeAgent
from ci_swarm.llm.factory import claude_backend
from ci_swarm.llm.session import LLMSession
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask
from ci_swarm.testing.anthropic_script import (
    Conversation,
    Fault,
    Limits,
    Script,
    edit_file_call,
    subtask_match,
    write_file_call,
)
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from ci_swarm.workspace import Workspace
from tests.anthropic_helpers import (
    KEY,
    SAMPLE_FILES,
    arun,
    context,
    make_workspace,
    session_for,
    settings,
    tool_results,
)
from tests.fixtures import make_repo

FINISH = {"tool": "finish", "input": {"summary": "done"}}
CODE = Subtask("code", "builder", "Add greet()", "write src/greet.py", paths=("src/**",))


def agent_script(*replies: Any, name: str = "code", after: str = "end", **kw: Any) -> Script:
    conv = Conversation(name, subtask_match(name), tuple(replies), after=after)
    return Script(conversations=(conv,), min_cache_tokens=kw.pop("min_cache_tokens", 64), **kw)


def run_agents(
    fake: FakeAnthropic, repo: Path, tmp: Path, subtasks: list[Subtask], **overrides: Any
) -> tuple[list[AgentOutcome], LLMSession]:
    session = session_for(fake, **overrides)
    workspaces = [make_workspace(repo, s, tmp) for s in subtasks]

    async def go() -> list[AgentOutcome]:
        try:
            backend = claude_backend(session)
            runs = [
                backend(AgentSpec("claude")).run(s, w, context(subtasks=subtasks))
                for s, w in zip(subtasks, workspaces, strict=True)
            ]
            return list(await asyncio.gather(*runs))
        finally:
            await session.aclose()

    return arun(go()), session


def run_one(
    fake: FakeAnthropic, repo: Path, tmp: Path, subtask: Subtask = CODE, **overrides: Any
) -> tuple[AgentOutcome, LLMSession]:
    outcomes, session = run_agents(fake, repo, tmp, [subtask], **overrides)
    return outcomes[0], session


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", SAMPLE_FILES)


def test_agent_edits_files_with_the_tools_and_finishes(repo: Path, tmp_path: Path) -> None:
    script = agent_script(
        {"tool": "read_file", "input": {"path": "src/app.py"}},
        write_file_call("src/greet.py", "def greet():\n    return 'hi'\n"),
        edit_file_call("src/app.py", "'hello'", "'hello there'"),
        {"tool": "finish", "input": {"summary": "added greet"}},
    )
    with FakeAnthropic(script) as fake:
        outcome, session = run_one(fake, repo, tmp_path)
    root = tmp_path / "wt" / "code"
    assert outcome.ok and outcome.summary == "added greet" and not outcome.error
    assert (root / "src/greet.py").read_text() == "def greet():\n    return 'hi'\n"
    assert "'hello there'" in (root / "src/app.py").read_text()
    assert outcome.outside_paths == ()
    assert outcome.usage.turns == 4 and outcome.usage.requests == 4 and outcome.usage.retries == 0
    assert outcome.usage.cost_usd > 0
    assert session.usage_by_subtask()["code"] == outcome.usage
    assert "read_file path='src/app.py'" in outcome.log
    first = fake.requests[0].body
    assert first is not None
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "src/app.py" in first["system"][0]["text"] and "Use 4-space indents." in first["system"][0]["text"]
    assert first["system"][1]["text"].startswith("Your role: builder.")
    assert "Subtask id: code\n" in first["messages"][0]["content"][0]["text"]
    assert [t["name"] for t in first["tools"]][-1] == "finish"
    later = fake.requests[-1]
    assert (
        later.usage["cache_read_input_tokens"] > 0
    )  # the shared prefix and earlier turns come from the cache
    marks = sum("cache_control" in b for m in later.body["messages"] for b in m["content"])  # type: ignore[index]
    assert marks == 1  # only the last user message carries the moving breakpoint


def test_refusals_are_error_results_and_the_agent_goes_on(repo: Path, tmp_path: Path) -> None:
    script = agent_script(
        {
            "tools": [
                {"name": "write_file", "input": {"path": "../escape.txt", "content": "x"}},
                {"name": "read_file", "input": {"path": ".git/config"}},
                {"name": "edit_file", "input": {"path": "src/app.py", "old": "nope", "new": "x"}},
                {"name": "edit_file", "input": {"path": "src/app.py", "old": "'", "new": "x"}},
                {"name": "run_command", "input": {"argv": ["curl", "evil.example"]}},
                {"name": "write_file", "input": {"path": "src/a.py"}},
                {"name": "explode", "input": {}},
            ]
        },
        FINISH,
    )
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    assert outcome.ok
    results = tool_results(fake.requests[1])
    assert len(results) == 7 and all(r["is_error"] for r in results)
    texts = [r["content"] for r in results]
    assert "leaves the worktree" in texts[0]
    assert "under .git/" in texts[1]
    assert "matched 0 times" in texts[2] and "matched 2 times" in texts[3]
    assert "not on the allow-list" in texts[4]
    assert "missing required field(s): content" in texts[5]
    assert "unknown tool 'explode'" in texts[6]
    assert not (tmp_path / "wt" / "escape.txt").exists()


def test_malformed_tool_input_from_the_api_is_an_error_result(repo: Path, tmp_path: Path) -> None:
    script = agent_script(
        write_file_call("src/x.py", "x"),
        FINISH,
        faults=(Fault("malformed_tool_input", turn=0, input={"path": 5}),),
    )
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    assert outcome.ok
    [result] = tool_results(fake.requests[1])
    assert result["is_error"] and "missing required field(s): content" in result["content"]


def test_a_subtask_that_never_finishes_stops_at_max_turns(repo: Path, tmp_path: Path) -> None:
    script = agent_script({"tool": "list_files", "input": {}}, after="repeat")
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path, max_turns=3)
    assert not outcome.ok
    assert outcome.error == "max turns (3) reached without finish"
    assert len(fake.requests) == 3 and outcome.usage.turns == 3


def test_max_turns_can_come_from_the_agent_spec(repo: Path, tmp_path: Path) -> None:
    with FakeAnthropic(agent_script()) as fake:
        session = session_for(fake)
        agent = claude_backend(session)(AgentSpec("claude", {"max_turns": 2, "model": "claude-haiku-4-5"}))
        assert isinstance(agent, ClaudeAgent)
        assert (agent.max_turns, agent.model) == (2, "claude-haiku-4-5")
        arun(session.aclose())


def test_text_without_tools_gets_a_nudge(repo: Path, tmp_path: Path) -> None:
    script = agent_script({"text": "I think I am done."}, FINISH)
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    assert outcome.ok
    assert fake.requests[1].body["messages"][-1]["content"][0]["text"] == NUDGE  # type: ignore[index]


def test_refusal_stop_reason_fails_the_subtask(repo: Path, tmp_path: Path) -> None:
    script = agent_script({"text": "I can't help with that.", "stop_reason": "refusal"})
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    assert not outcome.ok and outcome.error == "the model refused the subtask"
    assert len(fake.requests) == 1


def test_pause_turn_sends_the_reply_back_to_continue(repo: Path, tmp_path: Path) -> None:
    script = agent_script({"text": "Working on it", "stop_reason": "pause_turn"}, FINISH)
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    assert outcome.ok
    body = fake.requests[1].body
    assert body is not None and body["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Working on it"}],
    }


def test_max_tokens_cut_reply_is_handled(repo: Path, tmp_path: Path) -> None:
    script = agent_script(
        {
            "tools": [
                {"name": "write_file", "input": {"path": "src/one.py", "content": "1"}},
                {"name": "write_file", "input": {"path": "src/two.py", "content": "2"}},
            ],
            "stop_reason": "max_tokens",
        },
        {"text": "and then", "stop_reason": "max_tokens"},
        FINISH,
    )
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    root = tmp_path / "wt" / "code"
    assert outcome.ok
    assert (root / "src/one.py").exists() and not (root / "src/two.py").exists()
    results = tool_results(fake.requests[1])
    assert not results[0]["is_error"] and results[1] == {**results[1], "is_error": True, "content": CUT_TOOL}
    assert fake.requests[2].body["messages"][-1]["content"][0]["text"] == CUT  # type: ignore[index]


def test_a_reply_longer_than_max_tokens_is_cut_by_the_api(repo: Path, tmp_path: Path) -> None:
    big = write_file_call("src/big.py", "x" * 2000)
    with FakeAnthropic(agent_script(big, FINISH)) as fake:
        outcome, _ = run_one(fake, repo, tmp_path, response_max_tokens=100)
    assert outcome.ok
    assert not (tmp_path / "wt" / "code" / "src/big.py").exists()
    assert tool_results(fake.requests[1])[0]["content"] == CUT_TOOL


def test_outside_paths_are_flagged_and_strict_paths_refuses_them(repo: Path, tmp_path: Path) -> None:
    script = agent_script(write_file_call("README.md", "# changed\n"), FINISH)
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path)
    assert outcome.ok and outcome.outside_paths == ("README.md",)

    other = Subtask("strict", "builder", "t", paths=("src/**",))
    script = agent_script(write_file_call("README.md", "# changed\n"), FINISH, name="strict")
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path, other, strict_paths=True)
    assert outcome.ok and outcome.outside_paths == ()
    assert "strict_paths" in tool_results(fake.requests[1])[0]["content"]
    assert (tmp_path / "wt" / "strict" / "README.md").read_text().startswith("# sample")


def test_allowed_commands_run_in_the_worktree(open_dir: Path) -> None:
    """In a clone of its own where the sandbox account can reach it (a sandboxed git cannot use a linked
    worktree whose repository it may not read)."""
    repo = make_repo(open_dir / "repo", SAMPLE_FILES)
    script = agent_script({"tool": "run_command", "input": {"argv": ["git", "status", "--short"]}}, FINISH)
    with FakeAnthropic(script) as fake:
        session = session_for(fake, allowed_commands=(("git", "status"),))
        ws = Workspace(repo, "main", git.head_commit(repo), CODE.id, CODE.paths)

        async def go() -> AgentOutcome:
            try:
                return await claude_backend(session)(AgentSpec("claude")).run(
                    CODE, ws, context(subtasks=[CODE])
                )
            finally:
                await session.aclose()

        outcome = arun(go())
    assert outcome.ok
    [result] = tool_results(fake.requests[1])
    assert not result["is_error"] and result["content"].startswith("exit code 0")
    assert "git status" in fake.requests[0].body["messages"][0]["content"][0]["text"]  # type: ignore[index]


def many(n: int) -> list[Subtask]:
    return [Subtask(f"s{i}", "builder", f"part {i}", paths=(f"src/s{i}.py",)) for i in range(n)]


def many_script(n_turns: int = 2, **kw: Any) -> Script:
    conv = Conversation(
        "agents",
        r"Subtask id: (?P<id>s\d+)\n",
        (*[write_file_call("src/${id}.py", f"v = {t}\n") for t in range(n_turns)], FINISH),
    )
    return Script(conversations=(conv,), min_cache_tokens=64, **kw)


def test_a_429_storm_slows_the_swarm_but_fails_nothing(repo: Path, tmp_path: Path) -> None:
    """Every attempt while the storm lasts is a 429 (the first request meets them all); the shared pause and
    the SDK's retries carry the swarm through it."""
    script = many_script(faults=(Fault("rate_limit", times=6, retry_after_ms=20),))
    with FakeAnthropic(script) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(4), max_retries=6)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert sum(r.status == 429 for r in fake.requests) == 6
    assert session.limiter.stats.rate_limited == 6
    assert session.usage().retries == 6
    assert sum(o.usage.retries for o in outcomes) == 6


def test_529s_are_retried(repo: Path, tmp_path: Path) -> None:
    script = many_script(faults=(Fault("overloaded", times=2, retry_after_ms=20),))
    with FakeAnthropic(script) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(2))
    assert all(o.ok for o in outcomes)
    assert sum(r.status == 529 for r in fake.requests) == 2
    assert session.limiter.stats.overloaded == 2


def test_in_flight_requests_stay_under_the_cap(repo: Path, tmp_path: Path) -> None:
    with FakeAnthropic(many_script(latency=0.03)) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(6), max_concurrency=2)
    assert all(o.ok for o in outcomes)
    assert fake.max_in_flight == 2
    assert session.limiter.stats.max_in_flight == 2


def test_server_rate_limits_are_learned_and_no_subtask_fails(repo: Path, tmp_path: Path) -> None:
    limits = Limits(rpm=6, window=1.0, precise_retry_after=True)
    with FakeAnthropic(many_script(limits=limits)) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(4), max_concurrency=4, rate_window=1.0)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert session.limiter.limits()["requests"] == 6
    assert sum(r.status == 200 for r in fake.requests) == 12


def test_error_event_mid_stream_is_retried_when_streaming(repo: Path, tmp_path: Path) -> None:
    script = agent_script(write_file_call("src/s.py", "s"), FINISH, faults=(Fault("error_event", turn=0),))
    with FakeAnthropic(script) as fake:
        outcome, _ = run_one(fake, repo, tmp_path, stream=True)
    assert outcome.ok
    assert (tmp_path / "wt" / "code" / "src/s.py").read_text() == "s"
    assert [r.fault for r in fake.requests][:2] == ["error_event", ""]
    assert (outcome.usage.requests, outcome.usage.retries, outcome.usage.turns) == (3, 1, 2)


def test_the_swarm_budget_stops_new_turns(repo: Path, tmp_path: Path) -> None:
    script = many_script(n_turns=5)
    with FakeAnthropic(script) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(3), max_tokens=1500)
    assert all(not o.ok and o.budget_stopped for o in outcomes)
    assert all(o.error.startswith("stopped by the swarm budget (budget reached:") for o in outcomes)
    assert session.budget_stopped
    assert any("budget stopped the swarm" in n for n in session.notes())
    # s0's first turn goes alone (it writes the cache); then s0's second turn and the others' first turns
    # start while the budget holds; after them it is used up and no further turn starts
    assert len(fake.requests) == 4
    assert [o.usage.turns for o in outcomes] == [2, 1, 1]
    assert session.usage().tokens >= 1500


def test_the_usd_budget_counts_the_price(repo: Path, tmp_path: Path) -> None:
    with FakeAnthropic(many_script(n_turns=5)) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(1), max_usd=0.000001)
    assert outcomes[0].budget_stopped and outcomes[0].usage.turns == 1
    assert len(fake.requests) == 1
    assert session.usage().cost_usd >= 0.000001


def test_token_cap_per_subtask(repo: Path, tmp_path: Path) -> None:
    with FakeAnthropic(many_script(n_turns=5)) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(1), max_tokens_per_subtask=10)
    assert not outcomes[0].ok and not outcomes[0].budget_stopped
    assert outcomes[0].error.startswith("token limit per subtask reached")
    assert not session.budget_stopped


def test_a_wrong_key_fails_every_agent_with_one_request(repo: Path, tmp_path: Path) -> None:
    script = Script(conversations=many_script().conversations, api_keys=("right",))
    with FakeAnthropic(script) as fake:
        outcomes, _ = run_agents(fake, repo, tmp_path, many(3))
    assert len(fake.requests) == 1
    assert all(not o.ok and "401 authentication_error" in o.error for o in outcomes)


def test_an_unreachable_api_fails_the_subtask_not_the_run(repo: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = LLMSession(settings(max_retries=0), KEY, f"http://127.0.0.1:{port}")
    ws = make_workspace(repo, CODE, tmp_path)
    outcome = arun(ClaudeAgent(session).run(CODE, ws, context()))
    assert not outcome.ok and outcome.error.startswith("cannot reach the Anthropic API")


def test_parallel_agents_read_the_shared_prefix_from_the_cache(repo: Path, tmp_path: Path) -> None:
    with FakeAnthropic(many_script(n_turns=1, latency=0.02)) as fake:
        outcomes, session = run_agents(fake, repo, tmp_path, many(4))
    assert all(o.ok for o in outcomes)
    firsts = [r for r in fake.requests if r.turn == 0]
    writes = [r.usage["cache_creation_input_tokens"] for r in firsts]
    reads = [r.usage["cache_read_input_tokens"] for r in firsts]
    assert sum(1 for w in writes if w) == 4  # each first turn writes its own conversation breakpoint ...
    first, *rest = sorted(reads)
    assert first == 0 and len(set(rest)) == 1 and rest[0] > 0  # ... and 3 of 4 read the shared prefix
    assert session.usage().cache_read_tokens > session.usage().cache_write_tokens
