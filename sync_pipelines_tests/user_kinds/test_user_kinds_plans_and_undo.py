"""``user_kinds``: a reviewed plan applied with one user changed meanwhile, then that run undone, and the undo
undone; previews write nothing to ZLV."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.definitions import location
from sync_pipelines.sync.shards import shard_of
from sync_pipelines.sync.state import SyncStateStore, default_state_url
from sync_pipelines_tests.user_kinds.conftest import ZlvWorld

user_kind_sync_undo = location.syncs["user_kinds"].undo_job

pytestmark = pytest.mark.integration


def summary(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    events = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    metadata = events[-1].event_specific_data.asset_observation.metadata  # type: ignore[union-attr]
    return {name: value.value for name, value in metadata.items()}


def undo(world: ZlvWorld, run_id: str, **config: Any) -> dg.ExecuteInProcessResult:
    return user_kind_sync_undo.execute_in_process(
        run_config={"ops": {"user_kinds_undo": {"config": {"run_id": run_id, **config}}}},
        resources=world.resources(),
        raise_on_error=False,
    )


def test_reviewed_plan_conflict_undo_and_undo_of_undo(world_v2: ZlvWorld) -> None:
    world = world_v2
    initial = world.kinds()
    dry = world.run({"dry_run": True})
    assert dry.success
    plan_id = summary(dry)["plan_id"]
    assert plan_id == dry.run_id
    assert world.kinds() == initial
    changing = sorted(key for key, kind in world.expected_kinds().items() if kind != initial[key])
    assert len(changing) > 2

    moved = changing[0]  # someone sets this user's kind after the plan was reviewed
    with world.engine.begin() as connection:
        connection.execute(sa.text("UPDATE users SET kind = 'manual' WHERE id = :id"), {"id": moved})
    applied = world.run({"apply_plan_id": plan_id})
    assert applied.success, applied.all_events
    shown = summary(applied)
    assert shown["skipped_conflict"] == 1 and shown["conflicts"] == 1
    assert shown["plan_id"] == plan_id
    # The asset's Overview (its latest materialization) shows the run as a whole, not the last shard alone.
    materializations = applied.asset_materializations_for_node("user_kinds")
    last = {name: value.value for name, value in materializations[-1].metadata.items()}
    assert list(last)[:3] == ["created", "updated", "failed"]  # the run's totals first, under the plain names
    assert last["updated"] == shown["updated"] == len(changing) - 1
    assert last["conflicts"] == 1 and last["plan_id"] == plan_id and "plan" in last
    assert sum(m.metadata["updated_in_shard"].value for m in materializations) == shown["updated"]
    assert all("updated" not in m.metadata for m in materializations[:-1])
    after = world.kinds()
    assert after[moved] == "manual"
    assert {key: after[key] for key in changing[1:]} == {
        key: world.expected_kinds()[key] for key in changing[1:]
    }
    state = SyncStateStore.from_url(default_state_url())
    statuses = {r["record_key"]: r["status"] for r in state.audit.rows("user_kinds", run_id=applied.run_id)}
    assert statuses[moved] == "conflict"

    preview = undo(world, applied.run_id)
    assert preview.success, preview.all_events
    assert world.kinds() == after
    assert summary(preview)["planned_updates"] == len(changing) - 1
    assert preview.asset_materializations_for_node("user_kinds_undo") == []  # a preview changes nothing

    undone = undo(world, applied.run_id, dry_run=False)
    assert undone.success, undone.all_events
    assert world.kinds() == {**initial, moved: "manual"}
    # An applied undo changed ZLV: it materializes the shards it changed, saying what it was.
    restored = undone.asset_materializations_for_node("user_kinds_undo")
    assert {m.partition for m in restored} == {shard_of(key) for key in changing[1:]}
    assert {m.description for m in restored} == {
        f"undo of run {applied.run_id}: {len(changing) - 1} field(s) restored, 0 conflict(s) left"
    }
    totals = {name: value.value for name, value in restored[-1].metadata.items()}
    assert list(totals)[:3] == ["created", "updated", "failed"]
    assert totals["updated"] == totals["fields_restored"] == len(changing) - 1
    assert totals["undo_of"] == applied.run_id and totals["conflicts"] == 0
    runs = {r["run_id"] for r in state.audit.rows("user_kinds") if r["status"] == "applied"}
    assert runs == {applied.run_id, undone.run_id}

    again = undo(world, undone.run_id, dry_run=False)
    assert again.success, again.all_events
    assert world.kinds() == after


def test_expired_plan_is_refused_with_one_line(world_v2: ZlvWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    dry = world_v2.run({"dry_run": True})
    monkeypatch.setenv("SYNC_PLAN_MAX_AGE_HOURS", "0.000001")
    refused = world_v2.run({"apply_plan_id": dry.run_id})
    assert not refused.success
    message = refused.failure_data_for_node("user_kinds").error.message  # type: ignore[union-attr]
    assert f"'{dry.run_id}' expired" in message and "SYNC_PLAN_MAX_AGE_HOURS" in message
    # Filtering the runs by the plan finds the refused attempt too.
    assert refused.dagster_run.tags.get("sync/plan_id") == dry.run_id
