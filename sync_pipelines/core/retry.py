"""When a request is tried again, and after how long: the retry policy ``ApiClient`` asks, as dlt's
``rest_client`` keeps its own in ``requests/retry.py``.

The client sends and counts; this policy decides, so the rules can be read (and tested) in one place:

* which answers are worth another attempt (429 and the 5xx of ``RETRY_STATUSES``; transport failures reach the
  client as ``TransientApiError``), and which requests may be resent after they were sent and no answer came
  (GET, HEAD and OPTIONS, unless the caller says otherwise);
* how long to wait: exponential backoff with full jitter, never shorter than the server's ``Retry-After``
  (bounded by ``MAX_RETRY_AFTER_SECONDS``);
* how many attempts in all (``max_attempts``).

An ``UnconfirmedError`` is not a ``TransientApiError``: no policy resends it. Its caller reads what the server
holds and asks ``ApiClient.wait_to_resend``, which waits the same backoff within the same attempt bound.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

from sync_pipelines.core.errors import TransientApiError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Methods resent after a timeout by default: a second copy changes nothing.
RESENDABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_RETRY_AFTER_SECONDS = 120.0


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date; anything else (``nan``, ``inf``, garbage,
    a date that cannot be read) is ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        try:
            seconds = when.timestamp() - time.time()
        except (OverflowError, ValueError, OSError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    """Whether to try a request again and how long to wait first; the client's ``ApiLimits`` give the numbers."""

    max_attempts: int = 5
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    @staticmethod
    def retries_status(status: int) -> bool:
        """Whether an answer with ``status`` is worth another attempt (429, 5xx): the answer is not read."""
        return status in RETRY_STATUSES

    @staticmethod
    def resends_after_timeout(method: str, resend_after_timeout: bool | None) -> bool:
        """Whether a request may be sent again once it was sent and no answer came: the caller's word, else
        only for methods whose second copy changes nothing."""
        return method.upper() in RESENDABLE_METHODS if resend_after_timeout is None else resend_after_timeout

    @staticmethod
    def retries(error: BaseException | None) -> bool:
        """Whether a failed attempt is worth another one: a ``TransientApiError`` (429, 5xx, transport failure)."""
        return isinstance(error, TransientApiError)

    def may_attempt_again(self, attempts_made: int) -> bool:
        """Whether another attempt is within ``max_attempts`` after ``attempts_made`` attempts."""
        return attempts_made < self.max_attempts

    def backoff_seconds(self, failed_attempts: int, error: BaseException | None) -> float:
        """Exponential backoff with full jitter, never shorter than the server's ``Retry-After``."""
        ceiling = min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (failed_attempts - 1))
        backoff = random.uniform(0, ceiling)
        if isinstance(error, TransientApiError) and error.retry_after is not None:
            return max(error.retry_after, min(backoff, error.retry_after + 1.0))
        return backoff
