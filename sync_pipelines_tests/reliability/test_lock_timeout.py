"""Defect 7: a lock held on ZLV's ``users`` (``LOCK TABLE users``) no longer makes the sync wait without limit: it
fails after ``SYNC_LOCK_TIMEOUT_SECONDS`` naming the table and the setting."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines_tests.reliability.test_user_kinds_reliability import kinds_world
from sync_pipelines_tests.user_kinds.test_user_kinds_sync import failure_text

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["ACCESS EXCLUSIVE", "EXCLUSIVE"])  # blocks the read too / only the write
def test_a_held_lock_fails_the_run_naming_the_table_and_the_setting(
    pg_url: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_LOCK_TIMEOUT_SECONDS", "1")
    with kinds_world(pg_url) as world:
        holder = create_database_engine(pg_url, "ZLV_DATABASE_URL").connect()
        holder.execute(sa.text(f"LOCK TABLE users IN {mode} MODE"))  # held by another session until the end
        outcome: dict = {}
        started = time.monotonic()
        thread = threading.Thread(target=lambda: outcome.setdefault("result", world.run()), daemon=True)
        thread.start()
        thread.join(90)
        seconds = time.monotonic() - started
        holder.rollback()
        holder.close()
        assert not thread.is_alive(), "the run waited for the lock without limit"
    result = outcome["result"]
    assert not result.success and seconds < 60
    message = failure_text(result)
    assert "'users'" in message and "SYNC_LOCK_TIMEOUT_SECONDS" in message and "ZLV_DATABASE_URL" in message
