"""Checks on the students snapshot that the RT sync relies on."""

from typing import TYPE_CHECKING

import dagster as dg

from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.students.assets import active_students, students
from sync_pipelines.defs.students.frame import StudentsFrame

if TYPE_CHECKING:
    import pandas as pd


def _duplicates(values: "pd.Series") -> dict[str, int]:
    counts = values.dropna().astype(str).value_counts()
    return {key: int(count) for key, count in counts[counts > 1].items()}


@dg.asset_check(asset=students, blocking=True, description="No student id appears twice in the snapshot.")
@reported_as_failures
def students_unique_ids(students: StudentsFrame) -> dg.AssetCheckResult:
    duplicates = _duplicates(students["student_id"])
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={
            "duplicate_ids": len(duplicates),
            "examples": dg.MetadataValue.json(dict(list(duplicates.items())[:20])),
        },
    )


@dg.asset_check(
    asset=students,
    blocking=True,
    description="No two active students share an rt_user_id: a shared RT user would get two students' data "
    "(an inactive row's RT user belongs to the active student who holds it now).",
)
@reported_as_failures
def students_unique_rt_user_ids(students: StudentsFrame) -> dg.AssetCheckResult:
    shared = _duplicates(active_students(students)["rt_user_id"])
    return dg.AssetCheckResult(
        passed=not shared,
        metadata={
            "shared_rt_user_ids": len(shared),
            "examples": dg.MetadataValue.json(dict(list(shared.items())[:20])),
        },
    )
