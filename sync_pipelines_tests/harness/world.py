"""Every system at once: the three sandbox servers and PostgreSQL databases seeded with known sample data.

Used by CI's run of ``sync_checks`` (``python -m sync_pipelines_tests.ci_checks``) and by the tests that prove
that job turns red on bad data. Jobs run as an operator runs them: ``dagster job execute`` in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.postgres import PostgresServer
from devkit.sandbox.bakalari import generate_school
from devkit.sandbox.databases import seed_students
from devkit.sandbox.edurpg import OPERATOR_PASSWORD, OPERATOR_USERNAME, seed_edurpg
from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME, generate_portaildf_sample
from devkit.sandbox.rt import DEFAULT_TOKEN
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import SandboxProcess
from devkit.sandbox.zlv import seed_zlv

SYNC_JOBS = ("rt_user_sync", "bakalari_sync", "user_kind_sync")
SEED = 7


@dataclass
class JobResult:
    job: str
    exit_code: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


@dataclass
class SyncWorld:
    postgres: PostgresServer
    size: int
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    sandboxes: dict[str, SandboxProcess] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.env[name]

    def run_job(
        self, job: str, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> JobResult:
        """``dagster job execute`` of ``job`` with the world's variables (or only ``env``, when given)."""
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
            config_file = self.home / f"{job}-config.yaml"
            config_file.write_text(json.dumps(config))
            command += ["-c", str(config_file)]
        completed = subprocess.run(
            command,
            env={**os.environ, **(self.env if env is None else env)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        return JobResult(job, completed.returncode, completed.stdout + completed.stderr)


def start_world(stack: ExitStack, size: int = 60, postgres: PostgresServer | None = None) -> SyncWorld:
    """Start (and register for stopping on ``stack``) PostgreSQL and the sandboxes, seeded with known data."""
    if postgres is None:
        postgres = stack.enter_context(PostgresServer())
    home = Path(tempfile.mkdtemp(prefix="sync-world-"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    world = SyncWorld(postgres, size, home)
    databases = {
        name: postgres.url(postgres.create_database()) for name in ("students", "edurpg", "zlv", "state")
    }
    seed_students(databases["students"], generate_students(size, seed=SEED), schema="django")
    seed_edurpg(databases["edurpg"], generate_school(size, SEED), login_classes=True)
    seed_zlv(databases["zlv"], generate_portaildf_sample(size, seed=SEED).users)
    common = ["--size", str(size), "--seed", str(SEED)]
    world.sandboxes = {
        "rt": stack.enter_context(SandboxProcess("rt", common)),
        "bakalari": stack.enter_context(SandboxProcess("bakalari", common)),
        "portaildf": stack.enter_context(SandboxProcess("portaildf", common)),
    }
    world.env = {
        "DAGSTER_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
        "SYNC_STATE_DATABASE_URL": databases["state"],
        "STUDENTS_DATABASE_URL": databases["students"],
        "RT_URL": world.sandboxes["rt"].url,
        "RT_TOKEN": DEFAULT_TOKEN,
        "BAKALARI_URL": world.sandboxes["bakalari"].url,
        "BAKALARI_USERNAME": OPERATOR_USERNAME,
        "BAKALARI_PASSWORD": OPERATOR_PASSWORD,
        "EDURPG_DATABASE_URL": databases["edurpg"],
        "PORTAILDF_API_URL": f"{world.sandboxes['portaildf'].url}/api",
        "PORTAILDF_USERNAME": DEFAULT_USERNAME,
        "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
        "PORTAILDF_AUTH_VERSION": "v2",
        "ZLV_DATABASE_URL": databases["zlv"],
    }
    return world


def sync_everything(world: SyncWorld) -> list[JobResult]:
    """Bring every target in step with its source, as the schedules would."""
    return [world.run_job(job) for job in SYNC_JOBS]


def check_names(output: str) -> dict[str, str]:
    """``{check name: "passed" | "failed"}`` from ``dagster job execute``'s log of a ``sync_checks`` run."""
    results: dict[str, str] = {}
    for line in output.splitlines():
        if "ASSET_CHECK_EVALUATION" in line and "Asset check '" in line:
            name = line.split("Asset check '", 1)[1].split("'", 1)[0]
            results[name] = "passed" if line.rstrip().endswith("passed.") else "failed"
    return results
