"""The shared rate limiter: buckets on a virtual clock, header learning, pauses, the concurrency cap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ci_swarm.llm.limiter import Bucket, RateLimiter, parse_headers, retry_after
from tests.anthropic_helpers import arun


class VirtualClock:
    """Time that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def limiter(clock: VirtualClock, **kw: object) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, wall=lambda: 1_000_000.0, **kw)  # type: ignore[arg-type]


def test_bucket_refills_continuously_and_may_go_negative() -> None:
    bucket = Bucket(capacity=10, rate=1.0, level=10, stamp=0.0)
    bucket.take(10, 0.0)
    assert bucket.wait(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait(1, 0.5) == pytest.approx(0.5)
    bucket.take(25, 1.0)  # more than the capacity: allowed once, then it is in debt
    assert bucket.level == pytest.approx(-24)
    assert bucket.wait(1, 1.0) == pytest.approx(25)
    bucket.give(100, 2.0)
    assert bucket.level == 10


def test_requests_per_minute_pace_after_the_burst() -> None:
    clock = VirtualClock()
    lim = limiter(clock, max_concurrency=4, rpm=60)

    async def go() -> None:
        for _ in range(70):
            lim.release(await lim.acquire())

    arun(go())
    assert clock.now == pytest.approx(10.0)  # 60 at once, then one per second
    assert lim.stats.admitted == 70


def test_input_and_output_token_limits_hold_requests_back() -> None:
    clock = VirtualClock()
    lim = limiter(clock, max_concurrency=4, itpm=6000, otpm=600)

    async def go() -> None:
        for _ in range(3):
            lim.release(await lim.acquire(input_tokens=3000, output_tokens=100))

    arun(go())
    assert clock.now == pytest.approx(30.0)  # the third waits for 3000 input tokens at 100/s


def test_settle_gives_back_what_the_estimate_overshot() -> None:
    clock = VirtualClock()
    lim = limiter(clock, max_concurrency=1, otpm=1000)

    async def go() -> None:
        for _ in range(5):
            permit = await lim.acquire(output_tokens=800)
            lim.settle(permit, input_tokens=0, output_tokens=50)
            lim.release(permit)

    arun(go())
    assert clock.now == pytest.approx(0.0)  # 5 x 50 actual output fits; the 800 reservation came back


def test_rejected_attempts_are_given_back() -> None:
    clock = VirtualClock()
    lim = limiter(clock, max_concurrency=1, rpm=2)

    async def go() -> None:
        for _ in range(5):
            lim.release(await lim.acquire(), accepted=False)

    arun(go())
    assert clock.now == 0.0


def headers(limit: int, remaining: int, reset_in: float, **extra: str) -> dict[str, str]:
    reset = datetime.fromtimestamp(1_000_000.0 + reset_in, UTC).isoformat().replace("+00:00", "Z")
    return {
        "anthropic-ratelimit-requests-limit": str(limit),
        "anthropic-ratelimit-requests-remaining": str(remaining),
        "anthropic-ratelimit-requests-reset": reset,
        **extra,
    }


def test_parse_headers_reads_limits_reset_and_retry_after() -> None:
    info = parse_headers(headers(50, 7, 12.5, **{"retry-after": "3"}), wall_now=1_000_000.0)
    dim = info.dimensions["requests"]
    assert (dim.limit, dim.remaining) == (50, 7)
    assert dim.reset_in == pytest.approx(12.5)
    assert info.retry_after == 3.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "soon"}) is None


def test_limits_are_learned_from_headers_and_remaining_syncs_the_bucket() -> None:
    clock = VirtualClock()
    lim = limiter(clock, max_concurrency=2)
    lim.observe(headers(limit=10, remaining=0, reset_in=60), status=200)
    assert lim.limits() == {"requests": 10}
    assert lim.stats.learned == {"requests": 10}

    async def go() -> None:
        lim.release(await lim.acquire())

    arun(go())
    assert clock.now == pytest.approx(6.0)  # one request refills in 60/10 s


def test_a_configured_limit_is_only_tightened() -> None:
    lim = RateLimiter(max_concurrency=1, rpm=5)
    lim.observe(headers(limit=100, remaining=100, reset_in=0), status=200)
    assert lim.limits() == {"requests": 5}
    lim.observe(headers(limit=3, remaining=3, reset_in=0), status=200)
    assert lim.limits() == {"requests": 3}


def test_a_429_pauses_every_caller_for_retry_after() -> None:
    clock = VirtualClock()
    lim = limiter(clock, max_concurrency=4)
    lim.observe({"retry-after-ms": "1500"}, status=429)
    lim.observe({}, status=529)

    async def go() -> None:
        lim.release(await lim.acquire())

    arun(go())
    assert clock.now == pytest.approx(1.5)
    assert (lim.stats.rate_limited, lim.stats.overloaded) == (1, 1)


def test_concurrency_cap_holds_under_many_callers() -> None:
    lim = RateLimiter(max_concurrency=3)
    inside = 0
    peak = 0

    async def one() -> None:
        nonlocal inside, peak
        permit = await lim.acquire()
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.005)
        inside -= 1
        lim.release(permit)

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(20)))

    arun(go())
    assert peak == 3
    assert lim.stats.max_in_flight == 3
    assert lim.stats.in_flight == 0


def test_cancelled_waiter_frees_its_slot() -> None:
    lim = RateLimiter(max_concurrency=1, rpm=1, window=3600)

    async def go() -> None:
        lim.release(await lim.acquire())
        waiter = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert lim.stats.in_flight == 0
        assert not lim._slots.locked()

    arun(go())


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        RateLimiter(max_concurrency=0)
