"""The Claude planner against the fake API with the real SDK: plans, repairs, failures."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from ci_swarm.errors import LLMError
from ci_swarm.llm.factory import claude_planner
from ci_swarm.llm.planner import SINGLE_SUBTASK_NOTE, ClaudePlanner
from ci_swarm.llm.session import LLMSession
from ci_swarm.models import Request
from ci_swarm.testing.anthropic_script import PLANNER_MATCH, Conversation, Script
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from tests.anthropic_helpers import KEY, SAMPLE_FILES, arun, session_for, settings, tool_results
from tests.fixtures import make_repo


def sub(sid: str, *deps: str, paths: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "role": "builder",
        "title": f"do {sid}",
        "instructions": f"please do {sid}",
        "paths": list(paths or (f"src/{sid}.py",)),
        "depends_on": list(deps),
        **extra,
    }


def submit(*subtasks: dict[str, Any], rationale: str = "because") -> dict[str, Any]:
    return {"tool": "submit_plan", "input": {"rationale": rationale, "subtasks": list(subtasks)}}


def planner_script(*replies: Any) -> Script:
    return Script(conversations=(Conversation("planner", PLANNER_MATCH, tuple(replies), after="repeat"),))


def plan_with(fake: FakeAnthropic, repo: Path, **overrides: Any) -> tuple[Any, LLMSession, ClaudePlanner]:
    session = session_for(fake, **overrides)
    planner = claude_planner(session)
    assert isinstance(planner, ClaudePlanner)

    async def go() -> Any:
        try:
            return await planner.plan(Request("add a greeting feature"), repo)
        finally:
            await session.aclose()

    return arun(go()), session, planner


def test_plans_three_subtasks_with_the_repo_context(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    script = planner_script(submit(sub("code"), sub("tests", "code"), sub("docs"), rationale="by concern"))
    with FakeAnthropic(script) as fake:
        plan, session, planner = plan_with(fake, repo)
    assert [s.id for s in plan.subtasks] == ["code", "tests", "docs"]
    assert plan.subtasks[1].depends_on == ("code",)
    assert plan.task == "add a greeting feature"
    assert plan.rationale == "by concern"
    assert planner.repairs == 0
    body = fake.requests[0].body
    assert body is not None
    assert body["tool_choice"] == {"type": "tool", "name": "submit_plan"}
    assert [t["name"] for t in body["tools"]] == ["submit_plan"]
    brief = body["messages"][0]["content"]
    assert "Request: add a greeting feature" in brief
    assert "src/app.py" in brief  # the repo map
    assert "A tiny sample project." in brief  # README head
    assert "Use 4-space indents." in brief  # CLAUDE.md
    usage = session.usage_by_subtask()["planner"]
    assert usage.requests == 1 and usage.turns == 1 and usage.cost_usd > 0


def test_an_invalid_plan_goes_back_as_an_error_result_and_is_repaired(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    cyclic = submit(sub("a", "b"), sub("b", "a"))
    script = planner_script(cyclic, submit(sub("a"), sub("b", "a")))
    with FakeAnthropic(script) as fake:
        plan, _, planner = plan_with(fake, repo)
    assert [s.id for s in plan.subtasks] == ["a", "b"]
    assert planner.repairs == 1
    [result] = tool_results(fake.requests[1])
    assert result["is_error"] is True
    assert "cycle" in result["content"] and "a -> b -> a" in result["content"]


def test_no_tool_call_gets_a_reminder_then_a_clear_failure(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    script = planner_script({"text": "Sure! Here is my plan: do everything."})
    with FakeAnthropic(script) as fake, pytest.raises(LLMError) as info:
        plan_with(fake, repo)
    assert len(fake.requests) == 3  # the first answer and 2 repairs
    assert (
        str(info.value)
        == "the planner gave no valid plan after 2 repairs: the model did not call submit_plan"
    )
    reminder = fake.requests[1].body["messages"][-1]["content"]  # type: ignore[index]
    assert reminder[-1]["text"].startswith("You must call the submit_plan tool")


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (submit(sub("a", "ghost")), "depends on unknown 'ghost'"),
        (submit(sub("a"), sub("a")), "duplicate"),
        (submit(sub("Bad_ID")), "Bad_ID"),
        (
            {"tool": "submit_plan", "input": {"rationale": "x", "subtasks": "all of it"}},
            "'subtasks' must be a list",
        ),
        ({"tool": "submit_plan", "input": {"subtasks": [sub("a")]}}, "'rationale' must be a string"),
        (submit(), "no subtasks"),
    ],
)
def test_garbage_plans_fail_clearly_after_two_repairs(tmp_path: Path, reply: Any, problem: str) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    with FakeAnthropic(planner_script(reply)) as fake, pytest.raises(LLMError) as info:
        plan_with(fake, repo)
    assert problem in str(info.value)
    assert str(info.value).startswith("the planner gave no valid plan after 2 repairs")
    assert all(tool_results(r)[0]["is_error"] for r in fake.requests[1:])


def test_max_subtasks_caps_the_plan(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    script = planner_script(submit(sub("a"), sub("b"), sub("c")), submit(sub("a"), sub("b")))
    with FakeAnthropic(script) as fake:
        plan, _, _ = plan_with(fake, repo, max_subtasks=2)
    assert len(plan.subtasks) == 2
    assert "at most 2 subtasks" in fake.requests[0].body["system"]  # type: ignore[index]
    assert "too many" in tool_results(fake.requests[1])[0]["content"].lower()


def test_a_single_subtask_is_noted_in_the_rationale(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    with FakeAnthropic(planner_script(submit(sub("only"), rationale="tiny change"))) as fake:
        plan, _, _ = plan_with(fake, repo)
    assert len(plan.subtasks) == 1
    assert plan.rationale == f"tiny change\n\n{SINGLE_SUBTASK_NOTE}"


def test_the_model_cannot_choose_an_agent_backend(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    sneaky = sub("a", agent={"kind": "command", "command": {"run": ["rm", "-rf", "/"]}})
    with FakeAnthropic(planner_script(submit(sneaky))) as fake:
        plan, _, _ = plan_with(fake, repo)
    assert plan.subtasks[0].agent is None


def test_ownership_overlap_is_a_warning_not_a_repair(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    script = planner_script(submit(sub("a", paths=("src/x.py",)), sub("b", paths=("src/x.py",))))
    with FakeAnthropic(script) as fake:
        plan, _, planner = plan_with(fake, repo)
    assert len(plan.subtasks) == 2
    assert planner.repairs == 0
    assert planner.warnings and "src/x.py" in planner.warnings[0]


def test_a_wrong_key_is_one_clear_error_and_one_request(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    script = Script(conversations=planner_script(submit(sub("a"))).conversations, api_keys=("the-right-key",))
    with FakeAnthropic(script) as fake, pytest.raises(LLMError) as info:
        plan_with(fake, repo, max_retries=5)
    message = str(info.value)
    assert message.startswith("Anthropic API error 401 authentication_error: invalid x-api-key")
    assert "ANTHROPIC_API_KEY" in message and "\n" not in message
    assert len(fake.requests) == 1


def test_an_unreachable_api_is_an_llm_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = LLMSession(settings(max_retries=0), KEY, f"http://127.0.0.1:{port}")
    with pytest.raises(LLMError, match=r"cannot reach the Anthropic API \(http://127\.0\.0\.1"):
        arun(claude_planner(session).plan(Request("x"), repo))


def test_exhausted_retries_are_an_llm_error(tmp_path: Path) -> None:
    from ci_swarm.testing.anthropic_script import Fault

    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    script = Script(
        conversations=planner_script(submit(sub("a"))).conversations,
        faults=(Fault("rate_limit", times=10, retry_after_ms=10),),
    )
    with FakeAnthropic(script) as fake, pytest.raises(LLMError, match="429 rate_limit_error"):
        plan_with(fake, repo, max_retries=2)
    assert len(fake.requests) == 3
    assert [r.retry_count for r in fake.requests] == [0, 1, 2]


def test_missing_key_is_a_one_line_error() -> None:
    with pytest.raises(LLMError) as info:
        LLMSession.from_env(settings(), {"ANTHROPIC_BASE_URL": "http://x"})
    assert str(info.value).startswith("ANTHROPIC_API_KEY is not set")
    assert info.value.exit_code == 6


def test_base_url_comes_from_the_given_environment_only() -> None:
    session = LLMSession.from_env(settings(), {"ANTHROPIC_API_KEY": KEY})
    assert str(session.client.base_url).rstrip("/") == "https://api.anthropic.com"
    arun(session.aclose())
