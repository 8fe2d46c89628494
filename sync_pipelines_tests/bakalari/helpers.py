"""Running the Bakaláři sync in-process and reading EduRPG back, for the tests of this folder."""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from devkit.sandbox.bakalari import OPERATOR_PASSWORD, OPERATOR_USERNAME
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.definitions import location
from sync_pipelines.defs.bakalari.checks import (
    bakalari_students_needing_login,
    edurpg_external_refs_resolve,
    edurpg_unique_bakalari_ids,
)
from sync_pipelines.defs.bakalari.resources import BakalariResource, EduRpgDatabase
from sync_pipelines.defs.shared.state_resource import SyncStateResource

bakalari_entities = location.syncs["bakalari"].asset

ENTITY_TABLES = ("Class", "Subject", "User", "Enrollment", "ExternalRef")
CHECKS = [edurpg_external_refs_resolve, edurpg_unique_bakalari_ids, bakalari_students_needing_login]


def sync_resources(
    bakalari_url: str,
    edurpg_url: str,
    state_url: str | None = None,
    password: str = OPERATOR_PASSWORD,
    max_concurrency: int | None = None,
) -> dict[str, Any]:
    return {
        "bakalari": BakalariResource(
            url=bakalari_url, username=OPERATOR_USERNAME, password=password, max_concurrency=max_concurrency
        ),
        "edurpg_database": EduRpgDatabase(database_url=edurpg_url),
        "sync_state": SyncStateResource(database_url=state_url),
    }


def run_sync(
    resources: dict[str, Any],
    *,
    partition: str | None = None,
    instance: dg.DagsterInstance | None = None,
    **config: Any,
) -> dg.ExecuteInProcessResult:
    """One run of ``bakalari_entities``: every shard, or ``partition`` alone."""
    return dg.materialize(
        [bakalari_entities],
        resources=resources,
        partition_key=partition,
        instance=instance,
        run_config={"ops": {"bakalari_entities": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def run_checks(resources: dict[str, Any], instance: dg.DagsterInstance) -> dict[str, dg.AssetCheckEvaluation]:
    """The asset's checks alone, as the ``sync_checks`` job runs them."""
    defs = dg.Definitions(
        assets=[bakalari_entities],
        asset_checks=CHECKS,
        jobs=[
            dg.define_asset_job("checks", selection=dg.AssetSelection.checks_for_assets(bakalari_entities))
        ],
        resources=resources,
    )
    result = defs.resolve_job_def("checks").execute_in_process(instance=instance)
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def observation(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The run summary's metadata, as plain values."""
    events = [event for event in result.all_events if event.event_type_value == "ASSET_OBSERVATION"]
    metadata = events[-1].event_specific_data.asset_observation.metadata
    return {name: value.value for name, value in metadata.items()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    error = result.failure_data_for_node("bakalari_entities").error
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def engine_for(url: str) -> Engine:
    return create_database_engine(url, "EDURPG_DATABASE_URL")


def rows(engine: Engine, table: str, where: str = "") -> list[dict[str, Any]]:
    with engine.connect() as connection:
        result = connection.execute(sa.text(f'SELECT * FROM "{table}" {where}'))
        return [dict(row._mapping) for row in result]


def entity_state(engine: Engine) -> dict[str, list[tuple]]:
    """Every entity row (tokens aside), sorted: equal before and after a run means the run wrote nothing."""
    state = {}
    for table in ENTITY_TABLES:
        found = []
        for row in rows(engine, table):
            row.pop("bakalariToken", None)
            found.append(tuple(sorted((key, repr(value)) for key, value in row.items())))
        state[table] = sorted(found)
    return state


def max_updated_at(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f'SELECT max("updatedAt") FROM "{table}"')).scalar_one()
            for table in ENTITY_TABLES
        }


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in (*ENTITY_TABLES, "SystemLog", "XPAudit")
        }


def tokens(engine: Engine) -> dict[str, str | None]:
    return {row["bakalariId"]: row["bakalariToken"] for row in rows(engine, "User") if row["bakalariId"]}


def refs(engine: Engine, ref_type: str) -> dict[str, dict[str, Any]]:
    return {row["externalId"]: row for row in rows(engine, "ExternalRef", f"WHERE \"type\" = '{ref_type}'")}


def system_logs(engine: Engine) -> list[dict[str, Any]]:
    found = rows(engine, "SystemLog")
    return sorted(found, key=lambda row: (row["createdAt"], row["message"] != "sync_start"))


def sandbox_tokens(state: dict[str, Any]) -> dict[str, str | None]:
    return {student["id"]: student["refresh_token"] for student in state["students"]}


def stored_tokens_match(engine: Engine, state: dict[str, Any]) -> bool:
    """Every student's row holds the refresh token the Bakaláři server currently accepts."""
    stored = tokens(engine)
    return all(stored[student_id] == token for student_id, token in sandbox_tokens(state).items())
