"""LLMSettings from config, the warm-up gate, session notes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ci_swarm.agents.claude import ClaudeAgent
from ci_swarm.config import Budget, Config
from ci_swarm.errors import LLMError
from ci_swarm.llm.accounting import BudgetStop
from ci_swarm.llm.factory import ClaudeSession
from ci_swarm.llm.planner import ClaudePlanner
from ci_swarm.llm.pricing import TokenCounts
from ci_swarm.llm.session import LLMSession, LLMSettings, WarmGate
from ci_swarm.models import AgentSpec
from tests.anthropic_helpers import KEY, arun


def test_settings_from_config_with_cli_overrides() -> None:
    config = Config(
        model="claude-opus-4-8",
        max_agents=6,
        max_subtasks=5,
        budget=Budget(usd=2.5, tokens=None),
        allowed_commands=(("pytest",),),
        role_prompts={"tester": "Test hard."},
    )
    settings = LLMSettings.from_config(config, max_tokens=10_000, planner_model=None)
    assert settings.model == "claude-opus-4-8"
    assert settings.effective_planner_model == "claude-opus-4-8"
    assert (settings.max_subtasks, settings.max_concurrency) == (5, 6)
    assert (settings.max_usd, settings.max_tokens) == (2.5, 10_000)
    assert settings.allowed_commands == (("pytest",),)
    assert settings.role_prompts["tester"] == "Test hard."


def test_warm_gate_lets_the_first_request_go_alone() -> None:
    gate = WarmGate()
    order: list[str] = []

    async def call(name: str, prefix: str | None, hold: float) -> None:
        async with gate.enter(prefix):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    async def go() -> None:
        await asyncio.gather(call("a", "p", 0.02), call("b", "p", 0), call("c", "p", 0), call("x", None, 0))

    arun(go())
    assert order.index("a out") < order.index("b in") and order.index("a out") < order.index("c in")
    assert order.index("x in") < order.index("a out")  # no prefix: never gated


def test_budget_stop_is_an_llm_error_and_notes_explain_it() -> None:
    session = LLMSession(LLMSettings(max_tokens=10), KEY, "http://127.0.0.1:9")
    session.ledger.response("a", "claude-sonnet-4-6", TokenCounts(input=20))
    session.ledger.response("a", "mystery-1", TokenCounts(input=1))
    assert session.budget_reason() == "budget reached: 21 of 10 tokens used"

    async def go() -> Any:
        with pytest.raises(BudgetStop) as info:
            await session.create("a", {"model": "m", "max_tokens": 10, "messages": []})
        await session.aclose()
        return info.value

    err = arun(go())
    assert isinstance(err, LLMError) and "21 of 10" in str(err)
    session.budget_stopped = True
    notes = session.notes()
    assert notes[0].startswith("The budget stopped the swarm: budget reached")
    assert "No price known for model 'mystery-1'" in notes[1]


def test_the_claude_session_hands_out_its_consumers_the_plain_session_does_not() -> None:
    session = ClaudeSession.from_env(LLMSettings(model="m-1"), {"ANTHROPIC_API_KEY": KEY})
    assert isinstance(session, ClaudeSession)
    assert isinstance(session.planner(), ClaudePlanner)
    agent = session.agent_backend()(AgentSpec("claude", {"max_turns": 3}))
    assert isinstance(agent, ClaudeAgent)
    assert (agent.model, agent.max_turns) == ("m-1", 3)
    plain = LLMSession(LLMSettings(), KEY, "http://127.0.0.1:9")
    assert not hasattr(plain, "planner")
    assert not hasattr(plain, "agent_backend")
    arun(session.aclose())
    arun(plain.aclose())
