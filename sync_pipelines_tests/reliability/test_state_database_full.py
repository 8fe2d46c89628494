"""The sync state database refusing a write mid-run (its disk full): the run stops with the project's one-line
failure naming SYNC_STATE_DATABASE_URL, not the driver's text with the rows it stopped at; the batch it could
not record stays in flight and the next run settles it, so the audit still matches RT."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.rt.test_rt_sync import RtWorld, rt_world

pytestmark = pytest.mark.integration

DISK_FULL = """
CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'could not extend file "base/16384/16385": No space left on device' USING ERRCODE = 'disk_full';
END $$;
CREATE TRIGGER disk_full BEFORE INSERT ON sync_audit FOR EACH ROW EXECUTE FUNCTION disk_full();
"""


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with rt_world(make_pg_url, monkeypatch) as world:
        yield world


def test_a_full_state_database_fails_the_run_in_one_line_naming_the_setting(world: RtWorld) -> None:
    differing = world.differing()
    assert world.run({"dry_run": True}).success  # the state's tables exist
    engine = create_database_engine(world.state_url, "SYNC_STATE_DATABASE_URL")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(DISK_FULL)
        result = world.run({"batch_size": 50})
        assert not result.success
        failures = [
            event.step_failure_data.error
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error is not None
        ]
        [error] = failures
        description = error.message.split("\n")[0]
        assert "the sync state database refused a write: DiskFull: could not extend file" in description
        assert "check SYNC_STATE_DATABASE_URL" in description
        assert "COPY" not in error.message
        assert not any(s.student_id in error.message for s in world.students)

        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER disk_full ON sync_audit")
        assert world.run().success
    finally:
        engine.dispose()
    assert world.differing() == set()
    store = SyncStateStore.from_url(world.state_url)
    assert store.settlement.pending("rt_user_custom_fields") == {}
    audit = store.audit.rows("rt_user_custom_fields")
    applied = {row["record_key"] for row in audit if row["status"] == "applied"}
    assert applied == {str(key) for key in differing}
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM sync_batches")).scalar_one() == 0
