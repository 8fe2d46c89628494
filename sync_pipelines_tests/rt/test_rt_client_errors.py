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
