"""Account sessions against the Bakaláři sandbox and EduRPG on PostgreSQL: rotation, re-login, giving up."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from devkit.sandbox.bakalari import (
    OPERATOR_PASSWORD,
    OPERATOR_USERNAME,
    BakalariSandbox,
    SampleSchool,
)
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.core.errors import AuthenticationError
from sync_pipelines.defs.bakalari.accounts import (
    NEEDS_LOGIN,
    UNAUTHORIZED,
    OperatorSession,
    StudentSession,
    TokenStore,
    read_student,
)
from sync_pipelines.defs.bakalari.edurpg import EduRpgStore, StudentAccount
from sync_pipelines.defs.bakalari.resources import BakalariResource
from sync_pipelines_tests.bakalari.helpers import engine_for, sandbox_tokens, tokens

pytestmark = pytest.mark.integration


def account(store: EduRpgStore, bakalari_id: str) -> StudentAccount:
    return next(a for a in store.student_accounts() if a.bakalari_id == bakalari_id)


async def with_student(url: str, store: EduRpgStore, bakalari_id: str, action, timeout_seconds: float = 10.0):
    resource = BakalariResource(
        url=url, username=OPERATOR_USERNAME, password=OPERATOR_PASSWORD, timeout_seconds=timeout_seconds
    )
    tokens_store = TokenStore(store, workers=1)
    try:
        async with resource.client() as client:
            session = StudentSession(client, account(store, bakalari_id), tokens_store)
            return await action(client, session)
    finally:
        tokens_store.close()


def test_refresh_commits_the_rotated_token_before_using_it(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    store = EduRpgStore(engine_for(edurpg_url))
    student = school.students[0]

    async def refresh_only(client, session):
        await session.refresh()
        return session

    session = asyncio.run(with_student(bakalari.url, store, student.user_id, refresh_only))
    stored = tokens(store.engine)[student.user_id]
    assert stored == session.refresh_token == sandbox_tokens(bakalari.state())[student.user_id]
    assert stored != student.refresh_token
    # Nothing but the login was sent: the token was committed before any use of the access token.
    assert bakalari.stats()["requests"] == {"POST /api/login": 1}
    with httpx.Client(base_url=bakalari.url) as http:
        old = http.post(
            "/api/login",
            data={"client_id": "ANDR", "grant_type": "refresh_token", "refresh_token": student.refresh_token},
        )
        assert old.json()["error"] == "invalid_grant"  # without the commit, the credential would be gone


def test_a_refresh_answered_late_is_waited_for_not_lost(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    """Giving up on a refresh grant the server goes on to answer would lose the rotated token with the answer."""
    store = EduRpgStore(engine_for(edurpg_url))
    student = school.students[2]
    bakalari.set_knobs(slow_rate=1.0, slow_seconds=1.0)

    async def refresh_only(client, session):
        await session.refresh()
        return session

    session = asyncio.run(
        with_student(bakalari.url, store, student.user_id, refresh_only, timeout_seconds=0.3)
    )
    assert tokens(store.engine)[student.user_id] == session.refresh_token
    assert session.refresh_token == sandbox_tokens(bakalari.state())[student.user_id]
    assert bakalari.stats()["requests"] == {"POST /api/login": 1}  # one grant, no retry after 0.3 s


def test_a_newer_token_stored_meanwhile_is_tried_once(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    """An overlapping run (or a fresh EduRPG login) rotated the token after this run read it."""
    store = EduRpgStore(engine_for(edurpg_url))
    student = school.students[1]
    stale = account(store, student.user_id)
    with httpx.Client(base_url=bakalari.url) as http:
        newer = http.post(
            "/api/login",
            data={"client_id": "ANDR", "grant_type": "refresh_token", "refresh_token": student.refresh_token},
        ).json()["refresh_token"]
    store.save_token(student.user_id, newer)

    async def read(client, session):
        return await read_student(client, stale, session.store)

    reading = asyncio.run(with_student(bakalari.url, store, student.user_id, read))
    assert reading.ok and reading.user is not None
    assert tokens(store.engine)[student.user_id] == sandbox_tokens(bakalari.state())[student.user_id]


def test_revoked_token_means_needs_login(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    store = EduRpgStore(engine_for(edurpg_url))
    student = school.students[2]
    bakalari.change_state({"action": "revoke_refresh_token", "user_id": student.user_id})

    async def read(client, session):
        return await read_student(client, account(store, student.user_id), session.store)

    reading = asyncio.run(with_student(bakalari.url, store, student.user_id, read))
    assert reading.category == NEEDS_LOGIN and "refused the stored refresh token" in reading.reason
    assert tokens(store.engine)[student.user_id] == student.refresh_token


def test_a_401_refreshes_once_then_continues(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    store = EduRpgStore(engine_for(edurpg_url))
    student = school.students[3]

    async def expire_then_read(client, session):
        await session.refresh()
        bakalari.change_state({"action": "expire_access_tokens", "user_id": student.user_id})
        return await session.get("user"), session

    body, session = asyncio.run(with_student(bakalari.url, store, student.user_id, expire_then_read))
    assert body["UserUID"] == student.user_id
    assert session.rotations == 2
    assert bakalari.state()["logins"]["refresh_token"] == 2
    assert tokens(store.engine)[student.user_id] == sandbox_tokens(bakalari.state())[student.user_id]


def test_a_second_401_gives_up_on_the_account(edurpg_url: str, school: SampleSchool) -> None:
    store = EduRpgStore(engine_for(edurpg_url))
    student = school.students[4]
    # Every access token this server issues is already expired.
    with ThreadedSandbox(BakalariSandbox(school, access_token_ttl_seconds=0)) as server:

        async def read(client, session):
            return await read_student(client, account(store, student.user_id), session.store)

        reading = asyncio.run(with_student(server.url, store, student.user_id, read))
        assert reading.category == UNAUTHORIZED
        assert server.state()["logins"]["refresh_token"] == 2  # the first refresh and exactly one more
        assert server.requests("GET /api/3/user") == 2
        assert tokens(store.engine)[student.user_id] == sandbox_tokens(server.state())[student.user_id]


def test_operator_relogs_once_after_a_401(bakalari: ThreadedSandbox) -> None:
    resource = BakalariResource(url=bakalari.url, username=OPERATOR_USERNAME, password=OPERATOR_PASSWORD)

    async def run():
        async with resource.client() as client:
            session = OperatorSession(client, OPERATOR_USERNAME, OPERATOR_PASSWORD)
            await session.login()
            bakalari.change_state({"action": "expire_access_tokens"})
            return await session.get("timetable/permanent")

    body = asyncio.run(run())
    assert body["Classes"]
    assert bakalari.state()["logins"] == {"password": 1, "refresh_token": 1}


def test_operator_refused_names_the_variables(bakalari: ThreadedSandbox) -> None:
    resource = BakalariResource(url=bakalari.url, username=OPERATOR_USERNAME, password="nope-nope")

    async def run():
        async with resource.client() as client:
            await OperatorSession(client, OPERATOR_USERNAME, "nope-nope").login()

    with pytest.raises(AuthenticationError, match="BAKALARI_USERNAME / BAKALARI_PASSWORD") as raised:
        asyncio.run(run())
    assert "nope-nope" not in str(raised.value)
