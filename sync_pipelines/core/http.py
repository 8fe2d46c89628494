"""The one HTTP layer every API resource uses: pooled, bounded, rate-limited, retrying, and secret-safe.

* ``httpx.AsyncClient`` on the aiohttp transport (``httpx-aiohttp``): the httpx API with a fraction of the
  default transport's CPU per request, which is what lets one core drive hundreds of requests per second.
* ``core.concurrency`` bounds requests in flight with a limit that follows the server's answers (latency,
  429, 5xx, timeouts), between 1 and ``max_concurrency``, the ceiling (fixed at the ceiling with
  ``adaptive_concurrency`` off); ``client.concurrency.summary()`` says where it went and why.
  ``aiolimiter.AsyncLimiter`` caps requests per second, a hard cap whatever the limit.
* A request that timed out (or whose connection broke after it was sent), or was answered with a 5xx, is resent
  only when that is safe: GET/HEAD/OPTIONS, or a caller's ``resend_after_timeout=True``; otherwise it raises
  ``UnconfirmedError`` at once (a 5xx may come from a proxy after the server acted), and the caller verifies its
  effect before sending it again (RT's PUT, after ``wait_to_resend``). The transport's own resend of a request
  whose kept-alive connection broke (aiohttp resends PUTs, which HTTP calls idempotent) is switched off: this
  layer alone decides what is sent twice. A 429 is always retried: the server refused it unread.
* What is retried and how long to wait is the ``RetryPolicy``'s word (``core.retry``: 429, 5xx and transport
  errors, exponential backoff with full jitter, honouring ``Retry-After``, ``max_attempts`` in all); ``tenacity``
  runs the attempts; a 429 also pauses every request of the client until the server's ``Retry-After`` has
  passed, so an overloaded server is slowed down for rather than hammered.
* Authentication is a strategy object (``sync_pipelines.core.auth``, seen here only through
  ``core.auth_client.Authenticator``) the client owns, or one given per request
  (a Bakaláři student's own token): its headers are sent, a 401 renews the credential once and the request is
  resent, and a second refusal raises the strategy's error. That loop exists here only, for every system.
* ``send`` is the one way to read a 401/403 as an answer: no credential is sent, nothing is renewed, and the
  caller interprets the status (a login endpoint refusing a password, say).
* 400/404 and other client errors are returned to the caller without retries.
* Every answer's body is streamed and bounded (``core.answers``): at most ``max_answer_bytes`` reach memory,
  counted after decompression, so a huge answer or a gzip bomb is that one request's failure, not the run's
  memory; ``parse_json`` turns anything the parser raises (a 10,000-digit number, JSON nested 100,000 deep,
  invalid UTF-8) into that request's ``MalformedResponseError``.
* A run cannot go on for days against a system that refuses it: a deadline (``deadline_seconds``, counted from
  the start of the sync run) stops sending and fails the run naming its setting, and a circuit breaker fails the
  run at once when almost every request fails after its retries (429, 5xx, transport errors), naming the system
  and what it answered. Both raise a ``RunStoppedError``, which no per-record handler catches.
* An error answer's body (any status from 400; its first ``ERROR_BODY_BYTES``) is masked as it is read, before
  any caller sees it (``mask_error_answer``): every e-mail address, and every value the request sent (the e-mail
  a lookup asked about, a name), whatever its case. A server that repeats what it was sent, as many do in a 400, cannot put
  personal data into an error message, so no client has to remember to mask it.
* Whatever of a server's body goes into an error message goes through ``excerpt``: secrets and e-mail addresses
  masked, on one line, cut short.
* The errors raised here (``ApiError`` and its kinds, ``RunStoppedError``) live in ``core.errors``, under
  ``SyncError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import json
import logging
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from sync_pipelines.core.answers import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_ANSWER_BYTES,
    MAX_JSON_DEPTH,
    AnswerError,
    AnswerTooLargeError,
    BodyReader,
    decode_json,
    describe_bytes,
)
from sync_pipelines.core.auth_client import Authenticator
from sync_pipelines.core.concurrency import (
    DROPPED,
    OVERLOAD,
    SERVER_ERROR,
    SUCCESS,
    TIMEOUT,
    AdaptiveLimit,
    ConcurrencyLimiter,
    request_kind,
)
from sync_pipelines.core.errors import (
    ApiError,
    DeadlineExceededError,
    MalformedResponseError,
    ResponseTooLargeError,
    RunStoppedError,
    SystemRefusingError,
    TransientApiError,
    UnauthorizedError,
    UnconfirmedError,
    UnreachableError,
)
from sync_pipelines.core.redaction import Redactor, mask_personal, redact_url_password
from sync_pipelines.core.retry import RetryPolicy, parse_retry_after

# Transport problems after which the request is known not to have reached the server.
NOT_SENT_PROBLEMS = frozenset({"connection refused", "host name not found"})
AUTH_STATUSES = frozenset({401, 403})
DEFAULT_DEADLINE_SECONDS = 4 * 3600.0
EXCERPT_CHARACTERS = 200
# Where an error answer's JSON says what went wrong, in the shapes APIs use (RT, Django REST framework, OAuth,
# ASP.NET): the first that holds text is the message shown.
MESSAGE_FIELDS = ("message", "detail", "error_description", "Message", "error")
RETRY_BODY_BYTES = 64 * 1024
# An error answer (400 and up) is kept to this many bytes: it is read for its message, and masking it
# (``mask_error_answer``) costs time in proportion to its length.
ERROR_BODY_BYTES = 64 * 1024

# When the current sync run started (``time.monotonic()``), set by the engine around a run: a client's deadline
# counts from there, whenever the client was opened. Unset (a client used on its own): from the client's opening.
run_started: contextvars.ContextVar[float | None] = contextvars.ContextVar("run_started", default=None)


@dataclass(frozen=True)
class ApiLimits:
    """How hard one external system may be driven."""

    # The ceiling of requests in flight; below it, the adaptive limit follows the server's answers.
    max_concurrency: int = 8
    # False: always ``max_concurrency`` in flight (as before the adaptive limit).
    adaptive_concurrency: bool = True
    requests_per_second: float | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # Longest answer read, counted after decompression; a longer one is that request's failure.
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    # No request is sent (and no retry waited for) past this many seconds after the run started (None: never).
    deadline_seconds: float | None = DEFAULT_DEADLINE_SECONDS
    # Circuit breaker: the run stops when ``breaker_consecutive`` requests in a row, or ``breaker_ratio`` of the
    # last ``breaker_window``, failed after their retries (0: no breaker).
    breaker_consecutive: int = 10
    breaker_window: int = 20
    breaker_ratio: float = 0.95
    # The settings' prefix (``RT``, ``BAKALARI``, ``PORTAILDF``), so that errors name the setting to change.
    settings_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive (or unset for no cap)")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_answer_bytes < 1:
            raise ValueError("max_answer_bytes must be at least 1")
        if self.deadline_seconds is not None and not self.deadline_seconds > 0:
            raise ValueError("deadline_seconds must be positive (or unset for no deadline)")

    def setting(self, name: str) -> str:
        """The environment setting behind a limit: ``MAX_ANSWER_BYTES`` -> ``PORTAILDF_MAX_ANSWER_BYTES``."""
        return f"{self.settings_prefix}_{name}" if self.settings_prefix else f"ApiLimits.{name.lower()}"

    @property
    def deadline_setting(self) -> str:
        own = self.setting("DEADLINE_SECONDS")
        return f"{own} (or SYNC_DEADLINE_SECONDS)" if self.settings_prefix else own


def error_causes(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it, outermost first (at most 10, each once): the transport wraps its errors."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def transport_problem(error: BaseException) -> str:
    """What went wrong on the wire, in words: the transport's own class names mislead (aiohttp's refused
    connection reaches httpx as a ``ConnectTimeout``), so the causes are read instead."""
    seen = error_causes(error)
    for cause in seen:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
    text = " ".join(str(cause) for cause in seen).lower()
    if "connect call failed" in text or "connection refused" in text:
        return "connection refused"
    if "name or service not known" in text or "temporary failure in name resolution" in text:
        return "host name not found"
    for cause in seen:
        if isinstance(cause, (asyncio.TimeoutError, httpx.TimeoutException)):
            return "timed out"
        if isinstance(cause, (ConnectionResetError, httpx.RemoteProtocolError)):
            return "connection closed by the server"
    return type(error).__name__


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _deadline(seconds: float) -> contextlib.AbstractAsyncContextManager[object]:
    """``asyncio.timeout`` where available (3.11+): unlike ``wait_for`` it creates no extra task per request."""
    if sys.version_info >= (3, 11):
        return asyncio.timeout(seconds)
    return _WaitForDeadline(seconds)


class _WaitForDeadline(contextlib.AbstractAsyncContextManager[None]):
    """Python 3.10 fallback: a timer that cancels the current task."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._expired = True
            if task is not None:
                task.cancel()

        self._handle = loop.call_later(self._seconds, expire)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise asyncio.TimeoutError
        return False


class _Call(NamedTuple):
    """One request as the caller asked for it, sent again as it is by each retry."""

    method: str
    path: str
    params: Mapping[str, Any] | None
    json_body: Any
    form: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    timeout: float | None  # None: the client's
    resend_after_timeout: bool = True


class ApiClient:
    """Async client for one external system. Use as ``async with ApiClient(...) as client``."""

    def __init__(
        self,
        system: str,
        base_url: str,
        limits: ApiLimits,
        credential_variables: str,
        secrets: Iterable[str | None] = (),
        headers: Mapping[str, str] | None = None,
        logger: logging.Logger | None = None,
        auth: Authenticator | None = None,
        url_variable: str | None = None,
    ) -> None:
        """``headers`` go with every request; ``auth`` authenticates ``request`` calls (default: no credential,
        so a 401/403 is an ``UnauthorizedError`` naming ``credential_variables``). ``url_variable`` is the
        setting named when the server cannot be reached."""
        self.system = system
        self.url_variable = url_variable
        self.base_url = base_url.rstrip("/") + "/"
        self.limits = limits
        self.retry_policy = RetryPolicy(
            limits.max_attempts, limits.backoff_initial_seconds, limits.backoff_max_seconds
        )
        self.credential_variables = credential_variables
        self.redact = Redactor(secrets)
        self.headers: dict[str, str] = dict(headers or {})
        self.auth = auth
        self.log = logger or logging.getLogger(f"sync_pipelines.http.{system}")
        self.requests_made = 0
        self.retries = 0
        self.resends = 0  # requests not safe to resend, sent again after the caller checked (wait_to_resend)
        self.statuses: Counter[str] = Counter()
        self.concurrency = ConcurrencyLimiter(
            AdaptiveLimit(limits.max_concurrency, adaptive=limits.adaptive_concurrency),
            # Its own logger: each change of the limit at DEBUG, apart from the client's retry lines.
            logger=logging.getLogger(f"sync_pipelines.concurrency.{system}"),
        )
        self._limiter = self._make_limiter(limits.requests_per_second)
        self._paused_until = 0.0
        self._client: httpx.AsyncClient | None = None
        self.deadline: float | None = None  # time.monotonic() past which nothing is sent
        self._outcomes: deque[bool] = deque(
            maxlen=max(limits.breaker_window, 1)
        )  # True: failed after retries
        self._failed_in_a_row = 0
        self._stopped: RunStoppedError | None = None

    @staticmethod
    def _make_limiter(requests_per_second: float | None) -> AsyncLimiter | None:
        if requests_per_second is None:
            return None
        if requests_per_second >= 10:
            # Allow bursts of a tenth of a second's worth: smooth enough, and cheap at high rates.
            return AsyncLimiter(requests_per_second / 10, 0.1)
        # Strict spacing at low rates: RT_REQUESTS_PER_SECOND=1 means one call a second, never two at once.
        return AsyncLimiter(1, 1 / requests_per_second)

    def add_secret(self, secret: str | None) -> None:
        """Register a value learnt at run time (an access token) so it is masked too."""
        self.redact.add(secret)

    async def __aenter__(self) -> ApiClient:
        pool = httpx.Limits(
            max_connections=self.limits.max_concurrency,
            max_keepalive_connections=self.limits.max_concurrency,
        )
        # Imported here, not at the top: aiohttp costs a code location's start-up ~0.15 s, and only a step that
        # sends requests needs it.
        from httpx_aiohttp import AiohttpTransport

        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            transport=AiohttpTransport(limits=pool, trust_env=False, client=_session_without_resends(pool)),
            timeout=httpx.Timeout(self.limits.timeout_seconds),
            # Only what ``BodyReader`` decompresses in bounded steps (not br or zstd, were their packages installed).
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
        if self.limits.deadline_seconds is not None:
            started = run_started.get()
            self.deadline = (time.monotonic() if started is None else started) + self.limits.deadline_seconds
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- requests ----------------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Authenticator | None = None,
        timeout_seconds: float | None = None,
        resend_after_timeout: bool | None = None,
    ) -> httpx.Response:
        """Send one authenticated request with retries; returns any answer but a refusal (2xx, 400, 404, ...).

        ``auth`` overrides the client's strategy for this request (``None``: the client's own). Without a
        credential yet, the strategy obtains one first. A status in the strategy's ``renew_statuses`` renews the
        credential once (concurrent refusals share one renewal) and resends; a 401/403 that remains raises the
        strategy's error. ``timeout_seconds`` overrides the client's timeout for this request.
        ``resend_after_timeout`` (default: for GET, HEAD and OPTIONS only) says whether a request that timed out
        after it was sent may be sent again; if not, it raises ``UnconfirmedError``.
        """
        strategy = self.auth if auth is None else auth
        resend = self.retry_policy.resends_after_timeout(method, resend_after_timeout)
        call = _Call(method, path, params, json_body, form, headers, timeout_seconds, resend)
        if strategy is None:  # no credential: nothing to send or renew, and a refusal is final
            response = await self._send(call, {})
            if response.status_code in AUTH_STATUSES:
                raise UnauthorizedError(
                    self.system, self.credential_variables, response.status_code, self.redact(path)
                )
            return response
        seen = strategy.generation
        if not strategy.ready:
            await strategy.renew(self, seen)
            seen = strategy.generation
        response = await self._send(call, strategy.headers())
        if response.status_code not in AUTH_STATUSES:
            return response
        renewed = False
        if response.status_code in strategy.renew_statuses and await strategy.renew(self, seen):
            renewed = True
            response = await self._send(call, strategy.headers())
            if response.status_code not in AUTH_STATUSES:
                return response
        raise strategy.refused(self, method, path, response.status_code, renewed)

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> httpx.Response:
        """Send one request with retries and no credential; every non-retryable answer is returned, 401/403 too.

        For logins and refresh grants, whose refusals (400/401) are answers the caller reads. ``timeout_seconds``
        overrides the client's timeout (a grant whose lost answer costs more than waiting for it).
        """
        return await self._send(_Call(method, path, params, json_body, form, headers, timeout_seconds), {})

    async def _send(self, call: _Call, credential: Mapping[str, str]) -> httpx.Response:
        if credential:
            call = call._replace(headers={**credential, **(call.headers or {})})
        try:
            try:
                # The common case pays for no retry machinery; tenacity takes over from the first failure on.
                response = await self._attempt(call)
            except TransientApiError as failure:
                response = await self._retry(failure, call)
        except UnconfirmedError as unconfirmed:  # never retried: the caller checks what the server holds
            self._count_outcome(unconfirmed)
            raise
        except UnreachableError as unreachable:
            where = redact_url_password(self.base_url)
            check = f"; check {self.url_variable}" if self.url_variable else ""
            reached = unreachable.problem not in ("connection refused", "host name not found")
            verb = "did not answer" if reached else "could not be reached"
            error = UnreachableError(
                self.system,
                unreachable.method,
                unreachable.path,
                f"{self.system} {verb} at {where} ({unreachable.problem}){check}",
            )
            self._count_outcome(error)
            raise error from None
        except TransientApiError as spent:
            self._count_outcome(spent)
            raise
        self._count_outcome(None)
        return response

    # -- stopping a run: deadline and circuit breaker ----------------------------------------------------------
    def _check_running(self, wait: float = 0.0) -> None:
        """Raise the run's ``RunStoppedError`` if the breaker tripped, or if the deadline has passed or would
        pass during a wait of ``wait`` seconds (waiting for a retry that may not be sent is pointless)."""
        if self._stopped is not None:
            raise self._stopped
        if self.deadline is not None and time.monotonic() + wait >= self.deadline:
            seconds = self.limits.deadline_seconds or 0.0
            setting = self.limits.deadline_setting
            self._stopped = DeadlineExceededError(
                self.system,
                f"{self.system}: the sync passed its deadline of {_duration(seconds)} ({setting}) with requests "
                f"still to send, and stopped sending after {self.requests_made} request(s) "
                f"(answers: {self._answers()}); raise {setting.split(' ')[0]} if a run this long is expected",
                setting=setting.split(" ")[0],
            )
            raise self._stopped

    def _answers(self) -> str:
        if not self.statuses:
            return "none"
        return ", ".join(
            f"{'HTTP ' + status if status.isdigit() else status} x{count}"
            for status, count in self.statuses.most_common(5)
        )

    def _count_outcome(self, failure: ApiError | None) -> None:
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
            f"each (answers: {self._answers()}); the run stops here rather than retrying for hours. "
            f"Last: {self.redact(failure)}",
            setting=self.url_variable,
        )
        raise self._stopped from None

    async def _sleep_before_retry(self, seconds: float) -> None:
        self._check_running(seconds)
        await asyncio.sleep(seconds)

    async def wait_to_resend(self, attempt: int, failure: UnconfirmedError) -> bool:
        """After ``attempt`` sends of a request that raised ``UnconfirmedError``: False once ``max_attempts`` are
        spent; else True, having waited the backoff a retry would. The caller then reads what the server holds
        and resends only if it did not act, counting it in ``resends``."""
        if not self.retry_policy.may_attempt_again(attempt):
            return False
        wait = self.retry_policy.backoff_seconds(attempt, failure)
        self._log_retry_line(failure, attempt, wait)
        await self._sleep_before_retry(wait)
        return True

    async def _retry(self, failure: TransientApiError, call: _Call) -> httpx.Response:
        """Attempts 2..max_attempts after a first failure, as the retry policy says."""
        policy = self.retry_policy
        if not policy.may_attempt_again(1):
            raise failure
        first_wait = policy.backoff_seconds(1, failure)
        self._log_retry_line(failure, 1, first_wait)
        await self._sleep_before_retry(first_wait)
        retrying = AsyncRetrying(
            sleep=self._sleep_before_retry,
            stop=stop_after_attempt(policy.max_attempts - 1),
            wait=lambda state: policy.backoff_seconds(
                state.attempt_number + 1, state.outcome.exception() if state.outcome else None
            ),
            retry=retry_if_exception(policy.retries),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._attempt(call)
        return response

    async def request_json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """``request`` and parse the body as JSON; a body that is not JSON is a ``MalformedResponseError``."""
        response = await self.request(method, path, **kwargs)
        return response.status_code, self.parse_json(response, method, path)

    def parse_json(self, response: httpx.Response, method: str, path: str) -> Any:
        """The body as JSON; anything that is not usable JSON (whatever the parser raised: a number of
        thousands of digits, nesting deeper than ``max_json_depth``, invalid UTF-8) is a
        ``MalformedResponseError`` of this one request."""
        try:
            return decode_json(response.content, self.limits.max_json_depth)
        except Exception as error:  # noqa: BLE001 - no answer may end the run by its shape
            kind = self.excerpt(
                response.headers.get("content-type", "unknown content type").split(";")[0], 60
            )
            problem = str(error) if isinstance(error, AnswerError) else type(error).__name__
            raise MalformedResponseError(
                self.system,
                method,
                self.redact(path),
                f"HTTP {response.status_code} answered with {kind}, {problem}"
                if problem.startswith("not ")
                else f"HTTP {response.status_code} answered with {kind}, not usable JSON: {problem}",
                status=response.status_code,
            ) from None

    def excerpt(self, body: Any, characters: int = EXCERPT_CHARACTERS) -> str:
        """A server's body (or any text from it) fit for an error message: secrets and e-mail addresses masked
        *before* it is cut (a cut token could no longer be recognised), on one line, at most ``characters``
        long."""
        text = body if isinstance(body, str) else _shown(body)
        text = " ".join(mask_personal(self.redact(text[: characters * 4 + 256])).split())
        return text if len(text) <= characters else text[: characters - 3] + "..."

    def error_message(self, response: httpx.Response) -> str:
        """An error answer as an operator reads it: ``HTTP <status>: <message>``, the message being what the
        answer's JSON names (``MESSAGE_FIELDS``) or else its text, through ``excerpt`` (masked, one line, short).
        The body was masked as it was read (``mask_error_answer``)."""
        try:
            body: Any = decode_json(response.content, self.limits.max_json_depth)
        except AnswerError:
            body = response.text
        if isinstance(body, dict):
            named = (body.get(name) for name in MESSAGE_FIELDS)
            body = next((text for text in named if isinstance(text, str) and text.strip()), body)
        message = self.excerpt(body) if body not in ("", None) else ""
        return f"HTTP {response.status_code}: {message}" if message else f"HTTP {response.status_code}"

    async def _send_once(
        self, call: _Call, request: httpx.Request, streamed: list[httpx.Response]
    ) -> httpx.Response:
        """Send ``request`` and read its answer whole (the response as streamed is appended to ``streamed``, for
        the status of an answer that could not be read)."""
        # A whole-request deadline on top of httpx's per-phase timeouts: a server that trickles bytes must not
        # hold a slot forever.
        async with _deadline((call.timeout or self.limits.timeout_seconds) + 1):
            answer = await self._client.send(request, stream=True)  # type: ignore[union-attr]
            streamed.append(answer)
            try:
                return await self._read(answer, request)
            finally:
                await answer.aclose()

    async def _attempt(self, call: _Call) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("ApiClient used outside 'async with'")
        method = call.method
        shown_path = self.redact(call.path)
        self._check_running()
        async with self.concurrency.slot(request_kind(method, call.path)) as slot:
            wait = self._paused_until - time.monotonic()
            self._check_running(max(wait, 0.0))
            if wait > 0:
                await asyncio.sleep(wait)
            if self._limiter is not None:
                await self._limiter.acquire()
            self._check_running()
            self.requests_made += 1
            slot.start()
            request = self._client.build_request(
                method,
                call.path,
                params=call.params,
                json=call.json_body,
                data=call.form,
                headers={**self.headers, **(call.headers or {})},
                timeout=httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout,
            )
            sent: list[httpx.Response] = []
            try:
                try:
                    response = await self._send_once(call, request, sent)
                except (httpx.TransportError, asyncio.TimeoutError) as stale:
                    # A kept-alive connection the server had already closed: a request safe to resend is sent
                    # once more, at once, on a new connection (what aiohttp's own resend, switched off for every
                    # request, did for it), not counted as a failed attempt.
                    if sent or not (call.resend_after_timeout and _server_closed_connection(stale)):
                        raise
                    response = await self._send_once(call, request, sent)
            except (httpx.TransportError, asyncio.TimeoutError) as error:
                problem = transport_problem(error)
                slot.outcome = TIMEOUT if problem == "timed out" else DROPPED
                self.statuses[problem] += 1
                detail = self.redact(str(error)) or type(error).__name__
                kind: type[UnreachableError | UnconfirmedError] = UnreachableError
                if problem not in NOT_SENT_PROBLEMS and not call.resend_after_timeout:
                    kind = UnconfirmedError
                    detail += "; not resent: the server may have acted on it"
                unreachable = kind(self.system, method, shown_path, f"{problem}: {detail}")
                unreachable.problem = problem
                raise unreachable from None
            except AnswerError as error:
                status = sent[-1].status_code if sent else None
                self.statuses[str(status)] += 1
                if isinstance(error, AnswerTooLargeError):
                    setting = self.limits.setting("MAX_ANSWER_BYTES")
                    raise ResponseTooLargeError(
                        self.system,
                        method,
                        shown_path,
                        f"HTTP {status}: {error} ({setting}={self.limits.max_answer_bytes}); not read further",
                        status=status,
                    ) from None
                raise MalformedResponseError(
                    self.system, method, shown_path, f"HTTP {status}: {error}", status=status
                ) from None
            status = response.status_code
            if status == 500:
                slot.outcome = SERVER_ERROR
            elif self.retry_policy.retries_status(status):
                slot.outcome = OVERLOAD
            else:
                slot.outcome = SUCCESS
        self.statuses[str(response.status_code)] += 1
        if (
            self.retry_policy.retries_status(response.status_code)
            and response.status_code != 429
            and not call.resend_after_timeout
        ):
            unconfirmed = UnconfirmedError(
                self.system,
                method,
                shown_path,
                f"HTTP {response.status_code}; not resent: the server may have acted on it",
                status=response.status_code,
            )
            unconfirmed.problem = f"HTTP {response.status_code}"
            raise unconfirmed
        if self.retry_policy.retries_status(response.status_code):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if response.status_code == 429 and retry_after:
                self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
            raise TransientApiError(
                self.system,
                method,
                shown_path,
                f"HTTP {response.status_code}",
                status=response.status_code,
                retry_after=retry_after,
            )
        return response

    async def _read(self, streamed: httpx.Response, request: httpx.Request) -> httpx.Response:
        """The answer with its body read, decompressed and bounded (``max_answer_bytes``); an answer to retry
        (429, 5xx) is not read at all."""
        headers = httpx.Headers(
            [
                (name, value)
                for name, value in streamed.headers.multi_items()
                if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
        )
        if self.retry_policy.retries_status(streamed.status_code):
            # Not used, only read (a little of it) so the connection can serve the next request; a longer
            # body is left unread and its connection closed.
            with contextlib.suppress(AnswerError):
                await self._read_body(streamed, RETRY_BODY_BYTES)
            content = b""
        else:
            content = await self._read_body(streamed, self.limits.max_answer_bytes)
            if streamed.status_code >= 400:
                content = mask_error_answer(content[:ERROR_BODY_BYTES], request)
        return httpx.Response(
            streamed.status_code,
            headers=headers,
            content=content,
            request=request,
            extensions=streamed.extensions,
        )

    @staticmethod
    async def _read_body(streamed: httpx.Response, limit: int) -> bytes:
        declared = streamed.headers.get("content-length", "")
        if declared.isdigit() and len(declared) < 20 and int(declared) > limit:
            raise AnswerTooLargeError(
                f"answer of {describe_bytes(int(declared))} declared, longer than {describe_bytes(limit)}"
            )
        reader = BodyReader(streamed.headers.get("content-encoding"), limit)
        async for chunk in streamed.aiter_raw():
            reader.feed(chunk)
        return reader.finish()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._log_retry_line(error, state.attempt_number + 1, wait)

    def _log_retry_line(self, error: BaseException | None, failed_attempts: int, wait: float) -> None:
        self.retries += 1
        self.log.debug(
            self.redact(f"{error}; retry {failed_attempts}/{self.limits.max_attempts - 1} in {wait:.2f} s")
        )

    def summary(self) -> dict[str, int]:
        return {"requests": self.requests_made, "retries": self.retries}

    def concurrency_summary(self) -> dict[str, Any]:
        """Requests in flight: the limit reached, its range and the signals it reacted to (for run metadata)."""
        return self.concurrency.summary()


def sent_values(request: httpx.Request) -> list[str]:
    """The values one request carried: its query parameters, its form fields and the strings of its JSON body."""
    values = [value for _, value in request.url.params.multi_items()]
    try:
        content = request.content
    except httpx.RequestNotRead:  # a streamed body: nothing of it is known here
        return values
    if not content:
        return values
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    text = content.decode("utf-8", errors="replace")
    if kind == "application/x-www-form-urlencoded":
        values += [value for _, value in parse_qsl(text, keep_blank_values=False)]
    elif kind == "application/json":
        with contextlib.suppress(ValueError, RecursionError):
            values += _strings(json.loads(text))
    return values


def _strings(value: Any) -> list[str]:
    """Every string (and number, as text) inside a JSON value."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [str(value)]
    return []


def mask_error_answer(content: bytes, request: httpx.Request) -> bytes:
    """An error answer's body with personal data masked: every e-mail address, and every value ``request`` sent
    (``core.redaction.mask_personal``). Bytes that are not UTF-8 are kept as they were."""
    text = content.decode("utf-8", errors="surrogateescape")
    masked = mask_personal(text, sent_values(request))
    return content if masked == text else masked.encode("utf-8", errors="surrogateescape")


def _shown(body: Any) -> str:
    """``str(body)``, which for JSON nested to the depth limit cannot fail, but for anything else might."""
    try:
        return str(body)
    except Exception:  # noqa: BLE001
        return f"<{type(body).__name__}>"


def _server_closed_connection(error: BaseException) -> bool:
    """Whether ``error`` is aiohttp's "Server disconnected": the connection was closed before any answer came."""
    import aiohttp

    return any(isinstance(cause, aiohttp.ServerDisconnectedError) for cause in error_causes(error))


def _session_without_resends(pool: httpx.Limits) -> Callable[[], Any]:
    """aiohttp's session for the transport, without its own resend of a request whose kept-alive connection
    broke (it resends PUT and DELETE too, which HTTP calls idempotent, but which the server may have applied):
    ``ApiClient`` alone decides what is sent twice."""

    def create() -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(
            keepalive_timeout=pool.keepalive_expiry,
            limit=pool.max_connections or 100,
            ssl=httpx.create_ssl_context(trust_env=False),  # as the transport's own session verifies
        )
        session = aiohttp.ClientSession(connector=connector, trust_env=False)
        # No public switch exists; the attribute is aiohttp's own (ClientSession._retry_connection, 3.9+).
        if not hasattr(session, "_retry_connection"):
            raise RuntimeError(
                "aiohttp's ClientSession no longer has _retry_connection: review the HTTP layer"
            )
        session._retry_connection = False
        return session

    return create
