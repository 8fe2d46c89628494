"""Record history at real size: one record's history from a state database holding 1,000,000 audit rows and a
year of nightly runs over 10,000 records, on PostgreSQL and on SQLite (target: under 1 s each).

The benchmark makes the database itself, with the state store's own schema (its indexes included) and writers:
365 nightly runs of an RT-like sync over 10,000 records (RT user ids ``100000``..``109999``, fields ``Grade`` and
``Student ID``), dated one day after the other. Each run covers the two fields of 1,598 records (a rotating
slice, so every record comes up in about 58 runs) and skips 1,000 students (a rotating thousand, keyed by student
id) and records 20 row errors, kept as outcomes. Every seventh run is a dry run: its slice is kept as planned
changes (outcomes), as a dry run keeps them; the 313 others write theirs (audit rows, a few failed or in
conflict): 1,000,348 audit rows. One record's history (an RT user and its student) is then asked with what
``ask`` reads from the state database (its audit rows and outcomes through the index on their keys, its runs, its
last-written values) and rendered, for 25 records picked at random and for the busiest record, each timed; the
live reads of RT and the students table are not the state database's work and are left out. Also timed: keeping
one nightly run's outcomes (``keep_outcomes``'s write: its run row and 1,020 outcomes), and the price of the index
on the audit's record keys: the audit's bulk append with and without it, alternated on a fresh database.

``python -m bench.record_history`` prints the table; ``--doc docs/benchmarks.md`` replaces its section there.
``./dev bench`` runs it with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import table, verdict
from sync_pipelines.sync.disclosure import Disclosure
from sync_pipelines.sync.outcome_store import RecordOutcome, RunRecord
from sync_pipelines.sync.plan import CONFLICT
from sync_pipelines.sync.record_history import RecordHistory, RecordNow, Subject, ask
from sync_pipelines.sync.state import APPLIED, FAILED, SyncStateStore, last_written
from sync_pipelines.sync.state_schema import (
    HISTORY_INDEXES,
    PLANNED,
    ROW_ERROR,
    SKIPPED,
    encode_value,
    runs,
    utc_now,
)

TARGET = "rt_user_custom_fields"
RECORDS = 10_000
NIGHTS = 365
WRITTEN_PER_RUN = (
    1_598  # x 2 fields x 313 nights that write (the other 52 are dry runs) = 1,000,348 audit rows
)
SKIPPED_PER_RUN = 1_000
ROW_ERRORS_PER_RUN = 20
DRY_RUN_EVERY = 7
FIRST_KEY = 100_000
LOOKUPS = 25
TARGET_SECONDS = 1.0
COLUMNS = ["database", "what", "rows", "seconds", "target", "note"]
HEADING = "## Record history: one record among 1,000,000 audit rows"
READING = """\
Made by `python -m bench.record_history` (and `./dev bench`; `bench/record_history.py` says how the rows are made;
`--quick` makes 30 nights instead of 365): 365 nightly runs over 10,000 records, 1,000,348 audit rows, 365,000 skips, 7,300 row errors and 52 dry runs'
planned changes kept as outcomes, made by the benchmark itself with the state store's schema and writers. "one
record's history" is what `ask` reads from the state database and renders for one record (its audit rows and
outcomes through the index on their keys, its runs, its last-written values), the live reads of both systems left
out. PostgreSQL is the test harness's server (`fsync=off`); SQLite a file on local disk."""


def key_of(number: int) -> str:
    return str(FIRST_KEY + number)


def student_of(number: int) -> str:
    return f"S{number:06d}"


class StaticLookup:
    """A lookup whose record is already resolved and read: the benchmark times the state database's part."""

    target = TARGET
    remembers_written = True

    def __init__(self, number: int) -> None:
        self.number = number

    def disclosure(self) -> Disclosure:
        return Disclosure()

    async def subject(self, question: str, state: SyncStateStore) -> Subject:
        key, student = key_of(self.number), student_of(self.number)
        wanted = {"Grade": "9", "Student ID": student}
        now = {
            key: RecordNow({"Grade": "8", "Student ID": student}, wanted=wanted),
            student: RecordNow(note=""),
        }
        return Subject(f"RT user {key}", (key, student), now)


def night(number: int) -> datetime:
    return datetime(2025, 1, 1, 1, 0, tzinfo=timezone.utc) + timedelta(days=number)


def audit_status(index: int) -> tuple[str, str | None]:
    if index % 997 == 0:
        return FAILED, "RT refused the value"
    if index % 991 == 0:
        return CONFLICT, "changed since the plan: Grade"
    return APPLIED, None


def generate(state: SyncStateStore, nights: int = NIGHTS) -> tuple[dict[str, int], int]:
    """The year of runs (see the module's doc), dated night by night; returns what was made, and the record
    with the most rows."""
    made = {"audit": 0, "outcomes": 0, "runs": 0}
    per_record: Counter[int] = Counter()
    for run in range(nights):
        run_id = f"night-{run:03d}"
        moment = night(run)
        dry = run % DRY_RUN_EVERY == DRY_RUN_EVERY - 1
        start = (run * WRITTEN_PER_RUN) % RECORDS
        written = [(start + offset) % RECORDS for offset in range(WRITTEN_PER_RUN)]
        grade = str(run % 12 + 1)
        changes = [
            (n, field, old, new)
            for n in written
            for field, old, new in (("Grade", str(run % 12), grade), ("Student ID", None, student_of(n)))
        ]
        # Students without an RT user (a rotating thousand), skipped under their student id; a few row errors.
        skipped = [(run * 37 + i * 10) % RECORDS for i in range(SKIPPED_PER_RUN)]
        failing = [(start + WRITTEN_PER_RUN + i) % RECORDS for i in range(ROW_ERRORS_PER_RUN)]
        outcomes = [
            (student_of(n), SKIPPED, "no_rt_user", None, None, None, "student has no rt_user_id")
            for n in skipped
        ] + [
            (key_of(n), ROW_ERROR, "read_failed", None, None, None, "RT answered HTTP 502 reading the user")
            for n in failing
        ]
        per_record.update(skipped + failing)
        if dry:
            outcomes += [
                (key_of(n), PLANNED, None, field, encode_value(old), encode_value(new), None)
                for n, field, old, new in changes
            ]
        per_record.update(n for n, _, _, _ in changes)
        with state.engine.begin() as connection:
            connection.execute(
                runs.insert().values(run_id=run_id, target=TARGET, dry_run=dry, recorded_at=moment)
            )
            state.history.append(connection, RunRecord(run_id, TARGET, dry), outcomes, moment)
            if not dry:
                entries = [
                    (key_of(n), field, encode_value(old), encode_value(new), *audit_status(index))
                    for index, (n, field, old, new) in enumerate(changes)
                ]
                batch = (run_id, f"batch-{run}", TARGET, moment + timedelta(minutes=1))
                state.audit.append(connection, batch, entries)
                made["audit"] += len(entries)
        made["outcomes"] += len(outcomes)
        made["runs"] += 1
    remembered = [
        {
            "target": TARGET,
            "record_key": key_of(n),
            "field": field,
            "value": encode_value(value),
            "run_id": f"night-{nights - 1:03d}",
            "written_at": night(nights - 1),
        }
        for n in range(RECORDS)
        for field, value in (("Grade", "8"), ("Student ID", student_of(n)))
    ]
    with state.engine.begin() as connection:
        connection.execute(last_written.insert(), remembered)
    return made, per_record.most_common(1)[0][0]


def time_lookups(state: SyncStateStore, numbers: list[int]) -> tuple[list[float], list[RecordHistory]]:
    """Each record's history asked and rendered, timed."""
    seconds: list[float] = []
    answers: list[RecordHistory] = []
    for number in numbers:
        started = time.perf_counter()
        answer = asyncio.run(ask(StaticLookup(number), state, key_of(number)))
        answer.markdown()
        seconds.append(time.perf_counter() - started)
        answers.append(answer)
    return seconds, answers


def uses_index(state: SyncStateStore, number: int) -> bool:
    """Whether the database answers a record's audit rows through the index on their keys (its query plan)."""
    keys = ", ".join(f"'{key}'" for key in (key_of(number), student_of(number)))
    query = f"SELECT * FROM sync_audit WHERE record_key IN ({keys}) AND target = '{TARGET}'"
    explain = "EXPLAIN " if state.engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with state.engine.connect() as connection:
        plan = " ".join(str(row) for row in connection.exec_driver_sql(explain + query))
    return "ix_sync_audit_record_key" in plan


def time_keeping(state: SyncStateStore) -> float:
    outcomes = [
        RecordOutcome(student_of(RECORDS + i), SKIPPED, "no_rt_user", reason="student has no rt_user_id")
        for i in range(SKIPPED_PER_RUN)
    ] + [
        RecordOutcome(key_of(i), ROW_ERROR, "read_failed", reason="HTTP 502")
        for i in range(ROW_ERRORS_PER_RUN)
    ]
    started = time.perf_counter()
    state.history.record_run(RunRecord("kept-now", TARGET, False), outcomes)
    return time.perf_counter() - started


def append_rates(url: str, batches: int = 50, rounds: int = 3) -> tuple[float, float]:
    """Rows/s of the audit's bulk append (batches of 1,000 new records, as a run appends them) with the index on
    the record key and without it, alternated ``rounds`` times on one fresh database: the index's price."""
    state = SyncStateStore.from_url(url)
    index = HISTORY_INDEXES[0]
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for indexed in (True, False):
            with state.engine.begin() as connection:
                index.drop(connection, checkfirst=True)
                if indexed:
                    index.create(connection)
            started = time.perf_counter()
            for batch in range(batches):
                entries = [
                    (f"{round_}-{indexed}-{batch}-{n}", "kind", '"a"', '"b"', APPLIED, None)
                    for n in range(1_000)
                ]
                with state.engine.begin() as connection:
                    state.audit.append(
                        connection, (f"append-{round_}", f"b{batch}", TARGET, utc_now()), entries
                    )
            rates[indexed].append(batches * 1_000 / (time.perf_counter() - started))
    state.engine.dispose()
    return statistics.median(rates[True]), statistics.median(rates[False])


def measure(name: str, url: str, nights: int = NIGHTS, append_url: str | None = None) -> list[dict[str, Any]]:
    state = SyncStateStore.from_url(url)
    started = time.perf_counter()
    made, busiest = generate(state, nights)
    generated = time.perf_counter() - started
    if state.engine.dialect.name == "postgresql":
        with state.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
    rng = random.Random(7)
    picks = rng.sample(range(RECORDS), LOOKUPS)
    seconds, sample = time_lookups(state, picks)
    busy_seconds, [busy] = time_lookups(state, [busiest])
    worst = max(seconds + busy_seconds)
    keeping = time_keeping(state)
    rows = [
        {
            "database": name,
            "what": "the state database, generated",
            "rows": made["audit"] + made["outcomes"] + made["runs"],
            "seconds": round(generated, 1),
            "note": f"{made['audit']:,} audit rows, {made['outcomes']:,} outcomes, {made['runs']} runs "
            "(untimed for the target)",
        },
        {
            "database": name,
            "what": f"one record's history, {LOOKUPS} records at random",
            "rows": round(statistics.median(len(answer.events) for answer in sample)),
            "seconds": round(statistics.median(seconds), 4),
            "target": f"< {TARGET_SECONDS:g} s: {verdict(worst < TARGET_SECONDS)}",
            "note": f"median; slowest {max(seconds):.4f} s; rows: a record's events (median); the index on the "
            f"record key {'used' if uses_index(state, picks[0]) else 'NOT used'}",
        },
        {
            "database": name,
            "what": "one record's history, the busiest record",
            "rows": len(busy.events),
            "seconds": round(busy_seconds[0], 4),
            "note": f"{len(busy.events)} events folded into {len(busy.events_table().splitlines()) - 2} lines",
        },
        {
            "database": name,
            "what": "keeping one nightly run's outcomes",
            "rows": SKIPPED_PER_RUN + ROW_ERRORS_PER_RUN,
            "seconds": round(keeping, 4),
            "note": "its run row, 1,000 skips and 20 row errors, one transaction",
        },
    ]
    state.engine.dispose()
    if append_url is not None:
        with_index, without = append_rates(append_url)
        rows.append(
            {
                "database": name,
                "what": "the audit's bulk append, with the index / without",
                "rows": 50_000,
                "seconds": round(50_000 / with_index, 3),
                "note": f"{with_index:,.0f} / {without:,.0f} rows/s (the index costs "
                f"{(1 - with_index / without) * 100:.0f} %); batches of 1,000 new records, median of 3 rounds",
            }
        )
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Both databases; ``quick``: a month of nights instead of a year (a smoke run)."""
    from devkit.postgres import PostgresServer

    nights = 30 if quick else NIGHTS
    rows: list[dict[str, Any]] = []
    with PostgresServer() as server:
        urls = [server.url(server.create_database(name)) for name in ("record_history", "append")]
        rows += measure("PostgreSQL", urls[0], nights, urls[1])
    with tempfile.TemporaryDirectory(prefix="record-history-") as directory:
        folder = Path(directory)
        rows += measure(
            "SQLite", f"sqlite:///{folder / 'state.sqlite'}", nights, f"sqlite:///{folder / 'a.sqlite'}"
        )
    return rows


def replace_section(document: str, heading: str, body: str) -> str:
    """``document`` with its ``heading`` section replaced by ``body`` (added before ``## Targets`` if absent)."""
    lines = document.splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        return "\n".join([*lines[:start], *body.splitlines(), "", *lines[end:]]) + "\n"
    head, targets, rest = document.partition("\n## Targets")
    return head.rstrip("\n") + "\n\n" + body + "\n" + targets + rest


def section(rows: list[dict[str, Any]]) -> str:
    """This benchmark's section of docs/benchmarks.md: the table, how to read it, when and under what load."""
    measured = datetime.now(timezone.utc)
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    when = f" Measured {measured:%Y-%m-%d %H:%M} UTC on {len(os.sched_getaffinity(0))} CPUs, load average {load}."
    return "\n".join([HEADING, "", table(rows, COLUMNS), "", READING + when, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doc", type=Path, help="replace this benchmark's section in this Markdown file")
    args = parser.parse_args(argv)
    rows = run()
    print(table(rows, COLUMNS))
    if args.doc:
        args.doc.write_text(
            replace_section(args.doc.read_text() if args.doc.exists() else "", HEADING, section(rows))
        )
        print(f"written to {args.doc}")
    return 0 if all("MISSED" not in str(row.get("target", "")) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
