"""The shared HTTP layer against a real sandbox server with injected faults."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest
from aiohttp import web

from devkit.sandbox.server import Knobs, SandboxApp, ThreadedSandbox
from sync_pipelines.core.errors import (
    AuthenticationError,
    MalformedResponseError,
    TransientApiError,
    UnconfirmedError,
)
from sync_pipelines.core.http import ApiClient, ApiLimits
from sync_pipelines.core.retry import parse_retry_after

pytestmark = pytest.mark.integration

TOKEN = "tok-3f9a1c77-secret-value"


class EchoSandbox(SandboxApp):
    """The smallest sandbox: an authenticated JSON echo, so the layer is tested apart from any real API."""

    system = "echo"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/item/{id}", self.item)

    def state_snapshot(self) -> dict[str, Any]:
        return {}

    def apply_state_change(self, change: dict[str, Any]) -> None:
        pass

    async def item(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"token {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        item = request.match_info["id"]
        if item == "missing":
            return web.json_response({"message": "Resource does not exist"}, status=404)
        return web.json_response({"id": item})


@pytest.fixture
def echo() -> ThreadedSandbox:
    with ThreadedSandbox(EchoSandbox(Knobs(seed=1))) as handle:
        yield handle


def client(url: str, **limits: Any) -> ApiClient:
    defaults = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05, "timeout_seconds": 2.0}
    return ApiClient(
        "Echo",
        url,
        ApiLimits(**{**defaults, **limits}),
        credential_variables="ECHO_TOKEN",
        secrets=[TOKEN],
        headers={"Authorization": f"token {TOKEN}"},
    )


async def fetch_many(api: ApiClient, count: int) -> list[Any]:
    async with api:
        return await asyncio.gather(*(api.request_json("GET", f"api/item/{n}") for n in range(count)))


def test_retries_injected_server_errors_until_success(echo: ThreadedSandbox) -> None:
    echo.set_knobs(error_rate=0.3, seed=3)
    api = client(echo.url, max_attempts=10)
    results = asyncio.run(fetch_many(api, 60))
    assert [body["id"] for _, body in results] == [str(n) for n in range(60)]
    statuses = echo.stats()["statuses"]
    injected = sum(statuses.get(code, 0) for code in ("500", "502", "503"))
    assert injected > 0
    assert api.retries == injected
    assert api.requests_made == 60 + injected


def test_retries_dropped_connections_and_timeouts(echo: ThreadedSandbox) -> None:
    echo.set_knobs(drop_rate=0.1, slow_rate=0.05, slow_seconds=1.5, seed=5)
    api = client(echo.url, max_attempts=10, timeout_seconds=0.5)
    results = asyncio.run(fetch_many(api, 40))
    assert len(results) == 40
    assert api.retries >= 1


def test_a_request_may_wait_longer_than_the_client_timeout(echo: ThreadedSandbox) -> None:
    """A slow answer is given up on by default, but waited for when the request asks for a longer timeout."""
    echo.set_knobs(slow_rate=1.0, slow_seconds=1.0)

    async def go() -> tuple[str, int]:
        async with client(echo.url, max_attempts=1, timeout_seconds=0.3) as api:
            with pytest.raises(TransientApiError) as raised:
                await api.request("GET", "api/item/1")
            response = await api.request("GET", "api/item/2", timeout_seconds=5)
            return str(raised.value), response.status_code

    default_failure, status = asyncio.run(go())
    assert "(timed out)" in default_failure and "refused" not in default_failure
    assert status == 200


def test_a_refused_connection_is_called_refused_and_names_the_url_setting() -> None:
    from devkit.sandbox.server import free_port

    port = free_port()  # nothing listens there

    async def go() -> str:
        limits = ApiLimits(max_attempts=2, backoff_initial_seconds=0.01, timeout_seconds=2)
        async with ApiClient(
            "RT", f"http://127.0.0.1:{port}/REST/2.0/", limits, "RT_TOKEN", url_variable="RT_URL"
        ) as api:
            with pytest.raises(TransientApiError) as raised:
                await api.request("GET", "user/1")
            return str(raised.value)

    assert asyncio.run(go()) == (
        f"RT GET user/1: RT could not be reached at http://127.0.0.1:{port}/REST/2.0/ (connection refused); "
        "check RT_URL"
    )


def test_retry_after_is_obeyed(echo: ThreadedSandbox) -> None:
    echo.set_knobs(burst_429=1, retry_after_seconds=1)
    api = client(echo.url)
    started = time.monotonic()
    results = asyncio.run(fetch_many(api, 1))
    assert results[0][1] == {"id": "0"}
    assert time.monotonic() - started >= 0.95
    assert echo.stats()["statuses"]["429"] == 1


def test_overload_slows_every_request_down(echo: ThreadedSandbox) -> None:
    """After a 429 the client pauses all requests for Retry-After instead of hammering the server."""
    echo.set_knobs(burst_429=3, retry_after_seconds=0.5)
    api = client(echo.url, max_concurrency=4)
    started = time.monotonic()
    asyncio.run(fetch_many(api, 20))
    assert time.monotonic() - started >= 0.45
    assert echo.stats()["total_requests"] <= 20 + 3 + 4


def test_unauthorized_stops_without_retries_and_names_the_variable(echo: ThreadedSandbox) -> None:
    api = ApiClient(
        "Echo",
        echo.url,
        ApiLimits(),
        "ECHO_TOKEN",
        secrets=["wrong-token-value"],
        headers={"Authorization": "token wrong-token-value"},
    )
    with pytest.raises(AuthenticationError) as raised:
        asyncio.run(fetch_many(api, 1))
    assert "ECHO_TOKEN" in str(raised.value)
    assert "wrong-token-value" not in str(raised.value)
    assert echo.requests("GET /api/item/{id}") == 1


def test_not_found_is_returned_not_retried(echo: ThreadedSandbox) -> None:
    async def go() -> int:
        async with client(echo.url) as api:
            response = await api.request("GET", "api/item/missing")
            return response.status_code

    assert asyncio.run(go()) == 404
    assert echo.requests("GET /api/item/{id}") == 1


def test_gives_up_after_max_attempts(echo: ThreadedSandbox) -> None:
    echo.set_knobs(error_rate=1.0)
    with pytest.raises(TransientApiError):
        asyncio.run(fetch_many(client(echo.url, max_attempts=3), 1))
    assert echo.requests("GET /api/item/{id}") == 3


def test_html_answer_is_a_malformed_response(echo: ThreadedSandbox) -> None:
    echo.set_knobs(malformed_rate=1.0, seed=2)
    with pytest.raises(MalformedResponseError, match="not JSON"):
        asyncio.run(fetch_many(client(echo.url), 1))


def test_concurrency_is_bounded(echo: ThreadedSandbox) -> None:
    echo.set_knobs(latency_ms=20)
    asyncio.run(fetch_many(client(echo.url, max_concurrency=3), 30))
    assert echo.stats()["max_in_flight"] == 3


def test_requests_per_second_is_capped(echo: ThreadedSandbox) -> None:
    started = time.monotonic()
    asyncio.run(fetch_many(client(echo.url, requests_per_second=5), 6))
    # One call every 0.2 s: six calls need at least a second.
    assert time.monotonic() - started >= 0.95


def test_secrets_never_reach_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """A secret that ends up in a request path (a token in a URL) is masked in the error and the retry logs."""
    caplog.set_level(logging.DEBUG)
    api = ApiClient(
        "Echo",
        "http://127.0.0.1:1/",
        ApiLimits(max_attempts=3, backoff_initial_seconds=0.01),
        "ECHO_TOKEN",
        secrets=[TOKEN],
        headers={"Authorization": f"token {TOKEN}"},
    )

    async def go() -> None:
        async with api:
            await api.request("GET", f"api/item/{TOKEN}")

    with pytest.raises(TransientApiError) as raised:
        asyncio.run(go())
    assert "***" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert caplog.records, "retries are logged"
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("100000") == 120.0


class DropsSecondRequestOfAConnection:
    """A raw HTTP/1.1 server that answers the first request of each connection (keeping it alive) and closes the
    connection on the second without answering: a kept-alive connection the server has given up on."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                if length:
                    await reader.readexactly(length)
                self.requests.append(head.split(b" ", 1)[0].decode())
                served += 1
                if served > 1:
                    break
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_a_kept_alive_connection_the_server_closed_is_resent_at_once_only_when_safe() -> None:
    """aiohttp's own resend is off for every request (it would resend PUTs): a GET that met a connection the server
    had closed is sent again at once on a new one, not counted as a failed attempt; a PUT is not resent."""
    server = DropsSecondRequestOfAConnection()

    async def scenario() -> tuple[list[Any], ApiClient, BaseException | None]:
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        api = client(f"http://127.0.0.1:{port}/", max_attempts=3)
        failure: BaseException | None = None
        async with listening, api:
            answers = [
                await api.request_json("GET", "api/item/1"),
                await api.request_json("GET", "api/item/2"),
            ]
            try:
                await api.request("PUT", "api/item/3", json_body={"a": 1})
            except UnconfirmedError as error:
                failure = error
        return answers, api, failure

    answers, api, failure = asyncio.run(scenario())
    assert [body for _, body in answers] == [{"ok": True}, {"ok": True}]
    assert api.retries == 0
    assert isinstance(failure, UnconfirmedError)
    # GET (answered), GET (dropped), the GET again on a new connection (answered), the PUT on that kept-alive
    # connection (dropped, and resent by no one).
    assert server.requests == ["GET", "GET", "GET", "PUT"]


def test_an_error_answer_repeating_what_was_sent_reaches_no_caller_unmasked(echo: ThreadedSandbox) -> None:
    """A 400 that repeats the request (query, form, JSON body) and names the person: the body every caller
    reads, and so every message built from it, holds neither the e-mail nor the name sent."""
    email, name = "Quirin.LEAKPROBE@Ddt-Probe.gouv.fr", "Quirinella Leakprobe-Žďárská"
    echo.set_knobs(echo_errors_for=["leakprobe"], echo_text=f"for {email.lower()}")

    api = client(echo.url)

    async def go() -> list[httpx.Response]:
        async with api:
            return [
                await api.request("GET", "api/item/1", params={"email": email}),
                await api.send("POST", "api/login", form={"username": email, "name": name}),
                await api.request(
                    "PUT", "api/item/1", json_body={"CustomFields": {"Name": name, "Mail": email}}
                ),
            ]

    answers = asyncio.run(go())
    # Shown as its status and the message its JSON names, bounded.
    assert api.error_message(answers[0]) == "HTTP 400: Invalid request for ***: /api/item/1?email=***"
    assert len(api.error_message(answers[2])) <= len("HTTP 400: ") + 200
    assert [answer.status_code for answer in answers] == [400, 400, 400]
    for answer in answers:
        text = answer.text.lower()
        assert "leakprobe" not in text and "%40ddt" not in text and "quirinella" not in text, text
        assert "***" in answer.json()["message"]
