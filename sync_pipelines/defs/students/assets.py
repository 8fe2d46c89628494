"""The ``students`` asset: a validated snapshot of the student information system's table.

The snapshot holds what the RT sync needs and nothing more: student id, grade, RT user id and whether the student
is current (``active``). Names never leave the student information system.
"""

from collections import Counter
from typing import TYPE_CHECKING

import dagster as dg

from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.students.frame import StudentsFrame
from sync_pipelines.defs.students.resources import StudentsDatabase
from sync_pipelines.defs.students.validation import GRADE_LABELS, InvalidRow, StudentRow, validate_students

if TYPE_CHECKING:
    import pandas as pd

STUDENT_COLUMNS = ["student_id", "grade", "rt_user_id", "active"]


def students_frame(valid: list[StudentRow]) -> "pd.DataFrame":
    import pandas as pd  # not at the top: see defs.students.frame

    frame = pd.DataFrame([vars(student) for student in valid], columns=STUDENT_COLUMNS)
    frame["rt_user_id"] = frame["rt_user_id"].astype("Int64")
    frame["active"] = frame["active"].astype("boolean")
    return frame


def active_students(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The current students of a snapshot (a snapshot stored before the ``active`` column: all of them)."""
    if "active" not in frame.columns:
        return frame
    return frame[frame["active"].fillna(True).astype(bool)]


def _invalid_table(invalid: list[InvalidRow], rows: int = 50) -> str:
    lines = ["| student | reason |", "| --- | --- |"]
    lines += [
        f"| {row.student_id.replace('|', '/')} | {row.reason.replace('|', '/')} |" for row in invalid[:rows]
    ]
    if len(invalid) > rows:
        lines.append(f"| ... | {len(invalid) - rows} more |")
    return "\n".join(lines)


@dg.asset(
    group_name="students",
    io_manager_key="state_table_io_manager",
    kinds={"sql", "pandas"},
    description="Validated snapshot of the student information system's students table (invalid rows kept out).",
)
@reported_as_failures
def students(
    context: dg.AssetExecutionContext, students_database: StudentsDatabase
) -> dg.Output[StudentsFrame]:
    rows = students_database.read_rows()
    valid, invalid = validate_students(rows)
    for row in invalid[:20]:
        context.log.warning(f"student {row.student_id} kept out: {row.reason}")
    if len(invalid) > 20:
        context.log.warning(
            f"... and {len(invalid) - 20} more invalid rows (see the 'invalid_rows' metadata)"
        )
    frame = students_frame(valid)
    current = [student for student in valid if student.active]
    grades = Counter(student.grade for student in current)
    metadata = {
        "source_rows": dg.MetadataValue.int(len(rows)),
        "row_count": dg.MetadataValue.int(len(valid)),
        "active": dg.MetadataValue.int(len(current)),
        "inactive": dg.MetadataValue.int(len(valid) - len(current)),
        "invalid": dg.MetadataValue.int(len(invalid)),
        "without_rt_user_id": dg.MetadataValue.int(sum(1 for s in current if s.rt_user_id is None)),
        "grade_distribution": dg.MetadataValue.json({grade: grades.get(grade, 0) for grade in GRADE_LABELS}),
        "preview": dg.MetadataValue.md(frame.head(10).to_markdown(index=False) if len(frame) else "(empty)"),
    }
    if invalid:
        metadata["invalid_rows"] = dg.MetadataValue.md(_invalid_table(invalid))
    context.log.info(
        f"students: {len(rows)} rows read, {len(current)} active, {len(valid) - len(current)} inactive, "
        f"{len(invalid)} invalid, {metadata['without_rt_user_id'].value} active without rt_user_id"
    )
    return dg.Output(frame, metadata=metadata)
