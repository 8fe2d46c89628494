"""What the project adds to Dagster's own start-up: a no-op run of a job against an empty job, same run.

* an empty ``dagster job execute -f <file> -j trivial`` (one op that does nothing), with the same interpreter;
* ``dagster job execute -m sync_pipelines.definitions -j rt_user_sync`` with nothing to do (20 students already
  synced: the rerun reads nothing and writes nothing), against a stand-in RT and PostgreSQL;
* the import time of ``sync_pipelines.definitions`` in a fresh interpreter.
Each is repeated, interleaved (empty, no-op, empty, ...), and the medians compared: the difference is what the
project adds. ``python -m bench.startup [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import execute_job, result_row, table, temporary_dagster_home, verdict
from bench.rt import rt_job_env
from devkit.postgres import PostgresServer
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import SandboxProcess

TRIVIAL_JOB = """
import dagster as dg


@dg.op
def nothing() -> None:
    pass


@dg.job
def trivial() -> None:
    nothing()
"""
TARGET_ADDED_SECONDS = 1.5


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import sync_pipelines.definitions; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def trivial_seconds(home: Path, job_file: Path) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "dagster", "job", "execute", "-f", str(job_file), "-j", "trivial"]
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def run(repeats: int = 3) -> list[dict[str, Any]]:
    students = generate_students(20, seed=7)
    with (
        PostgresServer() as postgres,
        SandboxProcess("rt", ["--size", "20"]) as rt,
        temporary_dagster_home("bench-startup-") as home,
        tempfile.TemporaryDirectory() as directory,
    ):
        job_file = Path(directory) / "trivial_job.py"
        job_file.write_text(TRIVIAL_JOB)
        env = rt_job_env(postgres, rt.url, students)
        first = execute_job("rt_user_sync", env, home, "rt_user_custom_fields")
        if first.exit_code != 0:
            raise RuntimeError(f"the first rt_user_sync run failed ({first.exit_code})")
        empty, noop, imports = [], [], []
        for _ in range(repeats):
            empty.append(trivial_seconds(home, job_file))
            rt.reset_counters()
            job = execute_job("rt_user_sync", env, home, "rt_user_custom_fields")
            if job.exit_code != 0:
                raise RuntimeError(f"the no-op rt_user_sync run failed ({job.exit_code})")
            noop.append(job.wall_seconds)
            imports.append(import_seconds())
        puts = rt.stats()["requests"].get("PUT /REST/2.0/user/{id}", 0)
    empty_s, noop_s, import_s = (statistics.median(values) for values in (empty, noop, imports))
    added = noop_s - empty_s
    return [
        result_row(
            "start-up",
            "empty `dagster job execute` of a one-op job",
            job_execute_s=round(empty_s, 2),
            note=f"median of {repeats}: " + ", ".join(f"{value:.2f}" for value in empty),
        ),
        result_row(
            "start-up",
            "rt_user_sync with nothing to do (20 students, synced)",
            row_writes=puts,
            job_execute_s=round(noop_s, 2),
            target=f"adds <= {TARGET_ADDED_SECONDS} s to the empty job: {verdict(added <= TARGET_ADDED_SECONDS)}",
            note=f"adds {added:.2f} s ({noop_s / empty_s:.2f}x the empty job); median of {repeats}: "
            + ", ".join(f"{value:.2f}" for value in noop),
        ),
        result_row(
            "start-up",
            "import sync_pipelines.definitions",
            sync_step_s=round(import_s, 2),
            note=f"fresh interpreter, median of {repeats}: " + ", ".join(f"{value:.2f}" for value in imports),
        ),
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = run(args.repeats)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
