"""One rate limiter for the whole swarm: a concurrency cap plus requests / input tokens / output tokens
per minute, kept as token buckets that refill continuously (the way the Anthropic API counts).

Limits come from settings, and are learned or tightened from the ``anthropic-ratelimit-*`` response
headers; ``retry-after`` / ``retry-after-ms`` on a 429 (or 529) pauses every caller, so a rate limit slows the
whole swarm down instead of failing subtasks. The SDK keeps doing the retrying (see ``client.py``): the
limiter only decides *when* each attempt may go out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

REQUESTS = "requests"
INPUT_TOKENS = "input-tokens"
OUTPUT_TOKENS = "output-tokens"
DIMENSIONS = (REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS)
_HEADER = "anthropic-ratelimit-"
DEFAULT_PAUSE = 1.0


@dataclass
class Bucket:
    """A token bucket: ``capacity`` tokens refilled at ``rate`` per second; ``level`` may go negative."""

    capacity: float
    rate: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` (capped at the capacity) is available."""
        self.refill(now)
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def give(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)


@dataclass(frozen=True)
class Dimension:
    limit: int | None = None
    remaining: int | None = None
    reset_in: float | None = None  # seconds until the bucket is full again


@dataclass(frozen=True)
class RateHeaders:
    dimensions: Mapping[str, Dimension]
    retry_after: float | None


def parse_headers(headers: Mapping[str, str], wall_now: float) -> RateHeaders:
    """Read ``anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`` and
    ``retry-after-ms`` / ``retry-after`` (pure)."""
    dims = {}
    for dim in DIMENSIONS:
        limit = _int(headers.get(f"{_HEADER}{dim}-limit"))
        remaining = _int(headers.get(f"{_HEADER}{dim}-remaining"))
        reset = _reset_in(headers.get(f"{_HEADER}{dim}-reset"), wall_now)
        if limit is not None or remaining is not None:
            dims[dim] = Dimension(limit, remaining, reset)
    return RateHeaders(dims, retry_after(headers))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` first (milliseconds), then ``retry-after`` (seconds), as the SDK reads them."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _reset_in(value: str | None, wall_now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - wall_now)
    except ValueError:
        return None


@dataclass(frozen=True)
class Permit:
    input_tokens: int
    output_tokens: int


@dataclass
class LimiterStats:
    admitted: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    rate_limited: int = 0  # 429 responses seen
    overloaded: int = 0  # 529 responses seen
    waited_seconds: float = 0.0  # time spent held back by rate limits or pauses
    learned: dict[str, int] = field(default_factory=dict)  # limits taken from response headers


class RateLimiter:
    """Admits one HTTP attempt at a time, first come first served, when a concurrency slot is free, no
    pause is in force and every bucket holds enough for the attempt's estimated tokens."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        rpm: int | None = None,
        itpm: int | None = None,
        otpm: int | None = None,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.window = window
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._slots = asyncio.Semaphore(max_concurrency)
        self._admission = asyncio.Lock()
        self._pause_until = 0.0
        self._buckets: dict[str, Bucket] = {}
        self._configured: set[str] = set()
        self.stats = LimiterStats()
        for dim, limit in ((REQUESTS, rpm), (INPUT_TOKENS, itpm), (OUTPUT_TOKENS, otpm)):
            if limit is not None:
                self._set_limit(dim, limit, self._clock())
                self._configured.add(dim)

    # --- admission ---------------------------------------------------------------------------------

    async def acquire(self, input_tokens: int = 0, output_tokens: int = 0) -> Permit:
        """Wait for a slot and for the rate limits; the caller must :meth:`release` the permit."""
        need = {REQUESTS: 1.0, INPUT_TOKENS: float(input_tokens), OUTPUT_TOKENS: float(output_tokens)}
        async with self._admission:
            await self._slots.acquire()
            try:
                while (delay := self._delay(need)) > 0:
                    self.stats.waited_seconds += delay
                    await self._sleep(delay)
            except BaseException:
                self._slots.release()
                raise
            now = self._clock()
            for dim, bucket in self._buckets.items():
                bucket.take(need[dim], now)
            self.stats.admitted += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        return Permit(input_tokens, output_tokens)

    def _delay(self, need: Mapping[str, float]) -> float:
        now = self._clock()
        waits = [self._pause_until - now]
        waits += [bucket.wait(need[dim], now) for dim, bucket in self._buckets.items()]
        return max(waits)

    def release(self, permit: Permit, *, accepted: bool = True) -> None:
        """Free the slot. When the server did not accept the attempt (an error status), give back what
        it took from the buckets: the API does not count rejected requests."""
        self.stats.in_flight -= 1
        self._slots.release()
        if not accepted:
            now = self._clock()
            back = {REQUESTS: 1, INPUT_TOKENS: permit.input_tokens, OUTPUT_TOKENS: permit.output_tokens}
            for dim, bucket in self._buckets.items():
                bucket.give(back[dim], now)

    def settle(self, permit: Permit, input_tokens: int, output_tokens: int) -> None:
        """Correct the buckets from the estimate to what the response actually used."""
        now = self._clock()
        for dim, estimated, actual in (
            (INPUT_TOKENS, permit.input_tokens, input_tokens),
            (OUTPUT_TOKENS, permit.output_tokens, output_tokens),
        ):
            bucket = self._buckets.get(dim)
            if bucket is None:
                continue
            if estimated > actual:
                bucket.give(estimated - actual, now)
            else:
                bucket.take(actual - estimated, now)

    # --- adapting to the server --------------------------------------------------------------------

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Learn from one response: tighten limits, sync the buckets, pause everyone on a 429 / 529."""
        now = self._clock()
        info = parse_headers(headers, self._wall())
        for dim, seen in info.dimensions.items():
            if seen.limit is not None:
                self._learn(dim, seen.limit, now)
            bucket = self._buckets.get(dim)
            if bucket is not None and seen.remaining is not None:
                bucket.refill(now)
                bucket.level = min(bucket.level, float(seen.remaining))
        if status == 429:
            self.stats.rate_limited += 1
            self.pause(info.retry_after if info.retry_after is not None else _exhausted_reset(info))
        elif status == 529:
            self.stats.overloaded += 1
            self.pause(info.retry_after if info.retry_after is not None else DEFAULT_PAUSE)

    def pause(self, seconds: float) -> None:
        """Hold every new attempt back for ``seconds``."""
        self._pause_until = max(self._pause_until, self._clock() + seconds)

    def _learn(self, dim: str, limit: int, now: float) -> None:
        """Adopt a limit the server announces; a configured limit is only ever tightened."""
        bucket = self._buckets.get(dim)
        if bucket is not None and (
            bucket.capacity == limit or (dim in self._configured and limit > bucket.capacity)
        ):
            return
        self.stats.learned[dim] = limit
        self._set_limit(dim, limit, now)

    def _set_limit(self, dim: str, limit: int, now: float) -> None:
        bucket = self._buckets.get(dim)
        rate = limit / self.window
        if bucket is None:
            self._buckets[dim] = Bucket(float(limit), rate, float(limit), now)
        else:
            bucket.refill(now)
            bucket.capacity, bucket.rate = float(limit), rate
            bucket.level = min(bucket.level, bucket.capacity)

    def limits(self) -> dict[str, int]:
        return {dim: int(b.capacity) for dim, b in self._buckets.items()}


def _exhausted_reset(info: RateHeaders) -> float:
    """A 429 without retry-after: pause briefly (the synced buckets then pace the rest)."""
    resets = [d.reset_in for d in info.dimensions.values() if d.remaining == 0 and d.reset_in is not None]
    return min(DEFAULT_PAUSE, max(resets)) if resets else DEFAULT_PAUSE


def estimate_tokens(chars: int) -> int:
    """A rough token count for ``chars`` characters of prompt (about 4 characters per token)."""
    return max(1, math.ceil(chars / 4))
