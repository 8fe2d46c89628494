"""Benchmark of ``user_kind_sync``: the job against the Portail DF sandbox, and its write phase on PostgreSQL.

* The job: 5,000 sample users, the sandbox in its own process with 50 ms latency and 16 slots (a 17th request in
  flight gets 429), the sync with ``PORTAILDF_MAX_CONCURRENCY=16``, each run a real ``dagster job execute``. The
  floor of the lookups is users x 0.05 s / 16 (15.6 s for 5,000); the target is the lookup phase within 1.3x
  of it. A second run after 1 % of the Portail DF accounts changed their flags (``set_record_fields``) still
  looks every user up (Portail DF has no change feed) and writes only the users whose kind changed.
* The seed's way (``bench/baselines/user_kinds_seed.py``) on the same servers: sequential lookups timed on a
  sample and extrapolated, plus its ``UPDATE ... FROM (VALUES ...)`` of every user found.
* The write phase alone: 100,000 users whose kind changes, written as the sync writes them (one set-based
  UPDATE per batch of 1,000, one transaction each), without and with the engine's audit rows; target at least
  50,000 rows/s. Beside it the seed's ``VALUES`` batches on 4 threads.

Run with ``python -m bench.user_kinds``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

from bench.baselines import user_kinds_seed
from bench.common import (
    execute_job,
    job_row,
    physical_limit,
    ratio,
    result_row,
    table,
    temporary_dagster_home,
    verdict,
)
from devkit.postgres import PostgresServer
from devkit.sandbox.portaildf import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SamplePortailDf,
    expected_outcomes,
    generate_portaildf_sample,
    generate_zlv_users,
)
from devkit.sandbox.server import SandboxProcess
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.defs.user_kinds.database import ZlvUsers
from sync_pipelines.defs.user_kinds.mapping import KINDS
from sync_pipelines.defs.user_kinds.source import TARGET, writer_for
from sync_pipelines.sync import SyncStateStore, apply_plan, plan_changes

PIPELINE = "user_kind_sync"
LOOKUP_USERS = 5_000
LATENCY_SECONDS = 0.050
SLOTS = 16
WRITE_USERS = 100_000
BATCH_SIZE = 1_000
SEED_LOOKUP_SAMPLE = 300
LOOKUP_TARGET_FACTOR = 1.3
WRITE_TARGET_ROWS_PER_SECOND = 50_000
# (exterieur, gestionnaire) flags that give each kind: the seed's mapping table read backwards.
FLAGS_OF_KIND = {
    "prestataire": (True, False),
    "gestionnaire": (False, True),
    "prestataire, gestionnaire": (True, True),
    "aucun": (False, False),
}

log = logging.getLogger("bench.user_kinds")


# -- the job against the sandbox ----------------------------------------------------------------------------------
def flag_changes(sample: SamplePortailDf, count: int) -> list[dict[str, Any]]:
    """``set_record_fields`` changes that give ``count`` users with exactly one Portail DF account another kind."""
    changes = []
    for user in sample.users:
        kind = sample.expected[user.id]
        if kind not in KINDS:
            continue
        exterieur, gestionnaire = FLAGS_OF_KIND[KINDS[(KINDS.index(kind) + 1) % len(KINDS)]]
        changes.append(
            {
                "action": "set_record_fields",
                "email": user.email,
                "fields": {"exterieur": exterieur, "gestionnaire": gestionnaire},
            }
        )
        if len(changes) == count:
            break
    return changes


def job_runs(server: PostgresServer, users: int) -> list[dict[str, Any]]:
    """First run, 1 % of the accounts changed, and the seed's way, as rows of the combined table."""
    sample = generate_portaildf_sample(users)  # the sandbox serves the same sample (same size, seed 7)
    with_email = [user for user in sample.users if user.email and user.email.strip()]
    zlv_url = server.url(server.create_database())
    seed_zlv(zlv_url, sample.users)
    zlv = ZlvUsers.from_url(zlv_url)
    sandbox_args = ["--size", str(users), "--latency-ms", str(LATENCY_SECONDS * 1000)]
    with (
        SandboxProcess("portaildf", [*sandbox_args, "--max-concurrency", str(SLOTS)]) as sandbox,
        temporary_dagster_home("bench-user-kinds-") as home,
    ):
        env = {
            "PORTAILDF_API_URL": f"{sandbox.url}/api",
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
            "PORTAILDF_AUTH_VERSION": "v2",
            "PORTAILDF_MAX_CONCURRENCY": str(SLOTS),
            "ZLV_DATABASE_URL": zlv_url,
            "ZLV_INCLUDE_DELETED_USERS": "true",  # as the seed did
            "SYNC_STATE_DATABASE_URL": server.url(server.create_database()),
        }

        def measured(name: str, expected: dict[str, str | None]) -> dict[str, Any]:
            sandbox.reset_counters()
            job = execute_job(PIPELINE, env, home, TARGET)
            stats = sandbox.stats()
            held = {user.id: user.kind for user in zlv.read_users(include_deleted=True)}
            wrong = sum(1 for user_id, kind in held.items() if kind != expected.get(user_id))
            lookup_seconds = float(job.summary.get("lookup_seconds", 0.0))
            lookups = int(job.summary.get("processed", 0)) - int(job.summary.get("no_email", 0))
            lookup_limit = physical_limit(lookups, LATENCY_SECONDS, SLOTS)
            note = (
                f"lookup phase {lookup_seconds:.1f} s for {lookups} users = "
                f"{ratio(lookup_seconds, lookup_limit)}x its limit of {lookup_limit:.1f} s; "
                f"ZLV {'matches' if not wrong else f'DIFFERS FROM ({wrong} users)'} the expected kinds"
            )
            row = job_row(
                PIPELINE,
                name,
                job,
                stats,
                latency_seconds=LATENCY_SECONDS,
                slots=SLOTS,
                note=note,
                records=users,
                row_writes=int(job.summary.get("updated", 0)),
            )
            met = bool(lookup_seconds) and lookup_seconds <= LOOKUP_TARGET_FACTOR * lookup_limit
            row["target"] = f"lookups <= {LOOKUP_TARGET_FACTOR}x limit: {verdict(met)}"
            return row

        first = measured("first run", sample.kinds_after_sync())
        changed = max(1, users // 100)
        changes = flag_changes(sample, changed)
        for change in changes:
            sandbox.change_state(change)
        before = sample.kinds_after_sync()
        outcomes = expected_outcomes(sample.users, sandbox.state()["accounts"])
        after = {key: outcomes[key] if outcomes[key] in KINDS else kind for key, kind in before.items()}
        expected_writes = sum(1 for key in before if after[key] != before[key])
        delta = measured(f"delta: {changed} accounts (1 %) changed flags", after)
        delta["target"] += (
            f"; {expected_writes} row writes: {verdict(delta['row writes'] == expected_writes)}"
        )

        # The seed's lookups, one at a time, on a sample of the users, extrapolated to every user with an email.
        emails = [user.email for user in with_email][:SEED_LOOKUP_SAMPLE]
        api_url = f"{sandbox.url}/api"
        token = user_kinds_seed.login(api_url, DEFAULT_USERNAME, DEFAULT_PASSWORD)
        started = time.perf_counter()
        found = user_kinds_seed.lookup_sequential(api_url, token, emails)
        per_user = (time.perf_counter() - started) / len(emails)
    # It writes every user whose lookup returned a record, changed or not, as VALUES batches on 4 threads.
    seed_writes = round(sum(1 for kind in found.values() if kind) / len(found) * len(with_email))
    current = {user.id: user.kind or "aucun" for user in zlv.read_users(include_deleted=True)}
    rewrite = [(user.id, current[user.id]) for user in with_email[:seed_writes]]
    started = time.perf_counter()
    user_kinds_seed.write_batches(zlv_url, rewrite)
    seed_write_seconds = time.perf_counter() - started
    baseline_seconds = per_user * len(with_email) + seed_write_seconds
    baseline_limit = physical_limit(len(with_email), LATENCY_SECONDS, SLOTS)
    for row in (first, delta):
        row["speed-up vs baseline"] = ratio(baseline_seconds, row["sync step s"], 1)
    baseline = result_row(
        PIPELINE,
        "baseline: seed script",
        records=users,
        requests=len(with_email) + 1,
        row_writes=seed_writes,
        sync_step_s=baseline_seconds,
        limit_s=baseline_limit,
        ratio_to_limit=ratio(baseline_seconds, baseline_limit, 1),
        note=f"sequential lookups timed on {len(emails)} users ({per_user:.3f} s/user) and extrapolated; "
        f"rewrites every user found ({seed_writes}, {seed_write_seconds:.2f} s), changed or not",
    )
    return [first, delta, baseline]


# -- the write phase alone ----------------------------------------------------------------------------------------
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


def write_phase(server: PostgresServer, count: int) -> list[dict[str, Any]]:
    zlv_url = server.url(server.create_database())
    seed_zlv(zlv_url, generate_zlv_users(count, seed=11))
    users = ZlvUsers.from_url(zlv_url)
    bare = timed_writes_without_audit(users)
    audited_pg = timed_writes_with_audit(
        users, SyncStateStore.from_url(server.url(server.create_database())), "bench-pg"
    )
    audited_sqlite = timed_writes_with_audit(users, SyncStateStore.from_url("sqlite://"), "bench-sqlite")
    seed = timed_seed_writes(users, zlv_url)
    name = f"write phase, {count:,} changed users"
    target = WRITE_TARGET_ROWS_PER_SECOND

    def row(run: str, seconds: float, note: str, **extra: Any) -> dict[str, Any]:
        return result_row(
            PIPELINE,
            f"{name}: {run}",
            records=count,
            row_writes=count,
            sync_step_s=seconds,
            note=f"{count / seconds:,.0f} rows/s; {note}",
            **extra,
        )

    return [
        row(
            "as the sync writes",
            audited_pg,
            f"set-based UPDATE per 1,000 + the engine's audit rows on PostgreSQL; with the audit on SQLite "
            f"{count / audited_sqlite:,.0f} rows/s",
            speed_up_vs_baseline=ratio(seed, audited_pg, 1),
            target=f">= {target:,} rows/s: {verdict(count / audited_pg >= target)}",
        ),
        row(
            "ZLV UPDATEs alone",
            bare,
            "the same batches without the audit log",
            speed_up_vs_baseline=ratio(seed, bare, 1),
            target=f">= {target:,} rows/s: {verdict(count / bare >= target)}",
        ),
        row("baseline: seed's VALUES batches", seed, "4 threads, synchronous_commit off"),
    ]


def run(users: int = LOOKUP_USERS, write_users: int = WRITE_USERS) -> list[dict[str, Any]]:
    with PostgresServer() as server:
        return [*job_runs(server, users), *write_phase(server, write_users)]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=LOOKUP_USERS, help="ZLV users the job syncs")
    parser.add_argument(
        "--write-users", type=int, default=WRITE_USERS, help="changed users of the write phase"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = run(args.users, args.write_users)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
