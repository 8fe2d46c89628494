"""Rules for a usable student row, shared by both schemas of the student information system.

Older SQLite schema: ``id TEXT``, ``grade TEXT`` ("K", "9"), ``rt_user_id TEXT``, no active flag (every row is
a current student). Newer Django schema: ``student_id varchar``, ``grade int`` (0 = K), ``rt_user_id int NULL``,
``is_active boolean``: the student system's CSV import marks every student inactive and re-activates the rows of
the latest export, so an inactive row is a student who left or graduated. Such a row is kept in the snapshot as
inactive (the RT sync counts it skipped and leaves its RT user alone) and does not compete for an RT user with
the current student who holds it now; its grade and RT user id are not checked (nothing is written from them).

A row must fit where it goes: RT's user ids are 32-bit integers (``RT_USER_ID_MAX``), and the student id kept in
the snapshot must be storable as PostgreSQL text and shown in RT, so a NUL or another control character (or a
lone surrogate from a badly decoded byte) in it keeps the row out, reported, while the other rows go on.

No value of any length or shape stops the read: every parser measures its input before converting it (a string
by its length, an integer against a power of ten before it is turned into digits, which Python refuses past 4,300),
so a 10 KB grade is a reported invalid row like any other, and the other rows go on.

``student_shard`` is the one place a student's shard is computed: the ``students_changed`` sensor (on raw rows)
and the RT sync (on the validated snapshot) both call it, on the same normalised key (the RT user id as an
integer's digits, ``'001001'`` -> ``'1001'``; the student id for a student without an RT user).
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sync_pipelines.sync.shards import shard_of

GRADE_LABELS = ["K", *[str(grade) for grade in range(1, 13)]]
RT_USER_ID_MAX = 2_147_483_647  # RT's Users.id is a 32-bit integer
STUDENT_ID_MAX = 255  # characters of a student id, trimmed
# Longest text read as each field before trimming and converting: room for spaces around the value, never a
# number too long to convert.
RAW_ID_MAX = 1024
RAW_GRADE_MAX = 32  # "kindergarten" with spaces around
RAW_RT_USER_ID_MAX = 40
RAW_FLAG_MAX = 16
_TRUE = frozenset({"1", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "f", "false", "n", "no"})


@dataclass(frozen=True)
class StudentRow:
    """What the RT sync needs of a student, and nothing more (no names)."""

    student_id: str
    grade: str | None  # "K" or "1".."12"; None only for an inactive row whose grade is unusable
    rt_user_id: int | None
    active: bool = True


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


def bounded_text(value: Any, limit: int) -> str | None:
    """``value`` as text when that text is at most ``limit`` characters, else None, converting nothing longer: a
    string is measured as it is, an integer against ``10**limit`` before it is turned into digits (Python refuses
    more than 4,300 of them), any other value turned into text and then measured."""
    if isinstance(value, str):
        return value if len(value) <= limit else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if -(10**limit) < value < 10**limit else None
    try:
        text = str(value)
    except (ValueError, OverflowError):
        return None
    return text if len(text) <= limit else None


def _show(value: Any, width: int = 40) -> str:
    """``value`` for a reason: at most ``width`` characters of it, with its length when it was cut."""
    if isinstance(value, str | bytes) and len(value) > width:
        return f"{repr(value[:width])[: width - 3]}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and bounded_text(value, width) is None:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def parse_grade(value: Any) -> str | None:
    """``"K"``/``"k"``/``0``/``"0"`` -> ``"K"``; 1..12 (int or text) -> ``"1"``..``"12"``; anything else (text
    longer than ``RAW_GRADE_MAX`` included) -> None."""
    if _blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():  # NaN and infinities too
            return None
        value = int(value)
    if isinstance(value, int):
        number = value
    else:
        raw = bounded_text(value, RAW_GRADE_MAX)
        if raw is None:
            return None
        text = raw.strip()
        if text.upper() in {"K", "KG", "KINDERGARTEN"}:
            return "K"
        if not (text.isascii() and text.isdigit()):
            return None
        number = int(text)  # at most RAW_GRADE_MAX digits
    if number == 0:
        return "K"
    return str(number) if 1 <= number <= 12 else None


def parse_rt_user_id(value: Any) -> tuple[bool, int | None]:
    """``(valid, id)``: blank is valid with no id; an integer in 1..``RT_USER_ID_MAX`` (or its text) is an id;
    anything else is invalid."""
    if _blank(value):
        return True, None
    if isinstance(value, bool):
        return False, None
    if isinstance(value, float):
        ok = value.is_integer() and 0 < value <= RT_USER_ID_MAX
        return (True, int(value)) if ok else (False, None)
    if isinstance(value, int):
        return (True, value) if 0 < value <= RT_USER_ID_MAX else (False, None)
    text = (bounded_text(value, RAW_RT_USER_ID_MAX) or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= 20 and 0 < int(text) <= RT_USER_ID_MAX:
        return True, int(text)
    return False, None


def parse_active(value: Any) -> bool | None:
    """The active flag as a boolean (``True``/``False``, 1/0, ``'t'``/``'f'``, ``'true'``/``'false'``,
    ``'yes'``/``'no'``); None when it is neither (NULL included)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return bool(value) if value in (0, 1) else None
    text = (bounded_text(value, RAW_FLAG_MAX) or "").strip().lower() if isinstance(value, str) else ""
    return True if text in _TRUE else False if text in _FALSE else None


def _range(raw: dict[str, Any]) -> str:
    """`` up to ...`` when the rejected RT user id is a positive integer too large for RT."""
    value = raw.get("rt_user_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return f" up to {RT_USER_ID_MAX} (RT's user ids are 32-bit)" if value > 0 else ""
    text = (bounded_text(value, RAW_RT_USER_ID_MAX) or "").strip()
    digits = text[:-2] if text.endswith(".0") else text
    return (
        f" up to {RT_USER_ID_MAX} (RT's user ids are 32-bit)" if digits.isascii() and digits.isdigit() else ""
    )


def student_shard(rt_user_id: Any, student_id: Any) -> str:
    """The shard of a student's record: of its RT user id normalised (``'001001'``, ``1001`` and ``1001.0`` are
    one key), else of its student id. Raw and validated rows give the same shard."""
    ok, number = parse_rt_user_id(rt_user_id)
    if ok and number is not None:
        return shard_of(str(number))
    if _blank(student_id):
        return shard_of("")
    text = student_id if isinstance(student_id, str) else bounded_text(student_id, RAW_ID_MAX)
    return shard_of((text if text is not None else hex(student_id)).strip())


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be kept (a NUL, another control character, a lone surrogate), or None."""
    for position, character in enumerate(text):
        category = unicodedata.category(character)
        if category == "Cc":
            return f"control character U+{ord(character):04X} at position {position + 1}"
        if category == "Cs":
            return f"undecodable character (lone surrogate) at position {position + 1}"
    return None


def validate_students(rows: list[dict[str, Any]]) -> tuple[list[StudentRow], list[InvalidRow]]:
    """Split raw rows into usable students and invalid rows with reasons.

    Rows are checked one by one, then across rows: a student id given twice, or an RT user given to two
    active students, would send one person's data to another, so every row involved is kept out and reported.
    An RT user given to an inactive row and one active row belongs to the active one.
    """
    candidates: list[StudentRow] = []
    invalid: list[InvalidRow] = []
    for position, raw in enumerate(rows, start=1):
        raw_id = raw.get("student_id")
        if _blank(raw_id):
            invalid.append(InvalidRow(f"row {position}", "empty student id"))
            continue
        text = bounded_text(raw_id, RAW_ID_MAX)
        student_id = text.strip() if text is not None else ""
        if text is None or len(student_id) > STUDENT_ID_MAX:
            start = raw_id[:40].strip() if isinstance(raw_id, str) else student_id[:40]
            shown = "".join(c if unstorable(c) is None else "?" for c in start)
            invalid.append(
                InvalidRow(
                    f"{shown}..." if shown else f"row {position}",
                    f"student id longer than {STUDENT_ID_MAX} characters",
                )
            )
            continue
        label = student_id
        problem = unstorable(student_id)
        if problem is not None:
            shown = "".join(c if unstorable(c) is None else "?" for c in label[:40])
            invalid.append(
                InvalidRow(shown, f"student_id: {problem}; such text cannot be stored or sent to RT")
            )
            continue
        active = parse_active(raw.get("active", True))
        if active is None:
            invalid.append(InvalidRow(label, f"active flag {_show(raw.get('active'))} is not true or false"))
            continue
        grade = parse_grade(raw.get("grade"))
        ok, rt_user_id = parse_rt_user_id(raw.get("rt_user_id"))
        if not active:
            candidates.append(StudentRow(student_id, grade, rt_user_id if ok else None, active=False))
            continue
        if grade is None:
            invalid.append(InvalidRow(label, f"grade {_show(raw.get('grade'))} is not K or 1..12"))
            continue
        if not ok:
            invalid.append(
                InvalidRow(
                    label, f"rt_user_id {_show(raw.get('rt_user_id'))} is not a positive integer{_range(raw)}"
                )
            )
            continue
        candidates.append(StudentRow(student_id=student_id, grade=grade, rt_user_id=rt_user_id))
    id_counts = Counter(student.student_id for student in candidates)
    rt_owners: dict[int, list[str]] = {}
    for student in candidates:
        if student.active and student.rt_user_id is not None:
            rt_owners.setdefault(student.rt_user_id, []).append(student.student_id)
    valid: list[StudentRow] = []
    for student in candidates:
        if id_counts[student.student_id] > 1:
            invalid.append(InvalidRow(student.student_id, "student id appears more than once"))
            continue
        owners = rt_owners.get(student.rt_user_id, []) if student.active and student.rt_user_id else []
        if len(owners) > 1:
            others = ", ".join(owner for owner in owners if owner != student.student_id)
            invalid.append(
                InvalidRow(student.student_id, f"rt_user_id {student.rt_user_id} is also given to {others}")
            )
            continue
        valid.append(student)
    valid.sort(key=lambda student: student.student_id)
    return valid, invalid
