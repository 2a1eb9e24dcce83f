"""One LLM session per run: the AsyncAnthropic client, the ONE shared limiter, the ledger and the budget.

The CLI / Action builds ``LLMSession.from_env(settings)`` once, hands ``factory.claude_planner(session)`` to
the run and registers ``factory.claude_backend(session)`` as agent kind ``claude``; every planner and agent
request goes through :meth:`LLMSession.create`, so limits, retries, usage, cost and the budget are shared by
the whole swarm. The session knows nothing of its consumers: they take the session.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Self

import anthropic
from anthropic.types import Message

from ci_swarm.config import Config
from ci_swarm.errors import LLMError
from ci_swarm.llm.accounting import Budget, BudgetStop, Ledger
from ci_swarm.llm.client import (
    CURRENT_CALL,
    CallState,
    LimiterMiddleware,
    describe,
    estimate_request,
    make_client,
)
from ci_swarm.llm.limiter import RateLimiter
from ci_swarm.llm.pricing import PriceTable, TokenCounts
from ci_swarm.models import EMPTY, Usage

DEFAULT_MODEL = "claude-sonnet-4-6"
_NO_KEY = (
    "ANTHROPIC_API_KEY is not set: export it (or put it in the Action's secrets), "
    "or use a scripted/command agent and a plan file"
)


@dataclass(frozen=True)
class LLMSettings:
    model: str = DEFAULT_MODEL
    planner_model: str = ""  # "" → model
    max_turns: int = 40  # model turns per subtask
    max_tokens_per_subtask: int | None = 2_000_000  # all tokens of one subtask, cache reads included
    response_max_tokens: int = 8192  # max_tokens of each request
    max_usd: float | None = None  # the whole swarm
    max_tokens: int | None = None  # the whole swarm
    rpm: int | None = None  # None: learned from the API's rate-limit headers
    itpm: int | None = None
    otpm: int | None = None
    rate_window: float = 60.0  # seconds the per-minute limits refer to (shorter against a test fake)
    max_concurrency: int = 4  # requests in flight at once, all agents together
    max_retries: int = 8  # the SDK's retries per request (429 / 529 / 5xx / connection)
    request_timeout: float = 600.0
    stream: bool = False  # stream responses (needed above ~21k max_tokens)
    allowed_commands: tuple[tuple[str, ...], ...] = ()  # argv prefix patterns for run_command
    command_timeout: float = 300.0
    strict_paths: bool = False  # refuse writes outside a subtask's paths (else flag them)
    role_prompts: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: EMPTY)
    max_subtasks: int = 8
    repo_map_chars: int = 24_000
    warm_cache: bool = True  # let the first request with a shared prefix write the cache before the rest

    @property
    def effective_planner_model(self) -> str:
        return self.planner_model or self.model

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> LLMSettings:
        """Settings from ``.github/ci-swarm.yml``; CLI flags as ``overrides`` (None values are ignored)."""
        base = cls(
            model=config.model,
            planner_model=config.planner_model,
            max_subtasks=config.max_subtasks,
            max_usd=config.budget.usd,
            max_tokens=config.budget.tokens,
            max_concurrency=max(1, config.max_agents),
            allowed_commands=config.allowed_commands,
            role_prompts=config.role_prompts,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


class WarmGate:
    """The first request with a given cacheable prefix goes alone; the others with the same prefix wait for
    it to finish, then read that prefix from the cache instead of all writing it at once."""

    def __init__(self) -> None:
        self._done: dict[str, asyncio.Event] = {}

    @asynccontextmanager
    async def enter(self, prefix: str | None) -> AsyncIterator[None]:
        if prefix is None:
            yield
            return
        event = self._done.get(prefix)
        if event is not None:
            await event.wait()
            yield
            return
        event = self._done[prefix] = asyncio.Event()
        try:
            yield
        finally:
            event.set()


class LLMSession:
    def __init__(self, settings: LLMSettings, api_key: str, base_url: str | None = None) -> None:
        self.settings = settings
        self.base_url = base_url or ""
        self.limiter = RateLimiter(
            max_concurrency=settings.max_concurrency,
            rpm=settings.rpm,
            itpm=settings.itpm,
            otpm=settings.otpm,
            window=settings.rate_window,
        )
        self.ledger = Ledger(PriceTable(settings.prices))
        self.budget = Budget(settings.max_usd, settings.max_tokens)
        self.budget_stopped = False
        self._fatal = ""
        self._gate = WarmGate()
        self._last_cache_read: dict[str, int] = {}
        self.client = make_client(
            api_key,
            base_url,
            max_retries=settings.max_retries,
            timeout=settings.request_timeout,
            middleware=(LimiterMiddleware(self.limiter, self.ledger),),
        )

    @classmethod
    def from_env(cls, settings: LLMSettings, environ: Mapping[str, str] = os.environ) -> Self:
        """``ANTHROPIC_API_KEY`` (required) and ``ANTHROPIC_BASE_URL`` (optional: e.g. the fake API)."""
        return cls.with_key(settings, environ.get("ANTHROPIC_API_KEY", ""), environ.get("ANTHROPIC_BASE_URL"))

    @classmethod
    def with_key(cls, settings: LLMSettings, api_key: str, base_url: str | None = None) -> Self:
        """A session for a key its caller holds (the Action reads it from a file, never from the
        environment); LLMError when it is empty."""
        key = api_key.strip()
        if not key:
            raise LLMError(_NO_KEY)
        return cls(settings, key, (base_url or "").strip() or None)

    # --- one request -------------------------------------------------------------------------------

    async def create(self, key: str, params: Mapping[str, Any], *, prefix: str | None = None) -> Message:
        """One model response, charged to ``key``. LLMError (one line) when the API fails for good."""
        if self._fatal:
            raise LLMError(self._fatal)
        call = CallState(key, self._estimate(key, params), int(params["max_tokens"]))
        token = CURRENT_CALL.set(call)
        try:
            async with self._gate.enter(prefix if self.settings.warm_cache else None):
                if self._fatal:  # found out while this call waited at the gate
                    raise LLMError(self._fatal)
                if (reason := self.budget_reason()) is not None:  # used up while it waited
                    raise BudgetStop(reason)
                message = await self._send(params)
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            self._fatal = describe(exc, self.base_url)
            raise LLMError(self._fatal) from exc
        except anthropic.AnthropicError as exc:
            raise LLMError(describe(exc, self.base_url)) from exc
        finally:
            CURRENT_CALL.reset(token)
        self._account(key, call, message)
        return message

    async def _send(self, params: Mapping[str, Any]) -> Message:
        if not self.settings.stream:
            message: Message = await self.client.messages.create(**params)
            return message
        for attempt in range(self.settings.max_retries + 1):
            try:
                async with self.client.messages.stream(**params) as stream:
                    return await stream.get_final_message()
            except anthropic.APIStatusError as exc:
                # an `error` event mid-stream (status 200): the SDK cannot retry it, so we do
                if exc.status_code != 200 or attempt == self.settings.max_retries:
                    raise
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * (1 - 0.25 * random.random()))
        raise AssertionError("unreachable")

    def _estimate(self, key: str, params: Mapping[str, Any]) -> int:
        """Uncached input tokens this request will count against the input-tokens limit (roughly)."""
        return max(1, estimate_request(params) - self._last_cache_read.get(key, 0))

    def _account(self, key: str, call: CallState, message: Message) -> None:
        usage = message.usage
        tokens = TokenCounts(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cache_read=usage.cache_read_input_tokens or 0,
            cache_write=usage.cache_creation_input_tokens or 0,
        )
        self.ledger.response(key, message.model or self.settings.model, tokens)
        self._last_cache_read[key] = tokens.cache_read
        if call.permit is not None:
            self.limiter.settle(call.permit, tokens.input + tokens.cache_write, tokens.output)

    # --- budget and figures ------------------------------------------------------------------------

    def budget_reason(self) -> str | None:
        """Why no new turn may start (the swarm budget is used up), or None."""
        return self.budget.exceeded(self.ledger.usage())

    def usage(self) -> Usage:
        return self.ledger.usage()

    def usage_by_subtask(self) -> Mapping[str, Usage]:
        return self.ledger.by_key()

    def notes(self) -> tuple[str, ...]:
        """Lines for the report: budget stops, models without a known price."""
        notes = []
        if self.budget_stopped:
            notes.append(f"The budget stopped the swarm: {self.budget_reason() or 'limit reached'}.")
        for model in sorted(self.ledger.unpriced_models):
            notes.append(f"No price known for model {model!r}: its cost is counted as $0.")
        return tuple(notes)

    async def aclose(self) -> None:
        await self.client.close()
