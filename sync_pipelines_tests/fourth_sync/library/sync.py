"""The library sync declared: ``students`` -> ``library_patrons``, job ``library_patron_sync``, nightly."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pandas as pd

from sync_pipelines.defs.shared.sync_spec import ScheduleSpec, SourceInputs, SyncSpec
from sync_pipelines.defs.students.upstream import STUDENTS
from sync_pipelines_tests.fourth_sync.library.checks import library_patrons_have_grades
from sync_pipelines_tests.fourth_sync.library.resources import SETTING, LibraryDatabase, LibraryResources
from sync_pipelines_tests.fourth_sync.library.source import TARGET, LibrarySource


def library_source(run: SourceInputs[LibraryResources]) -> LibrarySource:
    students = run.upstream.get(STUDENTS.name, pd.DataFrame(columns=["student_id", "grade", "active"]))
    assert isinstance(students, pd.DataFrame)
    return LibrarySource(students, run.resources.library_database)


LIBRARY_SYNC = SyncSpec[LibraryResources](
    system="library",
    target=TARGET,
    job="library_patron_sync",
    group="library",
    pool="library_database",
    tags={"sync/target": "library"},
    variables=(SETTING,),
    resources=LibraryResources(library_database=LibraryDatabase(database_url=dg.EnvVar(SETTING))),
    source=library_source,
    upstream=(STUDENTS,),
    checks=(library_patrons_have_grades,),
    schedule=ScheduleSpec("library_patron_sync_daily", "0 2 * * *", "Every shard, nightly at 02:00."),
    kinds=frozenset({"sqlite"}),
    fresh_within=timedelta(days=1),
    max_runtime=timedelta(hours=1),
    description="Library patrons' grades, kept equal to the students table.",
    job_description="students -> library_patrons.",
    undo_description="Undo a library_patron_sync run (config run_id).",
)
