"""Bakaláři API v3 answers as typed records: every field the sync uses is checked here, once.

A malformed item (a class without an id, a subject row without ``SubjectID``) becomes a ``Problem`` naming the
item and the reason; the rest of the answer is still used. An answer that is not the expected shape at all
raises ``MalformedAnswer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# At most 9 digits: a grade must fit EduRPG's INTEGER column (and Python's int() has a length limit).
_LEADING_DIGITS = re.compile(r"\s*([0-9]{1,9})(?![0-9])")
_STARTS_WITH_DIGIT = re.compile(r"\s*[0-9]")


class MalformedAnswer(Exception):
    """The answer as a whole cannot be used (e.g. ``/api/3/user`` without ``Class``)."""


@dataclass(frozen=True)
class Problem:
    """An item of an answer that was left out, and why (becomes a skipped plan record)."""

    key: str
    reason: str


@dataclass(frozen=True)
class ClassInfo:
    id: str
    abbrev: str
    name: str


@dataclass(frozen=True)
class GroupInfo:
    id: str
    class_id: str
    abbrev: str
    name: str


@dataclass(frozen=True)
class SubjectInfo:
    id: str
    abbrev: str
    name: str


@dataclass(frozen=True)
class TeacherInfo:
    id: str
    abbrev: str
    name: str
    email: str | None = None


@dataclass(frozen=True)
class SubjectRow:
    """One row of ``/api/3/subjects``: a subject and who teaches it (to this account)."""

    subject: SubjectInfo
    teacher: TeacherInfo | None


@dataclass
class SchoolLookups:
    """What one account's timetable lists: a school administrator's covers the school, a teacher's only the
    classes, groups, subjects of that teacher's lessons and the teacher alone."""

    classes: list[ClassInfo] = field(default_factory=list)
    groups: list[GroupInfo] = field(default_factory=list)
    subjects: list[SubjectInfo] = field(default_factory=list)
    teachers: list[TeacherInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class UserRecord:
    """``/api/3/user`` of a student account."""

    uid: str
    full_name: str
    user_type: str
    school_class: ClassInfo


def class_grade(abbrev: str) -> int | None:
    """The leading digits of the class abbreviation (``"2.B"`` -> 2); None without digits, or with more digits
    than a grade can have."""
    match = _LEADING_DIGITS.match(abbrev or "")
    return int(match.group(1)) if match else None


DEFAULT_GRADE = 1  # EduRPG's ``extractGradeFromClass`` when the abbreviation has no leading digits ("X.A")


def edurpg_grade(abbrev: str) -> tuple[int | None, bool]:
    """EduRPG's grade of a class and whether it was defaulted: the leading digits, or ``DEFAULT_GRADE`` (1) when
    the abbreviation does not start with a digit; ``(None, False)`` when it starts with more digits than
    EduRPG's INTEGER column holds (the class is then skipped as malformed)."""
    grade = class_grade(abbrev)
    if grade is not None:
        return grade, False
    if _STARTS_WITH_DIGIT.match(abbrev or ""):
        return None, False
    return DEFAULT_GRADE, True


def _text(value: Any) -> str | None:
    """Trimmed text, without NUL characters (PostgreSQL text cannot hold them); None when nothing is left."""
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return text or None


def _items(body: Any, name: str) -> list[Any]:
    if not isinstance(body, dict):
        raise MalformedAnswer(f"expected a JSON object with {name!r}, got {type(body).__name__}")
    items = body.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        raise MalformedAnswer(f"{name!r} is {type(items).__name__}, not a list")
    return items


def parse_class(item: Any) -> ClassInfo:
    if not isinstance(item, dict):
        raise MalformedAnswer("Class is missing")
    class_id, abbrev = _text(item.get("Id")), _text(item.get("Abbrev"))
    if class_id is None:
        raise MalformedAnswer("Class has no Id")
    if abbrev is None:
        raise MalformedAnswer(f"class {class_id} has no Abbrev")
    return ClassInfo(class_id, abbrev, _text(item.get("Name")) or abbrev)


def parse_timetable_lookups(body: Any) -> SchoolLookups:
    """Classes, groups, subjects and teachers from a timetable answer's lookup tables."""
    lookups = SchoolLookups()
    for index, item in enumerate(_items(body, "Classes")):
        try:
            lookups.classes.append(parse_class(item))
        except MalformedAnswer as error:
            lookups.problems.append(Problem(f"Class:(row {index + 1})", str(error)))
    for item in _items(body, "Groups"):
        if isinstance(item, dict) and _text(item.get("Id")) and _text(item.get("ClassId")):
            lookups.groups.append(
                GroupInfo(
                    str(item["Id"]).strip(),
                    str(item["ClassId"]).strip(),
                    _text(item.get("Abbrev")) or "",
                    _text(item.get("Name")) or "",
                )
            )
    subjects = _named_rows(body, "Subjects", "Subject:(row {})", "subject", lookups.problems)
    lookups.subjects.extend(SubjectInfo(*row) for row in subjects)
    teachers = _named_rows(body, "Teachers", "User:(teacher row {})", "teacher", lookups.problems)
    lookups.teachers.extend(TeacherInfo(*row) for row in teachers)
    return lookups


def _named_rows(
    body: Any, table: str, row_key: str, what: str, problems: list[Problem]
) -> list[tuple[str, str, str]]:
    """``(Id, Abbrev, Name)`` of each row of a timetable lookup table; a row without an Id or a Name is a
    problem (``row_key`` formatted with the row's number), not a row."""
    rows = []
    for index, item in enumerate(_items(body, table)):
        item_id = _text(item.get("Id")) if isinstance(item, dict) else None
        name = _text(item.get("Name")) if isinstance(item, dict) else None
        if item_id is None or name is None:
            problems.append(
                Problem(row_key.format(index + 1), f"{what} without an Id or a Name in the timetable")
            )
            continue
        rows.append((item_id, _text(item.get("Abbrev")) or "", name))
    return rows


def parse_subject_rows(body: Any, owner: str) -> tuple[list[SubjectRow], list[Problem]]:
    """``/api/3/subjects`` rows; a row without ``SubjectID`` is a problem keyed under ``owner``."""
    rows: list[SubjectRow] = []
    problems: list[Problem] = []
    for index, item in enumerate(_items(body, "Subjects")):
        if not isinstance(item, dict):
            problems.append(Problem(f"{owner}-(row {index + 1})", "subject row is not an object"))
            continue
        subject_id = _text(item.get("SubjectID"))
        name = _text(item.get("SubjectName"))
        if subject_id is None or name is None:
            problems.append(
                Problem(
                    f"{owner}-(row {index + 1})",
                    f"subject row without {'a SubjectID' if subject_id is None else 'a SubjectName'} "
                    f"({name or _text(item.get('SubjectAbbrev')) or 'unnamed'})",
                )
            )
            continue
        teacher = None
        teacher_id = _text(item.get("TeacherID"))
        if teacher_id is not None:
            teacher = TeacherInfo(
                teacher_id,
                _text(item.get("TeacherAbbrev")) or "",
                _text(item.get("TeacherName")) or teacher_id,
                _text(item.get("TeacherEmail")),
            )
        rows.append(
            SubjectRow(SubjectInfo(subject_id, _text(item.get("SubjectAbbrev")) or "", name), teacher)
        )
    return rows, problems


def parse_user(body: Any) -> UserRecord:
    """``/api/3/user`` of a student: who they are and their class (``Class`` must be there; a class without
    leading digits gets EduRPG's default grade when mapped)."""
    if not isinstance(body, dict):
        raise MalformedAnswer(f"/api/3/user answered {type(body).__name__}, not an object")
    uid = _text(body.get("UserUID"))
    full_name = _text(body.get("FullName"))
    if uid is None or full_name is None:
        raise MalformedAnswer("/api/3/user has no UserUID or FullName")
    if body.get("Class") is None:
        raise MalformedAnswer("/api/3/user has no Class")
    school_class = parse_class(body["Class"])
    # Some servers append the class to the name ("Novák Jan, 2.B"); EduRPG keeps the person's name.
    suffix = f", {school_class.abbrev}"
    if full_name.endswith(suffix):
        full_name = full_name[: -len(suffix)].strip()
        if not full_name:
            raise MalformedAnswer(
                f"/api/3/user FullName holds only the class ({suffix.strip(', ')!r}), no name"
            )
    return UserRecord(uid, full_name, (_text(body.get("UserType")) or "").lower(), school_class)


def bare_id(bakalari_id: str) -> str:
    """A Bakaláři id without the ``prefix/`` a ``UserUID`` may carry (``"1234/U1AB"`` -> ``"U1AB"``)."""
    return bakalari_id.rsplit("/", 1)[-1]


def uid_prefix(uid: str | None) -> str | None:
    """The ``prefix`` of a ``UserUID`` shaped ``prefix/id``; None for a bare id."""
    if not uid or "/" not in uid:
        return None
    return uid.rsplit("/", 1)[0] or None


def same_account(bakalari_id: str, uid: str, login_user_id: str | None) -> bool:
    """Whether an answer belongs to the account EduRPG stored (``UserUID`` may carry a ``prefix/``)."""
    candidates = {uid, uid.rsplit("/", 1)[-1]}
    if login_user_id:
        candidates.add(login_user_id)
    return bakalari_id in candidates or bakalari_id.rsplit("/", 1)[-1] in candidates
