"""A Portail DF sandbox and a ZLV ``users`` table seeded from the same sample, and ways to run the sync on them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.portaildf import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    PortailDfSandbox,
    SamplePortailDf,
)
from devkit.sandbox.server import ThreadedSandbox
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.definitions import location
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.user_kinds.checks import user_kinds_coverage, user_kinds_valid_values
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase

user_kinds, user_kind_sync = location.syncs["user_kinds"].asset, location.syncs["user_kinds"].job

SIZE = 200
SEED = 7
LOOKUP = "GET /api/utilisateurs"

# Counts every UPDATE of users: one 'STATEMENT' row per statement, one 'ROW' row per updated row.
UPDATE_COUNTER = """
CREATE TABLE users_updates (level text, id uuid);
CREATE FUNCTION count_users_update() RETURNS trigger AS $$
BEGIN
  IF TG_LEVEL = 'ROW' THEN INSERT INTO users_updates VALUES ('ROW', NEW.id);
  ELSE INSERT INTO users_updates VALUES ('STATEMENT', NULL); END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER users_update_rows AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION count_users_update();
CREATE TRIGGER users_update_statements AFTER UPDATE ON users FOR EACH STATEMENT EXECUTE FUNCTION count_users_update();
"""


@dataclass
class ZlvWorld:
    """One sandbox, one ZLV database, one sample: what the sync reads, and what it should produce."""

    handle: ThreadedSandbox
    sample: SamplePortailDf
    zlv_url: str
    auth_version: str

    @property
    def sandbox(self) -> PortailDfSandbox:
        return self.handle.sandbox  # type: ignore[return-value]

    @property
    def engine(self) -> sa.Engine:
        return create_database_engine(self.zlv_url, "ZLV_DATABASE_URL")

    def portaildf(self, **options: Any) -> PortailDfResource:
        settings = {
            "api_url": f"{self.handle.url}/api",
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "auth_version": self.auth_version,
            "max_attempts": 2,
            **options,
        }
        return PortailDfResource(**settings)

    def resources(self, portaildf: dict[str, Any] | None = None, **zlv: Any) -> dict[str, Any]:
        return {
            "portaildf": self.portaildf(**(portaildf or {})),
            "zlv_database": ZlvDatabase(database_url=self.zlv_url, **zlv),
            "sync_state": SyncStateResource(),
        }

    def run(
        self,
        config: dict[str, Any] | None = None,
        portaildf: dict[str, Any] | None = None,
        **zlv: Any,
    ) -> dg.ExecuteInProcessResult:
        """The ``user_kind_sync`` job (every shard), as the schedule runs it."""
        defs = dg.Definitions(
            assets=[user_kinds], jobs=[user_kind_sync], resources=self.resources(portaildf, **zlv)
        )
        return defs.resolve_job_def("user_kind_sync").execute_in_process(
            run_config={"ops": {"user_kinds": {"config": config or {}}}}, raise_on_error=False
        )

    def run_shard(self, shard: str, config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [user_kinds],
            partition_key=shard,
            resources=self.resources(),
            run_config={"ops": {"user_kinds": {"config": config or {}}}},
            raise_on_error=False,
        )

    def run_checks(self, coverage_threshold: float | None = None) -> dict[str, dg.AssetCheckEvaluation]:
        job = dg.define_asset_job("checks", selection=dg.AssetSelection.checks_for_assets(user_kinds))
        defs = dg.Definitions(
            assets=[user_kinds],
            asset_checks=[user_kinds_valid_values, user_kinds_coverage],
            jobs=[job],
            resources=self.resources(),
        )
        config = {} if coverage_threshold is None else {"max_share_without_kind": coverage_threshold}
        result = defs.resolve_job_def("checks").execute_in_process(
            run_config={"ops": {"user_kinds_user_kinds_coverage": {"config": config}}},
            # user_kinds_valid_values is blocking: its failure fails the run, which the checks' tests expect.
            raise_on_error=False,
        )
        return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}

    # -- what ZLV holds ------------------------------------------------------------------------------------
    def kinds(self) -> dict[str, str | None]:
        with self.engine.connect() as connection:
            return {str(i): k for i, k in connection.execute(sa.text("SELECT id, kind FROM users"))}

    def updates(self) -> tuple[int, int]:
        """``(UPDATE statements, rows updated)`` on ``users`` since the counter was installed."""
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(sa.text("SELECT level, count(*) FROM users_updates GROUP BY level")).all()
            )
        return counts.get("STATEMENT", 0), counts.get("ROW", 0)

    def active_ids(self) -> list[str]:
        return [user.id for user in self.sample.users if user.deleted_at is None]

    def expected_kinds(self, include_deleted: bool = False) -> dict[str, str | None]:
        """``users.kind`` after a complete sync: deleted users keep theirs unless they are included."""
        after = self.sample.kinds_after_sync()
        return {
            user.id: after[user.id] if include_deleted or user.deleted_at is None else user.kind
            for user in self.sample.users
        }


def make_world(url: str, auth_version: str, size: int = SIZE, **sandbox_options: Any) -> Iterator[ZlvWorld]:
    sandbox = PortailDfSandbox.from_sample(size, SEED, auth_version=auth_version, **sandbox_options)
    assert sandbox.sample is not None
    engine = seed_zlv(url, sandbox.sample.users)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.exec_driver_sql(UPDATE_COUNTER)
    with ThreadedSandbox(sandbox) as handle:
        yield ZlvWorld(handle, sandbox.sample, url, auth_version)


@pytest.fixture(params=["v1", "v2"])
def world(request: pytest.FixtureRequest, pg_url: str) -> Iterator[ZlvWorld]:
    """Both authentication versions against real PostgreSQL."""
    yield from make_world(pg_url, request.param)


@pytest.fixture
def world_v2(pg_url: str) -> Iterator[ZlvWorld]:
    yield from make_world(pg_url, "v2")
