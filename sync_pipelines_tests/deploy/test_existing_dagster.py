"""The syncs as one more code location in a Dagster a team already runs (README, "Adding the syncs to a Dagster you
already run"), as ZLV would: their instance keeps its storage in PostgreSQL and sets nothing else (no run queue
limits, no pools, no run retries or monitoring), and their workspace loads their own project
(``analytics_location``, standing in for it) and ``sync_pipelines`` side by side.

Both locations load from the one workspace, ``user_kind_sync`` runs on that instance, and two runs started at
once (nothing in such an instance keeps them apart) write once: the second is turned away by the target's lease,
naming the first. Run with this virtual environment's Dagster (deploy/requirements.lock) and with the lowest
Dagster the package declares (``devkit.lowest_dagster``: ``./dev setup`` makes that environment; without it the
case is skipped, saying so, and fails under CI).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from devkit.lowest_dagster import LOWEST_VENV, lowest_dagster_pins
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.deploy.test_deploy_files import REPO, VENV_BIN
from sync_pipelines_tests.operations.dagster_processes import deployment_environment, environment
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, user_kinds_world

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# ZLV's instance, as far as the syncs are concerned: storage only.
ZLV_INSTANCE = {
    "storage": {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}},
    "telemetry": {"enabled": False},
}
# The first run holds the lease for a few seconds of writes (8 batches, a pause after each), so that the twin
# started with it, whichever of the two imports faster, finds it held.
SLOW_RUN = {"batch_size": 10, "batch_delay_seconds": 0.5}
PROCESS_TIMEOUT = 300


@pytest.fixture(params=["lock", "lowest"])
def bin_dir(request: pytest.FixtureRequest) -> Path:
    """The ``bin`` directory of the Dagster to run: this environment's, or the lowest declared (checked to be
    the versions pyproject.toml declares, so that a stale environment is not taken for it)."""
    if request.param == "lock":
        return VENV_BIN
    reason = (
        f"no {LOWEST_VENV.name} (the lowest Dagster pyproject.toml allows): run ./dev setup, which makes it"
    )
    if not (LOWEST_VENV / "bin" / "dagster").is_file():
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    site_packages = [str(path) for path in LOWEST_VENV.glob("lib/python*/site-packages")]
    pins = lowest_dagster_pins()
    installed = {
        name: next(
            (found.version for found in importlib.metadata.distributions(name=name, path=site_packages)), None
        )
        for name in pins
    }
    assert installed == pins, f"{LOWEST_VENV.name} holds {installed}, not {pins}: run ./dev setup"
    return LOWEST_VENV / "bin"


@pytest.fixture
def world(make_pg_url: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield user_kinds_world(make_pg_url, stack, size=120)


def test_the_syncs_join_an_instance_like_zlvs_and_the_lease_keeps_twin_runs_apart(
    bin_dir: Path, world: SyncWorld, make_pg_url: Callable[[], str], tmp_path: Path
) -> None:
    home = tmp_path / "zlv_dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(ZLV_INSTANCE))
    workspace = home / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "sync_pipelines_tests.deploy.analytics_location",
                            "location_name": "analytics",
                        }
                    },
                    {
                        "python_module": {
                            "module_name": "sync_pipelines.definitions",
                            "location_name": "sync_pipelines",
                        }
                    },
                ]
            }
        )
    )
    config = home / "run.yaml"
    config.write_text(yaml.safe_dump({"ops": {"user_kinds": {"config": SLOW_RUN}}}))
    state_url = make_pg_url()
    env = deployment_environment(home, make_pg_url(), {**world.env, "SYNC_STATE_DATABASE_URL": state_url})
    env["PYTHONPATH"] = str(REPO)  # the stand-in analytics project is a module of the tests

    # ZLV's instance exists before the syncs join it: its tables are made by that Dagster itself, as a running
    # deployment made them (three processes making them at once can race in dagster-postgres: DuplicateTable).
    made = subprocess.run(
        [str(bin_dir / "python"), "-c", "import dagster as dg; dg.DagsterInstance.get().get_runs(limit=1)"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    # The workspace is loaded while the twins run: all three start at once.
    execute = [str(bin_dir / "dagster"), "job", "execute", "-m", "sync_pipelines.definitions"]
    commands = {
        "validate": [str(bin_dir / "dagster"), "definitions", "validate", "-w", str(workspace)],
        **{
            twin: [*execute, "-j", "user_kind_sync", "-c", str(config)]
            for twin in ("first twin", "second twin")
        },
    }
    started = {
        name: subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in commands.items()
    }
    try:
        outputs = {name: process.communicate(timeout=PROCESS_TIMEOUT)[0] for name, process in started.items()}
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    codes = {name: process.returncode for name, process in started.items()}
    tails = {name: output[-3000:] for name, output in outputs.items()}

    assert codes["validate"] == 0, tails["validate"]
    for location in ("analytics", "sync_pipelines"):
        assert f"Validation successful for code location {location}." in outputs["validate"], tails[
            "validate"
        ]
    assert sorted(codes[twin] == 0 for twin in ("first twin", "second twin")) == [False, True], (codes, tails)

    with environment(env):
        instance = dg.DagsterInstance.from_config(str(home))
    try:
        every_run = instance.get_runs()
        for name, output in tails.items():  # shown under a failing assert, each twin's whole tail
            print(f"----- {name}: exit code {codes[name]} -----\n{output}")
        assert sorted(run.status.value for run in every_run) == ["FAILURE", "SUCCESS"], [
            (run.run_id, run.status.value) for run in every_run
        ]
        runs = {run.status: run for run in every_run}
        winner, loser = runs[dg.DagsterRunStatus.SUCCESS], runs[dg.DagsterRunStatus.FAILURE]
        (failure,) = [
            record.dagster_event.step_failure_data
            for record in instance.all_logs(loser.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            if record.dagster_event is not None
        ]
    finally:
        instance.dispose()
    refusal = failure.user_failure_data
    assert refusal is not None, failure.error
    assert refusal.metadata["error"] == dg.MetadataValue.text("TargetBusy")
    assert f"user_kinds is being synced by run {winner.run_id}" in (refusal.description or "")

    audit = SyncStateStore.from_url(state_url).audit.rows("user_kinds")
    assert {row["run_id"] for row in audit} == {winner.run_id} and {row["status"] for row in audit} == {
        "applied"
    }
    assert world.stale() == set()
