"""The HTTP client every API resource uses: one ``ApiClient`` per system, made of layers that each do one thing.

* ``core.transport``: sends a request once and reads its answer: pooled connections (``httpx`` on aiohttp),
  no resend of its own, a whole-request deadline, bodies streamed and bounded (``core.answers``), error answers
  masked as they are read (``mask_error_answer``).
* ``core.retry``: the ``RetryPolicy`` classifies every attempt's outcome (final, retry, pause all, unconfirmed,
  resend at once) and says how long to wait before the next (backoff with full jitter, ``Retry-After``,
  ``max_attempts``). Nothing here decides what is sent again: this module runs the attempts the policy asks for.
* ``core.pacing``: a requests-per-second cap, and the pause a 429 asks of every request of the client.
* ``core.concurrency``: the requests in flight, a limit that follows the server's answers (latency, 429, 5xx,
  timeouts), between 1 and ``max_concurrency``; ``client.concurrency.summary()`` says where it went and why.
* ``core.run_guard``: the run's deadline and circuit breaker; both raise a ``RunStoppedError``, which no
  per-record handler catches.
* ``core.http_stats``: what the client counted (requests, retries, resends, answers by status).

What is left here is the order of things. ``request`` authenticates: a strategy object (``core.auth``, seen here
only through ``core.auth_client.Authenticator``) the client owns, or one given per request (a Bakaláři student's
own token); its headers are sent, a status in its ``renew_statuses`` renews the credential once and the request
is resent, and a second refusal raises the strategy's error. That loop exists here only, for every system.
``send`` is the one way to read a 401/403 as an answer: no credential is sent, nothing is renewed, and the caller
interprets the status (a login endpoint refusing a password, say). 400/404 and other client errors are returned
to the caller. A write not safe to resend whose answer was lost goes through ``request_unless_applied``: the
caller reads what the server holds before it is sent again.

Whatever of a server's body goes into an error message goes through ``excerpt``: secrets and e-mail addresses
masked, on one line, cut short; ``parse_json`` turns anything the parser raises (a 10,000-digit number, JSON
nested 100,000 deep, invalid UTF-8) into that request's ``MalformedResponseError``. The errors raised here
(``ApiError`` and its kinds, ``RunStoppedError``) live in ``core.errors``, under ``SyncError``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict

import httpx

from sync_pipelines.core.answer_text import EXCERPT_CHARACTERS, AnswerText
from sync_pipelines.core.answers import AnswerError, AnswerTooLargeError
from sync_pipelines.core.auth_client import Authenticator
from sync_pipelines.core.concurrency import (
    DROPPED,
    IGNORED,
    OVERLOAD,
    SERVER_ERROR,
    SUCCESS,
    TIMEOUT,
    AdaptiveLimit,
    ConcurrencyLimiter,
    ConcurrencySummary,
    request_kind,
)
from sync_pipelines.core.errors import (
    ApiError,
    MalformedResponseError,
    ResponseTooLargeError,
    TransientApiError,
    UnauthorizedError,
    UnconfirmedError,
    UnreachableError,
)
from sync_pipelines.core.http_stats import HttpStats
from sync_pipelines.core.json_value import JsonInput, JsonValue
from sync_pipelines.core.limits import DEFAULT_DEADLINE_SECONDS, ApiLimits
from sync_pipelines.core.pacing import Pacing
from sync_pipelines.core.redaction import Redactor, redact_url_password
from sync_pipelines.core.retry import NOT_SENT_PROBLEMS, Outcome, RetryPolicy, Verdict, parse_retry_after
from sync_pipelines.core.run_guard import RunGuard, run_started
from sync_pipelines.core.transport import (
    Call,
    Exchange,
    QueryParams,
    Transport,
    server_closed_connection,
    transport_problem,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

# What the domains import from here: the client, its limits, and the run's start its deadline counts from.
__all__ = [
    "AUTH_STATUSES",
    "DEFAULT_DEADLINE_SECONDS",
    "ApiClient",
    "ApiLimits",
    "RequestOptions",
    "run_started",
]

AUTH_STATUSES = frozenset({401, 403})


class RequestOptions(TypedDict, total=False):
    """``ApiClient.request``'s keyword arguments, for the calls that pass them on."""

    params: QueryParams | None
    json_body: JsonInput
    form: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    auth: Authenticator | None
    timeout_seconds: float | None
    resend_after_timeout: bool | None


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
        self.credential_variables = credential_variables
        self.redact = Redactor(secrets)
        self.headers: dict[str, str] = dict(headers or {})
        self.auth = auth
        self.log = logger or logging.getLogger(f"sync_pipelines.http.{system}")
        self.retry_policy = RetryPolicy(
            limits.max_attempts, limits.backoff_initial_seconds, limits.backoff_max_seconds
        )
        self.answers = AnswerText(system, self.redact, limits.max_json_depth)
        self.stats = HttpStats()
        self.guard = RunGuard(system, limits, self.stats, self.redact, url_variable)
        self.pacing = Pacing(limits.requests_per_second, self.guard)
        self.concurrency = ConcurrencyLimiter(
            AdaptiveLimit(limits.max_concurrency, adaptive=limits.adaptive_concurrency),
            # Its own logger: each change of the limit at DEBUG, apart from the client's retry lines.
            logger=logging.getLogger(f"sync_pipelines.concurrency.{system}"),
        )
        self.transport = Transport(self.base_url, limits, self.retry_policy.retries_status)

    def add_secret(self, secret: str | None) -> None:
        """Register a value learnt at run time (an access token) so it is masked too."""
        self.redact.add(secret)

    # The two counts most callers read; the rest (resends, answers by status) are in ``stats``.
    @property
    def requests_made(self) -> int:
        return self.stats.requests_made

    @property
    def retries(self) -> int:
        return self.stats.retries

    async def __aenter__(self) -> ApiClient:
        await self.transport.__aenter__()
        self.guard.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.__aexit__(*exc)

    # -- requests ----------------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        json_body: JsonInput = None,
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
        call = Call(method, path, params, json_body, form, headers, timeout_seconds, resend)
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
        params: QueryParams | None = None,
        json_body: JsonInput = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> httpx.Response:
        """Send one request with retries and no credential; every non-retryable answer is returned, 401/403 too.

        For logins and refresh grants, whose refusals (400/401) are answers the caller reads. ``timeout_seconds``
        overrides the client's timeout (a grant whose lost answer costs more than waiting for it).
        """
        return await self._send(Call(method, path, params, json_body, form, headers, timeout_seconds), {})

    async def request_json(
        self, method: str, path: str, **options: Unpack[RequestOptions]
    ) -> tuple[int, JsonValue]:
        """``request`` and parse the body as JSON; a body that is not JSON is a ``MalformedResponseError``."""
        response = await self.request(method, path, **options)
        return response.status_code, self.parse_json(response, method, path)

    async def request_unless_applied(
        self,
        method: str,
        path: str,
        applied: Callable[[], Awaitable[bool]],
        **options: Unpack[RequestOptions],
    ) -> httpx.Response | None:
        """``request`` for a write not safe to resend, sent again only once ``applied()`` (what the server
        holds, read after the backoff a retry would wait) says the server did not act on it; None when it had.

        Within ``max_attempts`` in all; each send after the first is counted in ``resends``."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self.request(method, path, **options)
            except UnconfirmedError as unconfirmed:
                wait = self.retry_policy.wait_before(attempts, unconfirmed, verified=True)
                if wait is None:
                    raise
                await self._wait_to_retry(unconfirmed, attempts, wait)
                if await applied():
                    return None
                self.stats.resends += 1

    async def _send(self, call: Call, credential: Mapping[str, str]) -> httpx.Response:
        """``call``'s attempts, as many as the policy allows; its final outcome counted by the run guard."""
        if credential:
            call = call._replace(headers={**credential, **(call.headers or {})})
        try:
            attempts = 0
            while True:
                attempts += 1
                try:
                    response = await self._attempt(call)
                    break
                except TransientApiError as failure:
                    wait = self.retry_policy.wait_before(attempts, failure)
                    if wait is None:
                        raise
                    await self._wait_to_retry(failure, attempts, wait)
        except UnconfirmedError as unconfirmed:  # never retried here: the caller checks what the server holds
            self.guard.count(unconfirmed)
            raise
        except UnreachableError as unreachable:
            error = _unreachable_error(unreachable, self.base_url, self.url_variable)
            self.guard.count(error)
            raise error from None
        except TransientApiError as spent:
            self.guard.count(spent)
            raise
        self.guard.count(None)
        return response

    async def _wait_to_retry(self, failure: ApiError, attempts_made: int, wait: float) -> None:
        self.stats.retries += 1
        self.log.debug(
            self.redact(f"{failure}; retry {attempts_made}/{self.limits.max_attempts - 1} in {wait:.2f} s")
        )
        await self.guard.sleep(wait)

    async def _attempt(self, call: Call) -> httpx.Response:
        """One attempt: a place among the requests in flight, the pacing's turn, then the transport's send (and
        the one immediate resend the policy may ask for); what it came to is the policy's ``Verdict``."""
        if not self.transport.is_open:
            raise RuntimeError("ApiClient used outside 'async with'")
        self.guard.check()
        async with self.concurrency.slot(request_kind(call.method, call.path)) as slot:
            await self.pacing.wait_turn()
            self.stats.requests_made += 1
            slot.start()
            request = self.transport.build(call, self.headers)
            exchange = await self.transport.send(request, call.timeout)
            outcome = _outcome(exchange, call.resend_after_timeout, first_send=True)
            verdict = self.retry_policy.classify(outcome)
            if verdict is Verdict.RESEND_AT_ONCE:
                exchange = await self.transport.send(request, call.timeout)
                outcome = _outcome(exchange, call.resend_after_timeout, first_send=False)
                verdict = self.retry_policy.classify(outcome)
            slot.outcome = _load_signal(outcome, self.retry_policy)
        self.stats.statuses[outcome.problem or str(outcome.status)] += 1
        if verdict is Verdict.FINAL and exchange.response is not None:
            return exchange.response
        if verdict is Verdict.PAUSE_ALL and outcome.retry_after:
            self.pacing.pause_all(outcome.retry_after)
        raise _attempt_error(self.system, self.limits, self.redact, call, verdict, outcome, exchange)

    # -- answers as callers read them (``core.answer_text``) --------------------------------------------
    def parse_json(self, response: httpx.Response, method: str, path: str) -> JsonValue:
        """The body as JSON; anything else is this one request's ``MalformedResponseError``."""
        return self.answers.parse_json(response, method, path)

    def excerpt(self, body: object, characters: int = EXCERPT_CHARACTERS) -> str:
        """A server's text fit for an error message: secrets and e-mail addresses masked, one line, short."""
        return self.answers.excerpt(body, characters)

    def error_message(self, response: httpx.Response) -> str:
        """An error answer as an operator reads it: ``HTTP <status>: <message>``."""
        return self.answers.error_message(response)

    def summary(self) -> dict[str, int]:
        return self.stats.summary()

    def concurrency_summary(self) -> ConcurrencySummary:
        """Requests in flight: the limit reached, its range and the signals it reacted to (for run metadata)."""
        return self.concurrency.summary()


def _outcome(exchange: Exchange, resendable: bool, first_send: bool) -> Outcome:
    """``exchange`` as the retry policy reads it."""
    if exchange.response is not None:
        response = exchange.response
        return Outcome(
            resendable, response.status_code, parse_retry_after(response.headers.get("retry-after"))
        )
    error = exchange.error
    if isinstance(error, AnswerError) or error is None:
        return Outcome(resendable, exchange.status, unreadable=True)
    stale = first_send and not exchange.answered and server_closed_connection(error)
    return Outcome(resendable, problem=transport_problem(error), stale_connection=stale)


def _load_signal(outcome: Outcome, policy: RetryPolicy) -> str:
    """What an attempt tells the limit of requests in flight about the server's load."""
    if outcome.problem is not None:
        return TIMEOUT if outcome.problem == "timed out" else DROPPED
    if outcome.unreadable or outcome.status is None:
        return IGNORED
    if outcome.status == 500:
        return SERVER_ERROR
    return OVERLOAD if policy.retries_status(outcome.status) else SUCCESS


def _attempt_error(
    system: str,
    limits: ApiLimits,
    redact: Redactor,
    call: Call,
    verdict: Verdict,
    outcome: Outcome,
    exchange: Exchange,
) -> ApiError:
    """The error for an attempt that gave no answer to return, as the policy classified it."""
    method, shown_path = call.method, redact(call.path)
    if outcome.problem is not None:
        detail = redact(str(exchange.error)) or type(exchange.error).__name__
        kind: type[UnreachableError | UnconfirmedError] = UnreachableError
        if verdict is Verdict.UNCONFIRMED:
            kind = UnconfirmedError
            detail += "; not resent: the server may have acted on it"
        unreachable = kind(system, method, shown_path, f"{outcome.problem}: {detail}")
        unreachable.problem = outcome.problem
        return unreachable
    status = outcome.status
    if isinstance(exchange.error, AnswerTooLargeError):
        setting = limits.setting("MAX_ANSWER_BYTES")
        message = f"HTTP {status}: {exchange.error} ({setting}={limits.max_answer_bytes}); not read further"
        return ResponseTooLargeError(system, method, shown_path, message, status=status)
    if isinstance(exchange.error, AnswerError):
        return MalformedResponseError(
            system, method, shown_path, f"HTTP {status}: {exchange.error}", status=status
        )
    if verdict is Verdict.UNCONFIRMED:
        unconfirmed = UnconfirmedError(
            system,
            method,
            shown_path,
            f"HTTP {status}; not resent: the server may have acted on it",
            status=status,
        )
        unconfirmed.problem = f"HTTP {status}"
        return unconfirmed
    return TransientApiError(
        system, method, shown_path, f"HTTP {status}", status=status, retry_after=outcome.retry_after
    )


def _unreachable_error(
    unreachable: UnreachableError, base_url: str, url_variable: str | None
) -> UnreachableError:
    """The error for a server that no attempt reached, naming its URL and the setting behind it."""
    check = f"; check {url_variable}" if url_variable else ""
    reached = unreachable.problem not in NOT_SENT_PROBLEMS
    verb = "did not answer" if reached else "could not be reached"
    return UnreachableError(
        unreachable.system,
        unreachable.method,
        unreachable.path,
        f"{unreachable.system} {verb} at {redact_url_password(base_url)} ({unreachable.problem}){check}",
    )
