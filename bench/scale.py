"""Scale run of the database-bound phases: 100,000 students (RT sync) and 100,000 ZLV users (user-kind sync).

The HTTP phases are measured against the sandboxes by the pipeline benchmarks; this one takes the phases whose
cost grows with the size of a database table, calls the pipelines' own functions on PostgreSQL, and times each:

* RT: read the ``students`` table, validate it, build the snapshot frame, store and load it through the
  ``students`` asset's IO manager, compute the desired RT fields, plan the first run against what RT holds (80 %
  already right), record the verified values, write the audit and last-written rows of the records to write (RT's
  PUTs replaced by a writer that accepts everything, so only the engine's own database writes are timed); then a
  delta run where 1 % of the grades changed: read the last-written state, plan, audit.
* ZLV: read ``users``, plan every user's new kind from the source's ``desired_kinds`` (Portail DF's answers given,
  100 % of the kinds change), apply with the set-based writer and the engine's audit rows on PostgreSQL (target
  at least 50,000 rows/s); then a delta run with 1 % changed.

Each pipeline runs in a child process of its own, whose peak RSS (from ``wait4``) must stay under 1 GiB.
The databases are seeded, and analyzed as a production table would be, before the timing starts.

Run with ``python -m bench.scale``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from bench.common import table, verdict
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.rt.desired import desired_custom_fields
from sync_pipelines.defs.rt.source import TARGET as RT_TARGET
from sync_pipelines.defs.shared.state_resource import SyncStateResource, SyncStateTableIOManager
from sync_pipelines.defs.students.assets import students_frame
from sync_pipelines.defs.students.resources import StudentsDatabase
from sync_pipelines.defs.students.validation import validate_students
from sync_pipelines.defs.user_kinds.database import ZlvUsers
from sync_pipelines.defs.user_kinds.lookups import LookupResults
from sync_pipelines.defs.user_kinds.mapping import KINDS, LookupOutcome
from sync_pipelines.defs.user_kinds.source import TARGET as ZLV_TARGET
from sync_pipelines.defs.user_kinds.source import desired_kinds, writer_for
from sync_pipelines.sync import SyncStateStore, apply_plan, plan_changes
from sync_pipelines.sync.plan import Action, PlannedRecord, SyncPlan
from sync_pipelines.sync.shards import SHARD_KEYS

STUDENTS = 100_000
USERS = 100_000
RSS_TARGET_MB = 1024
WRITE_TARGET_ROWS_PER_SECOND = 50_000
RT_BATCH_SIZE = 500
ZLV_BATCH_SIZE = 1_000
GRADE_FIELD, STUDENT_ID_FIELD = "Grade", "Student ID"
COLUMNS = ["pipeline", "phase", "rows", "seconds", "rows/s", "peak RSS MB", "target", "note"]

log = logging.getLogger("bench.scale")


@dataclass
class Phase:
    """One timed phase: the caller sets ``rows`` (records handled) inside the ``with`` block."""

    name: str
    rows: int = 0
    note: str = ""
    target: str = ""
    seconds: float = 0.0

    def row(self, pipeline: str) -> dict[str, Any]:
        return {
            "pipeline": pipeline,
            "phase": self.name,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows/s": round(self.rows / self.seconds) if self.seconds else "",
            "target": self.target,
            "note": self.note,
        }


class Phases:
    """The timed phases of one pipeline, in order."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.phases: list[Phase] = []

    @contextlib.contextmanager
    def measure(self, name: str, note: str = "") -> Iterator[Phase]:
        phase = Phase(name, note=note)
        started = time.perf_counter()
        yield phase
        phase.seconds = time.perf_counter() - started
        self.phases.append(phase)

    def rows(self) -> list[dict[str, Any]]:
        return [phase.row(self.pipeline) for phase in self.phases]


def accept_everything(batch: list[PlannedRecord]) -> dict[str, str]:
    """A writer that writes nothing and fails nothing: RT's PUTs left out, the engine's bookkeeping kept."""
    return {}


def _kind_of(kind: str | None) -> str:
    return kind if kind in KINDS else KINDS[0]


def _kind_after(kind: str | None) -> str:
    return KINDS[(KINDS.index(kind) + 1) % len(KINDS)] if kind in KINDS else KINDS[0]


def _grade_after(grade: str) -> str:
    return "K" if grade == "12" else "1" if grade == "K" else str(int(grade) + 1)


def _apply(plan: SyncPlan, writer: Any, state: SyncStateStore, run_id: str, batch_size: int, remember: bool):
    result = asyncio.run(
        apply_plan(
            plan,
            writer,
            state=state,
            run_id=run_id,
            batch_size=batch_size,
            remember_written=remember,
            log=log,
        )
    )
    assert result.written == len(plan.to_write) and not result.failures, list(result.failures.items())[:3]
    return result


# -- RT: students -> desired -> plan -> bookkeeping --------------------------------------------------------------
def rt_phases(students_url: str, state_url: str) -> list[dict[str, Any]]:
    phases = Phases("rt_user_sync")
    state = SyncStateStore.from_url(state_url)
    io_manager = SyncStateTableIOManager(state=SyncStateResource(database_url=state_url))
    key = dg.AssetKey("students")
    with phases.measure("read the students table") as phase:
        rows = StudentsDatabase(database_url=students_url).read_rows()
        phase.rows = len(rows)
    with phases.measure("validate") as phase:
        valid, invalid = validate_students(rows)
        phase.rows = len(rows)
        phase.note = f"{len(invalid)} invalid"
    with phases.measure("build the snapshot frame") as phase:
        frame = students_frame(valid)
        phase.rows = len(frame)
    del rows, valid
    with phases.measure("store the snapshot (IO manager)") as phase:
        io_manager.handle_output(dg.build_output_context(asset_key=key), frame)
        phase.rows = len(frame)
    del frame
    with phases.measure("load the snapshot (IO manager)") as phase:
        upstream = dg.build_output_context(asset_key=key)
        loaded = io_manager.load_input(dg.build_input_context(asset_key=key, upstream_output=upstream))
        phase.rows = len(loaded)
    with phases.measure("desired RT fields") as phase:
        desired, skips = desired_custom_fields(
            loaded, GRADE_FIELD, STUDENT_ID_FIELD, "grade", set(SHARD_KEYS), date.today()
        )
        phase.rows = len(loaded)
        phase.note = f"{len(desired)} with an RT user, {len(skips)} without"
    del loaded
    # What RT holds before the first run: four users in five already right, the fifth has another grade.
    held = {
        key: {**values, GRADE_FIELD: _grade_after(values[GRADE_FIELD])} if index % 5 == 0 else dict(values)
        for index, (key, values) in enumerate(desired.items())
    }
    with phases.measure("first run: plan against the values read from RT") as phase:
        plan = plan_changes(RT_TARGET, desired, held, skips)
        phase.rows = len(plan.records)
        phase.note = f"{len(plan.to_write)} to write"
    del held
    with phases.measure("first run: record the verified values (last-written state)") as phase:
        verified = {r.key: r.desired for r in plan.records if r.action is Action.UNCHANGED}
        state.last_written.remember(RT_TARGET, "scale-first", verified)
        phase.rows = len(verified)
    del verified
    with phases.measure(
        "first run: audit + last-written rows of the writes", "RT's PUTs left out: the engine's own writes"
    ) as phase:
        phase.rows = _apply(plan, accept_everything, state, "scale-first", RT_BATCH_SIZE, True).written
    del plan
    # The delta run: 1 % of the students changed grade since.
    changed = {
        key: {**values, GRADE_FIELD: _grade_after(values[GRADE_FIELD])} if index % 100 == 0 else values
        for index, (key, values) in enumerate(desired.items())
    }
    with phases.measure("delta run: read the last-written state") as phase:
        remembered = state.last_written.read(RT_TARGET, changed)
        phase.rows = len(remembered)
    assert len(remembered) == len(changed)
    with phases.measure("delta run: plan (1 % of grades changed)") as phase:
        delta_plan = plan_changes(RT_TARGET, changed, remembered, skips)
        phase.rows = len(delta_plan.records)
        phase.note = f"{len(delta_plan.to_write)} to write"
    with phases.measure("delta run: audit + last-written rows of the writes") as phase:
        phase.rows = _apply(delta_plan, accept_everything, state, "scale-delta", RT_BATCH_SIZE, True).written
    return phases.rows()


# -- ZLV: users -> plan -> set-based writes with audit ------------------------------------------------------------
def zlv_phases(zlv_url: str, state_url: str) -> list[dict[str, Any]]:
    phases = Phases("user_kind_sync")
    state = SyncStateStore.from_url(state_url)
    zlv = ZlvUsers.from_url(zlv_url)

    def run_once(label: str, share: int) -> None:
        with phases.measure(f"{label}read users") as phase:
            users = zlv.read_users(include_deleted=True)
            phase.rows = len(users)
        with_email = [user for user in users if user.email.strip()]
        no_email = [user for user in users if not user.email.strip()]
        # Portail DF's answers (the HTTP phase, not timed here): every ``share``-th user gets another kind.
        lookups = LookupResults(
            outcomes={
                user.id: LookupOutcome(
                    kind=_kind_after(user.kind) if index % share == 0 else _kind_of(user.kind)
                )
                for index, user in enumerate(with_email)
            }
        )
        with phases.measure(f"{label}plan") as phase:
            desired, current = desired_kinds(with_email, lookups, no_email)
            plan = plan_changes(ZLV_TARGET, desired.records, current, desired.skips)
            failing = desired.failing
            phase.rows = len(plan.records)
            phase.note = f"{len(plan.to_write)} to write"
        assert not failing
        del users, lookups
        with phases.measure(f"{label}write: set-based UPDATEs + audit rows") as phase:
            phase.rows = _apply(
                plan, writer_for(zlv), state, "scale-delta" if label else "scale-first", ZLV_BATCH_SIZE, False
            ).written
            phase.note = f"batches of {ZLV_BATCH_SIZE:,}, one transaction each"
        if share == 1:
            rate = phase.rows / phase.seconds
            phase.target = (
                f">= {WRITE_TARGET_ROWS_PER_SECOND:,} rows/s: {verdict(rate >= WRITE_TARGET_ROWS_PER_SECOND)}"
            )

    run_once("", share=1)
    run_once("delta run: ", share=100)
    return phases.rows()


# -- the parent: databases, one child per pipeline ---------------------------------------------------------------
def seed_databases(server: Any, students: int, users: int) -> dict[str, str]:
    """The four databases, seeded and analyzed (untimed); returns their URLs."""
    from devkit.sandbox.databases import seed_students
    from devkit.sandbox.portaildf import generate_zlv_users
    from devkit.sandbox.sample_data import generate_students
    from devkit.sandbox.zlv import seed_zlv

    urls = {
        name: server.url(server.create_database(name))
        for name in ("students", "rt_state", "zlv", "zlv_state")
    }
    seed_students(urls["students"], generate_students(students, seed=7), schema="django")
    zlv_users = generate_zlv_users(users, seed=11)
    seed_zlv(urls["zlv"], zlv_users)
    for name in ("students", "zlv"):
        engine = create_database_engine(urls[name], "DATABASE_URL")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
        engine.dispose()
    return urls


def run_child(part: str, urls: dict[str, str]) -> tuple[list[dict[str, Any]], float, int]:
    """One pipeline's phases in a child process: its rows, its peak RSS in MB (``wait4``) and exit code."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "bench.scale", "--part", part, "--json-out", out.name]
        command += [f"--{name.replace('_', '-')}-url={url}" for name, url in urls.items()]
        process = subprocess.Popen(command, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        _, status, usage = os.wait4(process.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        text = Path(out.name).read_text()
    rows = json.loads(text) if text.strip() else []
    return rows, usage.ru_maxrss / 1024, code


def run(students: int = STUDENTS, users: int = USERS) -> list[dict[str, Any]]:
    from devkit.postgres import PostgresServer

    rows: list[dict[str, Any]] = []
    with PostgresServer() as server:
        started = time.perf_counter()
        urls = seed_databases(server, students, users)
        seeding = time.perf_counter() - started
        for part, pipeline, count, names in (
            ("rt", "rt_user_sync", students, ("students", "rt_state")),
            ("zlv", "user_kind_sync", users, ("zlv", "zlv_state")),
        ):
            part_rows, peak_mb, code = run_child(part, {name: urls[name] for name in names})
            rows += part_rows
            rows.append(
                {
                    "pipeline": pipeline,
                    "phase": "the whole child process",
                    "rows": count,
                    "seconds": round(sum(row["seconds"] for row in part_rows), 2),
                    "peak RSS MB": round(peak_mb),
                    "target": f"< {RSS_TARGET_MB} MB: {verdict(peak_mb < RSS_TARGET_MB and code == 0)}",
                    "note": f"sum of the phases; exit {code}" + ("" if code == 0 else " (FAILED)"),
                }
            )
        rows[0]["note"] = (rows[0]["note"] + "; " if rows[0]["note"] else "") + (
            f"databases seeded and analyzed beforehand in {seeding:.0f} s (untimed)"
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=STUDENTS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument(
        "--part", choices=["rt", "zlv"], help="(internal) run one pipeline's phases in this process"
    )
    parser.add_argument("--json-out", help="(internal) where --part writes its rows")
    for name in ("students", "rt-state", "zlv", "zlv-state"):
        parser.add_argument(f"--{name}-url", help="(internal) database of --part")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.part:
        if args.part == "rt":
            rows = rt_phases(args.students_url, args.rt_state_url)
        else:
            rows = zlv_phases(args.zlv_url, args.zlv_state_url)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{args.part}: peak RSS {peak_mb:.0f} MB", file=sys.stderr)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(rows))
        else:
            print(table(rows, COLUMNS))
        return rows
    rows = run(args.students, args.users)
    print(table(rows, COLUMNS))
    return rows


if __name__ == "__main__":
    main()
