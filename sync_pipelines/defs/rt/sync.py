"""The RT sync declared: ``students`` -> ``rt_user_custom_fields``, job ``rt_user_sync``, nightly at 01:00."""

from datetime import date, timedelta

import dagster as dg

from sync_pipelines.core.settings import api_settings
from sync_pipelines.defs.rt.automation import students_changed_sensor
from sync_pipelines.defs.rt.checks import RT_CUSTOM_FIELDS_EXIST, rt_matches_students
from sync_pipelines.defs.rt.history import rt_history
from sync_pipelines.defs.rt.resources import RequestTrackerResource, RtResources
from sync_pipelines.defs.rt.source import TARGET, RtSource
from sync_pipelines.defs.shared.sync_spec import HistorySpec, ScheduleSpec, SourceInputs, SyncSpec
from sync_pipelines.defs.students.upstream import STUDENTS


def invalid_students(instance: dg.DagsterInstance) -> int:
    """How many rows the latest ``students`` snapshot kept out, reported with the sync's run."""
    event = instance.get_latest_materialization_event(STUDENTS.asset.key)
    if event is None or event.asset_materialization is None:
        return 0
    value = event.asset_materialization.metadata.get("invalid")
    return int(str(value.value)) if value is not None else 0


def rt_source(run: SourceInputs[RtResources]) -> RtSource:
    import pandas as pd  # not at the top: see defs.students.frame

    students = run.upstream[STUDENTS.name]
    if not isinstance(students, pd.DataFrame):
        raise TypeError(f"the {STUDENTS.name} snapshot is a table, not {type(students).__name__}")
    return RtSource(students, run.resources.request_tracker, date.today(), invalid_students(run.instance))


def rt_undo_source(run: SourceInputs[RtResources]) -> RtSource:
    import pandas as pd  # not at the top: see defs.students.frame

    # An undo's records come from the audit log: the students table is not read.
    return RtSource(pd.DataFrame(), run.resources.request_tracker, date.today())


RT_SYNC = SyncSpec[RtResources](
    system="rt",
    target=TARGET,
    job="rt_user_sync",
    group="rt",
    pool="rt_api",
    tags={"sync/target": "rt", "sync/api": "rt"},
    variables=("RT_URL", "RT_TOKEN"),
    settings=api_settings("RT"),
    resources=RtResources(
        request_tracker=RequestTrackerResource(url=dg.EnvVar("RT_URL"), token=dg.EnvVar("RT_TOKEN"))
    ),
    source=rt_source,
    undo_source=rt_undo_source,
    upstream=(STUDENTS,),
    # rt_matches_students reads every user back from RT: it belongs to sync_checks, not to every sync run.
    checks=(rt_matches_students,),
    prerequisites=(RT_CUSTOM_FIELDS_EXIST,),
    sensors=(students_changed_sensor,),
    record_history=HistorySpec(
        "an RT user id or a student id (student:<id> or rt:<id> where one could be taken for the other)",
        rt_history,
    ),
    schedule=ScheduleSpec(
        name="rt_user_sync_daily",
        default_cron="0 1 * * *",
        description="Every shard, nightly at 01:00 (the old cron's time).",
    ),
    kinds=frozenset({"rest"}),
    fresh_within=timedelta(days=1),
    # First run measured at 18 s for 2,000 students (3,219 requests, docs/benchmarks.md); at RT's ~90 ms per
    # request one at a time, 50,000 students take about 2 h. 6 h is 3x that, half the instance's 12 h.
    max_runtime=timedelta(hours=6),
    description="RT users' Grade and Student ID custom fields, kept equal to the students table.",
    job_description="students -> RT user custom fields (Grade, Student ID).",
    undo_description="Undo an rt_user_sync run (config run_id): RT fields back to the values it replaced, where RT "
    "still holds what it wrote; a dry run unless dry_run: false.",
)
