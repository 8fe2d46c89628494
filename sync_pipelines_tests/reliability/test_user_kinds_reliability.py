"""Portail DF -> ``users.kind`` under faults, a crash and with secrets in play: exactly the expected kinds, each
changed row written once, the audit log equal to what ZLV holds, nothing leaked."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME, PortailDfSandbox
from devkit.sandbox.server import Knobs, ThreadedSandbox
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.sync.state import NOT_APPLIED, SyncStateStore
from sync_pipelines_tests.reliability.conftest import (
    JobRunner,
    WriteGate,
    check_audit,
    compute_logs,
    kill,
    leaked,
    recorded_texts,
    wait_for,
    with_password,
)
from sync_pipelines_tests.user_kinds.conftest import UPDATE_COUNTER, ZlvWorld
from sync_pipelines_tests.user_kinds.test_user_kinds_sync import failure_text

TARGET = "user_kinds"
USERS = 120
SEED = 11


@contextlib.contextmanager
def kinds_world(zlv_url: str, **sandbox_options: Any) -> Iterator[ZlvWorld]:
    """A Portail DF sandbox and a ZLV database seeded from one sample, counting every row ZLV updates."""
    sandbox = PortailDfSandbox.from_sample(USERS, SEED, auth_version="v2", **sandbox_options)
    assert sandbox.sample is not None
    engine = seed_zlv(zlv_url, sandbox.sample.users)
    with engine.begin() as connection:
        connection.exec_driver_sql(UPDATE_COUNTER)
    with ThreadedSandbox(sandbox) as handle:
        yield ZlvWorld(handle, sandbox.sample, zlv_url, "v2")


def changes_in_scope(world: ZlvWorld) -> dict[str, str]:
    """The users a complete sync must write (active, kind different from Portail DF's) and their new kind."""
    active = set(world.active_ids())
    return {user_id: kind for user_id, kind in world.sample.changes().items() if user_id in active}


def audit(state_url: str) -> list[dict[str, Any]]:
    return SyncStateStore.from_url(state_url).audit.rows(TARGET)


def assert_exactly_the_kinds(world: ZlvWorld, state_url: str) -> None:
    """ZLV holds the expected kinds, each changed user was updated exactly once over every run, and each has
    exactly one applied audit row holding the kind ZLV holds."""
    kinds = world.kinds()
    changes = changes_in_scope(world)
    assert kinds == world.expected_kinds()
    assert world.updates()[1] == len(changes)
    applied = check_audit(audit(state_url), {user_id: {"kind": kind} for user_id, kind in kinds.items()})
    assert {row["record_key"] for row in applied} == set(changes)
    assert SyncStateStore.from_url(state_url).settlement.pending(TARGET) == {}  # no batch left unsettled


# -- faults -------------------------------------------------------------------------------------------------------
FAULTS = Knobs(
    error_rate=0.1,
    burst_429=5,
    retry_after_seconds=0.2,
    drop_rate=0.01,
    slow_rate=0.02,
    slow_seconds=2.5,  # the resource's timeout is lowered to 1 s below
    seed=6,
)


@pytest.mark.integration
def test_converges_under_5xx_429_dropped_and_slow_answers(
    make_pg_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_url = make_pg_url()
    monkeypatch.setenv("SYNC_STATE_DATABASE_URL", state_url)
    # 1 s: a slow answer (2.5 s) times out, an answer on a busy machine does not.
    portaildf = {"timeout_seconds": 1.0, "max_attempts": 5}
    with kinds_world(make_pg_url(), knobs=dataclasses.replace(FAULTS)) as world:
        assert len(changes_in_scope(world)) > 40
        outcomes = []
        for _ in range(3):
            result = world.run({"batch_size": 10}, portaildf=portaildf)
            outcomes.append(result.success or failure_text(result))
            if result.success:
                break
        assert outcomes[-1] is True, outcomes
        assert_exactly_the_kinds(world, state_url)
        statuses = world.handle.stats()["statuses"]
        assert statuses.get("429", 0) >= 5 and sum(statuses.get(s, 0) for s in ("500", "502", "503")) > 0

        # A further run, faults still on, updates zero rows.
        updates = world.updates()
        again = world.run({"batch_size": 10}, portaildf=portaildf)
        assert again.success, failure_text(again)
        assert world.updates() == updates
        assert_exactly_the_kinds(world, state_url)


# -- a crash ------------------------------------------------------------------------------------------------------
def job(home: Path, world: ZlvWorld, zlv_url: str, state_url: str, password: str) -> JobRunner:
    return JobRunner(
        home,
        "user_kind_sync",
        TARGET,
        {
            "PORTAILDF_API_URL": f"{world.handle.url}/api",
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "PORTAILDF_PASSWORD": password,
            "PORTAILDF_AUTH_VERSION": "v2",
            "ZLV_DATABASE_URL": zlv_url,
            "SYNC_STATE_DATABASE_URL": state_url,
        },
    )


def hold_the_batch_after(zlv_url: str, rows: int) -> WriteGate:
    """Let ``rows`` kinds be committed, then hold the next batch's UPDATE inside its transaction."""
    gate = WriteGate(zlv_url, "ZLV_DATABASE_URL")
    with gate.engine.begin() as connection:
        connection.exec_driver_sql(
            f"""CREATE FUNCTION hold_kind_writes() RETURNS trigger AS $$ BEGIN
                IF (SELECT count(*) FROM users_updates WHERE level = 'ROW') >= {rows} THEN
                    {gate.wait_statement()};
                END IF; RETURN NEW; END $$ LANGUAGE plpgsql"""
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER hold_kind_writes BEFORE UPDATE ON users "
            "FOR EACH ROW EXECUTE FUNCTION hold_kind_writes()"
        )
    return gate


@pytest.mark.e2e
def test_killed_in_the_middle_of_a_batch_then_rerun(
    make_pg_url, dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zlv_url, state_url = make_pg_url(), make_pg_url()
    with kinds_world(zlv_url) as world:
        before = world.kinds()
        runner = job(dagster_home, world, zlv_url, state_url, DEFAULT_PASSWORD)
        gate = hold_the_batch_after(zlv_url, rows=20)
        process = runner.start({"batch_size": 10})
        try:
            gate.wait_until_held(process)
            # While the third batch is held, the second one's outcome is recorded and the fourth written ahead.
            wait_for(lambda: len(audit(state_url)) == 20, process)
            pending = SyncStateStore.from_url(state_url).settlement.pending(TARGET)
            kill(process)
        finally:
            kill(process)
            gate.release()
        with gate.engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER hold_kind_writes ON users")

        # Two batches committed and audited; the third was half written when the process died (rolled back)
        # and the fourth written ahead but never sent: both are left in flight.
        assert len(pending) == 20
        assert world.updates() == (2, 20)
        assert {user_id: world.kinds()[user_id] for user_id in pending} == {u: before[u] for u in pending}
        settled = check_audit(
            audit(state_url), {user_id: {"kind": kind} for user_id, kind in world.kinds().items()}
        )
        assert len(settled) == 20 and not {row["record_key"] for row in settled} & set(pending)

        rerun = runner.run()
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        assert_exactly_the_kinds(world, state_url)
        rows = audit(state_url)
        interrupted = [row for row in rows if row["record_key"] in pending and row["status"] == NOT_APPLIED]
        assert {row["record_key"] for row in interrupted} == set(pending)  # settled as never written

        # And one more run writes nothing at all.
        monkeypatch.setenv("SYNC_STATE_DATABASE_URL", state_url)
        updates = world.updates()
        assert world.run().success
        assert world.updates() == updates


# -- secrets ------------------------------------------------------------------------------------------------------
PORTAILDF_SECRET = "portaildf-pw-9e4c2a17"
ZLV_DB_SECRET = "zlv-db-pw-40d7e2c9"
STATE_DB_SECRET = "state-db-pw-c83f1a65"


@pytest.mark.e2e
def test_secrets_appear_nowhere(make_pg_url, dagster_home: Path) -> None:
    zlv_url, state_url = make_pg_url(), make_pg_url()
    with kinds_world(zlv_url, password=PORTAILDF_SECRET) as world:
        runner = job(
            dagster_home,
            world,
            with_password(zlv_url, ZLV_DB_SECRET),
            with_password(state_url, STATE_DB_SECRET),
            PORTAILDF_SECRET,
        )
        ok = runner.run({"limit": 30})
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
        world.handle.change_state({"action": "set_password", "password": "changed-at-cerema"})
        failed = runner.run()
    assert failed.returncode != 0
    assert "PORTAILDF_USERNAME / PORTAILDF_PASSWORD" in failed.stdout + failed.stderr

    recorded = recorded_texts(dagster_home)
    # The haystacks hold what the runs did: materialization metadata, the failure's message, step logs.
    assert any("lookups_per_second" in text for text in recorded)
    assert any("refused the credentials" in text for text in recorded)
    assert any("lookups done" in text for text in compute_logs(dagster_home))
    texts = [ok.stdout, ok.stderr, failed.stdout, failed.stderr, *recorded]
    texts.append(json.dumps(audit(state_url), default=str))
    assert leaked([PORTAILDF_SECRET, ZLV_DB_SECRET, STATE_DB_SECRET], texts) == []
