"""The syncs as one more code location in a Dagster a team already runs (README, "Adding the syncs to a Dagster you
already run"), as ZLV would: their instance keeps its storage in PostgreSQL and sets nothing else (no run queue
limits, no pools, no run retries or monitoring), and their workspace loads their own project
(``analytics_location``, standing in for it) and ``sync_pipelines`` side by side.

Both locations load from the one workspace, ``user_kind_sync`` runs there, and two runs started at once (nothing
in such an instance keeps them apart) write once: the second is turned away by the target's lease, naming the
first. Run with this virtual environment's Dagster (deploy/requirements.lock) and, when ``./dev setup`` has made
it, with the lowest Dagster the package declares (``.venv-dagster-lowest``, see ``LOWEST_VENV``).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.deploy.test_deploy_files import REPO, VENV_BIN
from sync_pipelines_tests.operations.dagster_processes import deployment_environment, environment
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, user_kinds_world

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Made by ./dev setup: the lowest Dagster of pyproject.toml's ranges, with the project installed in it.
LOWEST_VENV = REPO / ".venv-dagster-lowest"
# ZLV's instance, as far as the syncs are concerned: storage only.
ZLV_INSTANCE = {
    "storage": {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}},
    "telemetry": {"enabled": False},
}
SLOW_RUN = {"batch_size": 10, "batch_delay_seconds": 0.5}


def dagster_environments() -> list[Path]:
    return [VENV_BIN, *([LOWEST_VENV / "bin"] if (LOWEST_VENV / "bin" / "dagster").is_file() else [])]


@pytest.fixture
def world(make_pg_url: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield user_kinds_world(make_pg_url, stack, size=120)


@pytest.mark.parametrize("bin_dir", dagster_environments(), ids=lambda path: path.parent.name)
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
    state_url = make_pg_url()
    env = deployment_environment(home, make_pg_url(), {**world.env, "SYNC_STATE_DATABASE_URL": state_url})
    env["PYTHONPATH"] = str(REPO)
    version = subprocess.run(
        [str(bin_dir / "python"), "-c", "import dagster; print(dagster.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"Dagster {version} ({bin_dir})")

    validated = subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", str(workspace)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stdout[-3000:] + validated.stderr[-3000:]
    assert (
        "analytics" in validated.stderr + validated.stdout
        and "sync_pipelines" in validated.stderr + validated.stdout
    )

    config = home / "run.yaml"
    config.write_text(yaml.safe_dump({"ops": {"user_kinds": {"config": SLOW_RUN}}}))
    command = [
        str(bin_dir / "dagster"),
        "job",
        "execute",
        "-m",
        "sync_pipelines.definitions",
        "-j",
        "user_kind_sync",
        "-c",
        str(config),
    ]
    twins = [
        subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [twin.communicate(timeout=400)[0] for twin in twins]
    codes = [twin.returncode for twin in twins]
    assert sorted(code == 0 for code in codes) == [False, True], (codes, [o[-3000:] for o in outputs])
    loser = outputs[codes.index(next(c for c in codes if c != 0))]
    assert any(
        "is being synced by" in line and "SYNC_LEASE_WAIT_SECONDS" in line for line in loser.splitlines()
    ), loser[-3000:]

    with environment(env):
        instance = dg.DagsterInstance.from_config(str(home))
    try:
        statuses = sorted(run.status.value for run in instance.get_runs())
        assert statuses == ["FAILURE", "SUCCESS"]
        assert type(instance.run_coordinator).__name__ != "QueuedRunCoordinator" or not (
            instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        )
    finally:
        instance.dispose()
    audit = SyncStateStore.from_url(state_url).audit_rows("user_kinds")
    assert len({row["run_id"] for row in audit}) == 1 and {row["status"] for row in audit} == {"applied"}
    assert world.stale() == set()
