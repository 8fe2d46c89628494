"""Every benchmark in one process, one after the other: one combined table, printed and kept in docs/benchmarks.md.

``python -m bench`` (``./dev bench``) runs, on this machine and in this order: the RT sync (2,000 students,
30 ms, 8 slots), the Bakaláři sync (300 accounts, 50 ms, 8 slots), the user-kind sync (5,000 users, 50 ms,
16 slots, and its write phase on 100,000 users), the shared HTTP layer alone, and the scale run of the
database-bound phases (100,000 students and 100,000 ZLV users), and one record's history among 1,000,000 audit
rows on PostgreSQL and SQLite (its own section). Each pipeline gets a first run, a delta run with 1 % of its source
changed, and the seed script's way as the baseline.

A complete run rewrites docs/benchmarks.md, keeping the sections it does not write itself (those measured by the
separate commands they name); ``--only`` and ``--quick`` runs only print, unless ``--doc`` says where to write.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import (
    adaptive,
    bakalari,
    http_layer,
    record_history,
    rt,
    rt_concurrency,
    scale,
    startup,
    user_kinds,
)
from bench.common import COLUMNS, physical_limit, ratio, result_row, table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Benchmark:
    title: str
    run: Callable[[bool], list[dict[str, Any]]]  # quick -> rows
    scale_table: bool = False  # rows in the scale table's shape rather than the combined table's
    # A section of its own, made from the rows (its heading, table and how to read it), and its table's columns.
    section: Callable[[list[dict[str, Any]]], str] | None = None
    columns: list[str] | None = None


def http_layer_rows(quick: bool) -> list[dict[str, Any]]:
    """The shared HTTP layer alone (GETs, no sync around them): at its own benchmark's settings, and at RT's."""
    rows = []
    for latency_ms, slots, requests, label in (
        (20, 16, 1000 if quick else 4000, ""),
        (30, 8, 300 if quick else 1800, ", RT's settings"),
    ):
        figures = http_layer.main(
            ["--requests", str(requests), "--latency-ms", str(latency_ms), "--slots", str(slots)]
        )
        limit = physical_limit(requests, latency_ms / 1000, slots)
        rows.append(
            result_row(
                "shared HTTP layer",
                f"{requests} GETs, {latency_ms} ms, {slots} slots{label}",
                records=requests,
                requests=requests,
                sync_step_s=figures["seconds"],
                limit_s=limit,
                ratio_to_limit=ratio(figures["seconds"], limit),
                note=f"{figures['requests_per_second']} requests/s of a capacity of "
                f"{figures['capacity_per_second']}/s; 429s: {figures['refused_429']}, retries: {figures['retries']}",
            )
        )
    return rows


def rt_real_concurrency_rows(quick: bool) -> list[dict[str, Any]]:
    """The adaptive limit next to fixed 1, 4, 8 and 16 in flight against a real RT 5 (2 workers, BcryptCost 10)."""
    rows = rt_concurrency.run(users=200 if quick else 500, workers=2, bcrypt_cost=10)
    checks = rt_concurrency.verdicts(rows)
    return [
        result_row(
            "rt_user_sync vs real RT 5",
            f"{row['setting']}: {row['run']}",
            records=200 if quick else 500,
            requests=row["requests"],
            sync_step_s=row["seconds"],
            limit_s=row["limit_s"],
            ratio_to_limit=row["ratio"],
            target="; ".join(checks) if number == 0 else "",
            note=f"ok {row['ok']}; timeouts {row['timeouts']}, resent {row['resent']}"
            + (f"; in flight {row['limit in flight']}" if row["limit in flight"] else ""),
        )
        for number, row in enumerate(rows)
    ]


BENCHMARKS = {
    "rt": Benchmark(
        "RT sync: 2,000 students, 30 ms latency, 8 slots",
        lambda quick: rt.run(200, seed_sample=5) if quick else rt.run(),
    ),
    "bakalari": Benchmark(
        "Bakaláři sync: 300 student accounts, 50 ms latency, 8 slots",
        lambda quick: bakalari.run(30 if quick else bakalari.STUDENTS),
    ),
    "user_kinds": Benchmark(
        "User-kind sync: 5,000 users, 50 ms latency, 16 slots; write phase on 100,000 users",
        lambda quick: user_kinds.run(500, 10_000) if quick else user_kinds.run(),
    ),
    "http_layer": Benchmark(
        "Shared HTTP layer alone: GETs at 20 ms / 16 slots and at 30 ms / 8 slots", http_layer_rows
    ),
    "rt_real_concurrency": Benchmark(
        "RT against a real RT 5 (2 workers, BcryptCost 10): adaptive vs fixed 1, 4, 8, 16 in flight",
        rt_real_concurrency_rows,
    ),
    "adaptive": Benchmark(
        "Adaptive vs fixed requests in flight: each stand-in with 8 workers at 20 ms, halved half way",
        lambda quick: adaptive.run(requests=300 if quick else 800),
    ),
    "startup": Benchmark(
        "Start-up: a no-op run of each job vs an empty `dagster job execute`; import of the code location",
        lambda quick: startup.run(repeats=1 if quick else 3),
    ),
    "scale": Benchmark(
        "Scale run: 100,000 students and 100,000 ZLV users, database-bound phases",
        lambda quick: scale.run(10_000, 10_000) if quick else scale.run(),
        scale_table=True,
    ),
    "record_history": Benchmark(
        "Record history: one record's history among 1,000,000 audit rows, on PostgreSQL and SQLite",
        record_history.run,
        section=record_history.section,
        columns=record_history.COLUMNS,
    ),
}


# -- the machine -----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def postgres_version() -> str:
    from devkit.postgres import find_server_binaries

    try:
        binary = find_server_binaries() / "postgres"
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    except (OSError, RuntimeError):
        return "unknown"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def command_line(argv: list[str]) -> str:
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):
        python = python.relative_to(ROOT)
    return shlex.join([str(python), "-m", "bench", *argv])


# -- the report ------------------------------------------------------------------------------------------------
def targets(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"- {row['pipeline']}, {row.get('run') or row.get('phase')}: {row['target']}"
        for row in rows
        if row.get("target")
    ]


READING = """\
How to read the table: one row per run. **records** are the source records the run covers; **requests** were
counted by the sandbox server; **row writes** are records written to the target (RT: PUTs; EduRPG: entity rows,
as counted by the sync's writer; ZLV: `users` rows updated). **sync step s** is the wall time of the sync asset's
step (from the run's event log); **job execute s** is the whole `dagster job execute`, Dagster's start-up
included. **limit s** is the physical limit of the requests made: requests x latency / slots of the sandbox;
**ratio to limit** is sync step / limit (for the baselines: their time / the same limit). **speed-up vs
baseline** is the baseline's time / the sync step. **peak RSS MB** is the `dagster job execute` process's peak
resident memory (`wait4`). Baselines do what the seed scripts do (`bench/baselines/`); the slow ones are timed on
a sample and extrapolated, as their notes say. The shared HTTP layer rows time the transport alone (GETs, no
sync around them) on the same machine in the same run: a pipeline's ratio to its limit cannot be lower than the
transport's at the same latency and slots."""

SETUP = """\
Each sandbox server runs in its own process with the stated latency and request slots (a request beyond
the slots gets 429), seeded with the same deterministic sample as the databases; the databases are PostgreSQL
servers started by the test harness (`fsync=off`, `synchronous_commit=off`: commit durability is not what is
measured); each sync runs as `dagster job execute -m sync_pipelines.definitions -j <job>` in a child process,
with its own `DAGSTER_HOME` (SQLite run storage) and `SYNC_STATE_DATABASE_URL` on PostgreSQL. The machine is
shared with other work, so the load average is recorded before and after; timings on a loaded 2-core machine
move by 10-30 % between runs."""


def markdown(
    argv: list[str],
    started_at: datetime,
    load_before: str,
    load_after: str,
    durations: dict[str, float],
    rows: list[dict[str, Any]],
    scale_rows: list[dict[str, Any]],
    own_sections: list[str] | None = None,
) -> str:
    total = sum(durations.values())
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench` (`./dev bench`); rerun it to refresh every figure below.",
        "",
        f"- command: `{command_line(argv)}` (in the repository root)",
        f"- date: {started_at:%Y-%m-%d %H:%M} UTC",
        f"- machine: {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), {memory_gib()} RAM, "
        f"Python {platform.python_version()}, {postgres_version()}",
        f"- load average (1 / 5 / 15 min): {load_before} before, {load_after} after",
        f"- runtime: {total / 60:.1f} min ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items())
        + ")",
        "",
        "## Pipeline runs",
        "",
        table(rows),
        "",
        READING,
        "",
    ]
    if scale_rows:
        lines += [
            "## Scale run: database-bound phases",
            "",
            table(scale_rows, scale.COLUMNS),
            "",
            "Each pipeline's phases run in a child process of their own; its peak RSS is that process's. HTTP is "
            "left out (the pipeline runs above measure it): RT's PUTs are replaced by a writer that accepts "
            "everything, Portail DF's answers are given. See `bench/scale.py`.",
            "",
        ]
    lines += [section.rstrip("\n") + "\n" for section in own_sections or []]
    lines += ["## Targets", "", *targets(rows + scale_rows), "", "## Setup", "", SETUP, ""]
    return "\n".join(lines)


def sections(text: str) -> list[tuple[str, str]]:
    """``(heading, body)`` for each ``## `` section of a Markdown report; the part before them has heading ""."""
    parts: list[tuple[str, str]] = []
    heading, body = "", []
    for line in text.splitlines():
        if line.startswith("## "):
            parts.append((heading, "\n".join(body)))
            heading, body = line, []
        body.append(line)
    parts.append((heading, "\n".join(body)))
    return parts


def keep_other_sections(report: str, existing: str) -> str:
    """``report``, with the sections of ``existing`` it does not write itself (figures measured by the
    separate commands they name, e.g. against a real RT 5) kept before its "## Targets"."""
    written = {heading for heading, _ in sections(report)}
    kept = [body for heading, body in sections(existing) if heading and heading not in written]
    if not kept:
        return report
    head, targets, rest = report.partition("\n## Targets")
    return head.rstrip("\n") + "\n\n" + "\n\n".join(body.strip("\n") for body in kept) + "\n" + targets + rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", help=f"comma-separated benchmarks to run (default: all): {','.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--doc",
        type=Path,
        help="write the Markdown report here (default for a complete run: docs/benchmarks.md)",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING)
    started_at = datetime.now(timezone.utc)
    load_before = load_average()
    rows: list[dict[str, Any]] = []
    scale_rows: list[dict[str, Any]] = []
    own_sections: list[str] = []
    durations: dict[str, float] = {}
    failed = []
    for name in names:
        benchmark = BENCHMARKS[name]
        print(f"\n== {benchmark.title}{' (quick)' if args.quick else ''}", flush=True)
        started = time.perf_counter()
        try:
            produced = benchmark.run(args.quick)
        except Exception as error:  # one broken benchmark must not cost the others' figures
            traceback.print_exc()
            failed.append(name)
            produced = [result_row(name, f"FAILED: {type(error).__name__}: {error}"[:300])]
            if benchmark.scale_table:
                produced = [{"pipeline": name, "phase": produced[0]["run"]}]
        durations[name] = time.perf_counter() - started
        columns = benchmark.columns or (scale.COLUMNS if benchmark.scale_table else COLUMNS)
        print(table(produced, columns), flush=True)
        print(f"({name}: {durations[name]:.0f} s)", flush=True)
        if benchmark.section is not None:
            if name in failed:
                produced = [dict.fromkeys(columns, "") | {columns[0]: produced[0]["run"]}]
            own_sections.append(benchmark.section(produced))
        else:
            (scale_rows if benchmark.scale_table else rows).extend(produced)
    load_after = load_average()
    report = markdown(argv, started_at, load_before, load_after, durations, rows, scale_rows, own_sections)
    print("\n" + report)
    doc = args.doc or (DOC if not (args.only or args.quick or args.no_doc) else None)
    if doc and not args.no_doc:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(keep_other_sections(report, doc.read_text() if doc.exists() else ""))
        print(f"written to {doc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
