"""How fast one client's requests leave: a cap on requests per second, and the pause a 429 asks of them all.

* ``aiolimiter.AsyncLimiter`` caps requests per second, a hard cap whatever the limit of requests in flight:
  bursts of a tenth of a second's worth at high rates, strict spacing at low ones (``RT_REQUESTS_PER_SECOND=1``
  is one call a second, never two at once).
* When the retry policy says a 429 pauses every request (``Verdict.PAUSE_ALL``: the server said how long, in
  ``Retry-After``), no request of the client is sent before that time has passed, so an overloaded server is
  slowed down for rather than hammered. A pause that would end past the run's deadline is not waited for
  (``RunGuard``).
"""

from __future__ import annotations

import asyncio
import time

from aiolimiter import AsyncLimiter

from sync_pipelines.core.run_guard import RunGuard


def rate_limiter(requests_per_second: float | None) -> AsyncLimiter | None:
    """The limiter for ``requests_per_second`` (None: no cap)."""
    if requests_per_second is None:
        return None
    if requests_per_second >= 10:
        # Allow bursts of a tenth of a second's worth: smooth enough, and cheap at high rates.
        return AsyncLimiter(requests_per_second / 10, 0.1)
    # Strict spacing at low rates: RT_REQUESTS_PER_SECOND=1 means one call a second, never two at once.
    return AsyncLimiter(1, 1 / requests_per_second)


class Pacing:
    """When the next request of one client may leave: after any pause, within the rate cap."""

    def __init__(self, requests_per_second: float | None, guard: RunGuard) -> None:
        self._limiter = rate_limiter(requests_per_second)
        self._guard = guard
        self._paused_until = 0.0

    def pause_all(self, seconds: float) -> None:
        """No request leaves for ``seconds`` from now (a longer pause already set stays)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def wait_turn(self) -> None:
        """Wait out a pause and the rate cap; raises the run's ``RunStoppedError`` rather than wait past the
        deadline or send after it."""
        wait = self._paused_until - time.monotonic()
        self._guard.check(max(wait, 0.0))
        if wait > 0:
            await asyncio.sleep(wait)
        if self._limiter is not None:
            await self._limiter.acquire()
        self._guard.check()
