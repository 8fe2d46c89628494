"""Checks against live RT: the fields the sync writes exist (a prerequisite the RT asset evaluates itself, before
it reads or writes anything), and RT still matches the students table."""

import asyncio
import logging
from datetime import date

import dagster as dg

from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.defs.rt.desired import desired_custom_fields
from sync_pipelines.defs.rt.fields import as_rt_takes, held_as_wanted
from sync_pipelines.defs.rt.resources import RequestTrackerResource, RtResources
from sync_pipelines.defs.rt.source import TARGET, read_current, require_user_fields, synced_fields
from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.shared.sync_spec import Prerequisite
from sync_pipelines.defs.students.frame import StudentsFrame
from sync_pipelines.sync.plan import plan_changes
from sync_pipelines.sync.shards import SHARD_KEYS


def rt_custom_fields_exist(
    request_tracker: RequestTrackerResource, log: logging.Logger
) -> dg.AssetCheckResult:
    fields = request_tracker.fields()

    async def check() -> list[str]:
        async with request_tracker.client() as rt:
            return await require_user_fields(rt, fields)

    try:
        available = asyncio.run(check())
    except ConfigurationError as error:
        # The run fails on this blocking check; its log line is the cause a person reads first.
        log.error(str(error))
        return dg.AssetCheckResult(passed=False, description=str(error), metadata={"fields": list(fields)})
    return dg.AssetCheckResult(
        passed=True,
        metadata={"fields": list(fields), "rt_user_custom_fields": dg.MetadataValue.json(available)},
    )


RT_CUSTOM_FIELDS_EXIST = Prerequisite[RtResources](
    name="rt_custom_fields_exist",
    description="RT has the user custom fields the sync writes (RT_GRADE_FIELD, RT_STUDENT_ID_FIELD), enabled and "
    "applied to users. Blocking: rt_user_custom_fields evaluates it first and reads and writes nothing until it "
    "passes.",
    evaluate=lambda resources, log: rt_custom_fields_exist(resources.request_tracker, log),
)


@dg.asset_check(
    asset=TARGET,
    additional_ins={"students": dg.AssetIn("students")},
    pool="rt_api",
    description="Reads every synced user back from RT and counts those that differ from the students table "
    "(drift, e.g. hand edits in RT). A full_refresh run repairs them.",
)
@reported_as_failures
def rt_matches_students(
    students: StudentsFrame, request_tracker: RequestTrackerResource
) -> dg.AssetCheckResult:
    grade_field, student_id_field = request_tracker.fields()
    desired, _ = desired_custom_fields(
        students, grade_field, student_id_field, request_tracker.grade_mode(), set(SHARD_KEYS), date.today()
    )

    async def read() -> tuple[dict, dict, dict]:
        # Compared as the sync compares: a Select's values as RT takes them, a value its list lacks left out.
        async with request_tracker.client() as rt:
            fields = await synced_fields(rt, (grade_field, student_id_field))
            wanted, _ = as_rt_takes(desired, fields)
            current, failures = await read_current(rt, list(wanted), [grade_field, student_id_field])
            return wanted, held_as_wanted(current, wanted, fields), failures

    wanted, current, failures = asyncio.run(read())
    plan = plan_changes("rt", {k: v for k, v in wanted.items() if k not in failures}, current)
    drifted = plan.to_write
    examples = {
        record.key: {
            change.field: f"{change.old} (RT) != {change.new} (students)" for change in record.changes
        }
        for record in drifted[:20]
    }
    return dg.AssetCheckResult(
        passed=not drifted and not failures,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "users_checked": len(desired),
            "users_differing": len(drifted),
            "users_unreadable": len(failures),
            "examples": dg.MetadataValue.json(examples),
            "unreadable_examples": dg.MetadataValue.json(dict(list(failures.items())[:20])),
        },
    )
