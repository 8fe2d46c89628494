"""A dry run writes nothing anywhere but its saved plan (``sync_plans``) and what record history keeps of it, even
when a killed run left changes in flight: it only shows how they would be settled. Tested for the three syncs, with the sync state on SQLite and on PostgreSQL.

A killed run is what it leaves behind: a write-ahead batch in the state database, and some of that batch's
changes already in the target. Every table of the state database and of the target is read before and after
the dry run and compared row for row; then a real run settles the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from devkit.sandbox.bakalari import BakalariSandbox, generate_school
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME, PortailDfSandbox
from devkit.sandbox.rt import DEFAULT_TOKEN
from devkit.sandbox.server import ThreadedSandbox
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.definitions import defs, location
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.bakalari.helpers import run_sync as run_bakalari
from sync_pipelines_tests.bakalari.helpers import sync_resources
from sync_pipelines_tests.rt.test_rt_sync import RtWorld
from sync_pipelines_tests.rt.test_rt_sync import rt_world as start_rt_world

user_kinds = location.syncs["user_kinds"].asset

pytestmark = pytest.mark.integration

KILLED_RUN = "killed-run"
# What a dry run writes: its plan, and its kind and planned changes for record history.
DRY_RUN_KEEPS = ("sync_plans", "sync_runs", "sync_record_outcomes")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("make_pg_url")()


def tables(url: str, leave_out: Callable[[str, str], bool] = lambda table, column: False) -> dict[str, list]:
    """Every row of every table at ``url``, sorted (column values a test names in ``leave_out`` excepted).
    ``sync_plans`` and record history's tables are left out: the plan a dry run saves for review, and what record
    history keeps of it, are the one thing it writes."""
    engine = create_database_engine(url, "test")
    try:
        contents = {}
        with engine.connect() as connection:
            for table in sa.inspect(engine).get_table_names():
                if table in DRY_RUN_KEEPS:
                    continue
                reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
                columns = [c for c in reflected.columns if not leave_out(table, c.name)]
                rows = connection.execute(sa.select(*columns)).all()
                contents[table] = sorted(map(repr, rows))
        return contents
    finally:
        engine.dispose()


def change(key: str, values: dict[str, Any], old: dict[str, Any] | None = None) -> PlannedRecord:
    old = old or {}
    changes = tuple(FieldChange(name, old.get(name), value) for name, value in values.items())
    return PlannedRecord(key, Action.UPDATE, values, changes)


def observation(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION":
            observed = event.event_specific_data.asset_observation  # type: ignore[union-attr]
            if observed.asset_key == dg.AssetKey(asset):
                return {key: value.value for key, value in observed.metadata.items()}
    raise AssertionError(f"no observation of {asset}")


def assert_dry_run_wrote_nothing_then_real_run_settles(
    run: Callable[[dict[str, Any]], dg.ExecuteInProcessResult],
    asset: str,
    state_url: str,
    target_urls: list[str],
    expected: dict[str, int],
    leave_out: Callable[[str, str], bool] = lambda table, column: False,
    target_state: Callable[[], Any] = lambda: None,
) -> None:
    state = SyncStateStore.from_url(state_url)
    assert state.settlement.pending(asset), "the killed run left nothing in flight"
    before = (tables(state_url), [tables(url, leave_out) for url in target_urls], target_state())

    dry = run({"dry_run": True})
    assert dry.success, dry.all_events
    after = (tables(state_url), [tables(url, leave_out) for url in target_urls], target_state())
    assert after == before
    shown = observation(dry, asset)
    assert shown["plan_id"] == dry.run_id and state.plans.load(dry.run_id) is not None  # saved for review
    assert {k: shown[f"would_settle_{k}"] for k in expected} == expected
    assert "left in flight by an interrupted run" in shown["plan"]

    real = run({})
    assert real.success, real.all_events
    assert state.settlement.pending(asset) == {}
    settled = [r for r in state.audit.rows(asset, run_id=KILLED_RUN)]
    assert {status: sum(r["status"] == status for r in settled) for status in expected} == expected


# -- RT -----------------------------------------------------------------------------------------------------
@pytest.fixture
def rt_world(make_pg_url, state_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with start_rt_world(
        make_pg_url, monkeypatch, size=60, seed=21, knobs_seed=2, state_url=state_url
    ) as world:
        yield world


def test_rt_dry_run_after_a_killed_run_writes_nothing(rt_world: RtWorld, state_url: str) -> None:
    rt, students = rt_world.rt, rt_world.students
    users = rt.state()["users"]
    synced = [
        s
        for s in students
        if s.rt_user_id is not None
        and users[str(s.rt_user_id)]["CustomFields"].get("Grade") != [s.grade]
        and users[str(s.rt_user_id)]["CustomFields"].get("Student ID") != [s.student_id]
    ][:3]
    assert len(synced) == 3
    records = [change(str(s.rt_user_id), {"Grade": s.grade, "Student ID": s.student_id}) for s in synced]
    job = defs.resolve_job_def("rt_user_sync")

    def run(config: dict[str, Any]) -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            run_config={"ops": {"rt_user_custom_fields": {"config": config}}},
            instance=rt_world.instance,
            raise_on_error=False,
        )

    # The killed run's first step stored the students snapshot, as every run of the job does.
    assert run({"dry_run": True}).success
    SyncStateStore.from_url(state_url).write_ahead.begin(KILLED_RUN, "rt_user_custom_fields", records)
    # The killed run's first PUT reached RT; the other two did not.
    answer = httpx.put(
        f"{rt.url}/REST/2.0/user/{synced[0].rt_user_id}",
        json={"CustomFields": dict(records[0].desired)},
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    assert answer.status_code == 200

    assert_dry_run_wrote_nothing_then_real_run_settles(
        run,
        "rt_user_custom_fields",
        state_url,
        [rt_world.students_url],
        {"applied": 2, "not_applied": 4},
        target_state=lambda: rt.state()["users"],
    )


# -- user kinds ---------------------------------------------------------------------------------------------
def test_user_kinds_dry_run_after_a_killed_run_writes_nothing(pg_url: str, state_url: str) -> None:
    sandbox = PortailDfSandbox.from_sample(80, 13, auth_version="v2")
    sample = sandbox.sample
    assert sample is not None
    engine = seed_zlv(pg_url, sample.users)
    active = {user.id for user in sample.users if user.deleted_at is None}
    after = sample.kinds_after_sync()
    kinds = {user.id: user.kind for user in sample.users}
    changing = [key for key in sample.changes() if key in active][:3]
    records = [change(key, {"kind": after[key]}, {"kind": kinds[key]}) for key in changing]
    SyncStateStore.from_url(state_url).write_ahead.begin(KILLED_RUN, "user_kinds", records)
    with engine.begin() as connection:  # the killed run's batch: committed for the first user only
        connection.execute(
            sa.text("UPDATE users SET kind = :kind WHERE id = :id"),
            {"kind": after[changing[0]], "id": changing[0]},
        )
    with ThreadedSandbox(sandbox) as handle:
        resources = {
            "portaildf": PortailDfResource(
                api_url=f"{handle.url}/api",
                username=DEFAULT_USERNAME,
                password=DEFAULT_PASSWORD,
                auth_version="v2",
            ),
            "zlv_database": ZlvDatabase(database_url=pg_url),
            "sync_state": SyncStateResource(database_url=state_url),
        }

        def run(config: dict[str, Any]) -> dg.ExecuteInProcessResult:
            return dg.materialize(
                [user_kinds],
                resources=resources,
                run_config={"ops": {"user_kinds": {"config": config}}},
                raise_on_error=False,
            )

        assert_dry_run_wrote_nothing_then_real_run_settles(
            run, "user_kinds", state_url, [pg_url], {"applied": 1, "not_applied": 2}
        )


# -- Bakaláři -----------------------------------------------------------------------------------------------
def test_bakalari_dry_run_after_a_killed_run_writes_nothing(pg_url: str, state_url: str) -> None:
    school = generate_school(30, 8)
    seed_edurpg(pg_url, school)
    with ThreadedSandbox(BakalariSandbox(school)) as bakalari:
        resources = sync_resources(bakalari.url, pg_url, state_url)
        first = run_bakalari(resources)
        assert first.success
        state = SyncStateStore.from_url(state_url)
        written = [row for row in state.audit.rows("bakalari_entities") if row["field"] == "name"][:3]
        assert len(written) == 3
        # The killed run's batch: its first change is in EduRPG, the other two (new names) are not.
        records = [change(written[0]["record_key"], {"name": written[0]["new_value"]})]
        records += [
            change(row["record_key"], {"name": f"{row['new_value']} (renamed)"}) for row in written[1:]
        ]
        state.write_ahead.begin(KILLED_RUN, "bakalari_entities", records)

        def run(config: dict[str, Any]) -> dg.ExecuteInProcessResult:
            return run_bakalari(resources, **config)

        # Reading a student rotates the refresh token, which must be stored or be lost: in a dry run too. It is
        # the one value a dry run writes, and only to keep the credential working.
        assert_dry_run_wrote_nothing_then_real_run_settles(
            run,
            "bakalari_entities",
            state_url,
            [pg_url],
            {"applied": 1, "not_applied": 2},
            leave_out=lambda table, column: (table, column) == ("User", "bakalariToken"),
        )
