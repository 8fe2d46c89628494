"""Rules for a usable student row, shared by both schemas of the student information system.

Older SQLite schema: ``id TEXT``, ``grade TEXT`` ("K", "9"), ``rt_user_id TEXT``. Newer Django schema:
``student_id varchar``, ``grade int`` (0 = K), ``rt_user_id int NULL``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

GRADE_LABELS = ["K", *[str(grade) for grade in range(1, 13)]]


@dataclass(frozen=True)
class StudentRow:
    student_id: str
    first_name: str | None
    last_name: str | None
    grade: str  # "K" or "1".."12"
    rt_user_id: int | None


@dataclass(frozen=True)
class InvalidRow:
    student_id: str
    reason: str


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _show(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def parse_grade(value: Any) -> str | None:
    """``"K"``/``"k"``/``0``/``"0"`` -> ``"K"``; 1..12 (int or text) -> ``"1"``..``"12"``; anything else -> None."""
    if _blank(value) or isinstance(value, bool):
        return None
    text = str(value).strip()
    if text.upper() in {"K", "KG", "KINDERGARTEN"}:
        return "K"
    if isinstance(value, float):
        if not value.is_integer():
            return None
        text = str(int(value))
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    if number == 0:
        return "K"
    return str(number) if 1 <= number <= 12 else None


def parse_rt_user_id(value: Any) -> tuple[bool, int | None]:
    """``(valid, id)``: blank is valid with no id; a positive integer (or its text) is an id; anything else is invalid."""
    if _blank(value):
        return True, None
    if isinstance(value, bool):
        return False, None
    if isinstance(value, float):
        return (True, int(value)) if value.is_integer() and value > 0 else (False, None)
    text = str(value).strip()
    if text.isascii() and text.isdigit() and int(text) > 0:
        return True, int(text)
    return False, None


def validate_students(rows: list[dict[str, Any]]) -> tuple[list[StudentRow], list[InvalidRow]]:
    """Split raw rows into usable students and invalid rows with reasons.

    Rows are checked one by one, then across rows: a student id given twice, or an RT user given to two
    students, would send one person's data to another, so every row involved is kept out and reported.
    """
    candidates: list[StudentRow] = []
    invalid: list[InvalidRow] = []
    for position, raw in enumerate(rows, start=1):
        raw_id = raw.get("student_id")
        student_id = "" if _blank(raw_id) else str(raw_id).strip()
        label = student_id or f"row {position}"
        if not student_id:
            invalid.append(InvalidRow(label, "empty student id"))
            continue
        if len(student_id) > 255:
            invalid.append(InvalidRow(label[:40] + "...", "student id longer than 255 characters"))
            continue
        grade = parse_grade(raw.get("grade"))
        if grade is None:
            invalid.append(InvalidRow(label, f"grade {_show(raw.get('grade'))} is not K or 1..12"))
            continue
        ok, rt_user_id = parse_rt_user_id(raw.get("rt_user_id"))
        if not ok:
            invalid.append(
                InvalidRow(label, f"rt_user_id {_show(raw.get('rt_user_id'))} is not a positive integer")
            )
            continue
        candidates.append(
            StudentRow(
                student_id=student_id,
                first_name=None if _blank(raw.get("first_name")) else str(raw.get("first_name")),
                last_name=None if _blank(raw.get("last_name")) else str(raw.get("last_name")),
                grade=grade,
                rt_user_id=rt_user_id,
            )
        )
    id_counts = Counter(student.student_id for student in candidates)
    rt_owners: dict[int, list[str]] = {}
    for student in candidates:
        if student.rt_user_id is not None:
            rt_owners.setdefault(student.rt_user_id, []).append(student.student_id)
    valid: list[StudentRow] = []
    for student in candidates:
        if id_counts[student.student_id] > 1:
            invalid.append(InvalidRow(student.student_id, "student id appears more than once"))
            continue
        owners = rt_owners.get(student.rt_user_id, []) if student.rt_user_id is not None else []
        if len(owners) > 1:
            others = ", ".join(owner for owner in owners if owner != student.student_id)
            invalid.append(
                InvalidRow(student.student_id, f"rt_user_id {student.rt_user_id} is also given to {others}")
            )
            continue
        valid.append(student)
    valid.sort(key=lambda student: student.student_id)
    return valid, invalid
