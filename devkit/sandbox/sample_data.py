"""Deterministic sample data shared by the sandbox servers, the demo databases, the tests and the benchmarks.

The same ``(count, seed)`` always gives the same rows, so a student information system database and an RT
sandbox seeded separately agree on who is who.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = [
    "Anna",
    "Jakub",
    "Žofie",
    "Lukáš",
    "Chloé",
    "Mateo",
    "Aïcha",
    "Noah",
    "Zoë",
    "Oliver",
    "Émile",
    "Ida",
]
LAST_NAMES = [
    "Nováková",
    "Dvořák",
    "Martin",
    "García",
    "O'Neil",
    "Smith",
    "Černý",
    "Müller",
    "Lefèvre",
    "Kim",
]
GRADES = ["K", *[str(grade) for grade in range(1, 13)]]
RT_USER_ID_BASE = 1000


@dataclass(frozen=True)
class SampleStudent:
    student_id: str
    first_name: str
    last_name: str
    grade: str  # "K" or "1".."12"
    rt_user_id: int | None
    active: bool = True  # False: left or graduated (the Django schema's ``is_active``)


def generate_students(count: int, seed: int = 7, without_rt_user_share: float = 0.1) -> list[SampleStudent]:
    """``count`` students; about ``without_rt_user_share`` of them have no RT user."""
    rng = random.Random(seed)
    students = []
    for number in range(1, count + 1):
        has_rt_user = rng.random() >= without_rt_user_share
        students.append(
            SampleStudent(
                student_id=f"S{number:06d}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                grade=rng.choice(GRADES),
                rt_user_id=RT_USER_ID_BASE + number if has_rt_user else None,
            )
        )
    return students
