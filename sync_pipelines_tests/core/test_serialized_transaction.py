"""``serialized_transaction``: work that checks the schema and then changes it (creating the state tables, the
students snapshot's replacement, EduRPG's ``"ExternalRef"``) runs one session at a time, on PostgreSQL and
SQLite; on PostgreSQL only transactions of the same name wait for each other. Threads stand in for runs
started together: each has its own connection."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine, create_tables, serialized_transaction

pytestmark = pytest.mark.integration

HOLD_SECONDS = 0.5


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def _second_waits_for_first(url: str, first_name: str, second_name: str) -> tuple[float, float]:
    """When the second transaction got in, and when the first (held ``HOLD_SECONDS``) committed."""
    engine = create_database_engine(url, "TEST_DATABASE_URL")
    held = threading.Event()
    times: dict[str, float] = {}

    def first() -> None:
        with serialized_transaction(engine, first_name) as connection:
            connection.exec_driver_sql("CREATE TABLE first_holder (id INTEGER)")
            held.set()
            time.sleep(HOLD_SECONDS)
        times["first committed"] = time.monotonic()

    def second() -> None:
        assert held.wait(10), "the first transaction never started"
        with serialized_transaction(engine, second_name) as connection:
            times["second in"] = time.monotonic()
            connection.exec_driver_sql("SELECT 1")

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(first), pool.submit(second)]:
            future.result(timeout=30)
    return times["second in"], times["first committed"]


def test_a_transaction_of_the_same_name_waits_for_the_first_to_commit(url: str) -> None:
    second_in, first_committed = _second_waits_for_first(url, "asset_students", "asset_students")
    assert second_in >= first_committed - 0.05


def test_on_postgresql_another_name_does_not_wait(pg_url: str) -> None:
    second_in, first_committed = _second_waits_for_first(pg_url, "asset_students", "EduRPG ExternalRef")
    assert second_in < first_committed - HOLD_SECONDS / 2


def test_a_failed_transaction_rolls_back_and_frees_the_name(url: str) -> None:
    engine = create_database_engine(url, "TEST_DATABASE_URL")
    with pytest.raises(RuntimeError), serialized_transaction(engine, "asset_students") as connection:
        connection.exec_driver_sql("CREATE TABLE rolled_back (id INTEGER)")
        raise RuntimeError("the replacement failed half way")
    with serialized_transaction(engine, "asset_students") as connection:
        assert not sa.inspect(connection).has_table("rolled_back")


def _metadata(*names: str) -> sa.MetaData:
    metadata = sa.MetaData()
    for name in names:
        sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("note", sa.Text))
    return metadata


def test_runs_creating_the_tables_of_a_fresh_database_at_once_all_succeed(url: str) -> None:
    engine = create_database_engine(url, "TEST_DATABASE_URL")
    metadata = _metadata("audit", "plans", "leases")
    start = threading.Barrier(6)

    def open_fresh() -> None:
        start.wait(10)
        create_tables(engine, metadata)

    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(open_fresh) for _ in range(6)]:
            future.result(timeout=60)
    assert set(sa.inspect(engine).get_table_names()) >= {"audit", "plans", "leases"}


def test_a_database_holding_every_table_is_only_read(tmp_path: Path) -> None:
    """Opening the state store takes no write lock when its tables exist: a read-only database opens."""
    path = tmp_path / "state.sqlite"
    create_tables(
        create_database_engine(f"sqlite:///{path}", "TEST_DATABASE_URL"), _metadata("audit", "plans")
    )
    read_only = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    create_tables(read_only, _metadata("audit", "plans"))
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        create_tables(read_only, _metadata("audit", "plans", "leases"))
    read_only.dispose()
