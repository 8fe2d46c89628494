"""What every benchmark shares: running a job as an operator does, and measuring it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg


@dataclass
class JobRun:
    exit_code: int
    wall_seconds: float
    peak_rss_mb: float
    run_id: str | None
    summary: dict[str, Any]


def execute_job(
    job: str, env: dict[str, str], dagster_home: Path, asset: str, config: dict | None = None
) -> JobRun:
    """``dagster job execute`` in a child process; returns its wall time, its peak RSS (from ``wait4``) and the
    numeric metadata of the sync asset's run summary (read back from the instance)."""
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "sync_pipelines.definitions",
        "-j",
        job,
    ]
    if config:
        config_file = Path(tempfile.mkstemp(suffix=".yaml")[1])
        config_file.write_text(json.dumps({"ops": {asset: {"config": config}}}))
        command += ["-c", str(config_file)]
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
    run_id, summary = latest_summary(dagster_home, job, asset)
    return JobRun(process.returncode, wall, peak_kb / 1024, run_id, summary)


def latest_summary(dagster_home: Path, job: str, asset: str) -> tuple[str | None, dict[str, Any]]:
    """The numeric metadata of the newest run summary (an observation of ``asset``) of ``job``."""
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_run_records(filters=dg.RunsFilter(job_name=job), limit=1)
            if not runs:
                return None, {}
            run_id = runs[0].dagster_run.run_id
            summary: dict[str, Any] = {}
            for entry in instance.all_logs(run_id):
                event = entry.dagster_event
                if event and event.event_type_value == "ASSET_OBSERVATION":
                    metadata = event.event_specific_data.asset_observation.metadata
                    summary = {
                        key: value.value
                        for key, value in metadata.items()
                        if isinstance(value.value, (int, float)) and not isinstance(value.value, bool)
                    }
            return run_id, summary
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table, printed and kept in docs/benchmarks.md."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines)
