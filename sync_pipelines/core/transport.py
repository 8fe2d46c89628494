"""Sending one request once and reading its answer: the bottom layer of the HTTP client.

* ``httpx.AsyncClient`` on the aiohttp transport (``httpx-aiohttp``): the httpx API with a fraction of the
  default transport's CPU per request, which is what lets one core drive hundreds of requests per second.
* Nothing is sent twice here. aiohttp's own resend of a request whose kept-alive connection broke (it resends
  PUTs, which HTTP calls idempotent) is switched off: what is sent again is the retry policy's word alone
  (``core.retry``).
* A whole-request deadline on top of httpx's per-phase timeouts: a server that trickles bytes cannot hold a slot
  forever.
* Every answer's body is streamed and bounded (``core.answers``): at most ``max_answer_bytes`` reach memory,
  counted after decompression, so a huge answer or a gzip bomb is that one request's failure, not the run's
  memory. An answer the policy will retry (429, 5xx) is not read, only drained a little so its connection can
  serve the next request.
* An error answer's body (any status from 400; its first ``ERROR_BODY_BYTES``) is masked as it is read, before
  any caller sees it (``mask_error_answer``): every e-mail address, and every value the request sent (the e-mail
  a lookup asked about, a name), whatever its case. A server that repeats what it was sent, as many do in a 400, cannot put
  personal data into an error message, so no client has to remember to mask it.

``send`` never raises for what the server or the network did: it returns an ``Exchange`` (an answer read, or
why there is none to use), which the client turns into the policy's ``Outcome``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qsl

import httpx

from sync_pipelines.core.answers import (
    ACCEPT_ENCODING,
    AnswerError,
    AnswerTooLargeError,
    BodyReader,
    describe_bytes,
)
from sync_pipelines.core.json_value import JsonInput, JsonValue
from sync_pipelines.core.limits import ApiLimits
from sync_pipelines.core.redaction import mask_personal

if TYPE_CHECKING:
    import aiohttp

# What a request's query may carry (httpx's own primitive values).
QueryParams = Mapping[str, str | int | float | bool | None]
RETRY_BODY_BYTES = 64 * 1024
# An error answer (400 and up) is kept to this many bytes: it is read for its message, and masking it
# (``mask_error_answer``) costs time in proportion to its length.
ERROR_BODY_BYTES = 64 * 1024


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


def server_closed_connection(error: BaseException) -> bool:
    """Whether ``error`` is aiohttp's "Server disconnected": the connection was closed before any answer came."""
    import aiohttp

    return any(isinstance(cause, aiohttp.ServerDisconnectedError) for cause in error_causes(error))


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


def _strings(value: JsonValue) -> list[str]:
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

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise asyncio.TimeoutError
        return False


@functools.cache
def verifying_context() -> ssl.SSLContext:
    """The TLS context every client of this process verifies servers with: certifi's authorities, not the
    environment's. Made once: making one loads the authorities' file (about 60 ms of CPU), and a run makes a client
    per system and per step; a context is safe to share between connections and threads."""
    return httpx.create_ssl_context(trust_env=False)


def _session_without_resends(pool: httpx.Limits) -> Callable[[], aiohttp.ClientSession]:
    """aiohttp's session for the transport, without its own resend of a request whose kept-alive connection
    broke (it resends PUT and DELETE too, which HTTP calls idempotent, but which the server may have applied):
    the retry policy alone decides what is sent twice."""

    def create() -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            keepalive_timeout=pool.keepalive_expiry,
            limit=pool.max_connections or 100,
            ssl=verifying_context(),
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


class Call(NamedTuple):
    """One request as the caller asked for it, built again as it is for each attempt."""

    method: str
    path: str
    params: QueryParams | None
    json_body: JsonInput
    form: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    timeout: float | None  # None: the client's
    # Whether it may be sent again once it was sent and no answer came (``RetryPolicy.resends_after_timeout``).
    resend_after_timeout: bool = True


@dataclass(frozen=True, slots=True)
class Exchange:
    """What sending a request once came to: the answer read whole (``response``), or why there is none to use
    (``error``: the transport's, or the ``AnswerError`` of a body that could not be read, with its ``status``).
    ``answered``: an answer had begun (its status and headers came) before the error."""

    response: httpx.Response | None
    status: int | None = None
    error: BaseException | None = None
    answered: bool = False


class Transport:
    """One system's pool of connections: ``build`` a request, ``send`` it once. Open with ``async with``."""

    def __init__(self, base_url: str, limits: ApiLimits, unread: Callable[[int], bool]) -> None:
        """``unread``: the statuses whose answers are not read (those the retry policy tries again)."""
        self.base_url = base_url
        self.limits = limits
        self._unread = unread
        self._client: httpx.AsyncClient | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    async def __aenter__(self) -> Transport:
        pool = httpx.Limits(
            max_connections=self.limits.max_concurrency,
            max_keepalive_connections=self.limits.max_concurrency,
        )
        # Imported here, not at the top: aiohttp costs a code location's start-up ~0.15 s, and only a step that
        # sends requests needs it.
        from httpx_aiohttp import AiohttpTransport

        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            transport=AiohttpTransport(
                verify=verifying_context(),
                limits=pool,
                trust_env=False,
                client=_session_without_resends(pool),
            ),
            timeout=httpx.Timeout(self.limits.timeout_seconds),
            # Only what ``BodyReader`` decompresses in bounded steps (not br or zstd, were their packages installed).
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _opened(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("ApiClient used outside 'async with'")
        return self._client

    def build(self, call: Call, headers: Mapping[str, str]) -> httpx.Request:
        """``call`` as it will be sent, with ``headers`` under its own."""
        return self._opened().build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json_body,
            data=call.form,
            headers={**headers, **(call.headers or {})},
            timeout=httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout,
        )

    async def send(self, request: httpx.Request, timeout: float | None) -> Exchange:
        """Send ``request`` once and read its answer whole (``timeout`` None: the client's)."""
        client = self._opened()
        streamed: httpx.Response | None = None
        try:
            async with _deadline((timeout or self.limits.timeout_seconds) + 1):
                streamed = await client.send(request, stream=True)
                try:
                    return Exchange(await self._read(streamed, request), streamed.status_code)
                finally:
                    await streamed.aclose()
        except (httpx.TransportError, asyncio.TimeoutError, AnswerError) as error:
            status = None if streamed is None else streamed.status_code
            return Exchange(None, status, error, answered=streamed is not None)

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
        if self._unread(streamed.status_code):
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
