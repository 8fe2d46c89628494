"""``dagster job execute`` for every sync job, as an operator runs it: ``-c`` config, and the exit code."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines_tests.harness.world import SyncWorld, start_world

pytestmark = pytest.mark.e2e

ASSETS = {
    "rt_user_sync": "rt_user_custom_fields",
    "bakalari_sync": "bakalari_entities",
    "user_kind_sync": "user_kinds",
}
SECRETS = {
    "rt_user_sync": "RT_TOKEN",
    "bakalari_sync": "BAKALARI_PASSWORD",
    "user_kind_sync": "PORTAILDF_PASSWORD",
}


@pytest.fixture(scope="module")
def world(postgres_server) -> SyncWorld:
    with ExitStack() as stack:
        yield start_world(stack, size=30, postgres=postgres_server)


def target_snapshot(world: SyncWorld, job: str) -> object:
    if job == "rt_user_sync":
        return world.sandboxes["rt"].state()["users"]
    if job == "bakalari_sync":
        engine = create_database_engine(world.url("EDURPG_DATABASE_URL"), "EDURPG_DATABASE_URL")
        with engine.connect() as connection:
            return [
                connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar()
                for table in ("Class", "Subject", "User", "Enrollment", "ExternalRef")
            ]
    engine = create_database_engine(world.url("ZLV_DATABASE_URL"), "ZLV_DATABASE_URL")
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT id, kind FROM users ORDER BY id")).all()


@pytest.mark.parametrize("job", list(ASSETS))
def test_dry_run_with_a_config_file_writes_nothing_and_a_bad_secret_exits_non_zero(
    world: SyncWorld, job: str
):
    before = target_snapshot(world, job)
    dry = world.run_job(job, {"ops": {ASSETS[job]: {"config": {"dry_run": True, "limit": 5}}}})
    assert dry.succeeded, dry.output[-3000:]
    assert "dry run" in dry.output
    assert target_snapshot(world, job) == before

    secret = world.env[SECRETS[job]]
    world.env[SECRETS[job]] = "not-the-right-secret"
    try:
        refused = world.run_job(job)
    finally:
        world.env[SECRETS[job]] = secret
    assert refused.exit_code != 0
    assert SECRETS[job].split("_")[0] in refused.output  # the message names the system's variables
    assert target_snapshot(world, job) == before
