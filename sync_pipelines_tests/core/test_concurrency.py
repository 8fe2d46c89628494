"""The adaptive limit of requests in flight: its arithmetic alone (no clock, no server)."""

from __future__ import annotations

import asyncio

import pytest

from sync_pipelines.core.concurrency import (
    OVERLOAD,
    SUCCESS,
    AdaptiveLimit,
    ConcurrencyLimiter,
    request_kind,
)

pytestmark = pytest.mark.unit


def queueing_latency(in_flight: int, workers: int, cost: float) -> float:
    """A server with ``workers`` workers, each request costing ``cost``: beyond the workers, requests queue."""
    return cost * max(1.0, in_flight / workers)


def drive(limit: AdaptiveLimit, workers: int, cost: float, answers: int) -> list[int]:
    """A closed loop that keeps the limit in flight; the limit after each answer."""
    seen = []
    for _ in range(answers):
        in_flight = limit.allowed
        limit.on_sample("GET users", queueing_latency(in_flight, workers, cost), in_flight)
        seen.append(limit.allowed)
    return seen


def test_request_kind_masks_numbers_and_query() -> None:
    assert request_kind("put", "user/123") == "PUT user/{n}"
    assert request_kind("GET", "users?page=3") == "GET users"


def test_fixed_mode_stays_at_the_ceiling_whatever_the_server_says() -> None:
    limit = AdaptiveLimit(8, adaptive=False)
    drive(limit, workers=1, cost=0.1, answers=200)
    limit.on_overload()
    limit.on_timeout()
    assert limit.allowed == 8
    assert limit.signals["overload"] == 1 and limit.signals["timeout"] == 1


def test_slow_start_reaches_the_ceiling_when_latency_does_not_grow() -> None:
    limit = AdaptiveLimit(16)
    assert limit.allowed == 2
    seen = drive(limit, workers=1000, cost=0.03, answers=40)
    assert seen[-1] == 16
    assert seen.index(16) < 20  # one step per answer while nothing queues


def test_converges_a_few_above_the_workers_and_below_the_ceiling() -> None:
    limit = AdaptiveLimit(32)
    seen = drive(limit, workers=2, cost=0.1, answers=2000)
    tail = seen[-500:]
    assert min(tail) >= 2  # every worker kept busy
    assert max(tail) <= 2 * 2 + 6  # a short queue (latency at most ~2x plus a few), far below the ceiling
    assert limit.highest < 32


def test_follows_the_workers_when_they_are_halved() -> None:
    limit = AdaptiveLimit(64)
    drive(limit, workers=16, cost=0.05, answers=3000)
    before = limit.allowed
    assert 16 <= before <= 2 * 16 + 12
    seen = drive(limit, workers=8, cost=0.05, answers=3000)
    assert min(seen[-500:]) >= 8 and max(seen[-500:]) <= 2 * 8 + 10
    assert limit.allowed < before


def test_never_below_one_nor_above_the_ceiling() -> None:
    limit = AdaptiveLimit(4, initial=4)
    for _ in range(10):
        limit.on_overload()
        for _ in range(limit.allowed):  # a round trip's answers, none of them counted as a sample
            limit.on_dropped()
    assert limit.allowed == 1
    drive(limit, workers=100, cost=0.01, answers=200)
    assert limit.allowed == 4


def test_overload_halves_the_limit_once_per_round_trip() -> None:
    limit = AdaptiveLimit(16, initial=16)
    limit.on_overload()
    assert limit.allowed == 8
    limit.on_overload()  # refused at the same moment as the first: the same signal
    limit.on_timeout()
    assert limit.allowed == 8
    for _ in range(8):
        limit.on_sample("GET x", 0.05, 8)
    limit.on_overload()
    assert limit.allowed == 4
    assert limit.signals["overload"] == 3 and limit.signals["timeout"] == 1
    assert limit.signals["decreases"] == 2


def test_a_server_error_takes_a_tenth_off() -> None:
    limit = AdaptiveLimit(20, initial=20)
    limit.on_server_error()
    assert limit.allowed == 18


def test_no_growth_when_the_caller_does_not_use_the_limit() -> None:
    limit = AdaptiveLimit(16, initial=4)
    for _ in range(100):
        limit.on_sample("GET x", 0.05, 1)
    assert limit.allowed == 4


def test_a_kind_first_seen_under_a_queue_is_not_taken_as_the_no_load_latency() -> None:
    limit = AdaptiveLimit(32)
    drive(limit, workers=2, cost=0.1, answers=1000)
    settled = limit.allowed
    # PUTs start now, at the settled limit: their first latency already holds the queue's wait.
    for _ in range(1000):
        in_flight = limit.allowed
        limit.on_sample("PUT user/{n}", queueing_latency(in_flight, 2, 0.1), in_flight)
    assert limit.allowed <= settled + 6
    assert limit.baselines["PUT user/{n}"] < queueing_latency(settled, 2, 0.1)


def test_summary_names_the_limit_and_its_signals() -> None:
    limit = AdaptiveLimit(8)
    drive(limit, workers=2, cost=0.1, answers=300)
    limit.on_overload()
    summary = limit.summary()
    assert summary["mode"] == "adaptive" and summary["ceiling"] == 8
    assert 1 <= summary["lowest"] <= summary["limit"] <= summary["highest"] <= 8
    assert summary["signals"]["overload"] == 1
    assert "GET users" in summary["no_load_latency_ms"]


def test_the_limiter_holds_requests_beyond_the_limit_and_lets_them_in_as_it_grows() -> None:
    async def scenario() -> None:
        limiter = ConcurrencyLimiter(AdaptiveLimit(4, initial=1))
        first = limiter.slot("GET x")
        await first.__aenter__()
        second = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        assert not second.done() and limiter.in_flight == 1
        first.start()
        first.outcome = SUCCESS
        await first.__aexit__(None, None, None)  # a fast answer at the limit: it grows, the waiter goes in
        assert await second == 1
        # A waiter cancelled before its turn leaves no place taken.
        limiter.limit.limit = 1.0
        third = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        third.cancel()
        with pytest.raises(asyncio.CancelledError):
            await third
        limiter.release(OVERLOAD, "GET x", 0.0, 1)
        assert limiter.in_flight == 0 and not limiter._waiters
        assert limiter.summary()["signals"]["overload"] == 1

    asyncio.run(scenario())
