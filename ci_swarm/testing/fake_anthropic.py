"""A loopback fake of the Anthropic Messages API, for tests and for trying a swarm without a key.

It speaks ``POST /v1/messages`` (JSON and SSE streaming) and ``POST /v1/messages/count_tokens`` the way the
real API does — error bodies ``{"type": "error", "error": {...}}``, ``request-id`` and
``anthropic-ratelimit-*`` headers, usage with cache fields, the request checks (a ``tool_use`` without its
``tool_result`` is a 400) — so the real ``anthropic`` SDK works against it through ``base_url``. Replies,
faults and rate limits come from a :class:`~ci_swarm.testing.anthropic_script.Script`.

Run it on its own::

    python -m ci_swarm.testing.fake_anthropic --port 0 --script replies.json
    # first line of stdout: http://127.0.0.1:PORT   (export ANTHROPIC_BASE_URL=that)
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from ci_swarm.testing import anthropic_api as api
from ci_swarm.testing.anthropic_script import Fault, Script, load_script


@dataclass(frozen=True)
class RequestRecord:
    """One request as the fake saw it (tests assert on these)."""

    request_id: str
    conversation: str  # "" when no conversation matched
    status: int
    stream: bool
    turn: int
    retry_count: int  # the SDK's x-stainless-retry-count header
    in_flight: int  # requests being served when this one arrived (itself included)
    fault: str
    at: float
    usage: Mapping[str, int]
    error: str = ""
    body: Mapping[str, Any] | None = None  # the parsed request body


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    stream: bool = False
    error_event: bool = False
    broken_json: bool = False
    delay: float = 0.0
    writes: tuple[tuple[str, int], ...] = ()
    output_refund: int = 0


class FakeState:
    """Everything the server remembers, behind one lock: buckets, cache, fault counters, the request log."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.cache = api.PromptCache(min_tokens=script.min_cache_tokens)
        self.fault_left = [f.times for f in script.faults]
        self.records: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        now = time.monotonic()
        limits = script.limits
        self.buckets = [
            api.ServerBucket(name, limit, limits.window, float(limit), now)
            for name, limit in (
                ("requests", limits.rpm),
                ("input-tokens", limits.itpm),
                ("output-tokens", limits.otpm),
            )
            if limit is not None
        ]

    @contextmanager
    def serving(self) -> Iterator[int]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            current = self.in_flight
        try:
            yield current
        finally:
            with self.lock:
                self.in_flight -= 1

    # --- one request ----------------------------------------------------------------------------

    def handle(
        self, path: str, headers: Mapping[str, str], raw: bytes, request_id: str
    ) -> tuple[Outcome, dict[str, Any]]:
        """The outcome for one request and what to log about it (never raises)."""
        note: dict[str, Any] = {
            "conversation": "",
            "turn": 0,
            "fault": "",
            "stream": False,
            "usage": {},
            "body": None,
        }
        try:
            return self._handle(path, headers, raw, note), note
        except api.ApiError as exc:
            note["error"] = exc.message
            return Outcome(exc.status, exc.headers, exc.body(request_id), delay=self.script.latency), note

    def _handle(self, path: str, headers: Mapping[str, str], raw: bytes, note: dict[str, Any]) -> Outcome:
        route = path.split("?")[0].rstrip("/")
        if route not in ("/v1/messages", "/v1/messages/count_tokens"):
            raise api.ApiError(404, f"Not found: {route}")
        self._check_auth(headers)
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise api.ApiError(400, f"The request body is not valid JSON: {exc}") from exc
        note["body"] = body if isinstance(body, dict) else None
        if route.endswith("count_tokens"):
            body = {"max_tokens": 1, **body} if isinstance(body, dict) else body
            api.check_request(body)
            return Outcome(200, {}, {"input_tokens": sum(s.tokens for s in api.segments(body))})
        api.check_request(body)
        note["stream"] = stream = bool(body.get("stream"))
        note["turn"] = turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        text = api.key_text(body)
        conv, groups = self.script.find(text)
        note["conversation"] = conv.name if conv else ""
        with self.lock:
            fault = self._take_fault(text, turn, stream)
            note["fault"] = fault.kind if fault else ""
            if fault and fault.kind in ("rate_limit", "overloaded", "server_error"):
                raise _injected(fault, self._limit_headers())
            now = time.monotonic()
            usage = self.cache.usage(body, now)
            self._admit(usage.input_tokens + usage.cache_write, body["max_tokens"], now)
            limit_headers = self._limit_headers()
        reply = (
            conv.reply(body, turn, groups) if conv else {"text": "(fake-anthropic: no scripted conversation)"}
        )
        blocks = api.content_blocks(reply)
        if fault and fault.kind == "malformed_tool_input" and not stream:
            blocks = [
                {**b, "input": dict(fault.input or {})} if b["type"] == "tool_use" else b for b in blocks
            ]
        blocks, cut = api.truncate(blocks, body["max_tokens"])
        stop = "max_tokens" if cut else api.stop_reason_of(reply, blocks)
        output = int(reply.get("output_tokens") or api.tokens_of(blocks))
        output = min(output, body["max_tokens"])
        msg = api.message(body["model"], blocks, stop, usage, output)
        note["usage"] = msg["usage"]
        delay = self.script.latency + (fault.seconds if fault and fault.kind == "latency" else 0.0)
        return Outcome(
            200,
            limit_headers,
            msg,
            stream=stream,
            error_event=bool(fault and fault.kind == "error_event"),
            broken_json=bool(fault and fault.kind == "malformed_tool_input" and stream),
            delay=delay,
            writes=usage.writes,
            output_refund=body["max_tokens"] - output,
        )

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        key = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if not key:
            raise api.ApiError(401, "x-api-key header is required")
        if self.script.api_keys and key not in self.script.api_keys:
            raise api.ApiError(401, "invalid x-api-key")
        if not headers.get("anthropic-version"):
            raise api.ApiError(400, "anthropic-version: header is required")

    def _take_fault(self, text: str, turn: int, stream: bool) -> Fault | None:
        for i, fault in enumerate(self.script.faults):
            if self.fault_left[i] <= 0 or (fault.turn is not None and fault.turn != turn):
                continue
            if fault.match and not re.search(fault.match, text, re.DOTALL):
                continue
            if fault.kind == "error_event" and not stream:
                continue
            self.fault_left[i] -= 1
            return fault
        return None

    def _admit(self, input_tokens: int, max_tokens: int, now: float) -> None:
        need = {"requests": 1.0, "input-tokens": float(input_tokens), "output-tokens": float(max_tokens)}
        for bucket in self.buckets:
            wait = bucket.shortfall(need[bucket.name], now)
            if wait > 0:
                unit = "requests" if bucket.name == "requests" else bucket.name.replace("-", " ")
                raise api.ApiError(
                    429,
                    f"This request would exceed the rate limit for your organization of {bucket.limit} "
                    f"{unit} per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
                    {**self._limit_headers(), **self._retry_after(wait)},
                )
        for bucket in self.buckets:
            bucket.level -= need[bucket.name]

    def _retry_after(self, wait: float) -> dict[str, str]:
        headers = {"retry-after": str(max(1, int(wait + 0.999)))}
        if self.script.limits.precise_retry_after:
            headers["retry-after-ms"] = str(max(1, int(wait * 1000 + 0.999)))
        return headers

    def _limit_headers(self) -> dict[str, str]:
        now, wall = time.monotonic(), time.time()
        headers: dict[str, str] = {}
        for bucket in self.buckets:
            bucket.refill(now)
            headers.update(bucket.headers(wall))
        return headers

    def finish(self, outcome: Outcome) -> None:
        """After the response went out: store the cache prefixes, give back unused reserved output."""
        with self.lock:
            now = time.monotonic()
            self.cache.store(outcome.writes, now)
            for bucket in self.buckets:
                if bucket.name == "output-tokens":
                    bucket.refill(now)
                    bucket.level = min(bucket.limit, bucket.level + outcome.output_refund)

    def record(self, rec: RequestRecord) -> None:
        with self.lock:
            self.records.append(rec)


def _injected(fault: Fault, limit_headers: Mapping[str, str]) -> api.ApiError:
    if fault.kind == "rate_limit":
        headers = {**limit_headers, **_retry_headers(fault)}
        return api.ApiError(429, "Number of request tokens has exceeded your per-minute rate limit", headers)
    if fault.kind == "overloaded":
        return api.ApiError(529, "Overloaded", _retry_headers(fault))
    return api.ApiError(500, "Internal server error", _retry_headers(fault))


def _retry_headers(fault: Fault) -> dict[str, str]:
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    return headers


def _bearer(value: str) -> str:
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic"
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self._serve(self.rfile.read(length) if length else b"")

    def _serve(self, raw: bytes) -> None:
        state = self.server.state
        request_id = api.new_id("req")
        headers = {k.lower(): v for k, v in self.headers.items()}
        with state.serving() as in_flight:
            outcome, note = state.handle(self.path, headers, raw, request_id)
            if outcome.delay:
                time.sleep(outcome.delay)
            outcome.headers["request-id"] = request_id
            state.finish(outcome)  # the cache entry exists before the client sees the response
            state.record(
                RequestRecord(
                    request_id,
                    note["conversation"],
                    outcome.status,
                    note["stream"],
                    note["turn"],
                    int(headers.get("x-stainless-retry-count", "0") or 0),
                    in_flight,
                    note["fault"],
                    time.monotonic(),
                    dict(note["usage"]),
                    note.get("error", ""),
                    note["body"],
                )
            )
            if outcome.stream and outcome.status == 200:
                self._send_stream(outcome)
            else:
                self._send_json(outcome.status, outcome.headers, outcome.body)

    def _send_json(self, status: int, headers: Mapping[str, str], body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, outcome: Outcome) -> None:
        self.send_response(200)
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = api.stream_events(
            outcome.body, self.server.state.script.stream_chunk, broken_json=outcome.broken_json
        )
        if outcome.error_event:
            cut = next((i for i, (name, _) in enumerate(events) if name == "content_block_delta"), 0)
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            events = [*events[: cut + 1], ("error", error)]
        for name, data in events:
            self._chunk(api.sse(name, data))
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        super().__init__(address, _Handler)
        self.state = state


class FakeAnthropic:
    """The fake API on a background thread::

    with FakeAnthropic(script) as fake:
        client = AsyncAnthropic(api_key="test", base_url=fake.base_url)
    """

    def __init__(self, script: Script, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = FakeState(script)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAnthropic:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def requests(self) -> tuple[RequestRecord, ...]:
        with self.state.lock:
            return tuple(self.state.records)

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight

    def conversation(self, name: str) -> tuple[RequestRecord, ...]:
        return tuple(r for r in self.requests if r.conversation == name)


# --- command line -----------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ci_swarm.testing.fake_anthropic", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON or YAML script of replies, faults and limits")
    parser.add_argument("--rpm", type=int, help="requests per window (overrides the script)")
    parser.add_argument("--itpm", type=int, help="input tokens per window")
    parser.add_argument("--otpm", type=int, help="output tokens per window")
    parser.add_argument("--window", type=float, help="rate-limit window in seconds (default 60)")
    parser.add_argument("--latency", type=float, help="seconds added to every response")
    parser.add_argument(
        "--api-key", action="append", default=[], help="accepted key (repeatable; default any)"
    )
    return parser.parse_args(argv)


def script_from_args(args: argparse.Namespace) -> Script:
    script = load_script(args.script) if args.script else Script()
    limits = script.limits
    for name in ("rpm", "itpm", "otpm", "window"):
        if getattr(args, name) is not None:
            limits = replace(limits, **{name: getattr(args, name)})
    script = replace(script, limits=limits)
    if args.latency is not None:
        script = replace(script, latency=args.latency)
    if args.api_key:
        script = replace(script, api_keys=tuple(args.api_key))
    return script


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        script = script_from_args(args)
    except Exception as exc:  # one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 4
    fake = FakeAnthropic(script, host=args.host, port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with fake:
        print(fake.base_url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
