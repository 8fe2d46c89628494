"""``rt_user_sync``: a reviewed plan applied with one RT user changed meanwhile, that run undone, the undo
undone; the previews write nothing to RT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
import pytest

from devkit.sandbox.rt import DEFAULT_TOKEN
from sync_pipelines.definitions import defs
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.rt.test_rt_sync import RtWorld, rt_world

pytestmark = pytest.mark.integration

SIZE = 40


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with rt_world(make_pg_url, monkeypatch, size=SIZE) as world:
        yield world


def summary(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    events = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    metadata = events[-1].event_specific_data.asset_observation.metadata  # type: ignore[union-attr]
    return {name: value.value for name, value in metadata.items()}


def undo(world: RtWorld, run_id: str, **config: Any) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("rt_user_sync_undo").execute_in_process(
        run_config={"ops": {"rt_user_custom_fields_undo": {"config": {"run_id": run_id, **config}}}},
        instance=world.instance,
        raise_on_error=False,
    )


def test_reviewed_plan_conflict_undo_and_undo_of_undo(world: RtWorld) -> None:
    initial = world.rt_values()
    differing = sorted(world.differing())
    assert len(differing) > 2
    dry = world.run({"dry_run": True})
    assert dry.success
    plan_id = summary(dry)["plan_id"]
    assert world.rt_values() == initial
    assert world.instance.get_run_by_id(dry.run_id).tags["sync/plan_id"] == plan_id  # type: ignore[union-attr]

    expected = world.expected()
    moved = next(
        key for key in differing if initial[key][0] != expected[key][0]
    )  # the plan changes its Grade
    answer = httpx.put(
        f"{world.rt.url}/REST/2.0/user/{moved}",
        json={"CustomFields": {"Grade": "2040"}},
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    assert answer.status_code == 200
    by_hand = world.rt_values()
    assert by_hand[moved] != initial[moved], (answer.text, by_hand[moved])
    applied = world.run({"apply_plan_id": plan_id})
    assert applied.success, applied.all_events
    shown = summary(applied)
    assert shown["conflicts"] == 1
    assert f"| {moved} | Grade | changed since the plan: Grade |" in shown["conflict_records"]
    after = world.rt_values()
    # Field by field: the Grade set by hand stays, the user's other planned field is written.
    assert after[moved] == (by_hand[moved][0], expected[moved][1])
    others = [key for key in differing if key != moved]
    assert {key: after[key] for key in others} == {key: expected[key] for key in others}
    run = world.instance.get_run_by_id(applied.run_id)
    assert run is not None and run.tags["sync/plan_id"] == plan_id

    preview = undo(world, applied.run_id)
    assert preview.success, preview.all_events
    assert world.rt_values() == after

    undone = undo(world, applied.run_id, dry_run=False)
    assert undone.success, undone.all_events
    assert world.rt_values() == by_hand
    run = world.instance.get_run_by_id(undone.run_id)
    assert run is not None and run.tags["sync/undo_of"] == applied.run_id
    state = SyncStateStore.from_url(world.state_url)
    runs = {r["run_id"] for r in state.audit.rows("rt_user_custom_fields") if r["status"] == "applied"}
    assert runs == {applied.run_id, undone.run_id}

    again = undo(world, undone.run_id, dry_run=False)
    assert again.success, again.all_events
    assert world.rt_values() == after
