"""``bakalari_entities``: a reviewed plan applied with one row changed meanwhile, undone, the undo undone; an undo
of the run that created the rows keeps them and lists them."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.definitions import location
from sync_pipelines_tests.bakalari.helpers import counts, engine_for, observation, run_sync, sync_resources

bakalari_sync_undo = location.syncs["bakalari"].undo_job

pytestmark = pytest.mark.integration


def undo(resources: dict[str, Any], run_id: str, **config: Any) -> dg.ExecuteInProcessResult:
    return bakalari_sync_undo.execute_in_process(
        run_config={"ops": {"bakalari_entities_undo": {"config": {"run_id": run_id, **config}}}},
        resources=resources,
        raise_on_error=False,
    )


def class_names(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.text('SELECT id, name FROM "Class"')).all())


def test_reviewed_plan_conflict_undo_and_undo_of_undo(bakalari: ThreadedSandbox, edurpg_url: str) -> None:
    resources = sync_resources(bakalari.url, edurpg_url)
    engine = engine_for(edurpg_url)
    first = run_sync(resources)
    assert first.success
    kept = undo(resources, first.run_id)
    assert kept.success and "created by the run" in observation(kept)["kept_for_a_person"]

    synced = class_names(engine)
    ids = sorted(synced)[:3]
    with engine.begin() as connection:  # someone renames three classes; the sync will name them back
        for class_id in ids:
            connection.execute(
                sa.text("UPDATE \"Class\" SET name = name || ' (x)' WHERE id = :id"), {"id": class_id}
            )
    renamed = class_names(engine)
    dry = run_sync(resources, dry_run=True)
    assert dry.success
    plan_id = observation(dry)["plan_id"]
    assert class_names(engine) == renamed
    with engine.begin() as connection:  # the first class is renamed again after the review
        connection.execute(sa.text("UPDATE \"Class\" SET name = 'Later' WHERE id = :id"), {"id": ids[0]})
    before = counts(engine)
    applied = run_sync(resources, apply_plan_id=plan_id)
    assert applied.success, applied.all_events
    assert observation(applied)["skipped_conflict"] == 1
    after = class_names(engine)
    assert after == {**synced, ids[0]: "Later"}

    undone = undo(resources, applied.run_id, dry_run=False)
    assert undone.success, undone.all_events
    assert class_names(engine) == {**renamed, ids[0]: "Later"}
    again = undo(resources, undone.run_id, dry_run=False)
    assert again.success, again.all_events
    assert class_names(engine) == after
    assert counts(engine)["Class"] == before["Class"]


def test_a_plan_shows_a_changed_name_as_changed_without_the_names(
    bakalari: ThreadedSandbox, edurpg_url: str
) -> None:
    """A person's name edited by hand in EduRPG: the dry run's plan (metadata and log) says the user's name
    changes, by Bakaláři id, without the old or the new name; a class's name is not personal and is shown."""
    resources = sync_resources(bakalari.url, edurpg_url)
    engine = engine_for(edurpg_url)
    assert run_sync(resources).success
    with engine.begin() as connection:
        user_id, name, bakalari_id = connection.execute(
            sa.text('SELECT id, name, "bakalariId" FROM "User" WHERE role = \'STUDENT\' ORDER BY id LIMIT 1')
        ).one()
        connection.execute(
            sa.text("UPDATE \"User\" SET name = 'Hand Edited' WHERE id = :id"), {"id": user_id}
        )
        class_id = sorted(class_names(engine))[0]
        connection.execute(sa.text("UPDATE \"Class\" SET name = 'Renamed' WHERE id = :id"), {"id": class_id})
    dry = run_sync(resources, dry_run=True)
    assert dry.success
    table = observation(dry)["plan"]
    logged = "\n".join(str(e.message) for e in dry.all_events if e.message)
    assert f"| User:{bakalari_id} | update | name | changed (personal data, not shown) |" in table
    assert "| update | name | Renamed -> " in table
    for text in (table, logged):
        assert name not in text and "Hand Edited" not in text
