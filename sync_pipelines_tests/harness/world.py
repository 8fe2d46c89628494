"""Every system at once: the three sandbox servers and PostgreSQL databases seeded with known sample data.

Used by CI's run of ``sync_checks`` (``python -m sync_pipelines_tests.ci_checks``) and by the tests that prove
that job turns red on bad data. ``run_job`` runs a job as an operator runs it (``dagster job execute`` in a child
process); ``run_in_process`` runs the same code location's job in the test process, with the world's environment
and a freshly loaded ``sync_pipelines.definitions`` (what the CLI would load), for tests whose point is not the CLI.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from devkit.postgres import PostgresServer
from devkit.sandbox.bakalari import generate_school
from devkit.sandbox.databases import seed_students
from devkit.sandbox.edurpg import OPERATOR_PASSWORD, OPERATOR_USERNAME, seed_edurpg
from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME, generate_portaildf_sample
from devkit.sandbox.rt import DEFAULT_TOKEN
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import SandboxProcess
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.core.job_command import CODE_LOCATION_MODULE
from sync_pipelines_tests.harness import warm_python

SYNC_JOBS = ("rt_user_sync", "bakalari_sync", "user_kind_sync")
# The module whose definitions depend on the environment at import (enabled systems: sync_checks' selection,
# schedule and sensor statuses, schedules' crons), imported afresh by ``run_in_process`` as a new
# ``dagster job execute`` would: it builds every registered sync, and the operations jobs, from the environment.
ENVIRONMENT_DEPENDENT_MODULES = ("sync_pipelines.definitions",)
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
        """``dagster job execute`` of ``job`` with the world's variables (or only ``env``, when given), forked
        from a warm interpreter (``harness/warm_python.py``): the command's exit code and output."""
        arguments = ["-m", "dagster", "job", "execute", "-m", CODE_LOCATION_MODULE, "-j", job]
        if config:
            config_file = self.home / f"{job}-config.yaml"
            config_file.write_text(json.dumps(config))
            arguments += ["-c", str(config_file)]
        completed = warm_python.run(arguments, env={**os.environ, **(self.env if env is None else env)})
        return JobResult(job, completed.returncode, completed.stdout + completed.stderr)

    def run_in_process(
        self, job: str, run_config: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> dg.ExecuteInProcessResult:
        """``job`` of ``sync_pipelines.definitions`` loaded afresh and run in this process with the world's
        variables (or only ``env``, when given) and DAGSTER_HOME instance: what ``run_job``'s child process runs
        (every job's executor is in-process), without the CLI."""
        with (
            process_environment(self.env if env is None else env),
            fresh_definitions() as defs,
            dg.DagsterInstance.get() as instance,
        ):
            return defs.resolve_job_def(job).execute_in_process(
                run_config=run_config, instance=instance, raise_on_error=False
            )


@contextmanager
def process_environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``env`` (what ``run_job``'s child process sees), put back afterwards."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def fresh_definitions() -> Iterator[dg.Definitions]:
    """``sync_pipelines.definitions.defs`` imported afresh under the current environment; the modules (and the
    packages' attributes naming them) are put back afterwards, so other tests keep the definitions they had."""
    saved_modules = {
        name: sys.modules.pop(name) for name in ENVIRONMENT_DEPENDENT_MODULES if name in sys.modules
    }
    saved_attributes = {
        (package, name.rpartition(".")[2]): getattr(sys.modules[package], name.rpartition(".")[2], None)
        for name in ENVIRONMENT_DEPENDENT_MODULES
        for package in [name.rpartition(".")[0]]
        if package in sys.modules
    }
    for package, attribute in saved_attributes:
        # ``from package import module`` takes the package's attribute when there is one: import afresh.
        if hasattr(sys.modules[package], attribute):
            delattr(sys.modules[package], attribute)
    try:
        yield importlib.import_module(CODE_LOCATION_MODULE).defs
    finally:
        for name in ENVIRONMENT_DEPENDENT_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)
        for (package, attribute), value in saved_attributes.items():
            if value is None:
                if hasattr(sys.modules[package], attribute):
                    delattr(sys.modules[package], attribute)
            else:
                setattr(sys.modules[package], attribute, value)


# The tests read what ``dagster job execute`` prints. With the default compute log manager a step's lines reach
# the terminal through a ``tail -F`` of its log file that is stopped when the step ends, so on a busy machine its
# last lines (a STEP_FAILURE, an asset check's result) can be missing (dagster-io/dagster#23336). The
# world's instance keeps no step log files, so a step prints to the terminal directly and every line is there.
WORLD_INSTANCE = """\
telemetry:
  enabled: false
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""


def start_world(stack: ExitStack, size: int = 60, postgres: PostgresServer | None = None) -> SyncWorld:
    """Start (and register for stopping on ``stack``) PostgreSQL and the sandboxes, seeded with known data."""
    if postgres is None:
        postgres = stack.enter_context(PostgresServer())
    home = Path(tempfile.mkdtemp(prefix="sync-world-"))
    (home / "dagster.yaml").write_text(WORLD_INSTANCE)
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


def sync_everything_in_process(world: SyncWorld) -> list[dg.ExecuteInProcessResult]:
    """``sync_everything`` with the jobs run in this process."""
    return [world.run_in_process(job) for job in SYNC_JOBS]


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """The failures' messages of an in-process run (for an assertion's message)."""
    return [str(event.event_specific_data) for event in result.all_events if event.is_failure]


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """``{check name: "passed" | "failed"}`` of an in-process ``sync_checks`` run (``check_names`` of its log)."""
    return {
        evaluation.check_name: "passed" if evaluation.passed else "failed"
        for evaluation in result.get_asset_check_evaluations()
    }


def check_names(output: str) -> dict[str, str]:
    """``{check name: "passed" | "failed"}`` from ``dagster job execute``'s log of a ``sync_checks`` run."""
    results: dict[str, str] = {}
    for line in output.splitlines():
        if "ASSET_CHECK_EVALUATION" in line and "Asset check '" in line:
            name = line.split("Asset check '", 1)[1].split("'", 1)[0]
            results[name] = "passed" if line.rstrip().endswith("passed.") else "failed"
    return results
