"""Benchmark of the user-kind sync: the lookup phase against the Portail DF sandbox, the write phase on PostgreSQL.

* Lookups: 5,000 sample users, the sandbox in its own process with 50 ms latency and 16 slots (a 17th request in
  flight gets 429), the sync with 16 concurrent lookups. The floor is users x 0.05 s / 16 (15.6 s for 5,000);
  the target is within 1.3x of it. The seed asked one user at a time (~1 s per user against the real API).
* Writes: 100,000 users whose kind changes, written as the sync writes them (one set-based UPDATE per batch of
  1,000, one transaction each), with and without the engine's audit rows; target at least 50,000 rows/s.
* The seed's way (``bench/baselines/user_kinds_seed.py``) on the same servers: sequential lookups (timed on a
  sample and extrapolated to 5,000) and ``UPDATE ... FROM (VALUES ...)`` batches on 4 threads.

Run with ``python -m bench.user_kinds``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from bench.baselines import user_kinds_seed
from sync_pipelines.core.shards import SHARD_KEYS
from sync_pipelines.defs.user_kinds.assets import TARGET, sync_user_kinds, writer_for
from sync_pipelines.defs.user_kinds.database import ZlvUsers
from sync_pipelines.defs.user_kinds.mapping import KINDS
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase
from sync_pipelines.sandbox.portaildf import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    generate_portaildf_sample,
    generate_zlv_users,
)
from sync_pipelines.sandbox.server import SandboxProcess
from sync_pipelines.sandbox.zlv import seed_zlv
from sync_pipelines.sync import SyncRunConfig, SyncStateStore, apply_plan, plan_changes
from sync_pipelines_tests.harness.postgres import PostgresServer

LOOKUP_USERS = 5_000
LATENCY_SECONDS = 0.050
SLOTS = 16
WRITE_USERS = 100_000
BATCH_SIZE = 1_000
SEED_LOOKUP_SAMPLE = 300
LOOKUP_TARGET_FACTOR = 1.3
WRITE_TARGET_ROWS_PER_SECOND = 50_000

log = logging.getLogger("bench.user_kinds")


def next_kinds(users: ZlvUsers) -> list[tuple[str, str]]:
    """Every user with a kind other than the one it holds: 100% of the rows change.

    The table is vacuumed and analyzed first, untimed: each round leaves 100,000 dead rows, and a production
    ``users`` table has the planner statistics that a freshly loaded one lacks until autovacuum runs.
    """
    with users.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE users")
    return [
        (user.id, KINDS[(KINDS.index(user.kind) + 1) % len(KINDS)] if user.kind in KINDS else KINDS[0])
        for user in users.read_users(include_deleted=True)
    ]


def timed_writes_without_audit(users: ZlvUsers) -> float:
    changes = next_kinds(users)
    started = time.perf_counter()
    for start in range(0, len(changes), BATCH_SIZE):
        failures = users.write_kinds(changes[start : start + BATCH_SIZE])
        assert not failures
    return time.perf_counter() - started


def timed_writes_with_audit(users: ZlvUsers, state: SyncStateStore, run_id: str) -> float:
    changes = next_kinds(users)
    current = {user.id: {"kind": user.kind} for user in users.read_users(include_deleted=True)}
    plan = plan_changes(TARGET, {user_id: {"kind": kind} for user_id, kind in changes}, current)
    result = asyncio.run(
        apply_plan(plan, writer_for(users), state=state, run_id=run_id, batch_size=BATCH_SIZE, log=log)
    )
    assert result.written == len(changes) and not result.failures
    return result.seconds


def timed_seed_writes(users: ZlvUsers, dsn: str) -> float:
    changes = next_kinds(users)
    started = time.perf_counter()
    written = user_kinds_seed.write_batches(dsn, changes)
    assert written == len(changes)
    return time.perf_counter() - started


def lookup_phase(server: PostgresServer, sandbox: SandboxProcess) -> dict[str, Any]:
    sample = generate_portaildf_sample(LOOKUP_USERS)  # the sandbox serves the same sample (size 5000, seed 7)
    zlv_url = server.url(server.create_database())
    seed_zlv(zlv_url, sample.users)
    state = SyncStateStore.from_url(server.url(server.create_database()))
    portaildf = PortailDfResource(
        api_url=f"{sandbox.url}/api",
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        auth_version="v2",
        max_concurrency=SLOTS,
    )
    sandbox.reset_counters()
    outcome = asyncio.run(
        sync_user_kinds(
            log,
            "bench",
            SyncRunConfig(),
            portaildf,
            ZlvDatabase(database_url=zlv_url, include_deleted=True),
            state,
            set(SHARD_KEYS),
        )
    )
    looked_up = len(outcome.lookups.outcomes) + len(outcome.lookups.failures)
    wrong = [
        user_id
        for user_id, found in outcome.lookups.outcomes.items()
        if (found.kind or found.category) != sample.expected[user_id]
    ]
    assert not outcome.lookups.failures and not wrong, (outcome.lookups.failures, wrong[:5])
    stats = sandbox.stats()
    floor = looked_up * LATENCY_SECONDS / SLOTS
    return {
        "users": LOOKUP_USERS,
        "lookups": looked_up,
        "lookup_seconds": round(outcome.lookups.seconds, 2),
        "lookup_floor_seconds": round(floor, 2),
        "lookup_floor_seconds_5000": round(LOOKUP_USERS * LATENCY_SECONDS / SLOTS, 2),
        "lookup_vs_floor": round(outcome.lookups.seconds / floor, 3),
        "lookups_per_second": round(outcome.lookups.rate, 1),
        "server_max_in_flight": stats["max_in_flight"],
        "server_429s": stats["statuses"].get("429", 0),
        "sync_written": outcome.result.written if outcome.result else 0,
        "sync_write_seconds": round(outcome.write_seconds, 3),
    }


def seed_lookup_phase(sandbox: SandboxProcess) -> dict[str, Any]:
    sample = generate_portaildf_sample(LOOKUP_USERS)
    emails = [u.email for u in sample.users if u.email and u.email.strip()][:SEED_LOOKUP_SAMPLE]
    api_url = f"{sandbox.url}/api"
    token = user_kinds_seed.login(api_url, DEFAULT_USERNAME, DEFAULT_PASSWORD)
    started = time.perf_counter()
    user_kinds_seed.lookup_sequential(api_url, token, emails)
    per_user = (time.perf_counter() - started) / len(emails)
    return {
        "seed_lookup_seconds_per_user": round(per_user, 4),
        "seed_lookup_seconds_5000_extrapolated": round(per_user * LOOKUP_USERS, 1),
    }


def write_phase(server: PostgresServer) -> dict[str, Any]:
    zlv_url = server.url(server.create_database())
    started = time.perf_counter()
    seed_zlv(zlv_url, generate_zlv_users(WRITE_USERS, seed=11))
    seeding = time.perf_counter() - started
    users = ZlvUsers.from_url(zlv_url)
    bare = timed_writes_without_audit(users)
    audited_pg = timed_writes_with_audit(
        users, SyncStateStore.from_url(server.url(server.create_database())), "bench-pg"
    )
    audited_sqlite = timed_writes_with_audit(users, SyncStateStore.from_url("sqlite://"), "bench-sqlite")
    seed = timed_seed_writes(users, zlv_url)
    return {
        "write_rows": WRITE_USERS,
        "write_seconds_without_audit": round(bare, 3),
        "write_rows_per_second_without_audit": round(WRITE_USERS / bare),
        "write_seconds_with_audit_postgresql": round(audited_pg, 3),
        "write_rows_per_second_with_audit_postgresql": round(WRITE_USERS / audited_pg),
        "write_seconds_with_audit_sqlite": round(audited_sqlite, 3),
        "write_rows_per_second_with_audit_sqlite": round(WRITE_USERS / audited_sqlite),
        "seed_write_seconds": round(seed, 3),
        "seed_write_rows_per_second": round(WRITE_USERS / seed),
        "seeding_seconds": round(seeding, 1),
    }


def report(figures: dict[str, Any]) -> None:
    lookup_ok = figures["lookup_vs_floor"] <= LOOKUP_TARGET_FACTOR
    target = WRITE_TARGET_ROWS_PER_SECOND

    def verdict(rate: float) -> str:
        return "met" if rate >= target else "MISSED"

    print("user_kinds benchmark")
    print(
        f"  lookups: {figures['lookups']} users (of {figures['users']}; blank emails are not looked up) in "
        f"{figures['lookup_seconds']} s; floor {figures['lookup_floor_seconds']} s "
        f"({figures['lookup_floor_seconds_5000']} s for {figures['users']}); "
        f"{figures['lookup_vs_floor']}x the floor (target <= {LOOKUP_TARGET_FACTOR}x: "
        f"{'met' if lookup_ok else 'MISSED'}); {figures['lookups_per_second']}/s, "
        f"server saw at most {figures['server_max_in_flight']} in flight, {figures['server_429s']} 429s"
    )
    print(
        f"  seed's sequential lookups: {figures['seed_lookup_seconds_per_user']} s/user on this sandbox -> "
        f"{figures['seed_lookup_seconds_5000_extrapolated']} s for {figures['users']} users"
    )
    bare = figures["write_rows_per_second_without_audit"]
    audited = figures["write_rows_per_second_with_audit_postgresql"]
    print(
        f"  writes, {figures['write_rows']} changed users on PostgreSQL (target >= {target} rows/s): "
        f"{bare} rows/s for the ZLV UPDATEs alone ({verdict(bare)}); {audited} rows/s with the audit log "
        f"on PostgreSQL ({verdict(audited)}), {figures['write_rows_per_second_with_audit_sqlite']} rows/s with "
        f"it on SQLite"
    )
    print(f"  seed's VALUES batches on 4 threads: {figures['seed_write_rows_per_second']} rows/s")
    print(f"  (machine load average at the end: {figures['load_average_1min']})")


def main() -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    figures: dict[str, Any] = {}
    with PostgresServer() as server:
        with SandboxProcess(
            "portaildf",
            ["--size", str(LOOKUP_USERS), "--latency-ms", "50", "--max-concurrency", str(SLOTS)],
        ) as sandbox:
            figures.update(lookup_phase(server, sandbox))
            figures.update(seed_lookup_phase(sandbox))
        figures.update(write_phase(server))
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    report(figures)
    return figures


if __name__ == "__main__":
    main()
