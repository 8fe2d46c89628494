"""Bad input: bad answers per user, refused credentials, expiring tokens, a wrong auth version or table."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.portaildf import KINDS
from sync_pipelines.core.errors import AuthenticationError
from sync_pipelines.defs.user_kinds.database import ZlvUser
from sync_pipelines.defs.user_kinds.lookups import look_up_users
from sync_pipelines.defs.user_kinds.resources import ZlvDatabase
from sync_pipelines.defs.user_kinds.source import UserKindsSource
from sync_pipelines.sync import SyncRunConfig, SyncStateStore
from sync_pipelines.sync.run import execute
from sync_pipelines.sync.shards import SHARD_KEYS, shard_of
from sync_pipelines.sync.source import RunScope
from sync_pipelines_tests.harness.row_errors import errors_table, records_check, summary_line
from sync_pipelines_tests.user_kinds.conftest import LOOKUP, ZlvWorld, make_world
from sync_pipelines_tests.user_kinds.test_user_kinds_sync import failure_text, observation

pytestmark = pytest.mark.integration


def found_users(world: ZlvWorld, count: int) -> list[str]:
    """Active users whose kind the sync would change, with distinct shards where possible."""
    active = set(world.active_ids())
    return [u for u in world.sample.changes() if u in active][:count]


def email_of(world: ZlvWorld, user_id: str) -> str:
    email = world.sample.user(user_id).email
    assert email is not None
    return email


def test_bad_answers_are_row_errors_reported_per_user_and_retried_by_the_next_run(world: ZlvWorld) -> None:
    """Four users of the world's whole run whose answers cannot be used: the scheduled run stays green, says so in
    its summary line and in the records_synced warning, names each by id with its reason, and writes everyone
    else; the next run, with the answers fixed, writes them."""
    missing, not_boolean, html_page, bad_gateway = found_users(world, 4)
    world.handle.change_state(
        {"action": "set_record_fields", "email": email_of(world, missing), "drop": ["exterieur"]}
    )
    world.handle.change_state(
        {
            "action": "set_record_fields",
            "email": email_of(world, not_boolean),
            "fields": {"gestionnaire": "true"},
        }
    )
    world.handle.change_state({"action": "html_for_email", "email": email_of(world, html_page)})
    world.handle.change_state(
        {"action": "html_for_email", "email": email_of(world, bad_gateway), "status": 502}
    )
    before = world.kinds()
    result = world.run()
    assert result.success, failure_text(result)
    line = summary_line(result, "user_kinds")
    assert line.endswith(
        "with 4 record error(s) (4 record(s) unusable in Portail DF's answer; the next run retries them)"
    ), line
    assert "could not be written" not in line
    check = records_check(result, "user_kinds")
    assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
    table = errors_table(result, "user_kinds")
    unusable = "unusable in Portail DF's answer"
    assert re.search(rf"\| {missing} \| {unusable} \| record \d+: 'exterieur' is missing \|", table)
    assert re.search(
        rf"\| {not_boolean} \| {unusable} \| record \d+: 'gestionnaire' is 'true' \(str\), not a "
        "boolean",
        table,
    )
    assert re.search(rf"\| {html_page} \| {unusable} \| lookup failed: .*text/html, not JSON", table)
    assert re.search(rf"\| {bad_gateway} \| {unusable} \| lookup failed: .*HTTP 502", table)
    after = world.kinds()
    broken = {missing, not_boolean, html_page, bad_gateway}
    assert all(after[u] == before[u] for u in broken)
    # Everyone else was written.
    expected = world.expected_kinds()
    assert {u: k for u, k in after.items() if u not in broken} == {
        u: k for u, k in expected.items() if u not in broken
    }
    summary = observation(result)
    assert summary["invalid_answer"] == 2 and summary["lookup_failed"] == 2 and summary["failed"] == 4
    # Shards holding a failed user are not materialized; the others are.
    materialized = {m.partition for m in result.asset_materializations_for_node("user_kinds")}
    assert materialized == set(SHARD_KEYS) - {shard_of(u) for u in broken}

    # The next run retries them: the users whose answers are fixed meanwhile are written, the others reported again.
    world.handle.change_state({"action": "clear_html_for_email"})
    retry = world.run()
    assert retry.success, failure_text(retry)
    after, expected = world.kinds(), world.expected_kinds()
    assert after[html_page] == expected[html_page] != before[html_page]
    assert after[bad_gateway] == expected[bad_gateway] != before[bad_gateway]
    table = errors_table(retry, "user_kinds")
    assert f"| {missing} |" in table and f"| {not_boolean} |" in table
    assert html_page not in table and bad_gateway not in table


def test_row_errors_past_the_threshold_fail_the_run_in_one_line(
    world: ZlvWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More unusable answers than SYNC_MAX_RECORD_ERRORS_PERCENT allows: the others are still written and
    reported, then the run fails in one line saying what happened."""
    broken = found_users(world, 3)
    for user_id in broken:
        world.handle.change_state({"action": "html_for_email", "email": email_of(world, user_id)})
    monkeypatch.setenv("SYNC_MAX_RECORD_ERRORS_PERCENT", "1")
    result = world.run()
    assert not result.success
    message = failure_text(result)
    assert len(message.splitlines()) == 1, message
    assert re.search(
        r"Failure: user_kinds: 3 record error\(s\) in \d+ record\(s\) \(\d+ %\), more than "
        r"SYNC_MAX_RECORD_ERRORS_PERCENT=1 allows: 3 record\(s\) unusable in Portail DF's answer; the next run "
        r"retries them: ",
        message,
    ), message
    assert not records_check(result, "user_kinds").passed
    after = world.kinds()
    assert {u: k for u, k in after.items() if u not in broken} == {
        u: k for u, k in world.expected_kinds().items() if u not in broken
    }


def test_timeouts_after_retries_fail_those_users_only(world_v2: ZlvWorld) -> None:
    portaildf = world_v2.portaildf(timeout_seconds=0.3, max_attempts=2)
    users = [ZlvUser(u.id, u.email, u.kind) for u in world_v2.sample.users if u.email and u.email.strip()][:3]

    async def run():
        async with portaildf.client() as client:
            world_v2.handle.set_knobs(slow_rate=1.0, slow_seconds=2.0)
            return await look_up_users(client, users)

    try:
        results = asyncio.run(run())
    finally:
        world_v2.handle.set_knobs(slow_rate=0.0)
    assert results.outcomes == {}
    assert set(results.failures) == {user.id for user in users}
    assert all(
        "lookup failed" in reason
        and "Portail DF did not answer at" in reason
        # The URL was given to the resource here, not by the variable: the hint says where it came from.
        and "(timed out); check the run's resource config (resources.portaildf.config.api_url;" in reason
        for reason in results.failures.values()
    )
    assert world_v2.handle.requests(LOOKUP) == 6  # two tries each


@pytest.mark.parametrize("auth_version", ["v1", "v2"])
def test_wrong_credentials_stop_at_once_naming_the_variables(pg_url: str, auth_version: str) -> None:
    for world in make_world(pg_url, auth_version):
        result = world.run(portaildf={"password": "not-the-password"})
        assert not result.success
        message = failure_text(result)
        assert "Portail DF refused the credentials" in message
        assert "PORTAILDF_USERNAME / PORTAILDF_PASSWORD" in message
        assert "not-the-password" not in message
        assert world.handle.requests(LOOKUP) == 0
        assert world.updates() == (0, 0)


def test_wrong_auth_version_names_the_setting(world_v2: ZlvWorld) -> None:
    result = world_v2.run(portaildf={"auth_version": "v1"})
    assert not result.success
    assert "PORTAILDF_AUTH_VERSION: the server has no v1 login (" in failure_text(result)


def test_unknown_auth_version_from_the_environment_is_refused(
    world_v2: ZlvWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAILDF_AUTH_VERSION", "v3")
    result = world_v2.run(portaildf={"auth_version": None})
    assert "PORTAILDF_AUTH_VERSION: must be 'v1' or 'v2', got 'v3'" in failure_text(result)


def test_auth_version_comes_from_the_environment(world: ZlvWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAILDF_AUTH_VERSION", world.auth_version)
    assert world.run(portaildf={"auth_version": None}).success
    logins = world.handle.state()["auth_calls"]
    assert logins["token_v1" if world.auth_version == "v1" else "token_v2"] == 1


@pytest.fixture
def short_lived_tokens(pg_url: str) -> Iterator[ZlvWorld]:
    """v2 access tokens that expire after 0.3 s, lookups slow enough for the run to outlive several."""
    for world in make_world(pg_url, "v2", access_ttl_seconds=0.3):
        world.handle.set_knobs(latency_ms=25)
        yield world


def test_access_token_expiring_mid_run_is_refreshed(short_lived_tokens: ZlvWorld) -> None:
    world = short_lived_tokens
    result = world.run(portaildf={"max_concurrency": 4})
    assert result.success, failure_text(result)
    assert world.kinds() == world.expected_kinds()
    calls = world.handle.state()["auth_calls"]
    assert calls["token_v2"] == 1 and calls["refresh"] >= 2
    # One refresh per expiry, not one per lookup in flight: the run lasts about a second.
    assert calls["refresh"] <= 10


def test_spent_refresh_token_means_logging_in_again(pg_url: str) -> None:
    for world in make_world(pg_url, "v2", access_ttl_seconds=0.3, refresh_ttl_seconds=0.3):
        world.handle.set_knobs(latency_ms=25)
        result = world.run(portaildf={"max_concurrency": 4})
        assert result.success, failure_text(result)
        assert world.kinds() == world.expected_kinds()
        assert world.handle.state()["auth_calls"]["token_v2"] >= 2


def lookups_after(world: ZlvWorld, change: dict, users: int = 64) -> tuple[dict, dict]:
    """Log in, apply ``change`` to the sandbox, then look ``users`` users up 16 at a time."""
    portaildf = world.portaildf(max_concurrency=16)
    chosen = [ZlvUser(u.id, u.email, u.kind) for u in world.sample.users if u.email and u.email.strip()][
        :users
    ]

    async def run() -> dict:
        async with portaildf.client() as client:
            world.handle.reset_counters()
            before = dict(world.handle.state()["auth_calls"])
            world.handle.change_state(change)
            results = await look_up_users(client, chosen)
            assert not results.failures
            return before

    before = asyncio.run(run())
    after = world.handle.state()["auth_calls"]
    return before, after


def test_concurrent_401s_renew_the_token_once(world: ZlvWorld) -> None:
    change = {"action": "expire_access_tokens" if world.auth_version == "v2" else "revoke_tokens"}
    before, after = lookups_after(world, change)
    if world.auth_version == "v2":
        assert after["refresh"] - before["refresh"] == 1 and after["token_v2"] == before["token_v2"]
    else:
        assert after["token_v1"] - before["token_v1"] == 1


def test_a_password_changed_mid_run_stops_the_run(world_v2: ZlvWorld) -> None:
    portaildf = world_v2.portaildf()
    users = [ZlvUser(u.id, u.email, u.kind) for u in world_v2.sample.users if u.email and u.email.strip()]

    async def run() -> None:
        async with portaildf.client() as client:
            world_v2.handle.change_state({"action": "set_password", "password": "rotated"})
            world_v2.handle.change_state({"action": "revoke_tokens"})
            await look_up_users(client, users)

    with pytest.raises(AuthenticationError, match="PORTAILDF_USERNAME / PORTAILDF_PASSWORD"):
        asyncio.run(run())


def test_progress_is_logged_with_done_total_and_rate(
    world_v2: ZlvWorld, caplog: pytest.LogCaptureFixture
) -> None:
    users = [ZlvUser(u.id, u.email, u.kind) for u in world_v2.sample.users if u.email and u.email.strip()]
    log = logging.getLogger("test.user_kinds.progress")

    async def run() -> None:
        async with world_v2.portaildf().client() as client:
            await look_up_users(client, users, log)

    with caplog.at_level(logging.INFO, logger=log.name):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lookups ")]
    assert len(lines) == 10
    assert re.fullmatch(rf"lookups {len(users)}/{len(users)} \(100%\), \d+/s", lines[-1])
    assert re.fullmatch(rf"lookups {math_ceil_tenth(len(users))}/{len(users)} \(10%\), \d+/s", lines[0])


def math_ceil_tenth(total: int) -> int:
    return -(-total // 10)


def test_lookups_run_concurrently_within_the_limit(world_v2: ZlvWorld) -> None:
    world_v2.handle.set_knobs(latency_ms=20)
    world_v2.handle.reset_counters()
    state = SyncStateStore.from_url(None)
    source = UserKindsSource(
        world_v2.portaildf(max_concurrency=6), ZlvDatabase(database_url=world_v2.zlv_url)
    )
    scope = RunScope("run-1", frozenset(SHARD_KEYS), SyncRunConfig(dry_run=True), logging.getLogger("test"))
    asyncio.run(execute(source, state, scope))
    assert len(source.lookups.outcomes) > 6
    # Six lookups were in flight at once, never more: concurrency is counted by the server, not timed here (the
    # speed of the lookups is the benchmarks' to measure).
    assert world_v2.handle.stats()["max_in_flight"] == 6


def test_missing_kind_column_names_the_setting_and_the_column(pg_url: str) -> None:
    for world in make_world(pg_url, "v2"):
        with world.engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE users DROP COLUMN kind CASCADE"))
        result = world.run()
        assert "ZLV_DATABASE_URL: table 'users' has no column(s) 'kind'" in failure_text(result)
        assert world.handle.requests(LOOKUP) == 0


def test_every_kind_is_one_of_the_four(world_v2: ZlvWorld) -> None:
    assert set(world_v2.sample.expected.values()) >= set(KINDS)
