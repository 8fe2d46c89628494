"""What RT should hold for each student: pure functions of the students snapshot."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sync_pipelines.defs.students.validation import student_shard
from sync_pipelines.sync.plan import Skip
from sync_pipelines.sync.shards import shard_of

if TYPE_CHECKING:
    import pandas as pd


def school_year_end(today: date) -> int:
    """The calendar year in which the current school year ends; it rolls over in June."""
    return today.year + 1 if today.month >= 6 else today.year


def graduation_year(grade: str, today: date) -> int:
    """The original script's rule: current school year + (12 - grade), with K counted as 0."""
    number = 0 if grade == "K" else int(grade)
    return school_year_end(today) + (12 - number)


def desired_custom_fields(
    students: pd.DataFrame,
    grade_field: str,
    student_id_field: str,
    grade_mode: str,
    shards: set[str],
    today: date,
) -> tuple[dict[str, dict[str, str]], list[Skip]]:
    """``{rt_user_id: {grade field: value, student id field: value}}`` for students in ``shards``, ordered by
    RT user id; students without an RT user are skipped (category ``no_rt_user``), and so are inactive ones
    (``inactive``: left or graduated), whose RT users are left as they are."""
    import pandas as pd  # not at the top: see defs.students.frame

    desired: dict[str, dict[str, str]] = {}
    skips: list[Skip] = []
    rows = students.sort_values("student_id")
    actives = rows["active"] if "active" in rows.columns else [True] * len(rows)
    for student_id, grade, rt_user_id, active in zip(
        rows["student_id"], rows["grade"], rows["rt_user_id"], actives, strict=True
    ):
        if not pd.isna(active) and not active:
            if student_shard(None, student_id) in shards:
                skips.append(Skip(str(student_id), "inactive", "student is not active (left or graduated)"))
            continue
        # ``student_shard``: the function the students_changed sensor uses too, on the same normalised key.
        in_shards = student_shard(None if pd.isna(rt_user_id) else rt_user_id, student_id) in shards
        if pd.isna(rt_user_id):
            if in_shards:
                skips.append(Skip(str(student_id), "no_rt_user", "student has no rt_user_id"))
            continue
        key = str(int(rt_user_id))
        if not in_shards:
            continue
        value = str(graduation_year(grade, today)) if grade_mode == "graduation_year" else str(grade)
        desired[key] = {grade_field: value, student_id_field: str(student_id)}
    ordered = dict(sorted(desired.items(), key=lambda item: int(item[0])))
    return ordered, skips


def record_shard(key: str) -> str:
    """Shard of a plan record: RT user ids for synced students, student ids for skipped ones."""
    return shard_of(key)
