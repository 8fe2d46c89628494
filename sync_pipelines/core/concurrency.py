"""How many requests one client keeps in flight: a limit that follows the server's answers.

``AdaptiveLimit`` is the decision alone (pure: no clock, no event loop, every input is an argument), in the
manner of Netflix's concurrency-limits "Vegas" limiter with an AIMD fallback on overload:

* each answered request gives a latency sample; the server's latency without a queue is the lowest seen for that
  kind of request (method and path with its numbers masked), so pages and single records are not compared;
* the queue the limit builds at the server is estimated as ``limit x (1 - tolerance x no-load latency /
  latency)``: a latency up to ``tolerance`` (2) times the lowest is no queue, since a request's latency as the
  client sees it also holds the client's own work (a busy event loop on a shared CPU, a connection set up per
  request), which more requests in flight overlap rather than lengthen; below
  ``alpha`` (2, or 3 log10 limit) the limit grows by one per round trip (by one per answer until the first sign
  of a queue, a slow start), above ``beta`` (4, or 6 log10 limit) it shrinks by one per round trip; a server
  that queues requests beyond its workers thus keeps a few waiting, enough to keep every worker busy, not
  enough to reach the client's timeout;
* a 429, a 502/503/504, a timeout or a dropped connection halves the limit (at most once per round trip: a
  burst of refusals of the same moment is one signal); a 500 takes a tenth off (usually a fault, not load). A
  timeout is never the only signal: the latency gradient shrinks the limit long before a queue reaches it;
* the limit stays between ``minimum`` (1) and ``ceiling`` (``<SYSTEM>_MAX_CONCURRENCY``); with ``adaptive``
  off it is the ceiling, fixed, as before.

``ConcurrencyLimiter`` is the asyncio side: a semaphore whose size is the current limit, which times each
request and feeds the outcome to ``AdaptiveLimit``. ``summary()`` is what a run's metadata shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TypedDict

# Outcomes a request can report.
SUCCESS = "success"  # answered (any status but the ones below): a latency sample
OVERLOAD = "overload"  # 429, 502, 503, 504
SERVER_ERROR = "server_error"  # 500
TIMEOUT = "timeout"
DROPPED = "dropped"  # connection refused, closed or reset without an answer
IGNORED = "ignored"  # says nothing about the server's load (e.g. cancelled by the caller)


class ConcurrencySummary(TypedDict, total=False):
    """Where the limit of requests in flight went and why: what a run's metadata shows (``summary()``)."""

    mode: str  # "adaptive" or "fixed"
    limit: int  # where it ended
    ceiling: int
    lowest: int
    highest: int
    answers: int  # latency samples
    signals: dict[str, int]  # what moved it, and how often
    no_load_latency_ms: dict[str, float]  # the lowest latency seen per kind of request (the ten lowest)
    changes: list[list[float]]  # (seconds since the start, limit) at its last 20 changes


MAX_KINDS = 64  # request kinds with a latency baseline of their own; beyond: one shared baseline
_NUMBERS = re.compile(r"\d+")


def request_kind(method: str, path: str) -> str:
    """``PUT user/{n}`` for ``PUT user/123``: requests of one kind cost the server about the same."""
    return f"{method.upper()} {_NUMBERS.sub('{n}', path.split('?', 1)[0])}"


class AdaptiveLimit:
    """The limit's arithmetic. Feed it ``on_sample``, ``on_overload`` ...; read ``limit`` (a float) and
    ``allowed`` (the whole number of requests that may be in flight)."""

    def __init__(
        self,
        ceiling: int,
        *,
        adaptive: bool = True,
        minimum: int = 1,
        initial: int | None = None,
        overload_factor: float = 0.5,
        error_factor: float = 0.9,
        tolerance: float = 2.0,
    ) -> None:
        if ceiling < 1 or minimum < 1 or minimum > ceiling:
            raise ValueError("need 1 <= minimum <= ceiling")
        self.ceiling = ceiling
        self.minimum = minimum
        self.adaptive = adaptive
        self.overload_factor = overload_factor
        self.error_factor = error_factor
        self.tolerance = tolerance
        start = ceiling if not adaptive else min(ceiling, max(minimum, initial if initial is not None else 2))
        self.limit = float(start)
        self.slow_start = True
        self.baselines: dict[str, float] = {}  # kind -> lowest latency seen (seconds)
        self.gradient = 1.0  # smoothed no-load latency / latency, over every kind
        self.samples = 0
        self.signals: Counter[str] = Counter()
        self.lowest = start
        self.highest = start
        self._since_decrease = ceiling  # answers since the last multiplicative decrease

    @property
    def allowed(self) -> int:
        return max(self.minimum, min(self.ceiling, int(self.limit)))

    def _set(self, value: float, signal: str) -> None:
        self.limit = min(float(self.ceiling), max(float(self.minimum), value))
        self.signals[signal] += 1
        self.lowest = min(self.lowest, self.allowed)
        self.highest = max(self.highest, self.allowed)

    def baseline(self, kind: str, latency: float) -> float:
        """The no-load latency of ``kind``, updated with ``latency``. A kind first seen while a queue is already
        built (the limit has grown) starts from its latency scaled by the current gradient, not from a sample
        that holds the queue's wait."""
        known = self.baselines.get(kind)
        if known is None:
            if len(self.baselines) >= MAX_KINDS:
                kind = "*"
                known = self.baselines.get(kind)
            if known is None:
                known = latency * min(1.0, self.gradient)
        known = min(known, latency)
        self.baselines[kind] = known
        return known

    def on_sample(self, kind: str, latency: float, in_flight: int) -> None:
        """An answered request of ``kind`` took ``latency`` seconds with ``in_flight`` requests (itself included)
        in flight when it was sent."""
        self.samples += 1
        self._since_decrease += 1
        if not self.adaptive or latency <= 0 or not math.isfinite(latency):
            return
        base = self.baseline(kind, latency)
        gradient = base / latency
        self.gradient = 0.9 * self.gradient + 0.1 * gradient
        limit = self.limit
        queue = limit * max(0.0, 1.0 - self.tolerance * gradient)
        # At least 2 and 4 waiting: a server's latency moves by more than one request's worth with nothing queued
        # (a shared CPU, a connection set up per request), and a worker left idle costs more than a short queue.
        alpha = max(2.0, 3 * math.log10(max(limit, 1.0)))
        beta = max(4.0, 6 * math.log10(max(limit, 1.0)))
        if queue > beta:
            self.slow_start = False
            self._set(limit - 1.0 / limit, "latency_up")
        elif queue < alpha:
            if in_flight * 2 < limit:
                return  # the caller did not use the limit: nothing learnt about a higher one
            step = 1.0 if self.slow_start else 1.0 / limit
            if limit < self.ceiling:
                self._set(limit + step, "latency_ok")

    def _decrease(self, factor: float, signal: str) -> None:
        self.signals[signal] += 1
        self.slow_start = False
        if not self.adaptive:
            return
        # One decrease per round trip: the answers of requests sent before it say nothing new.
        self._since_decrease += 1
        if self._since_decrease <= self.allowed:
            return
        self._since_decrease = 0
        self._set(self.limit * factor, "decreases")

    def on_overload(self) -> None:
        """429 or 502/503/504."""
        self._decrease(self.overload_factor, "overload")

    def on_server_error(self) -> None:
        """500: usually a fault, sometimes load."""
        self._decrease(self.error_factor, "server_error")

    def on_timeout(self) -> None:
        self._decrease(self.overload_factor, "timeout")

    def on_dropped(self) -> None:
        self._decrease(self.overload_factor, "dropped")

    def record(self, outcome: str, kind: str, latency: float, in_flight: int) -> None:
        if outcome == SUCCESS:
            self.on_sample(kind, latency, in_flight)
        elif outcome == OVERLOAD:
            self.on_overload()
        elif outcome == SERVER_ERROR:
            self.on_server_error()
        elif outcome == TIMEOUT:
            self.on_timeout()
        elif outcome == DROPPED:
            self.on_dropped()

    def summary(self) -> ConcurrencySummary:
        return {
            "mode": "adaptive" if self.adaptive else "fixed",
            "limit": self.allowed,
            "ceiling": self.ceiling,
            "lowest": self.lowest,
            "highest": self.highest,
            "answers": self.samples,
            "signals": {name: count for name, count in sorted(self.signals.items()) if count},
            "no_load_latency_ms": {
                kind: round(seconds * 1000, 1)
                for kind, seconds in sorted(self.baselines.items(), key=lambda item: item[1])[:10]
            },
        }


class ConcurrencyLimiter:
    """An asyncio semaphore sized by an ``AdaptiveLimit``; ``async with limiter.slot(kind) as slot`` holds one
    place, and ``slot.outcome`` (default: ignored) says how the request went when the block ends."""

    def __init__(
        self,
        limit: AdaptiveLimit,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.in_flight = 0
        self.log = logger or logging.getLogger("sync_pipelines.concurrency")
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._logged = limit.allowed
        self.history: deque[tuple[float, int]] = deque(
            maxlen=200
        )  # (seconds since start, limit) on each change
        self._started = clock()

    def slot(self, kind: str) -> _Slot:
        return _Slot(self, kind)

    async def acquire(self) -> int:
        """Wait for a place; returns the number in flight with this one."""
        if self.in_flight < self.limit.allowed and not self._waiters:
            self.in_flight += 1
            return self.in_flight
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled before it could be used
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return self.in_flight

    def release(
        self, outcome: str = IGNORED, kind: str = "", latency: float = 0.0, in_flight: int = 0
    ) -> None:
        self.in_flight -= 1
        if outcome != IGNORED:
            self.limit.record(outcome, kind, latency, in_flight)
            allowed = self.limit.allowed
            if allowed != self._logged:
                self.history.append((round(self._clock() - self._started, 3), allowed))
                self.log.debug(
                    f"requests in flight: limit {self._logged} -> {allowed} after {outcome} "
                    f"({latency * 1000:.0f} ms, {kind})"
                )
                self._logged = allowed
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit.allowed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def summary(self) -> ConcurrencySummary:
        """The limit and what it reacted to, for a run's metadata: ``client.concurrency.summary()``."""
        summary = self.limit.summary()
        summary["changes"] = [list(change) for change in list(self.history)[-20:]]
        return summary


class _Slot:
    def __init__(self, limiter: ConcurrencyLimiter, kind: str) -> None:
        self.limiter = limiter
        self.kind = kind
        self.outcome = IGNORED
        self.in_flight = 0
        self.started = 0.0

    async def __aenter__(self) -> _Slot:
        self.in_flight = await self.limiter.acquire()
        return self

    def start(self) -> None:
        """The request is being sent now (after any pause or rate-limit wait): its latency counts from here."""
        self.started = self.limiter._clock()

    async def __aexit__(self, *exc: object) -> None:
        latency = self.limiter._clock() - self.started if self.started else 0.0
        self.limiter.release(self.outcome, self.kind, latency, self.in_flight)
