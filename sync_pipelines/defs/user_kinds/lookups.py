"""The lookup phase: every user's email asked of Portail DF, as many at once as the resource allows.

A fixed pool of workers, one per request allowed in flight (``max_concurrency``), pulls users from a shared
queue, so every slot stays busy until the last user, with no batch boundaries to wait at; the client's
semaphore, not the worker count, is what bounds requests in flight. Progress goes to the log every tenth of the
work or every few seconds (``lookups 1500/5000 (30%), 310/s``), like the seed's progress bar.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sync_pipelines.core.errors import ApiError
from sync_pipelines.defs.user_kinds.client import PortailDfClient
from sync_pipelines.defs.user_kinds.database import ZlvUser
from sync_pipelines.defs.user_kinds.mapping import LookupOutcome, select_outcome

PROGRESS_EVERY_SECONDS = 5.0


@dataclass
class LookupResults:
    """What Portail DF said about each user (``outcomes``), or why it could not be asked (``failures``)."""

    outcomes: dict[str, LookupOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        done = len(self.outcomes) + len(self.failures)
        return done / self.seconds if self.seconds else 0.0


class _Progress:
    def __init__(self, total: int, log: logging.Logger, every_seconds: float) -> None:
        self.total = total
        self.log = log
        self.every_seconds = every_seconds
        self.done = 0
        self.started = time.monotonic()
        self._next_share = 1
        self._last_log = self.started

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        reached_share = self.done * 10 >= self._next_share * self.total
        if reached_share or now - self._last_log >= self.every_seconds:
            while self._next_share * self.total <= self.done * 10:
                self._next_share += 1
            self._last_log = now
            elapsed = now - self.started
            self.log.info(
                f"lookups {self.done}/{self.total} ({self.done * 100 // self.total}%), "
                f"{self.done / elapsed if elapsed else 0:.0f}/s"
            )


async def look_up_users(
    portaildf: PortailDfClient,
    users: Sequence[ZlvUser],
    log: logging.Logger | None = None,
    progress_every_seconds: float = PROGRESS_EVERY_SECONDS,
) -> LookupResults:
    """Look every user up; a user whose lookup fails (HTML page, retries spent) is a failure, not the run's end.

    Refused credentials (``AuthenticationError``) and configuration errors stop every lookup at once.
    """
    log = log or logging.getLogger("sync_pipelines.user_kinds")
    results = LookupResults()
    if not users:
        return results
    queue = iter(users)
    progress = _Progress(len(users), log, progress_every_seconds)
    started = time.monotonic()

    async def worker() -> None:
        for user in queue:
            try:
                records = await portaildf.lookup(user.email)
            except ApiError as error:
                results.failures[user.id] = f"lookup failed: {error}"
            else:
                results.outcomes[user.id] = select_outcome(user.email, records)
            progress.step()

    workers = [
        asyncio.create_task(worker()) for _ in range(min(portaildf.api.limits.max_concurrency, len(users)))
    ]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    results.seconds = time.monotonic() - started
    return results
