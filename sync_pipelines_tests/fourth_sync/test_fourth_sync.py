"""A fourth sync (``library/``: students -> library_patrons, SQLite to SQLite), written from the public extension
points only, joins the registered syncs by one line (``SYNCS + (LIBRARY_SYNC,)``, as ``defs/syncs.py`` lists
them) and is built by the path production is built by (``defs.code_location.code_location``, which
``sync_pipelines.definitions`` calls with ``defs/syncs.py``'s list). With no Request Tracker, Bakaláři or Portail
DF variable set, its code location loads, a dry run plans and writes nothing, a run writes, the undo restores
what was there, and ``sync_checks`` checks it (and the students table it reads) and passes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.code_location import CodeLocation, code_location
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import configuration_problems, enabled_systems
from sync_pipelines_tests.fourth_sync.library.sync import LIBRARY_SYNC
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.harness.world import check_outcomes, failure_messages

pytestmark = pytest.mark.integration

SPECS = (*SYNCS, LIBRARY_SYNC)
# Every variable of the three other systems, and of the services they write to.
OTHER_SYSTEMS = ("RT_", "BAKALARI_", "EDURPG_", "PORTAILDF_", "ZLV_")
STUDENTS = [  # (student_id, grade, rt_user_id, is_active)
    ("s1", "4", None, 1),
    ("s2", "K", None, 1),
    ("s3", "5", None, 0),  # left the school: not a patron
    ("s4", "12", 1004, 1),
]
PATRONS_BEFORE = {"s1": "3", "s9": "7"}  # s1's grade is stale; s9 is not a student and is left alone
PATRONS_SYNCED = {"s1": "4", "s2": "K", "s4": "12", "s9": "7"}


@dataclass
class Library:
    location: CodeLocation
    instance: dg.DagsterInstance
    engine: sa.Engine

    def run(self, job: str, config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        result = self.location.definitions.resolve_job_def(job).execute_in_process(
            run_config=config, instance=self.instance, raise_on_error=False
        )
        assert result.success, failure_messages(result)
        return result

    def patrons(self) -> dict[str, str]:
        with self.engine.connect() as connection:
            return dict(connection.execute(sa.text("SELECT student_id, grade FROM library_patrons")).all())


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Library]:
    for name in list(os.environ):
        if (
            name.startswith(OTHER_SYSTEMS)
            or name in {"SYNC_SYSTEMS", "STUDENTS_DATABASE_URL"}
            or name.endswith("_SYNC_CRON")
        ):
            monkeypatch.delenv(name)
    students = sa.create_engine(f"sqlite:///{tmp_path}/students.db")
    with students.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE students (student_id TEXT, grade TEXT, rt_user_id INTEGER, is_active INTEGER)"
            )
        )
        connection.execute(
            sa.text("INSERT INTO students VALUES (:id, :grade, :rt, :active)"),
            [dict(zip(("id", "grade", "rt", "active"), row, strict=True)) for row in STUDENTS],
        )
    patrons = sa.create_engine(f"sqlite:///{tmp_path}/library.db")
    with patrons.begin() as connection:
        connection.execute(sa.text("CREATE TABLE library_patrons (student_id TEXT PRIMARY KEY, grade TEXT)"))
        connection.execute(
            sa.text("INSERT INTO library_patrons VALUES (:id, :grade)"),
            [{"id": key, "grade": grade} for key, grade in PATRONS_BEFORE.items()],
        )
    monkeypatch.setenv("STUDENTS_DATABASE_URL", f"sqlite:///{tmp_path}/students.db")
    monkeypatch.setenv("LIBRARY_DATABASE_URL", f"sqlite:///{tmp_path}/library.db")
    monkeypatch.setenv("SYNC_STATE_DATABASE_URL", f"sqlite:///{tmp_path}/state.db")
    with instance_with_events_in_memory() as instance:
        yield Library(code_location(SPECS), instance, patrons)
    students.dispose()
    patrons.dispose()


def test_the_fourth_sync_loads_plans_applies_undoes_and_checks_alone(library: Library) -> None:
    assert not [name for name in os.environ if name.startswith(OTHER_SYSTEMS)]
    # Loads: every job, schedule and sensor of the code location resolves; only the library is enabled.
    dg.Definitions.validate_loadable(library.location.definitions)
    assert enabled_systems(SPECS) == {"library"}
    assert configuration_problems(SPECS) == ()
    assert LIBRARY_SYNC.required_variables == ("STUDENTS_DATABASE_URL", "LIBRARY_DATABASE_URL")

    dry = library.run("library_patron_sync", {"ops": {"library_patrons": {"config": {"dry_run": True}}}})
    assert dry.dagster_run.tags["sync/dry_run"] == "true"
    assert library.patrons() == PATRONS_BEFORE  # planned, nothing written
    [plan] = [event for event in dry.all_events if event.event_type_value == "ASSET_OBSERVATION"]
    planned = plan.event_specific_data.asset_observation.metadata  # type: ignore[union-attr]
    assert (planned["planned_creates"].value, planned["planned_updates"].value) == (2, 1)

    applied = library.run("library_patron_sync")
    assert library.patrons() == PATRONS_SYNCED

    library.run(
        "library_patron_sync_undo",
        {"ops": {"library_patrons_undo": {"config": {"run_id": applied.run_id, "dry_run": False}}}},
    )
    assert library.patrons() == PATRONS_BEFORE

    library.run("library_patron_sync")
    checks = library.run("sync_checks")
    assert check_outcomes(checks) == {
        "students_unique_ids": "passed",
        "students_unique_rt_user_ids": "passed",
        "library_patrons_have_grades": "passed",
    }
