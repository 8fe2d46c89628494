"""The user-kinds domain as deployed: checks, schedule, the deployed job with run config and a partition tag,
SQLite for the demo."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME
from devkit.sandbox.zlv import demo_setup, seed_zlv
from sync_pipelines.definitions import defs
from sync_pipelines.sync import SyncStateStore
from sync_pipelines.sync.shards import shard_of
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.harness.world import failure_messages
from sync_pipelines_tests.user_kinds.conftest import ZlvWorld, make_world


@pytest.mark.integration
def test_checks_flag_unknown_kinds(world_v2: ZlvWorld) -> None:
    assert world_v2.run().success
    checks = world_v2.run_checks()
    assert checks["user_kinds_valid_values"].passed
    assert checks["user_kinds_coverage"].passed
    with world_v2.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE users SET kind = 'Prestataire' WHERE id IN (SELECT id FROM users LIMIT 3)")
        )
    checks = world_v2.run_checks()
    valid = checks["user_kinds_valid_values"]
    assert not valid.passed and valid.severity == dg.AssetCheckSeverity.ERROR
    assert valid.metadata["users_with_invalid_kind"].value == 3
    assert valid.metadata["invalid_values"].value == {"Prestataire": 3}


@pytest.mark.integration
def test_coverage_warns_above_the_threshold(world_v2: ZlvWorld) -> None:
    active = [u for u in world_v2.sample.users if u.deleted_at is None and u.email and u.email.strip()]
    without = sum(1 for u in active if u.kind is None)
    coverage = world_v2.run_checks()["user_kinds_coverage"]
    # Before any sync about half the users have no kind.
    assert not coverage.passed and coverage.severity == dg.AssetCheckSeverity.WARN
    assert coverage.metadata["users_with_email"].value == len(active)
    assert coverage.metadata["users_without_kind"].value == without
    assert coverage.metadata["share_without_kind"].value == round(without / len(active), 4)
    assert world_v2.run_checks(coverage_threshold=0.9)["user_kinds_coverage"].passed


@pytest.mark.unit
def test_definitions_name_the_job_schedule_and_checks() -> None:
    job = defs.resolve_job_def("user_kind_sync")
    assert job.tags["sync/api"] == "portaildf"
    schedule = defs.resolve_schedule_def("user_kind_sync_daily")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.job_name == "user_kind_sync"
    assert schedule.execution_timezone == os.environ.get("SYNC_TIMEZONE", "UTC")
    spec = defs.resolve_assets_def("user_kinds")
    assert spec.group_names_by_key[dg.AssetKey("user_kinds")] == "user_kinds"
    checks = {
        key.name
        for key in defs.resolve_asset_graph().asset_check_keys
        if key.asset_key.path == ["user_kinds"]
    }
    # Two checks of its own (sync_checks runs them) and the warning the sync run reports itself.
    assert checks == {"user_kinds_valid_values", "user_kinds_coverage", "records_synced"}
    assert set(job.asset_layer.asset_graph.asset_check_keys) == {
        dg.AssetCheckKey(dg.AssetKey("user_kinds"), "records_synced")
    }
    policy = spec.specs_by_key[dg.AssetKey("user_kinds")].freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == timedelta(days=1)


@pytest.mark.integration
def test_sync_on_sqlite_as_the_demo_runs_it(tmp_path: Path) -> None:
    for world in make_world(f"sqlite:///{tmp_path / 'zlv.sqlite'}", "v2"):
        result = world.run({"batch_size": 10})
        assert result.success
        assert world.kinds() == world.expected_kinds()
        assert world.run().success  # and again, with nothing to write


@pytest.mark.integration
def test_demo_setup_seeds_sqlite_and_points_at_the_sandbox(tmp_path: Path) -> None:
    setup = demo_setup(tmp_path, 50)
    setup.sandboxes[0].stop()  # demo_setup started it (so that its URL is final): only the files are checked
    assert setup.env["PORTAILDF_API_URL"] == f"{setup.sandboxes[0].url}/api"
    assert setup.env["PORTAILDF_USERNAME"] == DEFAULT_USERNAME
    engine = sa.create_engine(setup.env["ZLV_DATABASE_URL"])
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM users")).scalar() == 50


def run_deployed_job(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **options: Any
) -> dg.ExecuteInProcessResult:
    """``user_kind_sync`` of the deployed code location (resources from the environment, as
    ``dagster job execute`` resolves them), in this process; the CLI itself is tested in operations_unit."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with instance_with_events_in_memory() as instance:
        return defs.resolve_job_def("user_kind_sync").execute_in_process(
            instance=instance, raise_on_error=False, **options
        )


@pytest.mark.integration
def test_the_deployed_job_with_run_config(
    world: ZlvWorld, make_pg_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_url = make_pg_url()
    env = {
        "PORTAILDF_API_URL": f"{world.handle.url}/api",
        "PORTAILDF_USERNAME": DEFAULT_USERNAME,
        "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
        "PORTAILDF_AUTH_VERSION": world.auth_version,
        "ZLV_DATABASE_URL": world.zlv_url,
        "SYNC_STATE_DATABASE_URL": state_url,
    }
    config = yaml.safe_load("ops:\n  user_kinds:\n    config:\n      limit: 30\n      batch_size: 7\n")
    result = run_deployed_job(env, monkeypatch, run_config=config)
    assert result.success, failure_messages(result)
    in_scope = sorted(u.id for u in world.sample.users if u.deleted_at is None and u.email is not None)
    first = set(in_scope[:30])
    expected = {
        user_id: kind if user_id in first else world.sample.user(user_id).kind
        for user_id, kind in world.expected_kinds().items()
    }
    assert world.kinds() == expected
    changed = sum(1 for u in world.sample.changes() if u in first)
    assert world.updates() == (-(-changed // 7), changed)
    assert len(SyncStateStore.from_url(state_url).audit.rows("user_kinds")) == changed


@pytest.mark.integration
def test_one_shard_by_the_partition_tag(world_v2: ZlvWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single shard through the job, with the tag interface.md documents."""
    env = {
        "PORTAILDF_API_URL": f"{world_v2.handle.url}/api",
        "PORTAILDF_USERNAME": DEFAULT_USERNAME,
        "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
        "ZLV_DATABASE_URL": world_v2.zlv_url,
    }
    tags = {"dagster/partition": "shard-05"}
    result = run_deployed_job(env, monkeypatch, tags=tags)
    assert result.success, failure_messages(result)
    expected = {
        user_id: kind if shard_of(user_id) == "shard-05" else world_v2.sample.user(user_id).kind
        for user_id, kind in world_v2.expected_kinds().items()
    }
    assert world_v2.kinds() == expected


@pytest.mark.integration
def test_seed_zlv_creates_the_knex_schema(pg_url: str) -> None:
    engine = seed_zlv(pg_url, [])
    with engine.connect() as connection:
        columns = dict(
            connection.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'users'"
                )
            ).all()
        )
    assert columns["id"] == "uuid" and columns["kind"] == "character varying"
    assert columns["deleted_at"] == "timestamp with time zone"
    assert {"password", "establishment_id", "role", "time_per_week", "updated_at"} <= set(columns)


@pytest.mark.integration
@pytest.mark.parametrize("trailing", ["", "/"])
def test_zlv_settings_copied_as_the_readme_says(
    world: ZlvWorld, make_pg_url, monkeypatch: pytest.MonkeyPatch, trailing: str
) -> None:
    """ZLV's ``CEREMA_API`` (no ``/api``) and ``CEREMA_AUTH_VERSION`` as they are: a passing run, each lookup
    carrying the email as ZLV stores it, trimmed of surrounding spaces, capitals and all."""
    env = {
        "PORTAILDF_API_URL": world.handle.url + trailing,  # CEREMA_API
        "PORTAILDF_USERNAME": DEFAULT_USERNAME,  # CEREMA_USERNAME
        "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,  # CEREMA_PASSWORD
        "PORTAILDF_AUTH_VERSION": world.auth_version,  # CEREMA_AUTH_VERSION
        "ZLV_DATABASE_URL": world.zlv_url,
        "SYNC_STATE_DATABASE_URL": make_pg_url(),
    }
    result = run_deployed_job(env, monkeypatch)
    assert result.success, failure_messages(result)
    assert world.kinds() == world.expected_kinds()
    stored = sorted(
        u.email.strip() for u in world.sample.users if u.deleted_at is None and u.email and u.email.strip()
    )
    assert sorted(world.sandbox.emails_asked) == stored
    assert any(email != email.lower() for email in world.sandbox.emails_asked)


@pytest.mark.integration
def test_a_v1_only_server_with_the_default_auth_version_names_the_setting(
    pg_url: str, make_pg_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    for world in make_world(pg_url, "v1"):
        monkeypatch.delenv("PORTAILDF_AUTH_VERSION", raising=False)
        env = {
            "PORTAILDF_API_URL": world.handle.url,
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
            "ZLV_DATABASE_URL": world.zlv_url,
            "SYNC_STATE_DATABASE_URL": make_pg_url(),
        }
        result = run_deployed_job(env, monkeypatch)
        assert not result.success
        failure = result.failure_data_for_node("user_kinds")
        assert failure is not None and failure.error is not None
        line = failure.error.message.strip()
        assert "\n" not in line and "PORTAILDF_AUTH_VERSION: the server has no v2 login" in line, line
        assert "set PORTAILDF_AUTH_VERSION=v1" in line
        assert world.handle.requests("GET /api/utilisateurs") == 0
