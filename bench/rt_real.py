"""``rt_user_sync`` against a real Request Tracker 5 with 2,000 users: reading users in pages vs one GET each.

One RT (devkit/request_tracker.py: Starlet with ``--workers`` workers, ``BcryptCost`` ``--bcrypt-cost``, a
connection closed after every answer, as a stock ``rt-server``), 2,000 students on PostgreSQL pointing at 2,000 RT
users of whom a third already hold the right values, a third stale ones and a third none. The same four runs are
made twice on the same RT and the same users, the values reset in between:
1. first run (reads every user, writes the two thirds that differ);
2. rerun (nothing changed);
3. 1 % of the students change grade;
4. ``full_refresh`` (reads every user again; writes nothing).
``paged`` is the sync as it is (users read 100 to a page); ``per-user GET`` is the same code made to read each user
with its own ``GET /user/{id}`` (the way before). Requests are counted from RT's access log; the per-request cost
is measured first (sequential ``GET /REST/2.0/rt`` with the token). Figures are printed; nothing is asserted.

Run with ``python -m bench.rt_real [--users 2000] [--workers 2] [--bcrypt-cost 12]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import dagster as dg
import httpx

from bench.common import temporary_dagster_home
from devkit.postgres import PostgresServer
from devkit.request_tracker import RequestTracker5
from devkit.sandbox.databases import seed_students
from devkit.sandbox.sample_data import SampleStudent, generate_students
from sync_pipelines.defs.rt import source as rt_source


def initial_values(students: list[SampleStudent]) -> list[dict[str, str]]:
    values = []
    for number, student in enumerate(students):
        values.append(
            [
                {"Grade": student.grade, "Student ID": student.student_id},
                {"Grade": "12" if student.grade != "12" else "11", "Student ID": "old-" + student.student_id},
                {},
            ][number % 3]
        )
    return values


def students_in_rt(
    rt: RequestTracker5, users: int, prefixes: list[str]
) -> tuple[list[SampleStudent], list[list[int]]]:
    """``users`` sample students, and one set of RT users for them per prefix (same names but for the prefix,
    same values from ``initial_values``, ids rising from one set to the next): one set per way or setting
    measured, so each starts from the same state. Creates the two user custom fields first."""
    rt.create_user_fields("Grade", "Student ID")
    sample = [s for s in generate_students(int(users * 1.2), seed=7) if s.rt_user_id is not None][:users]
    values = initial_values(sample)
    id_sets = [
        rt.create_users(
            [
                (f"{prefix}-{s.student_id.lower()}", f"{prefix}-{s.student_id.lower()}@example.test", v)
                for s, v in zip(sample, values, strict=True)
            ]
        )
        for prefix in prefixes
    ]
    return sample, id_sets


def request_cost(rt: RequestTracker5, token: str, tries: int = 10) -> float:
    """Median seconds of one token-authenticated ``GET /REST/2.0/rt``, sent one at a time."""
    times = []
    with httpx.Client(headers={"Authorization": f"token {token}"}, timeout=60) as client:
        for _ in range(tries):
            began = time.perf_counter()
            client.get(f"{rt.rest2_url}/rt").raise_for_status()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def run(users: int = 2000, workers: int = 2, bcrypt_cost: int | None = 12) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with (
        RequestTracker5(workers=workers, bcrypt_cost=bcrypt_cost) as rt,
        PostgresServer() as postgres,
        temporary_dagster_home("bench-rt-real-") as home,
    ):
        began = time.monotonic()
        # The first set for the paged way, the second, with higher ids, for the per-user way.
        sample, id_sets = students_in_rt(rt, users, ["a", "b"])
        created_s = time.monotonic() - began
        token = rt.create_token("sync-bot")
        cost = request_cost(rt, token)
        print(
            f"RT 5 (Starlet, {workers} workers, BcryptCost {bcrypt_cost or 12}, connection closed after each answer):"
            f" {2 * len(sample)} users created in {created_s:.1f} s; one token-authenticated GET takes {cost * 1000:.0f} ms",
            flush=True,
        )
        os.environ.update(
            {"DAGSTER_HOME": str(home), "RT_URL": rt.url, "RT_TOKEN": token, "SYNC_TELEMETRY": "0"}
        )
        from sync_pipelines.definitions import defs

        def measured(way: str, label: str, config: dict | None = None) -> None:
            mark = len(rt.access_log_entries())
            job = defs.resolve_job_def("rt_user_sync")
            run_config = {"ops": {"rt_user_custom_fields": {"config": config}}} if config else None
            began = time.monotonic()
            with dg.DagsterInstance.ephemeral() as instance:
                result = job.execute_in_process(
                    run_config=run_config, instance=instance, raise_on_error=False
                )
            seconds = time.monotonic() - began
            entries = rt.access_log_entries()[mark:]
            kinds = Counter(
                "PUT"
                if e.method == "PUT"
                else "page"
                if e.path.endswith("/users")
                else "GET user"
                if "/user/" in e.path
                else "other"
                for e in entries
            )
            row = {
                "way": way,
                "run": label,
                "ok": result.success,
                "requests": len(entries),
                "pages": kinds["page"],
                "user GETs": kinds["GET user"],
                "PUTs": kinds["PUT"],
                "other": kinds["other"],
                "seconds": round(seconds, 1),
            }
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)

        for (way, page_cost), ids in zip(
            (("paged", rt_source.PAGE_COST), ("per-user GET", 10**9)), id_sets, strict=True
        ):
            rt_source.PAGE_COST = page_cost
            students = [replace(s, rt_user_id=i) for s, i in zip(sample, ids, strict=True)]
            students_url = postgres.url(postgres.create_database(f"students_{len(rows)}"))
            os.environ["STUDENTS_DATABASE_URL"] = students_url
            os.environ["SYNC_STATE_DATABASE_URL"] = postgres.url(
                postgres.create_database(f"state_{len(rows)}")
            )
            seed_students(students_url, students, schema="django")
            measured(way, "first run")
            measured(way, "rerun")
            changed = {
                s.student_id for s in students[:: max(1, len(students) // (len(students) // 100 or 1))]
            }
            seed_students(
                students_url,
                [
                    replace(s, grade="1" if s.grade != "1" else "2") if s.student_id in changed else s
                    for s in students
                ],
                schema="django",
            )
            measured(way, f"1 % changed ({len(changed)} students)")
            measured(way, "full_refresh", {"full_refresh": True})
        rt_source.PAGE_COST = 3
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bcrypt-cost", type=int, default=12, help="RT's BcryptCost (RT's default: 12)")
    args = parser.parse_args()
    rows = run(args.users, args.workers, args.bcrypt_cost)
    print(markdown(rows))


if __name__ == "__main__":
    main()
