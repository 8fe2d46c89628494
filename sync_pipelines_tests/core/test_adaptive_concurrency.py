"""The shared HTTP layer's adaptive limit against a stand-in with few workers, and resending after a timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from devkit.sandbox.server import Knobs, SandboxApp, ThreadedSandbox
from sync_pipelines.core.errors import UnconfirmedError, UnreachableError
from sync_pipelines.core.http import ApiClient, ApiLimits

pytestmark = pytest.mark.integration


class ItemsSandbox(SandboxApp):
    """GET and PUT of items, with the generic server knobs (workers, cost per request, faults)."""

    system = "items"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/item/{id}", self.item)
        router.add_put("/api/item/{id}", self.item)

    def state_snapshot(self) -> dict[str, Any]:
        return {}

    def apply_state_change(self, change: dict[str, Any]) -> None:
        pass

    async def item(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"]})


def client(url: str, **limits: Any) -> ApiClient:
    settings = {
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "timeout_seconds": 5.0,
        **limits,
    }
    return ApiClient("Items", url, ApiLimits(**settings), credential_variables="ITEMS_TOKEN")


async def fetch(api: ApiClient, count: int) -> None:
    async with api:
        await asyncio.gather(*(api.request("GET", f"api/item/{number}") for number in range(count)))


def test_the_limit_settles_a_few_above_the_workers_without_timeouts() -> None:
    knobs = Knobs(workers=2, request_cost_ms=15, close_connection=True, seed=1)
    with ThreadedSandbox(ItemsSandbox(knobs)) as server:
        api = client(server.url, max_concurrency=16)
        asyncio.run(fetch(api, 300))
        summary = api.concurrency.summary()
        stats = server.stats()
    assert api.requests_made == 300 and api.retries == 0
    assert summary["mode"] == "adaptive" and summary["ceiling"] == 16
    # Every worker busy, a short queue (latency up to twice the lowest is no queue), well below the ceiling.
    assert 2 <= summary["limit"] <= 12, summary
    assert not {"timeout", "overload", "dropped"} & set(summary["signals"]), summary
    assert stats["statuses"] == {"200": 300}
    assert stats["max_queued"] < 16  # the server never held the ceiling's queue


def test_fixed_mode_keeps_the_ceiling_in_flight() -> None:
    knobs = Knobs(workers=2, request_cost_ms=5, seed=1)
    with ThreadedSandbox(ItemsSandbox(knobs)) as server:
        api = client(server.url, max_concurrency=6, adaptive_concurrency=False)
        asyncio.run(fetch(api, 60))
        stats = server.stats()
    assert api.concurrency.summary()["limit"] == 6
    assert stats["max_in_flight"] == 6


def test_a_put_that_timed_out_is_not_resent_but_a_get_is() -> None:
    knobs = Knobs(slow_rate=1.0, slow_seconds=1.5, seed=1)
    with ThreadedSandbox(ItemsSandbox(knobs)) as server:

        async def scenario() -> tuple[BaseException, BaseException]:
            async with client(server.url, timeout_seconds=0.3, max_attempts=3) as api:
                put = await asyncio.gather(
                    api.request("PUT", "api/item/1", json_body={}), return_exceptions=True
                )
                get = await asyncio.gather(api.request("GET", "api/item/1"), return_exceptions=True)
                return put[0], get[0]

        put_error, get_error = asyncio.run(scenario())
        counted = server.stats()["requests"]
    assert isinstance(put_error, UnconfirmedError), put_error
    assert "not resent" in str(put_error)
    assert counted["PUT /api/item/{id}"] == 1
    assert isinstance(get_error, UnreachableError) and not isinstance(get_error, UnconfirmedError)
    assert counted["GET /api/item/{id}"] == 3
