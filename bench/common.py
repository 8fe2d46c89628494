"""What every benchmark shares: running a job as an operator does, measuring it, and one shape for the results.

Every pipeline benchmark returns rows of the same shape (``result_row``), so ``python -m bench`` can print one
table for all of them; each module still prints its own rows when run alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from sync_pipelines.core.job_command import job_execute_command

# The columns of the combined table (docs/benchmarks.md): one row per run of a pipeline or of its baseline.
COLUMNS = [
    "pipeline",
    "run",
    "records",
    "requests",
    "row writes",
    "sync step s",
    "job execute s",
    "limit s",
    "ratio to limit",
    "speed-up vs baseline",
    "peak RSS MB",
    "target",
    "note",
]


@dataclass
class JobRun:
    exit_code: int
    wall_seconds: float
    peak_rss_mb: float
    run_id: str | None
    summary: dict[str, Any]
    # Wall time of the sync asset's step (STEP_START to its end, from the run's event log).
    step_seconds: float | None = None


@contextlib.contextmanager
def temporary_dagster_home(prefix: str) -> Iterator[Path]:
    """A fresh ``$DAGSTER_HOME`` for one benchmark, with telemetry off, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        home = Path(directory)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        yield home


def execute_job(
    job: str, env: dict[str, str], dagster_home: Path, asset: str, config: dict | None = None
) -> JobRun:
    """``dagster job execute`` in a child process; returns its wall time, its peak RSS (from ``wait4``), the
    wall time of the sync asset's step and the numeric metadata of its run summary (read back from the instance)."""
    config_file = None
    if config:
        config_file = Path(tempfile.mkstemp(suffix=".yaml")[1])
        config_file.write_text(json.dumps({"ops": {asset: {"config": config}}}))
    command = job_execute_command(job, config_file)
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home), "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, stderr=stderr)
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the maximum over every child so far).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if process.returncode != 0:
        print(errors[-1500:], file=sys.stderr)
    peak_kb = usage.ru_maxrss
    run_id, summary, step_seconds = latest_run(dagster_home, job, asset)
    return JobRun(process.returncode, wall, peak_kb / 1024, run_id, summary, step_seconds)


def latest_run(dagster_home: Path, job: str, asset: str) -> tuple[str | None, dict[str, Any], float | None]:
    """The newest run of ``job``: its id, the numeric metadata of its run summary (an observation of ``asset``)
    and the wall time of ``asset``'s step."""
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_run_records(filters=dg.RunsFilter(job_name=job), limit=1)
            if not runs:
                return None, {}, None
            run_id = runs[0].dagster_run.run_id
            summary: dict[str, Any] = {}
            step_started = step_ended = None
            for entry in instance.all_logs(run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type_value == "ASSET_OBSERVATION":
                    metadata = event.event_specific_data.asset_observation.metadata
                    summary = {
                        key: value.value
                        for key, value in metadata.items()
                        if isinstance(value.value, (int, float)) and not isinstance(value.value, bool)
                    }
                elif event.step_key == asset and event.event_type_value == "STEP_START":
                    step_started = entry.timestamp
                elif event.step_key == asset and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                    step_ended = entry.timestamp
            step_seconds = (
                step_ended - step_started if step_started is not None and step_ended is not None else None
            )
            return run_id, summary, step_seconds
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


def physical_limit(requests: int, latency_seconds: float, slots: int) -> float:
    """The least time ``requests`` can take on a server answering ``slots`` at once after ``latency_seconds``."""
    return requests * latency_seconds / slots


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | str:
    return round(numerator / denominator, digits) if numerator and denominator else ""


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def job_row(
    pipeline: str,
    run: str,
    job: JobRun,
    stats: dict[str, Any],
    *,
    latency_seconds: float,
    slots: int,
    note: str,
    **values: Any,
) -> dict[str, Any]:
    """One ``dagster job execute`` run's row: requests as the sandbox counted them (``stats``), the physical
    limit at its latency and slots, the step's and the whole job's times, peak RSS; the note gains the 429s
    the sandbox answered and a failed exit code, so a disturbed run cannot pass for a clean one."""
    requests = int(stats["total_requests"])
    limit = physical_limit(requests, latency_seconds, slots)
    if stats["statuses"].get("429"):
        note += f"; {stats['statuses']['429']} answered 429"
    if job.exit_code:
        note += f"; EXIT {job.exit_code}"
    return result_row(
        pipeline,
        run,
        requests=requests,
        sync_step_s=job.step_seconds,
        job_execute_s=job.wall_seconds,
        limit_s=limit,
        ratio_to_limit=ratio(job.step_seconds, limit),
        peak_RSS_MB=job.peak_rss_mb,
        note=note,
        **values,
    )


def result_row(pipeline: str, run: str, **values: Any) -> dict[str, Any]:
    """One row of the combined table; ``values`` are keyed by the column names with spaces and hyphens as
    underscores (``sync_step_s=...``). Seconds are rounded for reading; missing cells stay empty."""
    keys = {column.replace(" ", "_").replace("-", "_"): column for column in COLUMNS}
    unknown = set(values) - set(keys)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}; known: {sorted(keys)}")
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row.update({"pipeline": pipeline, "run": run})
    for key, value in values.items():
        column = keys[key]
        if value is None:
            continue
        if isinstance(value, float) and column.endswith(" s"):
            value = round(value, 2) if value < 100 else round(value, 1)
        elif isinstance(value, float) and column == "peak RSS MB":
            value = round(value)
        row[column] = value
    return row


def _cell(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1_000:
        return f"{value:,}"
    return str(value).replace("|", "/")


def table(rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> str:
    """A Markdown table, printed and kept in docs/benchmarks.md."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines)
