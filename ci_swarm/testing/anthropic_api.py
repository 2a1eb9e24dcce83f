"""What the fake Anthropic API knows about the real one, without any HTTP: the request checks (with the real
API's messages), token counting, the prompt cache, rate-limit buckets, and turning a scripted reply into a
Message and into its server-sent events.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CACHE_TTL = 300.0  # seconds: the default "ephemeral" cache lifetime
CACHE_LOOKBACK = 20  # block boundaries checked before each breakpoint
MAX_BREAKPOINTS = 4

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        kind = ERROR_TYPES.get(self.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}, "request_id": request_id}


def new_id(prefix: str) -> str:
    return f"{prefix}_01{secrets.token_hex(11)}"


# --- request checks -------------------------------------------------------------------------------


def check_request(body: Any) -> None:
    """Raise ApiError(400) for what the real Messages API rejects."""
    if not isinstance(body, Mapping):
        raise ApiError(400, "The request body is not valid JSON: expected an object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ApiError(400, "max_tokens: Field required (an integer >= 1)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: at least one message is required")
    tool_names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), tool_names)
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            raise ApiError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        _check_content(message.get("content"), f"messages.{i}.content")
    _check_tool_pairs(messages)
    found = sum(1 for block in _all_blocks(body) if isinstance(block, Mapping) and "cache_control" in block)
    if found > MAX_BREAKPOINTS:
        raise ApiError(
            400, f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise ApiError(400, "tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise ApiError(400, f"tools.{i}.name: Field required")
        if not isinstance(tool.get("input_schema"), Mapping):
            raise ApiError(400, f"tools.{i}.input_schema: Field required")
        if tool["name"] in names:
            raise ApiError(400, "tools: Tool names must be unique.")
        names.add(tool["name"])
    return names


def _check_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if not isinstance(choice, Mapping) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise ApiError(400, "tool_choice: Input tag does not match any of the expected tags")
    if choice["type"] == "tool" and choice.get("name") not in names:
        raise ApiError(400, f"tool_choice.name: Tool '{choice.get('name')}' not found in 'tools'")


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise ApiError(400, f"{where}: Input should be a valid string or a non-empty list of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise ApiError(400, f"{where}.{j}.type: Field required")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise ApiError(400, f"{where}.{j}.text: Field required")
        if block["type"] == "text" and not block["text"]:
            raise ApiError(400, "messages: text content blocks must be non-empty")
        if block["type"] == "tool_use" and not isinstance(block.get("input"), Mapping):
            raise ApiError(400, f"{where}.{j}.input: Input should be a valid dictionary")


def _blocks(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []


def _check_tool_pairs(messages: Sequence[Mapping[str, Any]]) -> None:
    """Each tool_use must be answered by a tool_result in the very next (user) message, results first."""
    for i, message in enumerate(messages):
        uses = [b.get("id") for b in _blocks(message) if b.get("type") == "tool_use"]
        if message.get("role") == "user":
            results = [b for b in _blocks(message) if b.get("type") == "tool_result"]
            previous = messages[i - 1] if i > 0 else {}
            offered = {b.get("id") for b in _blocks(previous) if b.get("type") == "tool_use"}
            for j, block in enumerate(results):
                if block.get("tool_use_id") not in offered or previous.get("role") != "assistant":
                    raise ApiError(
                        400,
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.",
                    )
            kinds = [b.get("type") for b in _blocks(message)]
            if results and kinds[: len(results)] != ["tool_result"] * len(results):
                raise ApiError(
                    400,
                    f"messages.{i}: `tool_result` blocks must come first in the content of a user message, "
                    "before any other block.",
                )
        if uses and i + 1 < len(messages):
            following = messages[i + 1]
            answered = {b.get("tool_use_id") for b in _blocks(following) if b.get("type") == "tool_result"}
            missing = [u for u in uses if u not in answered]
            if following.get("role") != "user" or missing:
                ids = ", ".join(str(u) for u in (missing or uses))
                raise ApiError(
                    400,
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {ids}. Each `tool_use` block must have a corresponding `tool_result` block in "
                    "the next message.",
                )


def _all_blocks(body: Mapping[str, Any]) -> Iterator[Any]:
    yield from body.get("tools") or ()
    system = body.get("system")
    if isinstance(system, list):
        yield from system
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            yield from content


# --- tokens and the prompt cache -------------------------------------------------------------------


def tokens_of(value: Any) -> int:
    """About 4 characters per token (text as is, anything else as compact JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return max(1, math.ceil(len(text) / 4))


def key_text(body: Mapping[str, Any]) -> str:
    """The text a conversation is recognised by: the system prompt, a blank line, the first user message."""
    system = body.get("system")
    first: Mapping[str, Any] = next((m for m in body.get("messages") or () if m.get("role") == "user"), {})
    return f"{_text(system)}\n\n{_text(first.get('content'))}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, Mapping) and b.get("type") == "text"
        )
    return ""


@dataclass(frozen=True)
class Segment:
    tokens: int
    digest: str  # identity of the prefix ending here (cache_control stripped)
    breakpoint: bool


def segments(body: Mapping[str, Any]) -> list[Segment]:
    """The prompt as the cache sees it: tools, then system blocks, then message blocks, in order."""
    running = hashlib.sha256(str(body.get("model")).encode())
    out: list[Segment] = []
    system = body.get("system")
    blocks: list[Any] = list(body.get("tools") or ())
    blocks += _as_blocks(system) if system else []
    for message in body.get("messages") or ():
        blocks += [{"role": message.get("role"), **b} for b in _as_blocks(message.get("content"))]
    for block in blocks:
        marked = isinstance(block, Mapping) and "cache_control" in block
        bare = (
            {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, Mapping) else block
        )
        running.update(json.dumps(bare, sort_keys=True).encode())
        out.append(Segment(tokens_of(bare), running.hexdigest(), marked))
    return out


def _as_blocks(content: Any) -> list[Any]:
    """String content is one text block, as the API reads it."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or ())


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_read: int
    cache_write: int
    writes: tuple[tuple[str, int], ...]  # (digest, prefix tokens) to store once the response is done


@dataclass
class PromptCache:
    """Prefixes ending at a ``cache_control`` breakpoint, stored once a response completes (so requests
    running at the same time all miss, as with the real API), read back for ``CACHE_TTL`` seconds."""

    min_tokens: int = 1024
    entries: dict[str, float] = field(default_factory=dict)  # digest -> expiry

    def usage(self, body: Mapping[str, Any], now: float) -> CacheUsage:
        segs = segments(body)
        cumulative = list(_cumsum(s.tokens for s in segs))
        total = cumulative[-1] if cumulative else 0
        marks = [i for i, s in enumerate(segs) if s.breakpoint]
        candidates = {j for i in marks for j in range(max(0, i - CACHE_LOOKBACK), i + 1)}
        hits = [j for j in candidates if self.entries.get(segs[j].digest, 0.0) > now]
        read = max((cumulative[j] for j in hits), default=0)
        for j in hits:
            self.entries[segs[j].digest] = now + CACHE_TTL
        writes = tuple(
            (segs[i].digest, cumulative[i])
            for i in marks
            if cumulative[i] > read and cumulative[i] >= self.min_tokens
        )
        write = max((tokens for _, tokens in writes), default=read) - read
        return CacheUsage(total - read - write, read, write, writes)

    def store(self, writes: Sequence[tuple[str, int]], now: float) -> None:
        for digest, _ in writes:
            self.entries[digest] = now + CACHE_TTL


def _cumsum(values: Iterator[int]) -> Iterator[int]:
    total = 0
    for v in values:
        total += v
        yield total


# --- rate limits -----------------------------------------------------------------------------------


@dataclass
class ServerBucket:
    name: str  # requests | input-tokens | output-tokens
    limit: int
    window: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.stamp) * self.limit / self.window)
        self.stamp = now

    def shortfall(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0 if it fits now)."""
        self.refill(now)
        missing = min(amount, self.limit) - self.level
        return 0.0 if missing <= 0 else missing * self.window / self.limit

    def headers(self, wall_now: float) -> dict[str, str]:
        full_in = (self.limit - max(self.level, 0.0)) * self.window / self.limit
        reset = datetime.fromtimestamp(wall_now + full_in, UTC).isoformat(timespec="milliseconds")
        prefix = f"anthropic-ratelimit-{self.name}"
        return {
            f"{prefix}-limit": str(self.limit),
            f"{prefix}-remaining": str(max(0, math.floor(self.level))),
            f"{prefix}-reset": reset.replace("+00:00", "Z"),
        }


# --- replies → messages → events -------------------------------------------------------------------


def content_blocks(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "content" in reply:
        return [dict(b) for b in reply["content"]]
    blocks: list[dict[str, Any]] = []
    if reply.get("text"):
        blocks.append({"type": "text", "text": str(reply["text"])})
    calls = list(reply.get("tools") or ())
    if "tool" in reply:
        calls.append({"name": reply["tool"], "input": reply.get("input", {})})
    for call in calls:
        blocks.append(
            {"type": "tool_use", "id": new_id("toolu"), "name": call["name"], "input": call["input"]}
        )
    return blocks or [{"type": "text", "text": ""}]


def stop_reason_of(reply: Mapping[str, Any], blocks: Sequence[Mapping[str, Any]]) -> str:
    if reply.get("stop_reason"):
        return str(reply["stop_reason"])
    return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"


def truncate(blocks: list[dict[str, Any]], max_tokens: int) -> tuple[list[dict[str, Any]], bool]:
    """Cut the content at ``max_tokens`` output tokens, as the model would stop mid-answer."""
    budget = max_tokens * 4
    out: list[dict[str, Any]] = []
    for block in blocks:
        size = len(json.dumps(block))
        if size <= budget:
            out.append(block)
            budget -= size
            continue
        if block["type"] == "text":
            out.append({**block, "text": block["text"][: max(0, budget)]})
        elif block["type"] == "tool_use":
            out.append({**block, "input": {}})
        return out, True
    return out, False


def message(
    model: str, blocks: list[dict[str, Any]], stop_reason: str, usage: CacheUsage, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_write,
            "cache_read_input_tokens": usage.cache_read,
            "output_tokens": output_tokens,
        },
    }


Event = tuple[str, dict[str, Any]]


def stream_events(msg: Mapping[str, Any], chunk: int, *, broken_json: bool = False) -> list[Event]:
    """The SSE events the API sends for ``msg``: message_start, content blocks with deltas, a ping,
    message_delta with the stop reason and output tokens, message_stop."""
    usage = dict(msg["usage"])
    start = {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(msg["content"]):
        events += _block_events(index, block, chunk, broken_json)
        if index == 0:
            events.append(("ping", {"type": "ping"}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: Mapping[str, Any], chunk: int, broken_json: bool) -> list[Event]:
    head: dict[str, Any]
    if block["type"] == "text":
        head = {"type": "text", "text": ""}
        pieces = _chunks(block["text"], chunk)
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    elif block["type"] == "tool_use":
        head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        raw = json.dumps(block["input"])
        if broken_json:
            raw = raw[: max(1, len(raw) // 2)] + '"}'
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _chunks(raw, chunk)]
    else:
        head, deltas = dict(block), []
    events: list[Event] = [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": head})
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
