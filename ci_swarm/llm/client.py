"""The anthropic SDK at the edge: the client factory, the middleware that puts every HTTP attempt through
the shared limiter and the ledger, and the mapping of SDK errors to one-line :class:`LLMError` messages.

Retries are the SDK's own (``max_retries``; it retries 408/409/429/5xx and connection errors, honouring
``retry-after-ms`` / ``retry-after``, and never a 401). The middleware runs once per attempt inside the SDK's
retry loop, so each retry waits for the limiter too, and a 429 pauses every agent, not only the one that got
it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anthropic
from anthropic import APIRequest, AsyncAPIResponse, AsyncCallNext, Middleware

from ci_swarm.errors import LLMError
from ci_swarm.llm.accounting import Ledger
from ci_swarm.llm.limiter import Permit, RateLimiter, estimate_tokens

DEFAULT_BASE_URL = "https://api.anthropic.com"
OTHER_KEY = "other"


@dataclass
class CallState:
    """The call being made in this task: whom to charge and what the limiter should reserve."""

    key: str
    input_estimate: int
    output_estimate: int
    permit: Permit | None = None  # the last attempt's permit
    attempts: int = 0


CURRENT_CALL: ContextVar[CallState | None] = ContextVar("ci_swarm_llm_call", default=None)


class LimiterMiddleware(Middleware):
    """Admits each attempt through the shared limiter, counts it, and lets the limiter learn from the
    response headers (rate-limit state, ``retry-after``)."""

    def __init__(self, limiter: RateLimiter, ledger: Ledger) -> None:
        self._limiter = limiter
        self._ledger = ledger

    async def handle_async(self, request: APIRequest, call_next: AsyncCallNext) -> AsyncAPIResponse[Any]:
        call = CURRENT_CALL.get()
        if call is None:
            call = CallState(OTHER_KEY, estimate_request(request.json), _max_tokens(request.json))
        permit = await self._limiter.acquire(call.input_estimate, call.output_estimate)
        self._ledger.attempt(call.key, retry=request.retries_taken > 0 or call.attempts > 0)
        call.attempts += 1
        try:
            response = await call_next(request)
        except BaseException:
            self._limiter.release(permit, accepted=False)
            raise
        self._limiter.observe(response.headers, response.status_code)
        self._limiter.release(permit, accepted=response.status_code < 400)
        call.permit = permit
        return response


def estimate_request(body: Any) -> int:
    """Input tokens a request will use, roughly (system + tools + messages)."""
    if not isinstance(body, Mapping):
        return 1
    parts = {k: body.get(k) for k in ("system", "tools", "messages")}
    return estimate_tokens(len(json.dumps(parts, default=str)))


def _max_tokens(body: Any) -> int:
    value = body.get("max_tokens") if isinstance(body, Mapping) else None
    return value if isinstance(value, int) else 0


def make_client(
    api_key: str,
    base_url: str | None,
    *,
    max_retries: int,
    timeout: float,
    middleware: tuple[Middleware, ...] = (),
) -> anthropic.AsyncAnthropic:
    """The one client of a run (``base_url`` None → the public API; never read from the process env here)."""
    return anthropic.AsyncAnthropic(
        api_key=api_key,
        base_url=base_url or DEFAULT_BASE_URL,
        max_retries=max_retries,
        timeout=timeout,
        middleware=list(middleware),
    )


def describe(exc: anthropic.AnthropicError, base_url: str = "") -> str:
    """One line for an SDK error: status, error type, message, request id."""
    if isinstance(exc, anthropic.APITimeoutError):
        return f"the Anthropic API did not answer in time ({_where(base_url)})"
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        detail = _first_line(str(cause)) or type(cause).__name__
        return f"cannot reach the Anthropic API ({_where(base_url)}): {detail}"
    if isinstance(exc, anthropic.APIStatusError):
        kind, message = _error_fields(exc.body)
        rid = exc.response.headers.get("request-id") if exc.response is not None else None
        text = f"Anthropic API error {exc.status_code} {kind or type(exc).__name__}: {message or exc.message}"
        text = _first_line(text)
        if isinstance(exc, anthropic.AuthenticationError):
            text += " (check ANTHROPIC_API_KEY)"
        return f"{text} [request {rid}]" if rid else text
    return _first_line(str(exc)) or type(exc).__name__


def to_llm_error(exc: anthropic.AnthropicError, base_url: str = "") -> LLMError:
    return LLMError(describe(exc, base_url))


def _error_fields(body: object) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("type") or ""), str(error.get("message") or "")
    return "", ""


def _where(base_url: str) -> str:
    return base_url or DEFAULT_BASE_URL


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
