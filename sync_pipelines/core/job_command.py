"""The command line an operator uses to run a job, for the demo, the tests and the benchmarks to run it the same way."""

from __future__ import annotations

import sys
from pathlib import Path

CODE_LOCATION_MODULE = "sync_pipelines.definitions"


def job_execute_command(job: str, config_file: Path | str | None = None) -> list[str]:
    """``dagster job execute -m sync_pipelines.definitions -j <job> [-c <config_file>]`` with this interpreter."""
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", CODE_LOCATION_MODULE, "-j", job]
    if config_file is not None:
        command += ["-c", str(config_file)]
    return command
