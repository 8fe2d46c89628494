"""The target's lease (``sync.lease``): a sync, an undo and an applied plan are refused while another run holds
it, naming that run, its host and pid, and the setting; a bounded wait takes it once it frees; a killed holder's
lease frees at once; a dry run is never refused, and leaves the live run's changes in flight alone. On SQLite
and PostgreSQL. A PostgreSQL lease lost mid-run stops the run before its next batch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.sync.lease import LeaseLost, TargetBusy, target_lease
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord
from sync_pipelines.sync.replay import reviewed_source
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.core.test_plans_and_undo import HELD, WANTED, DictSource, dump, run, undo

pytestmark = pytest.mark.integration

HOLD = """
import sys, time
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sync.lease import target_lease
engine = create_database_engine(sys.argv[1], "SYNC_STATE_DATABASE_URL")
with target_lease(engine, "fake", "holder-run"):
    print("held", flush=True)
    time.sleep(600)
"""


# The same holder, slow to record itself: it has taken the lease when it says "taken", and records itself a second
# later (the gap every run has, a transaction long, between taking the lease and recording itself).
HOLD_RECORDING_LATE = """
import sys, time
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sync import lease
record = lease._record_holder
def record_late(*args):
    print("taken", flush=True)
    time.sleep(1)
    record(*args)
lease._record_holder = record_late
engine = create_database_engine(sys.argv[1], "SYNC_STATE_DATABASE_URL")
with lease.target_lease(engine, "fake", "holder-run"):
    time.sleep(600)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> SyncStateStore:
    if request.param == "sqlite":
        return SyncStateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    return SyncStateStore.from_url(request.getfixturevalue("make_pg_url")())


def holder_process(state: SyncStateStore, script: str = HOLD, says: str = "held") -> subprocess.Popen[str]:
    """Another process holding the lease of target ``fake``, as a run of another Dagster instance would."""
    url = state.engine.url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    assert process.stdout is not None and process.stdout.readline().strip() == says
    return process


def test_a_sync_an_undo_and_an_applied_plan_are_refused_naming_the_holder(state: SyncStateStore) -> None:
    held = {key: dict(values) for key, values in HELD.items()}
    source = DictSource(held, WANTED)
    run(source, state, "dry-1", dry_run=True)
    run(source, state, "run-0")
    source.desired = HELD
    run(source, state, "dry-2", dry_run=True)
    audit = state.audit.rows()
    holder = holder_process(state)
    try:
        attempts = {
            "sync": lambda: run(source, state, "run-1"),
            "undo": lambda: undo(source, state, "undo-1", "run-0", dry_run=False),
            "plan": lambda: run(reviewed_source(source, state, "dry-2"), state, "apply-1"),
        }
        for name, attempt in attempts.items():
            with pytest.raises(TargetBusy) as refused:
                attempt()
            message = str(refused.value)
            assert "\n" not in message, name
            assert f"run holder-run on {socket.gethostname()} (pid {holder.pid})" in message, name
            assert "SYNC_LEASE_WAIT_SECONDS" in message, name
        assert held == WANTED and state.audit.rows() == audit
        # A dry run is not refused.
        assert run(source, state, "dry-3", dry_run=True).plan.counts()["update"] == 3
    finally:
        holder.kill()
        holder.wait()


def test_a_run_turned_away_while_the_holder_records_itself_still_names_it(state: SyncStateStore) -> None:
    holder = holder_process(state, HOLD_RECORDING_LATE, says="taken")
    try:
        with (
            pytest.raises(TargetBusy) as refused,
            target_lease(state.engine, "fake", "second-run", wait_seconds=0),
        ):
            pass
        assert f"run holder-run on {socket.gethostname()} (pid {holder.pid})" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holders_lease_frees_at_once(state: SyncStateStore) -> None:
    holder = holder_process(state)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with target_lease(state.engine, "fake", "next-run", wait_seconds=10):
        pass
    assert time.monotonic() - started < 5


def test_a_bounded_wait_takes_the_lease_once_it_frees(
    state: SyncStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = threading.Event()

    def hold_for_a_second() -> None:
        with target_lease(state.engine, "fake", "first-run"):
            taken.set()
            time.sleep(1)

    first = threading.Thread(target=hold_for_a_second)
    first.start()
    taken.wait(10)
    monkeypatch.setenv("SYNC_LEASE_WAIT_SECONDS", "0.2")
    with pytest.raises(TargetBusy, match="waited 0.2 s"):
        run(DictSource({}, {}), state, "impatient")
    monkeypatch.setenv("SYNC_LEASE_WAIT_SECONDS", "20")
    source = DictSource({key: dict(values) for key, values in HELD.items()}, WANTED)
    run(source, state, "patient")
    first.join()
    assert source.held == WANTED


def test_a_dry_run_leaves_the_changes_of_a_run_writing_now_alone(state: SyncStateStore) -> None:
    """The rows in flight of the run holding the lease are its own: a dry run shows no settlement of them."""
    change = (FieldChange("grade", "1", "2"),)
    state.write_ahead.begin("holder-run", "fake", [PlannedRecord("a", Action.UPDATE, {"grade": "2"}, change)])
    holder = holder_process(state)
    try:
        outcome = run(DictSource({"a": {"grade": "1"}}, {"a": {"grade": "1"}}), state, "dry", dry_run=True)
        assert not outcome.settlement
    finally:
        holder.kill()
        holder.wait()
    outcome = run(DictSource({"a": {"grade": "1"}}, {"a": {"grade": "1"}}), state, "dry-2", dry_run=True)
    assert outcome.settlement.counts() == {"applied": 0, "not_applied": 1}


class LeaseDroppedAfterFirstBatch(DictSource):
    """Writes like ``DictSource``; once its first batch is written, the lease's connection is terminated from
    another connection, as a PostgreSQL restart or a dropped connection would end it, while the run goes on."""

    def __init__(self, state: SyncStateStore, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.state = state
        self.batches = 0

    def write(self, batch):
        failures = super().write(batch)
        self.batches += 1
        if self.batches == 1:
            with self.state.engine.connect() as connection:
                terminated = connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).scalars()
                assert list(terminated) == [True]
        return failures


def test_a_lease_lost_mid_run_stops_the_run_before_its_next_batch(make_pg_url) -> None:
    state = SyncStateStore.from_url(make_pg_url())
    held = {key: dict(values) for key, values in HELD.items()}
    source = LeaseDroppedAfterFirstBatch(state, held, WANTED)
    with pytest.raises(LeaseLost) as lost:
        run(source, state, "run-1", batch_size=1)
    message = str(lost.value)
    assert "\n" not in message
    assert message.startswith("the lease on fake was lost (the state database connection holding it dropped)")
    assert "SYNC_STATE_DATABASE_URL" in message
    # Only the first batch was written; the audit matches the target, and nothing is left in flight.
    assert source.batches == 1
    assert held == {"a": {"grade": "2"}, "b": {"grade": "1"}, "c": {"grade": "1"}}
    assert [(row["record_key"], row["new_value"], row["status"]) for row in state.audit.rows()] == [
        ("a", "2", "applied")
    ]
    assert dump(state)["sync_batches"] == []
    # The lease is free again: the next run takes it and writes the rest.
    source.batches = 2
    run(source, state, "run-2", batch_size=1)
    assert held == WANTED
