"""Defect 3: record keys of any length (and odd ones) on both state backends, old databases upgraded, and a
batch whose audit cannot be written never blocks settling or later runs."""

from __future__ import annotations

import random
import string

import pytest
import sqlalchemy as sa

from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord
from sync_pipelines.sync.state import APPLIED, NOT_APPLIED, SyncStateStore, stored_key

pytestmark = pytest.mark.integration

TARGET = "bakalari_entities"
RANDOM = random.Random(3)
KEYS = [
    "User:" + "7" * 300,  # the attack's Bakaláři id over 255 characters
    "User:" + "".join(RANDOM.choices(string.ascii_letters + string.digits, k=6000)),  # beyond a btree entry
    "User:" + "ž" * 900,  # multi-byte
    "User:a\x00b",  # a NUL, which PostgreSQL's text cannot hold
    "User:short",
]


@pytest.fixture(params=["postgresql", "sqlite"])
def state_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else sqlite_url


def record(key: str, name: str) -> PlannedRecord:
    return PlannedRecord(key, Action.UPDATE, {"name": name}, (FieldChange("name", "old", name),))


def test_any_key_is_written_audited_remembered_and_settled(state_url: str) -> None:
    state = SyncStateStore.from_url(state_url)
    records = [record(key, f"n{index}") for index, key in enumerate(KEYS)]
    batch = state.write_ahead.begin("run-1", TARGET, records)
    state.write_ahead.finish("run-1", TARGET, records, {KEYS[0]: "refused \x00 by the target"}, True, batch)
    audit = state.audit.rows(TARGET)
    assert [row["status"] for row in audit] == ["failed", *[APPLIED] * (len(KEYS) - 1)]
    assert [row["record_key"] for row in audit] == [key.replace("\x00", "\ufffd") for key in KEYS]
    assert state.last_written.read(TARGET, KEYS) == {
        key: {"name": f"n{i}"} for i, key in enumerate(KEYS) if i
    }
    assert state.settlement.pending(TARGET) == {}

    # A killed run's batch of such keys settles, and the next one too.
    for run in ("run-2", "run-3"):
        state.write_ahead.begin(run, TARGET, records)
        current = {key: {"name": f"n{index}"} for index, key in enumerate(KEYS)}
        assert state.settlement.settle(state.settlement.judge(TARGET, current), True) == {
            APPLIED: len(KEYS),
            NOT_APPLIED: 0,
        }
        assert state.settlement.pending(TARGET) == {}


def test_long_keys_are_kept_by_digest_where_an_index_holds_them() -> None:
    assert stored_key("User:short") == "User:short"
    long = stored_key(KEYS[1])
    assert len(long) < 200 and long.startswith(KEYS[1][:64]) and long != stored_key(KEYS[1] + "x")
    assert "\x00" not in stored_key(KEYS[3])


def test_a_state_database_made_with_varchar_keys_is_upgraded(pg_url: str) -> None:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:  # the tables as the previous release created them
        connection.exec_driver_sql(
            "CREATE TABLE sync_audit (id BIGSERIAL PRIMARY KEY, run_id VARCHAR(64) NOT NULL, batch_id VARCHAR(36), "
            "target VARCHAR(64) NOT NULL, record_key VARCHAR(255) NOT NULL, field VARCHAR(255) NOT NULL, "
            "old_value TEXT, new_value TEXT, status VARCHAR(16) NOT NULL, error TEXT, "
            "recorded_at TIMESTAMPTZ NOT NULL)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE sync_last_written (target VARCHAR(64), record_key VARCHAR(255), field VARCHAR(255), "
            "value TEXT, run_id VARCHAR(64) NOT NULL, written_at TIMESTAMPTZ NOT NULL, "
            "PRIMARY KEY (target, record_key, field))"
        )
    state = SyncStateStore.from_url(pg_url)
    records = [record(KEYS[0], "x")]
    state.write_ahead.finish(
        "run", TARGET, records, {}, True, state.write_ahead.begin("run", TARGET, records)
    )
    assert [row["record_key"] for row in state.audit.rows(TARGET)] == [KEYS[0]]
    assert state.last_written.read(TARGET, [KEYS[0]]) == {KEYS[0]: {"name": "x"}}
    engine.dispose()


def test_a_batch_whose_audit_cannot_be_written_does_not_block_settling(pg_url: str) -> None:
    state = SyncStateStore.from_url(pg_url)
    with state.engine.begin() as connection:  # whatever the reason, this key's audit row is refused
        connection.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.record_key = 'User:poison' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END "
            "$$ LANGUAGE plpgsql"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON sync_audit FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    state.write_ahead.begin("killed", TARGET, [record("User:poison", "p")])
    state.write_ahead.begin("killed", TARGET, [record("User:fine", "f")])
    current = {"User:poison": {"name": "p"}, "User:fine": {"name": "f"}}
    for _ in range(2):  # this run and the next: neither fails
        counts = state.settlement.settle(state.settlement.judge(TARGET, current), True)
        assert counts == {APPLIED: 1 if _ == 0 else 0, NOT_APPLIED: 0, "batches_left_in_flight": 1}
        assert set(state.settlement.pending(TARGET)) == {"User:poison"}
    assert [row["record_key"] for row in state.audit.rows(TARGET)] == ["User:fine"]
