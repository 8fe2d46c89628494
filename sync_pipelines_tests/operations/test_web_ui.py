"""The web UI path: ``dagster-webserver`` and ``dagster-daemon`` on the production instance config (PostgreSQL),
every sync job launched through the webserver's GraphQL API exactly as the UI launches it, and what the runs
recorded read back through the same API."""

from __future__ import annotations

import time

import pytest

from sync_pipelines.sync.shards import SHARD_KEYS, shard_of
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses
from sync_pipelines_tests.operations.graphql_api import tag_map
from sync_pipelines_tests.operations.sync_worlds import WORLDS, SyncWorld

pytestmark = pytest.mark.e2e

GROUPS = {
    "students": {"students"},
    "rt": {"rt_user_custom_fields"},
    "bakalari": {"bakalari_entities"},
    "user_kinds": {"user_kinds"},
}
JOBS = {"rt_user_sync", "bakalari_sync", "user_kind_sync", "sync_checks"}
SCHEDULES = {
    "rt_user_sync_daily": ("0 1 * * *", "rt_user_sync"),
    "bakalari_sync_every_15_minutes": ("*/15 * * * *", "bakalari_sync"),
    "user_kind_sync_daily": ("0 3 * * *", "user_kind_sync"),
}
SENSORS = {"students_changed": "STANDARD", "sync_failure_alert": "RUN_STATUS"}
TARGET_TAGS = {"rt_user_sync": "rt", "bakalari_sync": "edurpg", "user_kind_sync": "zlv"}


def written(materializations: list[dict], world: SyncWorld) -> int:
    """The writes the shards' materializations count, each under its shard's own name (``updated_in_shard``)."""
    return sum(m["metadata"][f"{name}_in_shard"] for m in materializations for name in world.written_counts)


def test_the_ui_lists_the_four_groups_the_jobs_schedules_and_sensors(deployment: DagsterProcesses) -> None:
    repository = deployment.ui.repository()
    groups = {
        group["groupName"]: {"/".join(key["path"]) for key in group["assetKeys"]}
        for group in repository["assetGroups"]
    }
    assert set(groups) == set(GROUPS)
    for group, assets in GROUPS.items():
        assert assets <= groups[group], group
    assert {job["name"] for job in repository["jobs"]} >= JOBS
    schedules = {schedule["name"]: schedule for schedule in repository["schedules"]}
    for name, (cron, job) in SCHEDULES.items():
        assert schedules[name]["cronSchedule"] == cron
        assert schedules[name]["pipelineName"] == job
        assert schedules[name]["executionTimezone"] == "UTC"
        assert schedules[name]["defaultStatus"] == "RUNNING"  # running as soon as it is deployed
    sensors = {sensor["name"]: sensor for sensor in repository["sensors"]}
    assert {name: sensors[name]["sensorType"] for name in SENSORS} == SENSORS
    assert sensors["students_changed"]["minIntervalSeconds"] == 60
    assert {sensors[name]["defaultStatus"] for name in SENSORS} == {"RUNNING"}
    # The failure alert was left running: it is what tells operators a sync failed.
    assert sensors["sync_failure_alert"]["sensorState"]["status"] == "RUNNING"


@pytest.mark.parametrize("job", list(WORLDS))
def test_materialize_one_shard(job: str, deployment: DagsterProcesses, worlds: dict[str, SyncWorld]) -> None:
    """The job's asset graph, "Materialize" with one partition picked: the selected assets, tagged with it."""
    ui, world = deployment.ui, worlds[job]
    stale = world.stale()
    shard = shard_of(min(stale))
    in_shard = {key for key in stale if shard_of(key) == shard}
    assert in_shard and stale - in_shard
    nodes = ui.asset_nodes(world.materialize_selection)
    assert all(job in node["jobNames"] for node in nodes.values())
    assert nodes[world.asset]["partitionDefinition"] is not None

    run_id = ui.launch(job, assets=world.materialize_selection, tags={"dagster/partition": shard})
    run = ui.wait_for_success(run_id)
    assert tag_map(run["tags"])["dagster/partition"] == shard
    assert tag_map(run["tags"])["sync/target"] == TARGET_TAGS[job]
    assert world.stale() == stale - in_shard
    materialized = ui.materializations(world.asset, run_id)
    assert [m["partition"] for m in materialized] == [shard]
    assert materialized[0]["metadata"]["failed_in_shard"] == 0
    if world.one_write_per_stale_record:
        assert written(materialized, world) == len(in_shard)


@pytest.mark.parametrize("job", list(WORLDS))
def test_materialize_one_shard_from_the_asset_page(
    job: str, deployment: DagsterProcesses, worlds: dict[str, SyncWorld]
) -> None:
    """The asset's own page, "Materialize" with one partition: the UI picks the hidden asset job (no job page to
    prefer one) and adds the asset's checks to the selection."""
    ui, world = deployment.ui, worlds[job]
    stale = world.stale()
    shard = shard_of(min(stale))
    in_shard = {key for key in stale if shard_of(key) == shard}
    assert in_shard and stale - in_shard
    node = ui.asset_nodes([world.asset])[world.asset]
    asset_job = node["jobNames"][0]  # the UI's getCommonJob(): the first job holding the asset
    checks = [
        (world.asset, check["name"])
        for check in node["assetChecksOrError"]["checks"]
        if asset_job in check["jobNames"]
    ]
    run_id = ui.launch(asset_job, assets=[world.asset], checks=checks, tags={"dagster/partition": shard})
    ui.wait_for_success(run_id)
    assert world.stale() == stale - in_shard
    materialized = ui.materializations(world.asset, run_id)
    assert [m["partition"] for m in materialized] == [shard]
    assert materialized[0]["metadata"]["failed_in_shard"] == 0
    if world.one_write_per_stale_record:
        assert written(materialized, world) == len(in_shard)


@pytest.mark.parametrize("job", list(WORLDS))
def test_launch_the_whole_job(job: str, deployment: DagsterProcesses, worlds: dict[str, SyncWorld]) -> None:
    """The launchpad's "Launch run" on the job, no partition: every shard, one materialization each."""
    ui, world = deployment.ui, worlds[job]
    stale = world.stale()
    assert stale
    run_id = ui.launch(job)
    run = ui.wait_for_success(run_id)
    assert tag_map(run["tags"])["sync/target"] == TARGET_TAGS[job]
    assert world.stale() == set()
    materialized = ui.materializations(world.asset, run_id)
    assert sorted(m["partition"] for m in materialized) == SHARD_KEYS
    assert all(m["metadata"]["failed_in_shard"] == 0 for m in materialized)
    if world.one_write_per_stale_record:
        assert written(materialized, world) == len(stale)
    else:
        assert written(materialized, world) > 0
    # The run summary the asset page shows next to the materializations agrees with the shards' counts.
    [summary] = [o["metadata"] for o in ui.observations(world.asset, run_id)]
    assert summary["dry_run"] is False and summary["failed"] == 0
    assert summary["created"] + summary["updated"] == sum(
        m["metadata"].get("created_in_shard", 0) + m["metadata"]["updated_in_shard"] for m in materialized
    )
    # Only the last materialization, which the asset's Overview shows, carries the run's totals, and first.
    [last] = [m["metadata"] for m in materialized if "updated" in m["metadata"]]
    assert list(last)[:3] == ["created", "updated", "failed"], last
    assert last["updated"] == summary["updated"]
    # Checks that belong to the job ran in it and passed (the RT job's blocking field check, for one).
    job_checks = [
        (asset, check["name"])
        for asset, node in ui.asset_nodes().items()
        for check in node["assetChecksOrError"].get("checks", [])
        if job in check["jobNames"]
    ]
    for asset, check in job_checks:
        [execution] = [e for e in ui.check_executions(asset, check) if e["run_id"] == run_id]
        assert execution["status"] == "SUCCEEDED" and execution["passed"] is True, (asset, check, execution)


def test_materialize_all_partitions_is_one_run_over_every_shard(
    deployment: DagsterProcesses, worlds: dict[str, SyncWorld]
) -> None:
    """The documented way to sync everything from the UI without Dagster's "no partition" warning: "Materialize
    all" with every partition selected starts a backfill, which the sync assets run as a single run."""
    ui, world = deployment.ui, worlds["user_kind_sync"]
    backfill = ui.launch_backfill_of_every_partition([world.asset])
    deadline = time.monotonic() + 300
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = ui.runs_tagged("dagster/backfill", backfill)
        if runs and all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in runs):
            break
        time.sleep(1)
    assert len(runs) == 1, runs
    [run] = runs
    assert run["status"] == "SUCCESS", ui.run_report(run["runId"])
    tags = tag_map(run["tags"])
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        SHARD_KEYS[0],
        SHARD_KEYS[-1],
    )
    materialized = ui.materializations(world.asset, run["runId"])
    assert sorted(m["partition"] for m in materialized) == SHARD_KEYS
    assert world.stale() == set()


def test_sync_checks_job_reports_every_check(
    deployment: DagsterProcesses, worlds: dict[str, SyncWorld]
) -> None:
    ui = deployment.ui
    for world in worlds.values():
        if world.stale():  # this test run alone: sync first, so the checks see synced systems
            ui.wait_for_success(ui.launch(world.job))
    rt = worlds["rt_user_sync"].sandbox
    rt.reset_counters()
    run_id = ui.launch("sync_checks")
    ui.wait_for_success(run_id)

    checks = {
        (asset, check["name"])
        for asset, node in ui.asset_nodes().items()
        for check in node["assetChecksOrError"].get("checks", [])
        if "sync_checks" in check["jobNames"]
    }
    assert {asset for asset, _ in checks} >= {world.asset for world in worlds.values()}
    results = {}
    for asset, check in sorted(checks):
        [execution] = [e for e in ui.check_executions(asset, check) if e["run_id"] == run_id]
        assert execution["status"] in ("SUCCEEDED", "FAILED"), (asset, check, execution)
        results[(asset, check)] = execution
    failed = {key: (e["description"], e["metadata"]) for key, e in results.items() if not e["passed"]}
    assert failed == {}
    drift = results[("rt_user_custom_fields", "rt_matches_students")]["metadata"]
    assert drift["users_differing"] == 0 and drift["users_checked"] > 0

    # The checks read RT back (users 100 to a page, fewer requests than users) and write nothing.
    pages, singles = rt.requests("GET /REST/2.0/users"), rt.requests("GET /REST/2.0/user/{id}")
    assert pages >= 1 and pages + singles < drift["users_checked"]
    assert rt.requests("PUT /REST/2.0/user/{id}") == 0
