"""The one HTTP layer every API resource uses: pooled, bounded, rate-limited, retrying, and secret-safe.

* ``httpx.AsyncClient`` on the aiohttp transport (``httpx-aiohttp``): the httpx API with a fraction of the
  default transport's CPU per request, which is what lets one core drive hundreds of requests per second.
* ``asyncio.Semaphore`` bounds requests in flight; ``aiolimiter.AsyncLimiter`` caps requests per second.
* ``tenacity`` retries 429, 5xx and transport errors with exponential backoff and full jitter, honouring
  ``Retry-After``; a 429 also pauses every request of the client until the server's ``Retry-After`` has
  passed, so an overloaded server is slowed down for rather than hammered.
* Authentication is a strategy object (``sync_pipelines.core.auth``) the client owns, or one given per request
  (a Bakaláři student's own token): its headers are sent, a 401 renews the credential once and the request is
  resent, and a second refusal raises the strategy's error. That loop exists here only, for every system.
* ``send`` is the one way to read a 401/403 as an answer: no credential is sent, nothing is renewed, and the
  caller interprets the status (a login endpoint refusing a password, say).
* 400/404 and other client errors are returned to the caller without retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)

from sync_pipelines.core.auth import Auth
from sync_pipelines.core.errors import SyncError
from sync_pipelines.core.redaction import Redactor, redact_url_password

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
MAX_RETRY_AFTER_SECONDS = 120.0


@dataclass(frozen=True)
class ApiLimits:
    """How hard one external system may be driven."""

    max_concurrency: int = 8
    requests_per_second: float | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive (or unset for no cap)")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


class ApiError(SyncError):
    """A request that did not give a usable answer; the message never holds a secret."""

    def __init__(self, system: str, method: str, path: str, message: str, status: int | None = None) -> None:
        self.system = system
        self.method = method
        self.path = path
        self.status = status
        super().__init__(f"{system} {method} {path}: {message}")


class TransientApiError(ApiError):
    """429, 5xx or a transport failure: worth retrying; raised once the retries are spent."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class UnreachableError(TransientApiError):
    """Every attempt failed before an answer came (refused, timed out, name not found): names the URL's setting."""

    problem = "unreachable"


def transport_problem(error: BaseException) -> str:
    """What went wrong on the wire, in words: the transport's own class names mislead (aiohttp's refused
    connection reaches httpx as a ``ConnectTimeout``), so the causes are read instead."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
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


class MalformedResponseError(ApiError):
    """The server answered, but not with the JSON its API promises (e.g. an HTML error page)."""


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _deadline(seconds: float) -> contextlib.AbstractAsyncContextManager[None]:
    """``asyncio.timeout`` where available (3.11+): unlike ``wait_for`` it creates no extra task per request."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is not None:
        return timeout(seconds)
    return _WaitForDeadline(seconds)


class _WaitForDeadline(contextlib.AbstractAsyncContextManager):
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
        logger: logging.Logger | Any | None = None,
        auth: Auth | None = None,
        url_variable: str | None = None,
    ) -> None:
        """``headers`` go with every request; ``auth`` authenticates ``request`` calls (default: no credential,
        so a 401/403 is an ``UnauthorizedError`` naming ``credential_variables``). ``url_variable`` is the
        setting named when the server cannot be reached."""
        self.system = system
        self.url_variable = url_variable
        self.base_url = base_url.rstrip("/") + "/"
        self.limits = limits
        self.credential_variables = credential_variables
        self.redact = Redactor(secrets)
        self.headers: dict[str, str] = dict(headers or {})
        self.auth = auth if auth is not None else Auth()
        self.log = logger or logging.getLogger(f"sync_pipelines.http.{system}")
        self.requests_made = 0
        self.retries = 0
        self.statuses: Counter[str] = Counter()
        self._semaphore = asyncio.Semaphore(limits.max_concurrency)
        self._limiter = self._make_limiter(limits.requests_per_second)
        self._paused_until = 0.0
        self._client: httpx.AsyncClient | None = None

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
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            transport=AiohttpTransport(limits=pool, trust_env=False),
            timeout=httpx.Timeout(self.limits.timeout_seconds),
        )
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
        auth: Auth | None = None,
        timeout_seconds: float | None = None,
    ) -> httpx.Response:
        """Send one authenticated request with retries; returns any answer but a refusal (2xx, 400, 404, ...).

        ``auth`` overrides the client's strategy for this request (``None``: the client's own). Without a
        credential yet, the strategy obtains one first. A status in the strategy's ``renew_statuses`` renews the
        credential once (concurrent refusals share one renewal) and resends; a 401/403 that remains raises the
        strategy's error. ``timeout_seconds`` overrides the client's timeout for this request.
        """
        strategy = self.auth if auth is None else auth
        seen = strategy.generation
        if not strategy.ready:
            await strategy.renew(self, seen)
            seen = strategy.generation
        call = _Call(method, path, params, json_body, form, headers, timeout_seconds)
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
            # The common case pays for no retry machinery; tenacity takes over from the first failure on.
            return await self._attempt(call)
        except TransientApiError as failure:
            try:
                return await self._retry(failure, call)
            except UnreachableError as unreachable:
                where = redact_url_password(self.base_url)
                check = f"; check {self.url_variable}" if self.url_variable else ""
                reached = unreachable.problem not in ("connection refused", "host name not found")
                verb = "did not answer" if reached else "could not be reached"
                raise UnreachableError(
                    self.system,
                    unreachable.method,
                    unreachable.path,
                    f"{self.system} {verb} at {where} ({unreachable.problem}){check}",
                ) from None

    def backoff_seconds(self, failed_attempts: int, error: BaseException | None) -> float:
        """Exponential backoff with full jitter, never shorter than the server's ``Retry-After``."""
        ceiling = min(
            self.limits.backoff_max_seconds, self.limits.backoff_initial_seconds * 2 ** (failed_attempts - 1)
        )
        backoff = random.uniform(0, ceiling)
        if isinstance(error, TransientApiError) and error.retry_after is not None:
            return max(error.retry_after, min(backoff, error.retry_after + 1.0))
        return backoff

    async def _retry(self, failure: TransientApiError, call: _Call) -> httpx.Response:
        """Attempts 2..max_attempts after a first failure."""
        if self.limits.max_attempts == 1:
            raise failure
        first_wait = self.backoff_seconds(1, failure)
        self._log_retry_line(failure, 1, first_wait)
        await asyncio.sleep(first_wait)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.limits.max_attempts - 1),
            wait=lambda state: self.backoff_seconds(
                state.attempt_number + 1, state.outcome.exception() if state.outcome else None
            ),
            retry=retry_if_exception_type(TransientApiError),
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
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "unknown content type").split(";")[0]
            raise MalformedResponseError(
                self.system,
                method,
                self.redact(path),
                f"HTTP {response.status_code} answered with {kind}, not JSON",
                status=response.status_code,
            ) from None

    async def _attempt(self, call: _Call) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("ApiClient used outside 'async with'")
        method = call.method
        shown_path = self.redact(call.path)
        async with self._semaphore:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._limiter is not None:
                await self._limiter.acquire()
            self.requests_made += 1
            try:
                # A whole-request deadline on top of httpx's per-phase timeouts: a server that trickles bytes
                # must not hold a slot forever.
                async with _deadline((call.timeout or self.limits.timeout_seconds) + 1):
                    response = await self._client.request(
                        method,
                        call.path,
                        params=call.params,
                        json=call.json_body,
                        data=call.form,
                        headers={**self.headers, **(call.headers or {})},
                        timeout=httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout,
                    )
            except (httpx.TransportError, asyncio.TimeoutError) as error:
                problem = transport_problem(error)
                self.statuses[problem] += 1
                detail = self.redact(str(error)) or type(error).__name__
                unreachable = UnreachableError(self.system, method, shown_path, f"{problem}: {detail}")
                unreachable.problem = problem
                raise unreachable from None
        self.statuses[str(response.status_code)] += 1
        if response.status_code in RETRY_STATUSES:
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
