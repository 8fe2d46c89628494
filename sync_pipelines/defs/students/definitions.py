"""The students domain's definitions."""

import dagster as dg

from sync_pipelines.defs.students.assets import students
from sync_pipelines.defs.students.checks import students_unique_ids, students_unique_rt_user_ids
from sync_pipelines.defs.students.resources import students_database

defs = dg.Definitions(
    assets=[students],
    asset_checks=[students_unique_ids, students_unique_rt_user_ids],
    resources={"students_database": students_database()},
)
