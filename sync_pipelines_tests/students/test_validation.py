"""Validation rules of student rows (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.defs.students.validation import (
    GRADE_LABELS,
    RT_USER_ID_MAX,
    parse_active,
    parse_grade,
    parse_rt_user_id,
    student_shard,
    validate_students,
)
from sync_pipelines.sync.shards import SHARD_KEYS

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


# Any text at all, and the shapes a database driver hands over: numbers of any size, floats, bytes, None.
long_text = st.builds(
    lambda char, size: char * size, st.sampled_from(["1", "9", "K", " ", "\x00", "٣"]), st.integers(0, 20_000)
)
any_value = st.one_of(
    st.none(),
    st.text(),
    long_text,
    st.integers(),
    st.integers(min_value=-(10**6000), max_value=10**6000),
    st.floats(),
    st.booleans(),
    st.binary(max_size=300),
)


@given(any_value)
@settings(max_examples=400)
def test_parsers_take_any_value_without_raising(value: object) -> None:
    assert parse_grade(value) in {None, *GRADE_LABELS}
    ok, number = parse_rt_user_id(value)
    assert number is None or (ok and 0 < number <= RT_USER_ID_MAX)
    assert parse_active(value) in (True, False, None)
    assert student_shard(value, value) in SHARD_KEYS


@given(st.text())
def test_text_is_a_grade_only_as_k_or_1_to_12(text: str) -> None:
    grade = parse_grade(text)
    if grade is not None:
        assert text.strip().upper() in {"K", "KG", "KINDERGARTEN"} or int(text.strip()) in range(13)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"student_id": any_value, "grade": any_value, "rt_user_id": any_value, "active": any_value}
        ),
        max_size=8,
    )
)
@settings(max_examples=200)
def test_every_row_of_any_values_is_valid_or_reported_in_one_short_line(rows: list[dict]) -> None:
    valid, invalid = validate_students(rows)
    assert len(valid) + len(invalid) == len(rows)
    for row in invalid:
        # The row by its id (at most 255 characters, or its first 40 and "..."), the reason in one line; only the
        # ids of the other students sharing an RT user make a reason longer.
        assert row.reason and "\n" not in row.reason and "\n" not in row.student_id
        assert len(row.student_id) <= 255 and len(row.reason) < 200 + 257 * len(rows)
    for student in valid:
        assert 0 < len(student.student_id) <= 255


def test_a_ten_kilobyte_grade_is_an_invalid_row_and_the_others_are_valid() -> None:
    rows = [
        {"student_id": "S1", "grade": "1" * 10_240, "rt_user_id": "101"},
        {"student_id": "S2", "grade": "9", "rt_user_id": "102"},
        {"student_id": "S3", "grade": 10**5000, "rt_user_id": 10**5000},
        {"student_id": "S4" + " " * 10_000, "grade": "K", "rt_user_id": "104"},
        {"student_id": "x" * 10_000, "grade": "K", "rt_user_id": "105"},
    ]
    valid, invalid = validate_students(rows)
    assert [s.student_id for s in valid] == ["S2"]
    reasons = {row.student_id: row.reason for row in invalid}
    assert (
        reasons["S1"] == "grade '111111111111111111111111111111111111... (10240 characters) is not K or 1..12"
    )
    assert reasons["S3"] == "grade an integer of 16610 bits is not K or 1..12"
    assert reasons["S4..."] == reasons["x" * 40 + "..."] == "student id longer than 255 characters"
