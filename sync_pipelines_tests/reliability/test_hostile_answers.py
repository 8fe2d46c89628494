"""The HTTP layer and the two record-by-record readers (Portail DF lookups, Bakaláři student accounts) against a
hostile server on loopback (``devkit.hostile``): huge answers, a gzip bomb, JSON nested 100,000 deep, a number
of 10,000 digits, ``Retry-After: nan``, 429 forever, and a 400 that echoes the ``Authorization`` header.

What must hold: one such answer is that record's failure, never the run's end; no answer costs more memory than
the limit; a system that refuses everything stops the run at once, naming itself and what it answered; and a run
past its deadline stops sending, naming the setting."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.hostile import HostileServer
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.core.auth import LoginAuth, Tokens
from sync_pipelines.core.errors import (
    DeadlineExceededError,
    ResponseTooLargeError,
    SystemRefusingError,
    TransientApiError,
)
from sync_pipelines.core.http import ApiClient, ApiLimits, run_started
from sync_pipelines.defs.bakalari.accounts import READ_FAILED, read_student
from sync_pipelines.defs.bakalari.client import BakalariClient
from sync_pipelines.defs.bakalari.edurpg import StudentAccount
from sync_pipelines.defs.user_kinds.client import CREDENTIAL_VARIABLES, PortailDfClient
from sync_pipelines.defs.user_kinds.database import ZlvUser
from sync_pipelines.defs.user_kinds.lookups import look_up_users

pytestmark = pytest.mark.integration

ACCESS_TOKEN = "eyJhbGciOiJIUzI1NiJ9.portaildf-access-token-4b1d9e7c0a"
FAST = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, "timeout_seconds": 10.0}


@pytest.fixture(scope="module")
def hostile() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(HostileServer(retry_after="0")) as handle:
        yield handle


def portaildf(url: str, **limits: Any) -> PortailDfClient:
    async def login(api: ApiClient) -> Tokens:
        return Tokens(ACCESS_TOKEN)

    auth = LoginAuth(login)
    api = ApiClient(
        "Portail DF",
        url,
        ApiLimits(**{**FAST, "settings_prefix": "PORTAILDF", **limits}),
        CREDENTIAL_VARIABLES,
        auth=auth,
        url_variable="PORTAILDF_API_URL",
    )
    return PortailDfClient(api, auth)


def users(*emails: str) -> list[ZlvUser]:
    return [ZlvUser(f"u{n}", email, None) for n, email in enumerate(emails)]


def lookups(client: PortailDfClient, people: list[ZlvUser]) -> Any:
    async def go() -> Any:
        async with client.api:
            await client.login()
            return await look_up_users(client, people)

    return asyncio.run(go())


# -- defect 2: a malformed answer is that record's failure -------------------------------------------------------
def test_nested_json_and_a_huge_number_fail_their_users_only(hostile: ThreadedSandbox) -> None:
    """Before: ``RecursionError`` / ``ValueError`` escaped ``parse_json`` and ended the lookups (and the run)."""
    people = users("anna@x.fr", "nested@x.fr", "number@x.fr", "bruno@x.fr")
    results = lookups(portaildf(f"{hostile.url}/by-email/"), people)
    assert {key: outcome.kind for key, outcome in results.outcomes.items()} == {
        "u0": "prestataire",
        "u3": "prestataire",
    }
    assert set(results.failures) == {"u1", "u2"}
    assert "nested 100000 levels deep" in results.failures["u1"]
    assert "not usable JSON" in results.failures["u2"] and "4300 digits" in results.failures["u2"]


def _access_token() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'exp': int(time.time()) + 3600, 'sub': 'S1'})}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("nested", "nested 100000 levels deep"),
        ("big-number", "4300 digits"),
        ("huge", "BAKALARI_MAX_ANSWER_BYTES"),
        ("gzip-bomb", "BAKALARI_MAX_ANSWER_BYTES"),
    ],
)
def test_a_bakalari_student_with_a_hostile_answer_is_read_failed(
    hostile: ThreadedSandbox, behaviour: str, reason: str
) -> None:
    async def go() -> Any:
        limits = ApiLimits(**{**FAST, "settings_prefix": "BAKALARI", "max_answer_bytes": 1 << 20})
        async with ApiClient("Bakaláři", f"{hostile.url}/{behaviour}/", limits, "BAKALARI_USERNAME") as api:
            account = StudentAccount("user-1", "S1", _access_token())
            return await read_student(BakalariClient(api), account, tokens=None)  # type: ignore[arg-type]

    reading = asyncio.run(go())
    assert reading.category == READ_FAILED
    assert reason in (reading.reason or "")


# -- defect 9: answers are bounded, after decompression ---------------------------------------------------------
@pytest.mark.parametrize("email", ["huge@x.fr", "bomb@x.fr"])
def test_a_huge_answer_or_a_gzip_bomb_fails_its_user_naming_the_setting(
    hostile: ThreadedSandbox, email: str
) -> None:
    people = users("anna@x.fr", email)
    limit = 4 << 20
    tracemalloc.start()
    try:
        results = lookups(portaildf(f"{hostile.url}/by-email/", max_answer_bytes=limit), people)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results.outcomes["u0"].kind == "prestataire"
    assert (
        "longer than 4 MiB (PORTAILDF_MAX_ANSWER_BYTES=4194304); not read further" in results.failures["u1"]
    )
    # Generous: the body is held once and copied once; the unbounded read held 100 MB (or 1 GiB) several times.
    assert peak < 3 * limit + (8 << 20), f"peak {peak / 2**20:.1f} MiB"


def test_a_declared_length_over_the_limit_is_refused_before_reading(hostile: ThreadedSandbox) -> None:
    async def go() -> None:
        limits = ApiLimits(**FAST, max_answer_bytes=1 << 20)
        async with ApiClient("Hostile", f"{hostile.url}/huge-declared/", limits, "X") as api:
            await api.request("GET", "page")

    with pytest.raises(ResponseTooLargeError, match=r"answer of 95\.4 MiB declared, longer than 1 MiB"):
        asyncio.run(go())


def test_a_compressed_answer_within_the_limit_is_still_read() -> None:
    with ThreadedSandbox(HostileServer(bomb_bytes=2_000_000)) as small:

        async def go() -> Any:
            async with ApiClient("Hostile", f"{small.url}/gzip-bomb/", ApiLimits(**FAST), "X") as api:
                return await api.request_json("GET", "page")

        status, body = asyncio.run(go())
    assert status == 200
    assert len(body["results"][0]) == 2_000_000 - len('{"results": [""]}')


# -- defect 10: Retry-After nan, 429 forever, deadline ----------------------------------------------------------
def test_retry_after_nan_is_ignored(hostile: ThreadedSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        async with ApiClient(
            "Hostile", f"{hostile.url}/retry-after-nan/", ApiLimits(**FAST, max_attempts=3), "X"
        ) as api:
            await api.request("GET", "page")

    with pytest.raises(TransientApiError) as raised:  # the retries were spent, at once
        asyncio.run(go())
    assert "HTTP 429" in str(raised.value)
    lines = [
        record.getMessage() for record in caplog.records if record.name.startswith("sync_pipelines.http")
    ]
    assert len(lines) == 2 and not any("nan" in line for line in lines), lines


def test_a_system_answering_429_forever_stops_the_run_at_once(hostile: ThreadedSandbox) -> None:
    """Before: every one of the 60 users was tried ``max_attempts`` times and the run went on to its end."""
    people = users(*(f"user{n}@x.fr" for n in range(60)))
    client = portaildf(f"{hostile.url}/429/", max_concurrency=4, max_attempts=2)
    with pytest.raises(SystemRefusingError) as raised:
        lookups(client, people)
    message = str(raised.value)
    assert message.startswith(
        "Portail DF refused almost everything: 10 requests in a row failed after 2 attempt"
    )
    assert "HTTP 429 x" in message
    assert client.api.requests_made < 2 * 20  # 60 users would have cost 120 requests


def test_a_run_past_its_deadline_stops_sending_and_names_the_setting(hostile: ThreadedSandbox) -> None:
    """429 with ``Retry-After: 5``, a deadline of 1 s: the client gives up at once rather than waiting."""
    server: HostileServer = hostile.sandbox  # type: ignore[assignment]
    server.retry_after = "5"
    try:
        client = portaildf(f"{hostile.url}/429/", max_attempts=5, deadline_seconds=1.0, breaker_window=0)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as raised:
            lookups(client, users(*(f"user{n}@x.fr" for n in range(20))))
        elapsed = time.monotonic() - started
    finally:
        server.retry_after = "0"
    assert raised.value.setting == "PORTAILDF_DEADLINE_SECONDS"
    assert "passed its deadline of 1 s (PORTAILDF_DEADLINE_SECONDS (or SYNC_DEADLINE_SECONDS))" in str(
        raised.value
    )
    assert elapsed < 5


def test_the_deadline_counts_from_the_start_of_the_run(hostile: ThreadedSandbox) -> None:
    """A client opened late in a run has the time left, not a fresh deadline: nothing is sent past it."""
    before = hostile.stats()["total_requests"]

    async def go() -> None:
        run_started.set(time.monotonic() - 10)
        async with ApiClient(
            "Hostile", f"{hostile.url}/json/", ApiLimits(**FAST, deadline_seconds=5), "X"
        ) as api:
            await api.request("GET", "page")

    with pytest.raises(DeadlineExceededError, match=r"deadline of 5 s \(ApiLimits.deadline_seconds\)"):
        asyncio.run(go())
    assert hostile.stats()["total_requests"] == before


# -- a body that echoes the credential ---------------------------------------------------------------------------
def test_a_400_echoing_the_authorization_header_does_not_leak_the_token(hostile: ThreadedSandbox) -> None:
    results = lookups(portaildf(f"{hostile.url}/by-email/"), users("echo@x.fr"))
    reason = results.failures["u0"]
    assert "HTTP 400" in reason and "***" in reason
    assert ACCESS_TOKEN not in reason and ACCESS_TOKEN[:16] not in reason.replace("***", "")
    assert len(reason) < 400
