"""RT's client puts RT's words into its errors only through ``ApiClient.excerpt`` (``defs/rt/client.py``)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from sync_pipelines.core.http import ApiClient, ApiLimits
from sync_pipelines.defs.rt.client import RequestTrackerClient, RtRecordError

pytestmark = pytest.mark.integration

TOKEN = "rt-token-5c1e88a0-secret"


def test_rt_answers_reach_the_client_errors_only_through_excerpt() -> None:
    """A 404 whose 5 kB message quotes the token, a PUT answered with that instead of a message list: RT's answer
    in each ``RtRecordError`` is masked, on one line and cut short."""
    noise = f"{TOKEN}\n" + "z" * 5000

    async def user(request: web.Request) -> web.Response:
        if request.method == "PUT":
            return web.json_response({"message": noise})
        return web.json_response({"message": noise}, status=404)

    async def scenario() -> list[str]:
        app = web.Application()
        app.router.add_route("*", "/REST/2.0/user/{id}", user)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        messages = []
        try:
            limits = ApiLimits(max_attempts=1)
            async with ApiClient(
                "RT", f"http://127.0.0.1:{port}/REST/2.0/", limits, "RT_TOKEN", secrets=[TOKEN]
            ) as api:
                rt = RequestTrackerClient(api)
                for call in (rt.user_record("1", ["Grade"]), rt.set_user_fields("1", {"Grade": "8"})):
                    with pytest.raises(RtRecordError) as raised:
                        await call
                    messages.append(str(raised.value))
        finally:
            await runner.cleanup()
        return messages

    messages = asyncio.run(scenario())
    assert len(messages) == 2
    for message in messages:
        assert TOKEN not in message and "***" in message
        assert "\n" not in message and len(message) < 400


def test_ids_and_counts_of_any_length_or_shape_are_measured_before_they_are_read() -> None:
    """A users page whose ids and page count are 10,000 digits, a superscript digit or text, and a field listing
    whose MaxValues is 5,000 digits: those entries are passed over (the count read as unknown, MaxValues as 1),
    never handed to ``int()``; the usable ones are read."""
    huge = "1" * 10_000
    page = {
        "page": 1,
        "pages": huge,
        "per_page": 100,
        "items": [{"id": huge}, {"id": "²"}, {"id": "x"}, {"id": 5, "CustomFields": []}, {"id": " 007 "}],
    }
    listing = {
        "total": 1,
        "items": [{"id": "3", "Name": "Grade", "Disabled": "0", "Type": "Select", "MaxValues": "9" * 5000}],
    }

    async def users(request: web.Request) -> web.Response:
        return web.json_response(page)

    async def customfields(request: web.Request) -> web.Response:
        return web.json_response(listing)

    async def scenario():
        app = web.Application()
        app.router.add_get("/REST/2.0/users", users)
        app.router.add_post("/REST/2.0/customfields", customfields)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with ApiClient(
                "RT", f"http://127.0.0.1:{port}/REST/2.0/", ApiLimits(max_attempts=1), "RT_TOKEN"
            ) as api:
                rt = RequestTrackerClient(api)
                return await rt.users_page(1, ["Grade"]), await rt.user_custom_fields()
        finally:
            await runner.cleanup()

    read, fields = asyncio.run(scenario())
    assert sorted(read.users) == ["5", "7"] and read.last_id == 7
    assert read.pages is None
    [field] = fields.fields
    assert (field.name, field.type, field.max_values) == ("Grade", "Select", 1)
