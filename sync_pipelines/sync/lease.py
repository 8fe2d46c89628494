"""One writing run per target at a time, whoever starts it: a lease in the sync state database.

The orchestrator keeps its own runs apart (the ``sync/target`` run-queue limit, the API pools), but the state
database is shared by anything that runs a sync: the daemon's scheduled run, and an operator's job run from a
shell whose ``DAGSTER_HOME`` is another instance. Two such runs of one target would both write, and each would
take the other's live write-ahead rows for a killed run's and "settle" them. So every run that writes (a sync,
an applied plan, an undo) holds its target's lease from before it settles anything to its end; while it holds
it, any write-ahead row of the target that is not its own belongs to a run that is gone.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own, held for the
  run. A killed process's connection closes and PostgreSQL frees the lock at once; a host that vanishes is
  noticed by TCP keepalives (``KEEPALIVE``: about 25 s).
- SQLite: an exclusive ``flock`` on a file beside the database (``<database>.<target>.lease``), which the kernel
  frees when the process ends, however it ends. (An in-memory database lives in one process: a lock of that
  process.)

Who holds a lease (run id, host, pid, since) is written to ``sync_leases``, so a run turned away names it. A
second run fails at once, or waits up to ``SYNC_LEASE_WAIT_SECONDS`` for the lease to free.

A PostgreSQL lease can be lost while its run goes on: the server restarts, or the lease's connection is dropped,
and the advisory lock goes with it, so another run may take the lease. The run therefore asks before each batch
(``HeldLease.check``, one round trip) and stops with ``LeaseLost`` if its lock is gone. A ``flock`` cannot be
lost while its process lives: there the check is a no-op.

The state store reaches the leases of its database as its part ``SyncStateStore.leases`` (``Leases``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from sync_pipelines.core.database import create_tables, is_postgresql, is_sqlite
from sync_pipelines.core.errors import StopsTheRun
from sync_pipelines.core.settings import LEASE_WAIT

LEASE_WAIT_SETTING = LEASE_WAIT.name
STATE_DATABASE_SETTING = "SYNC_STATE_DATABASE_URL"
POLL_SECONDS = 0.5
# A run records itself as the holder just after taking the lease, in a transaction of its own: a run turned away in
# between reads the record again for up to this long, so that its refusal names the holder.
HOLDER_RECORDED_WITHIN_SECONDS = 3.0
# Server and client side: a peer that stops answering is given up after idle + interval * count seconds.
KEEPALIVE = {"idle": 10, "interval": 5, "count": 3}

lease_metadata = sa.MetaData()
lease_holders = sa.Table(
    "sync_leases",
    lease_metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
)

_process_locks: dict[tuple[str, str], threading.Lock] = {}
_process_locks_guard = threading.Lock()


class TargetBusy(StopsTheRun):
    """Another run holds the target's lease: this one stops before reading or writing anything."""

    setting = LEASE_WAIT_SETTING


class LeaseLost(StopsTheRun):
    """The run's lease went away mid-run (its connection dropped, the server restarted): another run may now
    write the target, so this one stops before its next batch; its write-ahead rows are settled by the next run."""

    setting = STATE_DATABASE_SETTING


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    since: datetime

    def describe(self) -> str:
        since = self.since if self.since.tzinfo else self.since.replace(tzinfo=timezone.utc)
        return (
            f"run {self.run_id} on {self.host} (pid {self.pid}) since "
            f"{since.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        )


def lease_wait_seconds() -> float:
    return LEASE_WAIT.number()


def _lock_key(target: str) -> int:
    """The advisory lock's key: a signed 64-bit number from the target's name."""
    digest = hashlib.sha256(f"sync_pipelines lease {target}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Lock:
    """The lock itself, per dialect: ``try_take`` without waiting, ``release``."""

    def try_take(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def lost(self) -> str | None:
        """Why the lock taken is no longer held, or ``None`` while it is. A lock of this process (a ``flock``,
        a thread lock) lasts as long as the process: never lost."""
        return None


class _AdvisoryLock(_Lock):
    def __init__(self, engine: Engine, target: str) -> None:
        keepalive = KEEPALIVE
        options = " ".join(
            [
                f"-c tcp_keepalives_idle={keepalive['idle']}",
                f"-c tcp_keepalives_interval={keepalive['interval']}",
                f"-c tcp_keepalives_count={keepalive['count']}",
                "-c idle_session_timeout=0",
            ]
        )
        self._engine = sa.create_engine(
            engine.url,
            poolclass=NullPool,
            connect_args={
                "options": options,
                "connect_timeout": 10,
                "keepalives": 1,
                "keepalives_idle": keepalive["idle"],
                "keepalives_interval": keepalive["interval"],
                "keepalives_count": keepalive["count"],
            },
        )
        self._key = _lock_key(target)
        self._connection: sa.Connection | None = None

    def try_take(self) -> bool:
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = connection.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar()
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def lost(self) -> str | None:
        """One round trip on the lease's own connection: ``pg_locks`` still shows our advisory lock for it. A
        dropped connection (terminated, server restarted) raises; it takes its lock with it."""
        if self._connection is None:
            return "the lease was released"
        try:
            held = self._connection.execute(
                sa.text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database()) AND classid::bigint = :high"
                    " AND objid::bigint = :low AND objsubid = 1)"
                ),
                {"high": (self._key >> 32) & 0xFFFFFFFF, "low": self._key & 0xFFFFFFFF},
            ).scalar()
        except Exception:
            return "the state database connection holding it dropped"
        return None if held else "the state database no longer shows its advisory lock"

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closing the session frees its advisory locks even if the unlock is not heard.
            with contextlib.suppress(Exception):
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            with contextlib.suppress(Exception):
                connection.close()
        self._engine.dispose()


class _FileLock(_Lock):
    def __init__(self, path: str) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def try_take(self) -> bool:
        handle = open(self._path, "ab")  # noqa: SIM115 - held open for the run
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()


class _ProcessLock(_Lock):
    def __init__(self, url: str, target: str) -> None:
        with _process_locks_guard:
            self._lock = _process_locks.setdefault((url, target), threading.Lock())

    def try_take(self) -> bool:
        return self._lock.acquire(blocking=False)

    def release(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._lock.release()


def _lock_for(engine: Engine, target: str) -> _Lock:
    if is_postgresql(engine):
        return _AdvisoryLock(engine, target)
    database = engine.url.database
    if is_sqlite(engine) and database and database != ":memory:" and "mode=memory" not in database:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target)
        return _FileLock(f"{database}.{safe}.lease")
    return _ProcessLock(engine.url.render_as_string(hide_password=True), target)


def _holder(engine: Engine, target: str) -> Holder | None:
    if not sa.inspect(engine).has_table(lease_holders.name):  # no run has held a lease here yet
        return None
    with engine.connect() as connection:
        row = connection.execute(sa.select(lease_holders).where(lease_holders.c.target == target)).first()
    return None if row is None else Holder(row.run_id, row.host, row.pid, row.since)


def _recorded_holder(engine: Engine, target: str) -> Holder | None:
    """The holder of ``target``'s lease, known to be taken: read again while the run that took it has not recorded
    itself yet, up to ``HOLDER_RECORDED_WITHIN_SECONDS``."""
    deadline = time.monotonic() + HOLDER_RECORDED_WITHIN_SECONDS
    while (holder := _holder(engine, target)) is None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS / 5)
    return holder


def _record_holder(engine: Engine, target: str, run_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.delete(lease_holders).where(lease_holders.c.target == target))
        connection.execute(
            sa.insert(lease_holders).values(
                target=target,
                run_id=run_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                since=datetime.now(timezone.utc),
            )
        )


def _forget_holder(engine: Engine, target: str, run_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.delete(lease_holders).where(lease_holders.c.target == target, lease_holders.c.run_id == run_id)
        )


class HeldLease:
    """A lease this run holds, as the run sees it: ``check`` before each write."""

    def __init__(self, target: str, lock: _Lock) -> None:
        self.target = target
        self._lock = lock

    def check(self) -> None:
        """``LeaseLost`` (one line: the cause and the setting) if the lease is gone, so that nothing more is
        written without it."""
        cause = self._lock.lost()
        if cause is not None:
            raise LeaseLost(
                f"the lease on {self.target} was lost ({cause}); this run stopped before its next batch, nothing "
                f"of which was written, and the next run settles what it left in flight; check "
                f"{STATE_DATABASE_SETTING} and that the state database stays up"
            )


@contextlib.contextmanager
def target_lease(
    engine: Engine, target: str, run_id: str, wait_seconds: float | None = None
) -> Iterator[HeldLease]:
    """Hold ``target``'s lease around the block; ``TargetBusy`` (one line naming the holder) if another run
    holds it after ``wait_seconds`` (default ``SYNC_LEASE_WAIT_SECONDS``, 0: do not wait)."""
    wait = lease_wait_seconds() if wait_seconds is None else wait_seconds
    create_tables(engine, lease_metadata)
    lock = _lock_for(engine, target)
    deadline = time.monotonic() + wait
    while not lock.try_take():
        if time.monotonic() >= deadline:
            holder = _recorded_holder(engine, target)
            who = holder.describe() if holder is not None else "another run (not recorded yet)"
            waited = f"waited {wait:g} s; " if wait else ""
            raise TargetBusy(
                f"{target} is being synced by {who}; this run stopped before reading or writing anything "
                f"({waited}one run of a target at a time): run it again once that run ends, or set "
                f"{LEASE_WAIT_SETTING} to wait for it"
            )
        time.sleep(POLL_SECONDS)
    try:
        _record_holder(engine, target, run_id)
        yield HeldLease(target, lock)
    finally:
        with contextlib.suppress(Exception):
            _forget_holder(engine, target, run_id)
        lock.release()


def live_holder(engine: Engine, target: str) -> Holder | None:
    """The run holding ``target``'s lease now, if any (without waiting; the lease is left as found, and nothing
    is written: a dry run asks this)."""
    lock = _lock_for(engine, target)
    if lock.try_take():
        lock.release()
        return None
    return _recorded_holder(engine, target) or Holder(
        "(not recorded yet)", "?", 0, datetime.now(timezone.utc)
    )


class Leases:
    """The leases of one state database, one per target: the state store's part (``SyncStateStore.leases``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hold(
        self, target: str, run_id: str, wait_seconds: float | None = None
    ) -> contextlib.AbstractContextManager[HeldLease]:
        """``target``'s lease around a block (``target_lease``)."""
        return target_lease(self.engine, target, run_id, wait_seconds)

    def holder(self, target: str) -> Holder | None:
        """The run holding ``target``'s lease now, if any (``live_holder``)."""
        return live_holder(self.engine, target)
