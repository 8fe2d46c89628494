"""Every decision about sending a request again, in one place: the retry policy ``ApiClient`` asks, as dlt's
``rest_client`` keeps its own in ``requests/retry.py``.

The client sends and counts; this policy decides, so the rules can be read (and tested) in one place.
``classify`` reads what one attempt came to (``Outcome``) and says what follows (``Verdict``):

* ``FINAL``: no more sending; the answer goes to the caller (2xx, and 400, 401, 403, 404 and every other status
  not worth another attempt), or the error of an answer that could not be used (too large, not JSON);
* ``RETRY``: another attempt after a backoff: a 429 or a 5xx of ``RETRY_STATUSES`` (the answer is not read),
  a request that never reached the server (connection refused, host name not found), or one safe to resend
  that timed out or lost its connection after it was sent;
* ``PAUSE_ALL``: a 429 whose ``Retry-After`` says how long: retried, and every request of the client waits
  that long first;
* ``UNCONFIRMED``: a request not safe to resend (a PUT, a POST: only GET, HEAD and OPTIONS are, unless the
  caller says otherwise) that timed out, lost its connection after it was sent or was answered with a 5xx (which
  may come from a proxy after the server acted): never resent blindly. The caller reads what the server holds,
  and sends it again only if the server did not act (``ApiClient.request_unless_applied``);
* ``RESEND_AT_ONCE``: a kept-alive connection the server had closed before anything was answered, for a request
  safe to resend: sent once more at once, on a new connection, not counted as an attempt (what aiohttp's own
  resend, switched off for every request so that this policy alone decides what is sent twice, did for it).

``wait_before`` says whether another attempt may follow a failure and after how long: exponential backoff with
full jitter, never shorter than the server's ``Retry-After`` (bounded by ``MAX_RETRY_AFTER_SECONDS``), within
``max_attempts`` in all. An ``UnconfirmedError`` is not a ``TransientApiError``: it is resent only by a caller
that verifies the server's state first, with the same backoff and within the same bound.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
import time
from dataclasses import dataclass

from sync_pipelines.core.errors import ApiError, TransientApiError, UnconfirmedError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Methods resent after a timeout by default: a second copy changes nothing.
RESENDABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Transport problems after which the request is known not to have reached the server.
NOT_SENT_PROBLEMS = frozenset({"connection refused", "host name not found"})
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


class Verdict(enum.Enum):
    """What follows one attempt (see the module's docstring)."""

    FINAL = "final"
    RETRY = "retry"
    PAUSE_ALL = "pause all"
    UNCONFIRMED = "unconfirmed"
    RESEND_AT_ONCE = "resend at once"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one send of a request came to, as the policy reads it: an answer's ``status`` (and ``Retry-After``),
    or, when no answer came, the ``problem`` on the wire in words (``core.transport.transport_problem``)."""

    # The request may be sent twice: GET, HEAD, OPTIONS, or the caller's word (``resends_after_timeout``).
    resendable: bool
    status: int | None = None
    retry_after: float | None = None
    problem: str | None = None
    # No answer came because the server had closed the kept-alive connection, and this was the attempt's first
    # send.
    stale_connection: bool = False
    # An answer came, but its body could not be used (too large, not JSON).
    unreadable: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """Whether to try a request again and how long to wait first; the client's ``ApiLimits`` give the numbers."""

    max_attempts: int = 5
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    def classify(self, outcome: Outcome) -> Verdict:
        """What follows ``outcome``: the one place that says what is final, retried, paused for or unconfirmed."""
        if outcome.problem is not None:
            if outcome.stale_connection and outcome.resendable:
                return Verdict.RESEND_AT_ONCE
            if outcome.resendable or outcome.problem in NOT_SENT_PROBLEMS:
                return Verdict.RETRY
            return Verdict.UNCONFIRMED
        if outcome.unreadable or outcome.status is None or not self.retries_status(outcome.status):
            return Verdict.FINAL
        if outcome.status == 429:  # refused unread: always worth another attempt
            return Verdict.PAUSE_ALL if outcome.retry_after else Verdict.RETRY
        return Verdict.RETRY if outcome.resendable else Verdict.UNCONFIRMED

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

    def wait_before(self, attempts_made: int, failure: ApiError, verified: bool = False) -> float | None:
        """Seconds to wait before attempt ``attempts_made + 1`` after ``failure``; None when there is to be none.

        A transient failure is tried again within ``max_attempts``; an unconfirmed one only by a caller that
        reads what the server holds before resending (``verified``)."""
        if not self.may_attempt_again(attempts_made):
            return None
        if not (self.retries(failure) or (verified and isinstance(failure, UnconfirmedError))):
            return None
        return self.backoff_seconds(attempts_made, failure)

    def backoff_seconds(self, failed_attempts: int, error: BaseException | None) -> float:
        """Exponential backoff with full jitter, never shorter than the server's ``Retry-After``."""
        ceiling = min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (failed_attempts - 1))
        backoff = random.uniform(0, ceiling)
        if isinstance(error, TransientApiError) and error.retry_after is not None:
            return max(error.retry_after, min(backoff, error.retry_after + 1.0))
        return backoff
