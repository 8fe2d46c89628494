"""Benchmark of ``rt_user_sync``: 2,000 students against the RT sandbox with 30 ms latency and 8 slots.

Runs, each a real ``dagster job execute`` in a child process:
1. first run: reads every user's current values from RT, then one PUT per user that differs;
2. school-year rollover: every grade changes, so every user is written (2,000 x 0.03 s / 8 = 7.5 s floor for
   the PUTs; target within 1.3x);
3. delta: 1 % of the students change (target: at most 2 % of the first run's PUTs).
The seed script (``bench/baselines/rt_seed.py``) is timed on a sample on the same server and extrapolated.

Run with ``python -m bench.rt``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.baselines import rt_seed
from bench.common import execute_job, table
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sandbox.databases import seed_students
from sync_pipelines.sandbox.rt import DEFAULT_TOKEN
from sync_pipelines.sandbox.sample_data import generate_students
from sync_pipelines.sandbox.server import SandboxProcess
from sync_pipelines_tests.harness.postgres import PostgresServer

PUT = "PUT /REST/2.0/user/{id}"
GET = "GET /REST/2.0/user/{id}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seed-sample", type=int, default=30, help="users the seed script is timed on")
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000
    students = generate_students(args.students, seed=7)
    rows: list[dict[str, Any]] = []
    home = Path(tempfile.mkdtemp(prefix="bench-rt-"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    sandbox_args = [
        "--size",
        str(args.students),
        "--latency-ms",
        str(args.latency_ms),
        "--max-concurrency",
        str(args.slots),
    ]
    with PostgresServer() as postgres, SandboxProcess("rt", sandbox_args) as rt:
        students_url = postgres.url(postgres.create_database("students"))
        state_url = postgres.url(postgres.create_database("sync_state"))
        seed_students(students_url, students, schema="django")
        env = {
            "STUDENTS_DATABASE_URL": students_url,
            "SYNC_STATE_DATABASE_URL": state_url,
            "RT_URL": rt.url,
            "RT_TOKEN": DEFAULT_TOKEN,
            "RT_MAX_CONCURRENCY": str(args.slots),
        }
        engine = create_database_engine(students_url, "STUDENTS_DATABASE_URL")

        def measured(name: str, note: str = "") -> dict[str, Any]:
            rt.reset_counters()
            run = execute_job("rt_user_sync", env, home, "rt_user_custom_fields")
            stats = rt.stats()
            requests = stats["total_requests"]
            puts, gets = stats["requests"].get(PUT, 0), stats["requests"].get(GET, 0)
            floor = requests * latency / args.slots
            sync_seconds = run.summary.get("sync_seconds", 0.0)
            row = {
                "pipeline": "rt_user_sync",
                "run": name,
                "records": args.students,
                "requests": requests,
                "PUTs": puts,
                "GETs": gets,
                "sync step s": round(sync_seconds, 2),
                "job execute s": round(run.wall_seconds, 1),
                "limit s": round(floor, 2),
                "ratio to limit": round(sync_seconds / floor, 2) if floor else "",
                "429s": stats["statuses"].get("429", 0),
                "read s": round(run.summary.get("read_seconds", 0.0), 2),
                "peak RSS MB": round(run.peak_rss_mb),
                "exit": run.exit_code,
                "note": note,
            }
            rows.append(row)
            return row

        first = measured("first run", "reads every user, writes those that differ")
        with engine.begin() as connection:  # a new school year: every grade moves up (12 wraps to K)
            connection.execute(sa.text("UPDATE students SET grade = (grade + 1) % 13"))
        rollover = measured("every grade changed", "no reads: compares with what it last wrote")
        changed = max(1, args.students // 100)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE students SET grade = (grade + 1) % 13 WHERE student_id IN "
                    "(SELECT student_id FROM students WHERE rt_user_id IS NOT NULL ORDER BY student_id LIMIT :n)"
                ),
                {"n": changed},
            )
        measured(f"delta ({changed} students changed)", f"target <= {0.02 * first['PUTs']:.0f} PUTs")

        sample = [(s.rt_user_id, s.grade, s.student_id) for s in students if s.rt_user_id][: args.seed_sample]
        rt.reset_counters()
        started = time.perf_counter()
        outcome = rt_seed.run(rt.url, DEFAULT_TOKEN, sample)
        per_user = (time.perf_counter() - started) / len(sample)
        with_rt_user = sum(1 for s in students if s.rt_user_id)
        baseline_seconds = per_user * with_rt_user
        rows.append(
            {
                "pipeline": "rt_user_sync",
                "run": "seed script (baseline)",
                "records": args.students,
                "requests": 2 * with_rt_user,
                "PUTs": 2 * with_rt_user,
                "GETs": 0,
                "sync step s": round(baseline_seconds, 1),
                "note": f"timed on {len(sample)} users ({outcome['requests']} PUTs), extrapolated",
            }
        )
    for row in (first, rollover):
        row["speed-up vs seed"] = (
            round(baseline_seconds / row["sync step s"], 1) if row["sync step s"] else ""
        )
    print(table(rows, COLUMNS))
    return rows


COLUMNS = [
    "pipeline",
    "run",
    "records",
    "requests",
    "PUTs",
    "GETs",
    "sync step s",
    "read s",
    "job execute s",
    "limit s",
    "ratio to limit",
    "speed-up vs seed",
    "429s",
    "peak RSS MB",
    "exit",
    "note",
]


if __name__ == "__main__":
    main()
