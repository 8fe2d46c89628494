"""``sync_checks`` as CI runs it: green on known-good data, red on seeded bad data."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sandbox.sample_data import generate_students
from sync_pipelines_tests.harness.world import SEED, SyncWorld, check_names, start_world, sync_everything


@pytest.fixture(scope="module")
def world(postgres_server) -> SyncWorld:
    with ExitStack() as stack:
        world = start_world(stack, size=40, postgres=postgres_server)
        results = sync_everything(world)
        assert all(result.succeeded for result in results), [
            r.output[-2000:] for r in results if not r.succeeded
        ]
        yield world


@pytest.mark.slow
def test_green_on_known_data_then_red_on_bad_data(world: SyncWorld) -> None:
    green = world.run_job("sync_checks")
    assert green.succeeded, green.output[-3000:]
    assert set(check_names(green.output).values()) == {"passed"}
    assert len(check_names(green.output)) >= 9
    # sync_checks writes nothing: the targets' request counters show reads only.
    assert world.sandboxes["rt"].requests("PUT /REST/2.0/user/{id}") > 0
    puts_before = world.sandboxes["rt"].requests("PUT /REST/2.0/user/{id}")

    zlv = create_database_engine(world.url("ZLV_DATABASE_URL"), "ZLV_DATABASE_URL")
    with zlv.begin() as connection:
        connection.execute(
            sa.text("UPDATE users SET kind = 'bogus' WHERE id = (SELECT id FROM users LIMIT 1)")
        )
    edurpg = create_database_engine(world.url("EDURPG_DATABASE_URL"), "EDURPG_DATABASE_URL")
    with edurpg.begin() as connection:
        connection.execute(
            sa.text(
                'INSERT INTO "ExternalRef" (id, type, "externalId", "internalId", "updatedAt") '
                "VALUES ('cdangling', 'class', 'GONE', 'no-such-class', now())"
            )
        )
    user_id = next(s.rt_user_id for s in generate_students(world.size, seed=SEED) if s.rt_user_id)
    world.sandboxes["rt"].change_state(
        {
            "action": "set_custom_field",
            "user_id": user_id,
            "field": "Student ID",
            "values": ["hand-edit"],
        }
    )

    red = world.run_job("sync_checks")
    assert not red.succeeded
    outcomes = check_names(red.output)
    assert outcomes["user_kinds_valid_values"] == "failed"
    assert outcomes["edurpg_external_refs_resolve"] == "failed"
    assert outcomes["rt_matches_students"] == "failed"  # a warning: recorded, but alone it would not turn red
    assert outcomes["students_unique_ids"] == "passed"
    assert world.sandboxes["rt"].requests("PUT /REST/2.0/user/{id}") == puts_before
