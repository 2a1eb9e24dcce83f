"""The fake Anthropic API, exercised with the real anthropic SDK over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, Usage, UserMessageParam

from ci_swarm.testing.anthropic_script import Conversation, Fault, Limits, Script, load_script
from ci_swarm.testing.fake_anthropic import FakeAnthropic
from tests.anthropic_helpers import KEY, arun, three_subtask_script, write_script

MODEL = "claude-sonnet-4-6"
SYSTEM_LONG = "You are a careful assistant. " * 40  # ~300 tokens


def client(fake: FakeAnthropic, **kw: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.base_url, **kw)


def echo_script(**kw: Any) -> Script:
    replies = (
        {"text": "hello ${who}"},
        {"tool": "write_file", "input": {"path": "a.txt", "content": "x"}},
        {"text": "done"},
    )
    return Script(
        conversations=(Conversation("echo", r"greet (?P<who>\w+)", replies),), min_cache_tokens=64, **kw
    )


def user(text: str) -> UserMessageParam:
    return {"role": "user", "content": text}


async def create(c: anthropic.AsyncAnthropic, messages: list[MessageParam], **kw: Any) -> Any:
    return await c.messages.create(model=MODEL, max_tokens=512, messages=messages, **kw)


def test_create_serves_scripted_replies_by_turn_with_substitution() -> None:
    with FakeAnthropic(echo_script()) as fake:

        async def go() -> tuple[Any, Any]:
            c = client(fake)
            first = await create(c, [user("greet world")])
            second = await create(
                c, [user("greet world"), {"role": "assistant", "content": "hi"}, user("more")]
            )
            return first, second

        first, second = arun(go())
    assert first.content[0].text == "hello world"
    assert first.stop_reason == "end_turn"
    assert first.id.startswith("msg_")
    assert second.stop_reason == "tool_use"
    assert second.content[0].name == "write_file"
    assert second.content[0].input == {"path": "a.txt", "content": "x"}
    assert second.content[0].id.startswith("toolu_")
    assert [r.turn for r in fake.requests] == [0, 1]


def test_streaming_with_the_sdk_helper_gives_the_same_message() -> None:
    with FakeAnthropic(echo_script()) as fake:

        async def go() -> tuple[Any, list[str]]:
            c = client(fake)
            messages: list[MessageParam] = [
                user("greet world"),
                {"role": "assistant", "content": "hi"},
                user("go"),
            ]
            kinds: list[str] = []
            async with c.messages.stream(model=MODEL, max_tokens=512, messages=messages) as stream:
                async for event in stream:
                    kinds.append(event.type)
                final = await stream.get_final_message()
            return final, kinds

        final, kinds = arun(go())
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == {"path": "a.txt", "content": "x"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 1
    assert kinds[0] == "message_start" and "content_block_start" in kinds and "message_stop" in kinds
    assert fake.requests[0].stream


def test_raw_sse_has_ping_and_chunked_deltas() -> None:
    script = Script(conversations=(Conversation("c", "hi", ({"text": "x" * 100},)),), stream_chunk=10)
    with FakeAnthropic(script) as fake:
        body = json.dumps(
            {"model": MODEL, "max_tokens": 200, "stream": True, "messages": [user("hi")]}
        ).encode()
        req = urllib.request.Request(
            f"{fake.base_url}/v1/messages",
            data=body,
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            assert resp.headers["content-type"] == "text/event-stream"
            assert resp.headers["request-id"].startswith("req_")
    events = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "ping" in events and events.count("content_block_delta") == 10
    assert events[-2] == "message_delta"


def test_prompt_cache_write_then_read_and_usage_adds_up() -> None:
    system = [{"type": "text", "text": SYSTEM_LONG, "cache_control": {"type": "ephemeral"}}]
    with FakeAnthropic(echo_script()) as fake:

        async def go() -> list[Any]:
            c = client(fake)
            return [await create(c, [user("greet a")], system=system) for _ in range(2)]

        first, second = arun(go())
    assert first.usage.cache_creation_input_tokens > 250
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0

    def total(u: Usage) -> int:
        return u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)

    assert total(first.usage) == total(second.usage)


def test_prefix_below_the_minimum_is_not_cached() -> None:
    system = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    with FakeAnthropic(echo_script()) as fake:
        result = arun(create(client(fake), [user("greet a")], system=system))
    assert result.usage.cache_creation_input_tokens == 0


def test_incremental_conversation_cache_reads_the_previous_turn() -> None:
    """A moving breakpoint on the last user message reads what the previous turn wrote (20-block lookback)."""
    system = [{"type": "text", "text": SYSTEM_LONG, "cache_control": {"type": "ephemeral"}}]

    def marked(text: str) -> UserMessageParam:
        return {
            "role": "user",
            "content": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}],
        }

    with FakeAnthropic(echo_script()) as fake:

        async def go() -> Any:
            c = client(fake)
            await create(c, [marked("greet a " + "y" * 400)], system=system)
            history: list[MessageParam] = [
                user("greet a " + "y" * 400),
                {"role": "assistant", "content": "hello a"},
                marked("continue"),
            ]
            return await create(c, history, system=system)

        second = arun(go())
    assert second.usage.cache_read_input_tokens > 350  # system + the first user message


def test_a_response_in_flight_does_not_serve_the_cache_to_parallel_requests() -> None:
    system = [{"type": "text", "text": SYSTEM_LONG, "cache_control": {"type": "ephemeral"}}]
    with FakeAnthropic(echo_script(latency=0.2)) as fake:

        async def go() -> list[Any]:
            import asyncio

            c = client(fake)
            return list(
                await asyncio.gather(*(create(c, [user("greet a")], system=system) for _ in range(3)))
            )

        results = arun(go())
    assert all(r.usage.cache_read_input_tokens == 0 for r in results)
    assert fake.max_in_flight == 3


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {
                "messages": [
                    user("x"),
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}}],
                    },
                    user("no"),
                ]
            },
            "`tool_use` ids were found without `tool_result` blocks immediately after: t1",
        ),
        (
            {
                "messages": [
                    user("x"),
                    {"role": "assistant", "content": "ok"},
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "zz", "content": "r"}],
                    },
                ]
            },
            "unexpected `tool_use_id` found in `tool_result` blocks: zz",
        ),
        (
            {
                "messages": [
                    user("x"),
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "first"},
                            {"type": "tool_result", "tool_use_id": "t1", "content": "r"},
                        ],
                    },
                ]
            },
            "`tool_result` blocks must come first",
        ),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [user("x")], "tool_choice": {"type": "tool", "name": "nope"}}, "Tool 'nope' not found"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "text content blocks must be non-empty",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}}
                            for i in range(5)
                        ],
                    }
                ]
            },
            "A maximum of 4 blocks with cache_control",
        ),
    ],
)
def test_request_checks_are_400_invalid_request_error(body: dict[str, Any], fragment: str) -> None:
    with FakeAnthropic(echo_script()) as fake:

        async def go() -> anthropic.BadRequestError:
            with pytest.raises(anthropic.BadRequestError) as info:
                await client(fake).messages.create(model=MODEL, max_tokens=10, **body)
            return info.value

        err = arun(go())
    assert err.status_code == 400
    assert isinstance(err.body, dict) and err.body["error"]["type"] == "invalid_request_error"
    assert fragment in err.body["error"]["message"]
    assert len(fake.requests) == 1  # a 400 is not retried


def test_wrong_key_is_one_401_and_no_retries() -> None:
    with FakeAnthropic(echo_script(api_keys=("right",))) as fake:

        async def go() -> anthropic.AuthenticationError:
            c = anthropic.AsyncAnthropic(api_key="wrong", base_url=fake.base_url, max_retries=5)
            with pytest.raises(anthropic.AuthenticationError) as info:
                await create(c, [user("greet a")])
            return info.value

        err = arun(go())
    assert err.status_code == 401
    assert err.response.headers["request-id"].startswith("req_")
    assert len(fake.requests) == 1


def test_unknown_path_is_404_not_found_error() -> None:
    with FakeAnthropic(echo_script()) as fake:
        req = urllib.request.Request(f"{fake.base_url}/v1/nothing", data=b"{}", headers={"x-api-key": KEY})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 404
    assert json.loads(info.value.read())["error"]["type"] == "not_found_error"


def test_count_tokens_endpoint() -> None:
    with FakeAnthropic(echo_script()) as fake:
        result = arun(client(fake).messages.count_tokens(model=MODEL, messages=[user("greet a" * 40)]))
    assert result.input_tokens >= 70


def test_injected_429_with_retry_after_ms_is_retried_by_the_sdk() -> None:
    script = echo_script(faults=(Fault("rate_limit", times=2, retry_after_ms=30),))
    with FakeAnthropic(script) as fake:
        result = arun(create(client(fake, max_retries=3), [user("greet a")]))
    assert result.content[0].text == "hello a"
    assert [r.status for r in fake.requests] == [429, 429, 200]
    assert [r.retry_count for r in fake.requests] == [0, 1, 2]


@pytest.mark.parametrize(
    ("kind", "status", "error_class"),
    [("overloaded", 529, anthropic.APIStatusError), ("server_error", 500, anthropic.InternalServerError)],
)
def test_529_and_500_are_retried_then_surface(kind: str, status: int, error_class: type[Exception]) -> None:
    script = echo_script(faults=(Fault(kind, times=5),))
    with FakeAnthropic(script) as fake:

        async def go() -> Any:
            c = client(fake, max_retries=1)
            with pytest.raises(error_class) as info:
                await create(c, [user("greet a")])
            return info.value

        err = arun(go())
    assert err.status_code == status
    assert len(fake.requests) == 2  # the first try and one retry
    assert err.body["error"]["type"] == ("overloaded_error" if status == 529 else "api_error")


def test_error_event_mid_stream_raises_in_the_sdk() -> None:
    script = echo_script(faults=(Fault("error_event"),))
    with FakeAnthropic(script) as fake:

        async def go() -> anthropic.APIStatusError:
            with pytest.raises(anthropic.APIStatusError) as info:
                async with client(fake).messages.stream(
                    model=MODEL, max_tokens=100, messages=[user("greet a")]
                ) as s:
                    await s.get_final_message()
            return info.value

        err = arun(go())
    assert isinstance(err.body, dict) and err.body["error"]["type"] == "overloaded_error"
    assert fake.requests[0].fault == "error_event"


def test_error_event_fault_skips_non_streaming_requests() -> None:
    script = echo_script(faults=(Fault("error_event"),))
    with FakeAnthropic(script) as fake:
        result = arun(create(client(fake), [user("greet a")]))
    assert result.content[0].text == "hello a"
    assert fake.requests[0].fault == ""


def test_malformed_tool_input_replaces_the_input() -> None:
    script = echo_script(faults=(Fault("malformed_tool_input", input={"path": 7}),))
    history: list[MessageParam] = [user("greet a"), {"role": "assistant", "content": "hi"}, user("go")]
    with FakeAnthropic(script) as fake:
        result = arun(create(client(fake), history))
    assert result.content[0].input == {"path": 7}


def test_latency_fault_delays_one_response() -> None:
    script = echo_script(faults=(Fault("latency", seconds=0.3),))
    with FakeAnthropic(script) as fake:

        async def go() -> tuple[float, float]:
            c = client(fake)
            t0 = time.monotonic()
            await create(c, [user("greet a")])
            t1 = time.monotonic()
            await create(c, [user("greet a")])
            return t1 - t0, time.monotonic() - t1

        slow, _ = arun(go())
        faults = [r.fault for r in fake.requests]
    assert faults == ["latency", ""]  # only the first response carried the fault
    assert slow >= 0.3  # it was held back at least that long (a lower bound: load cannot break it)


def test_rate_limit_is_enforced_with_429_and_headers() -> None:
    script = echo_script(limits=Limits(rpm=2, window=60.0))
    with FakeAnthropic(script) as fake:

        async def go() -> tuple[Any, anthropic.RateLimitError]:
            c = client(fake, max_retries=0)
            ok = await c.messages.with_raw_response.create(
                model=MODEL, max_tokens=10, messages=[user("greet a")]
            )
            await create(c, [user("greet a")])
            with pytest.raises(anthropic.RateLimitError) as info:
                await create(c, [user("greet a")])
            return ok, info.value

        ok, err = arun(go())
    assert ok.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert ok.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert err.status_code == 429
    assert int(err.response.headers["retry-after"]) >= 1
    assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert isinstance(err.body, dict) and "rate limit" in err.body["error"]["message"]


def test_output_tokens_limit_reserves_max_tokens_while_in_flight() -> None:
    """Like the API: max_tokens is reserved against the output limit up front, the unused part given back
    when the response is done."""
    script = echo_script(limits=Limits(otpm=1000, window=60.0), latency=0.3)
    with FakeAnthropic(script) as fake:

        async def go() -> list[Any]:
            import asyncio

            c = client(fake, max_retries=0)
            calls = [
                c.messages.create(model=MODEL, max_tokens=900, messages=[user("greet a")]) for _ in range(2)
            ]
            results = list(await asyncio.gather(*calls, return_exceptions=True))
            results.append(await create(c, [user("greet a")]))  # after both: the reservation was given back
            return results

        results = arun(go())
    assert sorted(type(r).__name__ for r in results[:2]) == ["Message", "RateLimitError"]
    assert results[2].content[0].text == "hello a"


def test_script_file_round_trip_and_command_line_server(tmp_path: Path) -> None:
    path = write_script(three_subtask_script(), tmp_path / "script.json")
    loaded = load_script(path)
    assert [c.name for c in loaded.conversations] == ["planner", "code", "tests", "docs"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_swarm.testing.fake_anthropic", "--port", "0", "--script", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        c = anthropic.Anthropic(api_key=KEY, base_url=base_url)
        reply = c.messages.create(
            model=MODEL,
            max_tokens=4096,
            system="You are the ci-swarm planner. Plan it.",
            messages=[user("Request: add greet")],
        )
        block = reply.content[0]
        assert block.type == "tool_use" and block.name == "submit_plan"
        subtasks = block.input["subtasks"]
        assert isinstance(subtasks, list) and [s["id"] for s in subtasks] == ["code", "tests", "docs"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_bad_script_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"faults": [{"kind": "explode"}]}))
    result = subprocess.run(
        [sys.executable, "-m", "ci_swarm.testing.fake_anthropic", "--script", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 4
    assert "unknown fault kind 'explode'" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_tool_input_when_streaming_is_broken_json() -> None:
    """The SDK parses partial JSON leniently: the agent gets a truncated input, not the scripted one."""
    script = echo_script(faults=(Fault("malformed_tool_input"),))
    history: list[MessageParam] = [user("greet a"), {"role": "assistant", "content": "hi"}, user("go")]
    with FakeAnthropic(script) as fake:

        async def go() -> Any:
            async with client(fake).messages.stream(model=MODEL, max_tokens=512, messages=history) as s:
                return await s.get_final_message()

        result = arun(go())
    assert result.content[0].type == "tool_use"
    assert result.content[0].input != {"path": "a.txt", "content": "x"}
    assert fake.requests[0].fault == "malformed_tool_input"
