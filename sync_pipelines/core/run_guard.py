"""When a client stops sending for good: the run's deadline and the circuit breaker.

A run cannot go on for days against a system that refuses it:

* a deadline (``deadline_seconds``, counted from the start of the sync run, ``run_started``) stops sending and
  fails the run naming its setting; a wait that would end past it (a retry's backoff, a 429's pause) is not
  waited for, since what follows could not be sent;
* a circuit breaker fails the run at once when almost every request fails after its retries (429, 5xx,
  transport errors): ``breaker_consecutive`` in a row, or ``breaker_ratio`` of the last ``breaker_window``,
  naming the system and what it answered.

Both raise a ``RunStoppedError``, which no per-record handler catches, and every later request raises it again.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque

from sync_pipelines.core.errors import ApiError, DeadlineExceededError, RunStoppedError, SystemRefusingError
from sync_pipelines.core.http_stats import HttpStats
from sync_pipelines.core.limits import ApiLimits
from sync_pipelines.core.redaction import Redactor

# When the current sync run started (``time.monotonic()``), set by the engine around a run: a client's deadline
# counts from there, whenever the client was opened. Unset (a client used on its own): from the client's opening.
run_started: contextvars.ContextVar[float | None] = contextvars.ContextVar("run_started", default=None)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class RunGuard:
    """The deadline and the breaker of one client; ``check`` before sending, ``count`` each request's end."""

    def __init__(
        self, system: str, limits: ApiLimits, stats: HttpStats, redact: Redactor, url_variable: str | None
    ) -> None:
        self.system = system
        self.limits = limits
        self.stats = stats
        self.redact = redact
        self.url_variable = url_variable
        self.deadline: float | None = None  # time.monotonic() past which nothing is sent
        self._outcomes: deque[bool] = deque(
            maxlen=max(limits.breaker_window, 1)
        )  # True: failed after retries
        self._failed_in_a_row = 0
        self._stopped: RunStoppedError | None = None

    def start(self) -> None:
        """The client opens: the deadline counts from the run's start (``run_started``), else from now."""
        if self.limits.deadline_seconds is not None:
            started = run_started.get()
            self.deadline = (time.monotonic() if started is None else started) + self.limits.deadline_seconds

    def check(self, wait: float = 0.0) -> None:
        """Raise the run's ``RunStoppedError`` if the breaker tripped, or if the deadline has passed or would
        pass during a wait of ``wait`` seconds (waiting for a request that may not be sent is pointless)."""
        if self._stopped is not None:
            raise self._stopped
        if self.deadline is not None and time.monotonic() + wait >= self.deadline:
            seconds = self.limits.deadline_seconds or 0.0
            setting = self.limits.deadline_setting
            self._stopped = DeadlineExceededError(
                self.system,
                f"{self.system}: the sync passed its deadline of {_duration(seconds)} ({setting}) with requests "
                f"still to send, and stopped sending after {self.stats.requests_made} request(s) "
                f"(answers: {self.stats.answers()}); raise {setting.split(' ')[0]} if a run this long is expected",
                setting=setting.split(" ")[0],
            )
            raise self._stopped

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a backoff, a pause), unless the deadline would pass meanwhile."""
        self.check(seconds)
        await asyncio.sleep(seconds)

    def count(self, failure: ApiError | None) -> None:
        """Count one request's final outcome; trip the breaker when the system refuses almost everything."""
        limits = self.limits
        self._outcomes.append(failure is not None)
        self._failed_in_a_row = self._failed_in_a_row + 1 if failure is not None else 0
        if failure is None or self._stopped is not None or not limits.breaker_window:
            return
        failed = sum(self._outcomes)
        in_a_row = limits.breaker_consecutive and self._failed_in_a_row >= limits.breaker_consecutive
        mostly = len(self._outcomes) >= limits.breaker_window and failed >= limits.breaker_ratio * len(
            self._outcomes
        )
        if not (in_a_row or mostly):
            return
        counted = (
            f"{self._failed_in_a_row} requests in a row"
            if in_a_row
            else (f"{failed} of the last {len(self._outcomes)} requests")
        )
        self._stopped = SystemRefusingError(
            self.system,
            f"{self.system} refused almost everything: {counted} failed after {limits.max_attempts} attempt(s) "
            f"each (answers: {self.stats.answers()}); the run stops here rather than retrying for hours. "
            f"Last: {self.redact(failure)}",
            setting=self.url_variable,
        )
        raise self._stopped from None
