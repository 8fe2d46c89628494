"""Two runs of one sync started at once from two Dagster instances (two ``DAGSTER_HOME``s, as the daemon's
scheduled run and an operator's ``dagster job execute`` in a shell) sharing one state database: the target's
lease lets one write; the other stops at once, naming the run that holds the lease and where it runs. The target,
the audit and EduRPG's rows end exactly as one run leaves them. Each sync once, the state on PostgreSQL or on SQLite
(both dialects' leases are also raced in ``core/test_lease.py``)."""

from __future__ import annotations

import contextlib
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.harness import warm_python
from sync_pipelines_tests.operations.dagster_processes import deployment_environment
from sync_pipelines_tests.operations.sync_worlds import WORLDS, SyncWorld

pytestmark = pytest.mark.e2e

# Small batches with a pause between them: a run lasts long enough (~5 s) for the other to meet its lease (both
# commands are forked from a warm interpreter at once, so each reaches the lease within a second of the other).
SLOW_RUN = {"batch_size": 10, "batch_delay_seconds": 0.5}
# The Bakaláři world writes about four times as many rows (classes, subjects, teachers, enrollments): batches
# four times as large keep its run as long as the others'.
SLOW_RUNS = {"bakalari_sync": {**SLOW_RUN, "batch_size": 40}}


# Every sync, and each state dialect at least once: the lease is the same code for every sync.
CASES = [("rt_user_sync", "sqlite"), ("bakalari_sync", "postgresql"), ("user_kind_sync", "postgresql")]


@pytest.fixture
def state_url(dialect: str, tmp_path: Path, new_database: Callable[[], str]) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return new_database()


@pytest.fixture
def world(job: str, new_database: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield WORLDS[job](new_database, stack)


def start_run(world: SyncWorld, state_url: str, home: Path) -> warm_python.ForkedCommand:
    """``dagster job execute`` of the world's job, in its own Dagster instance (``home``)."""
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = home / "run.yaml"
    config.write_text(yaml.safe_dump({"ops": {world.asset: {"config": SLOW_RUNS.get(world.job, SLOW_RUN)}}}))
    env = deployment_environment(home, "", {**world.env, "SYNC_STATE_DATABASE_URL": state_url})
    env.pop("DAGSTER_POSTGRES_URL")
    execute = ["-m", "dagster", "job", "execute", "-m", "sync_pipelines.definitions"]
    return warm_python.start([*execute, "-j", world.job, "-c", str(config)], env=env, cwd=home)


def orphan_classes(edurpg_url: str) -> int:
    """EduRPG ``Class`` rows no ``ExternalRef`` points at (a class created twice leaves one)."""
    engine = create_database_engine(edurpg_url, "EDURPG_DATABASE_URL")
    query = sa.text(
        'SELECT count(*) FROM "Class" c WHERE NOT EXISTS '
        '(SELECT 1 FROM "ExternalRef" r WHERE r."type" = \'class\' AND r."internalId" = c.id)'
    )
    try:
        with engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize(("job", "dialect"), CASES)
def test_two_instances_run_one_sync_at_once_and_only_one_writes(
    world: SyncWorld, state_url: str, tmp_path: Path
) -> None:
    stale_before = world.stale()
    assert stale_before, "the world must give the runs something to write"
    orphans_before = orphan_classes(world.databases["edurpg"]) if "edurpg" in world.databases else 0

    runs = [start_run(world, state_url, tmp_path / name) for name in ("instance_a", "instance_b")]
    completed = [run.result(timeout=600) for run in runs]
    outputs = [done.stdout + done.stderr for done in completed]
    codes = [done.returncode for done in completed]
    assert sorted(code == 0 for code in codes) == [False, True], (codes, [o[-3000:] for o in outputs])
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)

    store = SyncStateStore.from_url(state_url)
    audit = store.audit.rows()
    run_ids = {row["run_id"] for row in audit}
    assert len(run_ids) == 1, f"audit rows of more than one run: {run_ids}"
    [run_id] = run_ids
    # The refused run names the one holding the lease, and where it runs, in one line with the setting.
    refusal = [line for line in outputs[loser].splitlines() if "is being synced by" in line]
    assert refusal, outputs[loser][-3000:]
    assert f"run {run_id} on {socket.gethostname()} (pid {runs[winner].pid})" in refusal[0]
    assert "SYNC_LEASE_WAIT_SECONDS" in refusal[0]

    # Each change audited once, as applied; nothing left in flight; no lease left recorded.
    changes = Counter((row["record_key"], row["field"]) for row in audit)
    assert max(changes.values()) == 1, [change for change, n in changes.items() if n > 1][:5]
    assert {row["status"] for row in audit} == {"applied"}
    assert store.settlement.pending(world.asset) == {}
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM sync_leases")).scalar_one() == 0
    if "edurpg" in world.databases:
        assert orphan_classes(world.databases["edurpg"]) == orphans_before
    # The target holds what one run writes: every stale record in step.
    assert world.stale() == set()
