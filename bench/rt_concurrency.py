"""``rt_user_sync`` against a real Request Tracker 5: the adaptive limit of requests in flight next to fixed ones.

One RT (devkit/request_tracker.py: Starlet with ``--workers`` workers, ``BcryptCost`` ``--bcrypt-cost``, every
connection closed, as a stock ``rt-server``). For each setting (the adaptive limit with ceiling 16; fixed 1, 4,
8 and 16 in flight: ``RT_ADAPTIVE_CONCURRENCY=false``, ``RT_MAX_CONCURRENCY=n``) a set of ``--users`` users of its
own (a third right, a third stale, a third empty) gets a first run; the adaptive setting also a rerun and a run
with 1 % of the students changed. Requests are counted from RT's access log, timeouts and resends from the HTTP
layer's own counts. The physical limit of a run is its requests x one request's server time / the workers: what
the paged-read plan cannot go below. One request's server time is that of the plan's own mix (pages, PUTs,
verifying GETs), taken from the fixed-1 run (its seconds / its requests: one request at a time, so no queue);
a token-authenticated ``GET /rt`` alone (measured first, sequentially) is cheaper than a PUT and is shown too.

``python -m bench.rt_concurrency [--users 500] [--workers 2] [--bcrypt-cost 10]``
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Any

import dagster as dg

from bench.common import ratio, table, temporary_dagster_home, verdict
from bench.rt_real import request_cost, students_in_rt
from devkit.postgres import PostgresServer
from devkit.request_tracker import RequestTracker5
from devkit.sandbox.databases import seed_students
from sync_pipelines.core import http

SETTINGS: tuple[tuple[str, int, bool], ...] = (
    (
        "fixed 1",
        1,
        False,
    ),  # first: its time per request, one at a time, is the server's cost of this plan's mix
    ("adaptive (ceiling 16)", 16, True),
    ("fixed 4", 4, False),
    ("fixed 8", 8, False),
    ("fixed 16", 16, False),
)
CLIENTS: list[dict[str, Any]] = []  # what each ApiClient counted, appended as it closes


def _record_clients() -> None:
    original = http.ApiClient.__aexit__
    if getattr(original, "recording", False):
        return

    async def recording(self: http.ApiClient, *exc: object) -> None:
        if self.system == "RT":
            CLIENTS.append(
                {
                    "timeouts": self.stats.statuses.get("timed out", 0),
                    "resent": self.retries,
                    "concurrency": self.concurrency.summary(),
                }
            )
        await original(self, *exc)

    recording.recording = True  # type: ignore[attr-defined]
    http.ApiClient.__aexit__ = recording  # type: ignore[method-assign]


def run(users: int = 500, workers: int = 2, bcrypt_cost: int = 10) -> list[dict[str, Any]]:
    """The runs, as rows; this process's environment is restored afterwards (the runs are in-process)."""
    saved = dict(os.environ)
    try:
        return _run(users, workers, bcrypt_cost)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run(users: int, workers: int, bcrypt_cost: int) -> list[dict[str, Any]]:
    _record_clients()
    rows: list[dict[str, Any]] = []
    with (
        RequestTracker5(workers=workers, bcrypt_cost=bcrypt_cost) as rt,
        PostgresServer() as postgres,
        temporary_dagster_home("bench-rt-concurrency-") as home,
    ):
        sample, id_sets = students_in_rt(rt, users, [str(n) for n in range(len(SETTINGS))])
        token = rt.create_token("sync-bot")
        cost = request_cost(rt, token)
        print(
            f"RT 5: {workers} workers, BcryptCost {bcrypt_cost}: one GET /rt costs {cost * 1000:.0f} ms",
            flush=True,
        )
        os.environ.update(
            {"DAGSTER_HOME": str(home), "RT_URL": rt.url, "RT_TOKEN": token, "SYNC_TELEMETRY": "0"}
        )
        from sync_pipelines.definitions import defs

        def measured(setting: str, label: str) -> dict[str, Any]:
            mark = len(rt.access_log_entries())
            before = len(CLIENTS)
            began = time.monotonic()
            with dg.DagsterInstance.ephemeral() as instance:
                result = defs.resolve_job_def("rt_user_sync").execute_in_process(
                    instance=instance, raise_on_error=False
                )
            seconds = time.monotonic() - began
            requests = len(rt.access_log_entries()[mark:])
            clients = CLIENTS[before:]
            timeouts = sum(c["timeouts"] for c in clients)
            resent = sum(c["resent"] for c in clients)
            mix = sequential.get("cost", cost)
            limit = requests * mix / workers
            summary = clients[-1]["concurrency"] if clients else {}
            row = {
                "setting": setting,
                "run": label,
                "ok": result.success,
                "requests": requests,
                "seconds": round(seconds, 1),
                "limit_s": round(limit, 1),
                "cost_ms": round(mix * 1000),
                "ratio": ratio(seconds, limit),
                "timeouts": timeouts,
                "resent": resent,
                "limit in flight": f"{summary.get('lowest')}..{summary.get('highest')}, ended {summary.get('limit')}"
                if summary.get("mode") == "adaptive"
                else "",
            }
            if setting == "fixed 1" and label == "first run" and requests:
                sequential["cost"] = seconds / requests
                row["limit_s"] = round(requests * sequential["cost"] / workers, 1)
                row["cost_ms"] = round(sequential["cost"] * 1000)
                row["ratio"] = ratio(seconds, row["limit_s"])
            print(row, flush=True)
            rows.append(row)
            return row

        sequential: dict[str, float] = {}

        for (setting, ceiling, adaptive), ids in zip(SETTINGS, id_sets, strict=True):
            os.environ["RT_MAX_CONCURRENCY"] = str(ceiling)
            os.environ["RT_ADAPTIVE_CONCURRENCY"] = "true" if adaptive else "false"
            students = [replace(s, rt_user_id=i) for s, i in zip(sample, ids, strict=True)]
            students_url = postgres.url(postgres.create_database(f"students_{len(rows)}"))
            os.environ["STUDENTS_DATABASE_URL"] = students_url
            os.environ["SYNC_STATE_DATABASE_URL"] = postgres.url(
                postgres.create_database(f"state_{len(rows)}")
            )
            seed_students(students_url, students, schema="django")
            measured(setting, "first run")
            if adaptive:
                measured(setting, "rerun")
                step = max(1, len(students) // max(1, len(students) // 100))
                changed = {s.student_id for s in students[::step]}
                seed_students(
                    students_url,
                    [
                        replace(s, grade="1" if s.grade != "1" else "2") if s.student_id in changed else s
                        for s in students
                    ],
                    schema="django",
                )
                measured(setting, f"1 % changed ({len(changed)} students)")
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    firsts = {row["setting"]: row for row in rows if row["run"] == "first run"}
    adaptive = next(row for name, row in firsts.items() if name.startswith("adaptive"))
    fixed = {name: row for name, row in firsts.items() if name.startswith("fixed") and row["ok"]}
    best = min(fixed, key=lambda name: fixed[name]["seconds"])
    return [
        f"adaptive first run within 1.2x of the physical limit ({adaptive['ratio']}x): "
        + verdict(adaptive["seconds"] <= 1.2 * adaptive["limit_s"]),
        f"no client timeouts ({adaptive['timeouts']}): " + verdict(adaptive["timeouts"] == 0),
        f"not slower than the best fixed setting ({best}, {fixed[best]['seconds']} s) by more than 10 % "
        f"({ratio(adaptive['seconds'], fixed[best]['seconds'])}x): "
        + verdict(adaptive["seconds"] <= 1.1 * fixed[best]["seconds"]),
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.rt_concurrency", description=__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bcrypt-cost", type=int, default=10)
    args = parser.parse_args(argv)
    rows = run(args.users, args.workers, args.bcrypt_cost)
    columns = list(rows[0])
    print(table(rows, columns))
    print("\n".join(verdicts(rows)))
    return rows


if __name__ == "__main__":
    main()
