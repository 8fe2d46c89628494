"""Benchmark of ``rt_user_sync``: 2,000 students against the RT sandbox with 30 ms latency and 8 slots.

Runs, each a real ``dagster job execute`` in a child process:
1. first run: reads every user's current values from RT, then one PUT per user that differs;
2. school-year rollover: every grade changes, so every user with an RT user (1,792 of the 2,000) is written
   (1,792 x 0.03 s / 8 = 6.7 s floor for the PUTs; target within 1.3x);
3. delta: 1 % of the students change (target: at most 2 % of the first run's PUTs).
The seed script (``bench/baselines/rt_seed.py``) is timed on a sample on the same server and extrapolated: it
makes two PUTs per user and pauses 0.5 s after each, so a full run would take about 17 minutes.

Run with ``python -m bench.rt``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import sqlalchemy as sa

from bench.baselines import rt_seed
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
from devkit.sandbox.databases import seed_students
from devkit.sandbox.rt import DEFAULT_TOKEN
from devkit.sandbox.sample_data import SampleStudent, generate_students
from devkit.sandbox.server import SandboxProcess
from sync_pipelines.core.database import create_database_engine

PIPELINE = "rt_user_sync"
PUT = "PUT /REST/2.0/user/{id}"
GET = "GET /REST/2.0/user/{id}"
PAGES = ("GET /REST/2.0/users", "POST /REST/2.0/users")
# The sync reads RT's users in pages; a one-user GET is only made to check which custom fields apply to users.
# More than this many means the rows were produced by a read path the sync no longer takes.
MAX_ONE_USER_GETS = 2
TARGET_FACTOR = 1.3
DELTA_TARGET_SHARE = 0.02


def rt_job_env(postgres: PostgresServer, rt_url: str, students: list[SampleStudent]) -> dict[str, str]:
    """``students`` seeded in a new database, a new state database, and the variables ``rt_user_sync`` reads."""
    students_url = postgres.url(postgres.create_database("students"))
    seed_students(students_url, students, schema="django")
    return {
        "STUDENTS_DATABASE_URL": students_url,
        "SYNC_STATE_DATABASE_URL": postgres.url(postgres.create_database("sync_state")),
        "RT_URL": rt_url,
        "RT_TOKEN": DEFAULT_TOKEN,
    }


def run(
    students_count: int = 2000, latency_ms: float = 30, slots: int = 8, seed_sample: int = 30
) -> list[dict]:
    """The runs above, as rows of the combined table."""
    latency = latency_ms / 1000
    students = generate_students(students_count, seed=7)
    with_rt_user = sum(1 for s in students if s.rt_user_id)
    sandbox_args = [
        "--size",
        str(students_count),
        "--latency-ms",
        str(latency_ms),
        "--max-concurrency",
        str(slots),
    ]
    rows: list[dict[str, Any]] = []
    with (
        PostgresServer() as postgres,
        SandboxProcess("rt", sandbox_args) as rt,
        temporary_dagster_home("bench-rt-") as home,
    ):
        env = {**rt_job_env(postgres, rt.url, students), "RT_MAX_CONCURRENCY": str(slots)}
        students_url = env["STUDENTS_DATABASE_URL"]
        engine = create_database_engine(students_url, "STUDENTS_DATABASE_URL")

        def measured(name: str, note: str) -> dict[str, Any]:
            rt.reset_counters()
            job = execute_job(PIPELINE, env, home, "rt_user_custom_fields")
            stats = rt.stats()
            puts, gets = stats["requests"].get(PUT, 0), stats["requests"].get(GET, 0)
            pages = sum(stats["requests"].get(endpoint, 0) for endpoint in PAGES)
            if gets > MAX_ONE_USER_GETS:
                raise RuntimeError(
                    f"rt_user_sync {name}: {gets} one-user GETs; the sync reads users in pages, so these "
                    "figures come from a code path it no longer takes (check bench/rt.py against the RT source)"
                )
            details = (
                f"{puts} PUTs, {pages} user page(s), {gets} one-user GETs; inside the step: sync {job.summary.get('sync_seconds', 0.0):.2f} s, "
                f"of which reading RT {job.summary.get('read_seconds', 0.0):.2f} s"
            )
            row = job_row(
                PIPELINE,
                name,
                job,
                stats,
                latency_seconds=latency,
                slots=slots,
                note=f"{note}; {details}",
                records=students_count,
                row_writes=puts,
            )
            rows.append(row)
            return row

        first = measured(
            "first run",
            f"{with_rt_user} students have an RT user; reads RT's users in pages, writes those that differ",
        )
        with engine.begin() as connection:  # a new school year: every grade moves up (12 wraps to K)
            connection.execute(sa.text("UPDATE students SET grade = (grade + 1) % 13"))
        rollover = measured("every grade changed", "reads RT's users in pages, writes those that differ")
        changed = max(1, students_count // 100)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE students SET grade = (grade + 1) % 13 WHERE student_id IN "
                    "(SELECT student_id FROM students WHERE rt_user_id IS NOT NULL ORDER BY student_id LIMIT :n)"
                ),
                {"n": changed},
            )
        delta = measured(f"delta: {changed} students (1 %) changed", "reads RT's users in pages")

        sample = [(s.rt_user_id, s.grade, s.student_id) for s in students if s.rt_user_id][:seed_sample]
        rt.reset_counters()
        started = time.perf_counter()
        outcome = rt_seed.run(rt.url, DEFAULT_TOKEN, sample)
        per_user = (time.perf_counter() - started) / len(sample)
    baseline_seconds = per_user * with_rt_user
    for row in (first, rollover):
        met = isinstance(row["ratio to limit"], float) and row["ratio to limit"] <= TARGET_FACTOR
        row["target"] = f"<= {TARGET_FACTOR}x limit: {verdict(met)}"
    allowed = DELTA_TARGET_SHARE * first["row writes"]
    delta["target"] = f"<= {allowed:.0f} PUTs (2 % of first run's): {verdict(delta['row writes'] <= allowed)}"
    for row in (first, rollover, delta):
        row["speed-up vs baseline"] = ratio(baseline_seconds, row["sync step s"], 1)
    rows.append(
        result_row(
            PIPELINE,
            "baseline: seed script",
            records=students_count,
            requests=2 * with_rt_user,
            row_writes=2 * with_rt_user,
            sync_step_s=baseline_seconds,
            limit_s=physical_limit(2 * with_rt_user, latency, slots),
            ratio_to_limit=ratio(baseline_seconds, physical_limit(2 * with_rt_user, latency, slots), 1),
            note=f"sequential, 2 PUTs + 0.5 s pause per user, rewrites every user on every run; timed on "
            f"{len(sample)} users ({outcome['requests']} PUTs, {per_user:.3f} s/user) and extrapolated",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seed-sample", type=int, default=30, help="users the seed script is timed on")
    args = parser.parse_args(argv)
    rows = run(args.students, args.latency_ms, args.slots, args.seed_sample)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
