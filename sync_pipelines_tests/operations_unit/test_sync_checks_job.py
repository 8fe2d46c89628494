"""``sync_checks`` as CI runs it (``dagster job execute``): green on known-good data, red on seeded bad data; and,
run in-process from a freshly loaded code location, what it checks when a deployment has one system only."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from devkit.sandbox.sample_data import generate_students
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines_tests.harness.registry import every_variable, expected_checks
from sync_pipelines_tests.harness.world import (
    SEED,
    SyncWorld,
    check_names,
    check_outcomes,
    failure_messages,
    start_world,
    sync_everything_in_process,
)

SPECS = {spec.system: spec for spec in SYNCS}


@pytest.fixture(scope="module")
def world(postgres_server) -> SyncWorld:
    with ExitStack() as stack:
        world = start_world(stack, size=40, postgres=postgres_server)
        results = sync_everything_in_process(world)
        assert all(result.success for result in results), [
            failure_messages(r) for r in results if not r.success
        ]
        yield world


@pytest.mark.integration
@pytest.mark.parametrize("system", list(SPECS))
def test_one_system_alone_checks_that_system_and_passes(
    world: SyncWorld, system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment with only one system's variables: sync_checks checks that system alone, and passes."""
    common = ("DAGSTER_HOME", "PYTHONWARNINGS", "SYNC_STATE_DATABASE_URL", "PORTAILDF_AUTH_VERSION")
    own = (*common, *SPECS[system].required_variables)
    env = {name: value for name, value in world.env.items() if name in own}
    for name in every_variable(SYNCS):
        monkeypatch.delenv(name, raising=False)  # nothing leaks in from the test process
    result = world.run_in_process("sync_checks", env=env)
    assert result.success, failure_messages(result)
    checked = set(check_outcomes(result))
    assert checked == expected_checks(SPECS[system])
    assert set(check_outcomes(result).values()) == {"passed"}


@pytest.mark.e2e
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
