"""Validation rules of student rows (pure logic)."""

from __future__ import annotations

import pytest

from sync_pipelines.defs.students.validation import parse_grade, parse_rt_user_id, validate_students

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("K", "K"),
        ("k", "K"),
        (0, "K"),
        ("0", "K"),
        (9, "9"),
        ("12", "12"),
        (" 7 ", "7"),
        (3.0, "3"),
        ("13", None),
        ("abc", None),
        ("", None),
        (None, None),
        (-1, None),
        (2.5, None),
        (True, None),
    ],
)
def test_parse_grade(raw: object, expected: str | None) -> None:
    assert parse_grade(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, (True, None)),
        ("", (True, None)),
        ("  ", (True, None)),
        (float("nan"), (True, None)),
        (42, (True, 42)),
        ("42", (True, 42)),
        (42.0, (True, 42)),
        ("x", (False, None)),
        ("１", (False, None)),
        ("1001.5", (False, None)),
        (-1, (False, None)),
        ("-1", (False, None)),
        (0, (False, None)),
        (1.5, (False, None)),
    ],
)
def test_parse_rt_user_id(raw: object, expected: tuple[bool, int | None]) -> None:
    assert parse_rt_user_id(raw) == expected


def test_bad_rows_are_kept_out_with_reasons() -> None:
    rows = [
        {"student_id": "S1", "grade": "9", "rt_user_id": "101"},
        {"student_id": "S2", "grade": "13", "rt_user_id": "102"},
        {"student_id": "S3", "grade": "abc", "rt_user_id": None},
        {"student_id": "", "grade": "5", "rt_user_id": None},
        {"student_id": "S4", "grade": "K", "rt_user_id": "x"},
        {"student_id": "S5", "grade": "1", "rt_user_id": -1},
        {"student_id": "S6", "grade": "2", "rt_user_id": "200"},
        {"student_id": "S7", "grade": "3", "rt_user_id": 200},
        {"student_id": "S8", "grade": "4", "rt_user_id": None},
        {"student_id": "S8", "grade": "4", "rt_user_id": None},
        {"student_id": "S9", "grade": "", "rt_user_id": None},
    ]
    valid, invalid = validate_students(rows)
    assert [s.student_id for s in valid] == ["S1"]
    reasons = {row.student_id: row.reason for row in invalid}
    assert reasons["S2"] == "grade '13' is not K or 1..12"
    assert reasons["S3"] == "grade 'abc' is not K or 1..12"
    assert reasons["row 4"] == "empty student id"
    assert reasons["S4"] == "rt_user_id 'x' is not a positive integer"
    assert reasons["S5"] == "rt_user_id -1 is not a positive integer"
    assert reasons["S6"] == "rt_user_id 200 is also given to S7"
    assert reasons["S7"] == "rt_user_id 200 is also given to S6"
    assert reasons["S8"] == "student id appears more than once"
    assert reasons["S9"] == "grade '' is not K or 1..12"
    assert len(invalid) == 10
