"""Authentication strategies through ``ApiClient`` over real HTTP on loopback, against a tiny aiohttp server.

The server issues numbered tokens and counts every call, so the tests can prove what the HTTP layer promises:
concurrent 401s share one renewal and each refused request is resent once; a second refusal is the strategy's
error; a spent refresh token means logging in again; a rotated token is stored before it is used.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web

from sync_pipelines.core.auth import (
    Auth,
    LoginAuth,
    Refusal,
    RotatingRefreshAuth,
    StaticToken,
    Tokens,
    UnauthorizedError,
)
from sync_pipelines.core.http import ApiClient, ApiLimits

pytestmark = pytest.mark.integration

PASSWORD = "pw-correct-horse-battery"
T = TypeVar("T")


class TokenServer:
    """``POST /login`` (password), ``POST /refresh`` (rotating), ``GET /item/{id}`` (bearer, slow enough to overlap)."""

    def __init__(self) -> None:
        self.issued = 0
        self.access: str | None = None
        self.refresh: str | None = None
        self.refuse_everything = False
        self.refresh_spent = False
        self.calls: Counter[str] = Counter()
        self.events: list[tuple[str, str]] = []
        self.url = ""

    def issue(self) -> dict[str, str]:
        self.issued += 1
        self.access, self.refresh = f"access-{self.issued:04d}", f"refresh-{self.issued:04d}"
        return {"access": self.access, "refresh": self.refresh}

    async def login(self, request: web.Request) -> web.Response:
        self.calls["login"] += 1
        body = await request.json()
        if body.get("password") != PASSWORD:
            return web.json_response({"detail": "bad credentials"}, status=401)
        return web.json_response(self.issue())

    async def refresh_grant(self, request: web.Request) -> web.Response:
        self.calls["refresh"] += 1
        body = await request.json()
        if self.refresh_spent or body.get("refresh") != self.refresh:
            return web.json_response({"detail": "token not valid"}, status=401)
        return web.json_response(self.issue())

    async def item(self, request: web.Request) -> web.Response:
        item = request.match_info["id"]
        self.calls[f"item/{item}"] += 1
        token = request.headers.get("Authorization", "")
        self.events.append(("get", token))
        await asyncio.sleep(0.05)
        if self.refuse_everything or token != f"Bearer {self.access}":
            return web.json_response({"detail": "expired"}, status=401)
        return web.json_response({"id": item})

    def expire(self) -> None:
        self.access = None


async def serving(action: Callable[[TokenServer], Awaitable[T]]) -> T:
    server = TokenServer()
    app = web.Application()
    app.router.add_post("/login", server.login)
    app.router.add_post("/refresh", server.refresh_grant)
    app.router.add_get("/item/{id}", server.item)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}/"
    try:
        return await action(server)
    finally:
        await runner.cleanup()


def api_for(server: TokenServer, auth: Auth | None = None, concurrency: int = 32) -> ApiClient:
    limits = ApiLimits(max_concurrency=concurrency, timeout_seconds=5, max_attempts=1)
    return ApiClient(
        "Test", server.url, limits, "TEST_USERNAME / TEST_PASSWORD", secrets=[PASSWORD], auth=auth
    )


async def password_login(api: ApiClient) -> Tokens:
    response = await api.send("POST", "login", json_body={"username": "me", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    return Tokens(body["access"], body["refresh"])


async def refresh_grant(api: ApiClient, refresh_token: str) -> Tokens | None:
    response = await api.send("POST", "refresh", json_body={"refresh": refresh_token})
    if response.status_code != 200:
        return None
    body = response.json()
    return Tokens(body["access"], body["refresh"])


class Refused(Exception):
    """A strategy's own error for a refusal renewing did not fix."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(f"{refusal.method} {refusal.path}: {refusal.status}, renewed={refusal.renewed}")


def test_concurrent_401s_renew_once_and_resend_each_request_once() -> None:
    async def run(server: TokenServer) -> tuple[LoginAuth, list[Any], Counter[str]]:
        auth = LoginAuth(password_login, refresh_grant)
        async with api_for(server, auth) as api:
            await auth.login(api)
            server.expire()
            bodies = await asyncio.gather(*(api.request_json("GET", f"item/{n}") for n in range(20)))
        return auth, bodies, server.calls

    auth, bodies, calls = asyncio.run(serving(run))
    assert [body for _, body in bodies] == [{"id": str(n)} for n in range(20)]
    assert (calls["login"], calls["refresh"]) == (1, 1)
    assert (auth.logins, auth.refreshes, auth.generation) == (1, 1, 2)
    assert all(calls[f"item/{n}"] == 2 for n in range(20))  # refused once, resent once


def test_a_second_401_raises_the_strategys_error() -> None:
    async def run(server: TokenServer) -> tuple[Refused, Counter[str]]:
        auth = LoginAuth(password_login, refresh_grant, refused=Refused)
        async with api_for(server, auth) as api:
            await auth.login(api)
            server.refuse_everything = True
            with pytest.raises(Refused) as raised:
                await api.request("GET", "item/1")
        return raised.value, server.calls

    error, calls = asyncio.run(serving(run))
    assert error.refusal.renewed and error.refusal.status == 401 and error.refusal.path == "item/1"
    assert calls["item/1"] == 2 and calls["refresh"] == 1


def test_the_default_refusal_names_the_variables_not_the_token() -> None:
    async def run(server: TokenServer) -> UnauthorizedError:
        auth = LoginAuth(password_login, refresh_grant)
        async with api_for(server, auth) as api:
            await auth.login(api)
            server.refuse_everything = True
            with pytest.raises(UnauthorizedError) as raised:
                await api.request("GET", "item/1")
        return raised.value

    error = asyncio.run(serving(run))
    assert "TEST_USERNAME / TEST_PASSWORD" in str(error) and "access-" not in str(error)


def test_a_spent_refresh_token_means_logging_in_again() -> None:
    async def run(server: TokenServer) -> tuple[LoginAuth, Counter[str]]:
        auth = LoginAuth(password_login, refresh_grant)
        async with api_for(server, auth) as api:
            await auth.login(api)
            server.expire()
            server.refresh_spent = True
            assert (await api.request("GET", "item/7")).status_code == 200
        return auth, server.calls

    auth, calls = asyncio.run(serving(run))
    assert (calls["login"], calls["refresh"]) == (2, 1)
    assert (auth.logins, auth.refreshes) == (2, 0)


def test_a_first_request_logs_in_by_itself_and_learnt_tokens_are_redacted() -> None:
    async def run(server: TokenServer) -> tuple[ApiClient, str | None]:
        auth = LoginAuth(password_login)
        async with api_for(server, auth) as api:
            await api.request("GET", "item/1")
        return api, server.access

    api, access = asyncio.run(serving(run))
    assert access is not None and api.redact(f"token {access}") == "token ***"


def test_a_renewal_budget_gives_up_without_renewing_again() -> None:
    async def run(server: TokenServer) -> tuple[Refused, Counter[str]]:
        auth = LoginAuth(password_login, refresh_grant, max_renewals=1, refused=Refused)
        async with api_for(server, auth) as api:
            await auth.login(api)
            server.expire()
            await api.request("GET", "item/1")  # renewal 1 of 1
            server.expire()
            with pytest.raises(Refused) as raised:
                await api.request("GET", "item/2")
        return raised.value, server.calls

    error, calls = asyncio.run(serving(run))
    assert not error.refusal.renewed
    assert calls["refresh"] == 1 and calls["item/2"] == 1


def test_a_static_token_is_sent_and_a_refusal_is_final() -> None:
    async def run(server: TokenServer) -> tuple[UnauthorizedError, list[tuple[str, str]], Counter[str]]:
        async with api_for(server, StaticToken("static-secret-token", scheme="token")) as api:
            with pytest.raises(UnauthorizedError) as raised:
                await api.request("GET", "item/1")
        return raised.value, server.events, server.calls

    error, events, calls = asyncio.run(serving(run))
    assert events == [("get", "token static-secret-token")]
    assert calls["item/1"] == 1 and calls["login"] == calls["refresh"] == 0
    assert error.status == 401


def test_send_returns_a_refusal_as_an_answer() -> None:
    async def run(server: TokenServer) -> int:
        async with api_for(server) as api:
            response = await api.send("POST", "login", json_body={"username": "me", "password": "wrong"})
            return response.status_code

    assert asyncio.run(serving(run)) == 401


# -- rotating refresh tokens, per request ------------------------------------------------------------------------
def test_a_rotated_token_is_stored_before_the_access_token_is_used() -> None:
    async def run(server: TokenServer) -> tuple[RotatingRefreshAuth, list[tuple[str, str]]]:
        server.issue()  # the account's stored refresh token: refresh-0001
        server.expire()

        async def store(tokens: Tokens) -> None:
            server.events.append(("store", str(tokens.refresh_token)))

        account = RotatingRefreshAuth("refresh-0001", _grant, store)
        async with api_for(server) as api:  # the client's own auth is none: the account's is per request
            assert (await api.request("GET", "item/1", auth=account)).status_code == 200
            server.expire()
            assert (await api.request("GET", "item/2", auth=account)).status_code == 200
        return account, server.events

    account, events = asyncio.run(serving(run))
    assert events == [
        ("store", "refresh-0002"),  # committed before access-0002 is sent anywhere
        ("get", "Bearer access-0002"),
        ("get", "Bearer access-0002"),  # expired meanwhile: refused
        ("store", "refresh-0003"),
        ("get", "Bearer access-0003"),  # resent once with the renewed token
    ]
    assert (account.rotations, account.refresh_token, account.renewals) == (2, "refresh-0003", 1)


def test_a_failed_store_means_the_access_token_is_never_sent() -> None:
    async def run(server: TokenServer) -> list[tuple[str, str]]:
        server.issue()

        async def store(tokens: Tokens) -> None:
            raise OSError("database down")

        account = RotatingRefreshAuth("refresh-0001", _grant, store)
        async with api_for(server) as api:
            with pytest.raises(OSError):
                await api.request("GET", "item/1", auth=account)
        return server.events

    assert asyncio.run(serving(run)) == []


def test_an_account_without_a_refresh_token_is_the_missing_error() -> None:
    class NeedsLogin(Exception):
        pass

    async def run(server: TokenServer) -> Counter[str]:
        account = RotatingRefreshAuth(None, _grant, _never_store, missing=NeedsLogin)
        async with api_for(server) as api:
            with pytest.raises(NeedsLogin):
                await api.request("GET", "item/1", auth=account)
        return server.calls

    assert sum(asyncio.run(serving(run)).values()) == 0


async def _grant(api: ApiClient, refresh_token: str) -> Tokens:
    tokens = await refresh_grant(api, refresh_token)
    assert tokens is not None
    return tokens


async def _never_store(tokens: Tokens) -> None:
    raise AssertionError("nothing to store")
