"""Bakaláři API v3 sandbox: one school in memory behind the real login, user, subjects, timetable and marks endpoints.

Bakaláři has no bulk endpoint, so a sync has to log in as the operator and as every student (refresh grant, then
``/api/3/user`` and ``/api/3/subjects``). The operator account sees, as ``operator_view`` says, the whole school
(``"school"``: its timetable lookups list every class, subject and teacher) or, as a real teacher account does,
that teacher's own lessons only (``"teacher"``: two classes, one teacher, in the shape real answers have). Refresh
tokens rotate on every use, exactly as on a real server, so tests can check that a sync keeps the newest one.
Access tokens are JWTs (HS256, signed with a per-sandbox key) whose ``exp`` says when they stop working, as a real
server's do; ``BakalariSandbox.login_access_token`` logs a student in the way EduRPG's login does and hands back
the access token EduRPG stores, fresh or (``age_seconds``) already expired.

The same ``(student_count, seed)`` always gives the same school (``generate_school``), so the demo, the tests and
the EduRPG seeding know who is who without asking the server.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from aiohttp import web

from devkit.sandbox.server import Knobs, SandboxApp, dumps

CLIENT_ID = "ANDR"
API_VERSION = "3.27.0"
APP_VERSION = "1.45.626.1"
SCOPE = "openid profile offline_access bakalari_api"
DENIED = {"Message": "Authorization has been denied for this request."}
OPERATOR_USERNAME = "operator"
OPERATOR_PASSWORD = "operator-password"
OPERATOR_VIEWS = ("school", "teacher")
TEACHER_VIEW_CLASSES = 2  # how many classes a teacher-shaped operator account sees
SCHOOL_NAME = "Střední průmyslová škola, Ústí nad Labem, Resslova 5, příspěvková organizace"

try:
    from zoneinfo import ZoneInfo

    SCHOOL_TZ: tzinfo = ZoneInfo("Europe/Prague")
except Exception:  # pragma: no cover - no time zone database on this machine
    SCHOOL_TZ = timezone(timedelta(hours=1))

_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# (Abbrev, Name): the Czech names keep their diacritics, as a real server sends them.
SUBJECTS: list[tuple[str, str]] = [
    ("ČJL", "Český jazyk a literatura"),
    ("AJ", "Anglický jazyk"),
    ("NJ", "Německý jazyk"),
    ("M", "Matematika"),
    ("F", "Fyzika"),
    ("Ch", "Chemie"),
    ("B", "Biologie"),
    ("D", "Dějepis"),
    ("Z", "Zeměpis"),
    ("ZSV", "Základy společenských věd"),
    ("TV", "Tělesná výchova"),
    ("IKT", "Informační a komunikační technologie"),
    ("PRG", "Programování"),
    ("EL", "Elektrotechnika"),
    ("EK", "Ekonomika"),
]

# Per grade: (subject abbrev, hours per week, taught in two half-class groups).
CURRICULUM: dict[int, list[tuple[str, int, bool]]] = {
    1: [
        ("ČJL", 3, False),
        ("AJ", 3, True),
        ("M", 4, False),
        ("F", 2, False),
        ("Ch", 2, False),
        ("B", 2, False),
        ("D", 2, False),
        ("Z", 1, False),
        ("TV", 2, True),
        ("IKT", 2, True),
    ],
    2: [
        ("ČJL", 3, False),
        ("AJ", 3, True),
        ("NJ", 2, True),
        ("M", 4, False),
        ("F", 2, False),
        ("Ch", 2, False),
        ("D", 2, False),
        ("Z", 1, False),
        ("TV", 2, True),
        ("PRG", 3, True),
    ],
    3: [
        ("ČJL", 3, False),
        ("AJ", 3, True),
        ("NJ", 2, True),
        ("M", 3, False),
        ("F", 2, False),
        ("ZSV", 2, False),
        ("TV", 2, True),
        ("PRG", 3, True),
        ("EL", 3, False),
    ],
    4: [
        ("ČJL", 4, False),
        ("AJ", 3, True),
        ("M", 4, False),
        ("ZSV", 2, False),
        ("TV", 2, True),
        ("PRG", 3, True),
        ("EL", 3, False),
        ("EK", 2, False),
    ],
}

HOURS = [
    {"Id": 2, "Caption": "0", "BeginTime": "7:05", "EndTime": "7:50"},
    {"Id": 3, "Caption": "1", "BeginTime": "8:00", "EndTime": "8:45"},
    {"Id": 4, "Caption": "2", "BeginTime": "8:55", "EndTime": "9:40"},
    {"Id": 5, "Caption": "3", "BeginTime": "10:00", "EndTime": "10:45"},
    {"Id": 6, "Caption": "4", "BeginTime": "10:55", "EndTime": "11:40"},
    {"Id": 7, "Caption": "5", "BeginTime": "11:50", "EndTime": "12:35"},
    {"Id": 8, "Caption": "6", "BeginTime": "12:40", "EndTime": "13:25"},
    {"Id": 9, "Caption": "7", "BeginTime": "13:35", "EndTime": "14:20"},
    {"Id": 10, "Caption": "8", "BeginTime": "14:30", "EndTime": "15:15"},
]
LESSON_HOUR_IDS = [3, 4, 5, 6, 7, 8, 9, 10]
CYCLES = [{"Id": "1", "Abbrev": "S", "Name": "Sudý týden"}, {"Id": "2", "Abbrev": "L", "Name": "Lichý týden"}]

MALE_FIRST = [
    "Jakub",
    "Jan",
    "Tomáš",
    "Adam",
    "Matěj",
    "Vojtěch",
    "Lukáš",
    "Ondřej",
    "Šimon",
    "Štěpán",
    "Jiří",
]
FEMALE_FIRST = [
    "Tereza",
    "Eliška",
    "Anna",
    "Adéla",
    "Natálie",
    "Karolína",
    "Barbora",
    "Klára",
    "Žaneta",
    "Šárka",
]
SURNAMES = [
    ("Novák", "Nováková"),
    ("Svoboda", "Svobodová"),
    ("Novotný", "Novotná"),
    ("Dvořák", "Dvořáková"),
    ("Černý", "Černá"),
    ("Procházka", "Procházková"),
    ("Kučera", "Kučerová"),
    ("Veselý", "Veselá"),
    ("Němec", "Němcová"),
    ("Pospíšil", "Pospíšilová"),
    ("Růžička", "Růžičková"),
    ("Beneš", "Benešová"),
    ("Sedláček", "Sedláčková"),
    ("Kolář", "Kolářová"),
    ("Čermák", "Čermáková"),
    ("Šťastný", "Šťastná"),
    ("Kříž", "Křížová"),
    ("Ďurica", "Ďuricová"),
]
TITLES = ["Mgr.", "Mgr.", "Mgr.", "Ing.", "RNDr.", "Bc.", "PaedDr."]


@dataclass
class BakalariClass:
    id: str
    abbrev: str  # "2.B"
    name: str  # "2. B"

    @property
    def grade(self) -> int:
        """EduRPG's grade: the leading digits of the abbreviation, 1 when there are none."""
        match = re.match(r"\s*(\d+)", self.abbrev)
        return int(match.group(1)) if match else 1


@dataclass
class BakalariGroup:
    id: str
    class_id: str
    part: int  # 0: the whole class, 1 and 2: the half-class groups of divided subjects
    abbrev: str
    name: str


@dataclass
class BakalariSubject:
    id: str
    abbrev: str
    name: str


@dataclass
class BakalariTeacher:
    id: str
    abbrev: str
    name: str
    email: str | None


@dataclass
class BakalariRoom:
    id: str
    abbrev: str
    name: str


@dataclass
class BakalariLesson:
    """One subject taught to one group by one teacher, at ``slots`` = [(day of week 1-5, hour id)]."""

    class_id: str
    group_id: str
    subject_id: str
    teacher_id: str
    room_id: str
    slots: list[tuple[int, int]]


@dataclass
class BakalariStudent:
    user_id: str  # the ``bak:UserId`` / ``UserUID`` value
    full_name: str  # "Příjmení Jméno"
    class_id: str
    group_part: int  # 1 or 2: which half-class group the student is in
    subject_teachers: dict[str, str]  # subject id -> teacher id, in timetable order
    username: str
    password: str
    refresh_token: str  # the token a database is seeded with; the server rotates it on use

    @property
    def subject_ids(self) -> list[str]:
        return list(self.subject_teachers)


@dataclass
class BakalariOperator:
    user_id: str
    full_name: str
    username: str
    password: str
    refresh_token: str


@dataclass
class SampleSchool:
    name: str
    seed: int
    classes: list[BakalariClass]
    groups: list[BakalariGroup]
    subjects: list[BakalariSubject]
    teachers: list[BakalariTeacher]
    rooms: list[BakalariRoom]
    lessons: list[BakalariLesson]
    students: list[BakalariStudent]
    operator: BakalariOperator

    def student_refresh_tokens(self) -> dict[str, str]:
        """Bakaláři user id -> initial refresh token, to seed EduRPG's ``"User"."bakalariToken"``."""
        return {student.user_id: student.refresh_token for student in self.students}

    def class_by_id(self, class_id: str) -> BakalariClass:
        return next(cls for cls in self.classes if cls.id == class_id)

    def subject_by_id(self, subject_id: str) -> BakalariSubject:
        return next(subject for subject in self.subjects if subject.id == subject_id)

    def teacher_by_id(self, teacher_id: str) -> BakalariTeacher:
        return next(teacher for teacher in self.teachers if teacher.id == teacher_id)


class _IdPool:
    """Unique short Bakaláři-style ids (``"ZX"``, ``"UZBNM"``) drawn from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def new(self, width: int, prefix: str = "") -> str:
        while True:
            candidate = prefix + "".join(self.rng.choice(_ID_ALPHABET) for _ in range(width))
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum()).lower()


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(part) for part in parts).encode()).hexdigest()


def _group_labels(cls: BakalariClass, part: int) -> tuple[str, str]:
    if part == 0:
        return cls.abbrev, cls.name
    return f"{cls.abbrev} S{part}", f"{cls.name} Skupina {part}"


def generate_school(student_count: int, seed: int = 7) -> SampleSchool:
    """A deterministic school of ``student_count`` students: about 25 per class, grades 1 to 4, 15 subjects."""
    rng = random.Random(seed)
    pool = _IdPool(rng)
    class_count = max(4, math.ceil(student_count / 25))
    short_width = 2 if class_count * 5 + len(SUBJECTS) + 20 < 900 else 3
    user_width = 4 if student_count < 300_000 else 5

    subjects = [BakalariSubject(pool.new(short_width), abbrev, name) for abbrev, name in SUBJECTS]
    subject_by_abbrev = {subject.abbrev: subject for subject in subjects}

    teachers: list[BakalariTeacher] = []
    taken_names: set[str] = set()
    taken_abbrevs: set[str] = set()
    for index in range(max(20, class_count // 2)):
        for _ in range(50):
            female = rng.random() < 0.5
            first = rng.choice(FEMALE_FIRST if female else MALE_FIRST)
            last = rng.choice(SURNAMES)[1 if female else 0]
            if f"{first} {last}" not in taken_names:
                break
        mailbox = f"{_ascii(first)}.{_ascii(last)}"
        if f"{first} {last}" in taken_names:
            mailbox += str(index)
        taken_names.add(f"{first} {last}")
        name = f"{rng.choice(TITLES)} {first} {last}"
        abbrev = f"{last[:2]}{index}" if last[:2] in taken_abbrevs else last[:2]
        taken_abbrevs.add(abbrev)
        email = f"{mailbox}@sps-ul.cz" if rng.random() < 0.75 else None
        teachers.append(BakalariTeacher(pool.new(4, "U"), abbrev, name, email))

    # Every teacher teaches at least one subject; every subject has at least two teachers.
    qualified: dict[str, list[BakalariTeacher]] = {subject.id: [] for subject in subjects}
    for index, teacher in enumerate(teachers):
        qualified[subjects[index % len(subjects)].id].append(teacher)
    for subject in subjects:
        while len(qualified[subject.id]) < 2:
            teacher = rng.choice(teachers)
            if teacher not in qualified[subject.id]:
                qualified[subject.id].append(teacher)

    special_rooms = {
        "TV": [BakalariRoom(pool.new(short_width), f"Tv{part}", f"Tělocvična {part}") for part in (1, 2)],
        "AJ": [BakalariRoom(pool.new(short_width), f"J{part}", f"Jazyková učebna {part}") for part in (1, 2)],
        "PRG": [
            BakalariRoom(pool.new(short_width), f"LAB{part}", f"Počítačová učebna {part}") for part in (1, 2)
        ],
    }
    special_rooms["NJ"] = special_rooms["AJ"]
    special_rooms["IKT"] = special_rooms["PRG"]
    rooms = [room for key in ("TV", "AJ", "PRG") for room in special_rooms[key]]

    classes: list[BakalariClass] = []
    groups: list[BakalariGroup] = []
    lessons: list[BakalariLesson] = []
    slots = [(day, hour) for hour in LESSON_HOUR_IDS for day in range(1, 6)]
    for index in range(class_count):
        grade = 1 + index % 4
        letter = chr(ord("A") + (index // 4) % 26)
        suffix = "" if index < 4 * 26 else str(index // (4 * 26))
        cls = BakalariClass(pool.new(short_width), f"{grade}.{letter}{suffix}", f"{grade}. {letter}{suffix}")
        classes.append(cls)
        class_groups = []
        for part in (0, 1, 2):
            abbrev, name = _group_labels(cls, part)
            class_groups.append(BakalariGroup(pool.new(short_width), cls.id, part, abbrev, name))
        groups.extend(class_groups)
        homeroom = BakalariRoom(pool.new(short_width), f"{100 + index}", f"Kmenová učebna {cls.abbrev}")
        rooms.append(homeroom)
        blocks = list(CURRICULUM[grade])
        rng.shuffle(blocks)
        position = 0
        for abbrev, hours, split in blocks:
            subject = subject_by_abbrev[abbrev]
            block_slots = slots[position : position + hours]
            position += hours
            parts = (1, 2) if split else (0,)
            for part in parts:
                teacher = rng.choice(qualified[subject.id])
                room = special_rooms[abbrev][part - 1] if abbrev in special_rooms and part else homeroom
                lessons.append(
                    BakalariLesson(
                        cls.id, class_groups[part].id, subject.id, teacher.id, room.id, list(block_slots)
                    )
                )

    group_by_id = {group.id: group for group in groups}
    lessons_by_class: dict[str, list[BakalariLesson]] = {}
    for lesson in lessons:
        lessons_by_class.setdefault(lesson.class_id, []).append(lesson)
    teachers_by_group: dict[tuple[str, int], dict[str, str]] = {}
    students: list[BakalariStudent] = []
    for index in range(1, student_count + 1):
        cls = classes[(index - 1) % class_count]
        part = 1 + ((index - 1) // class_count) % 2
        female = rng.random() < 0.5
        first = rng.choice(FEMALE_FIRST if female else MALE_FIRST)
        last = rng.choice(SURNAMES)[1 if female else 0]
        user_id = pool.new(user_width, "U")
        if (cls.id, part) not in teachers_by_group:
            class_lessons = lessons_by_class.get(cls.id, [])
            teachers_by_group[cls.id, part] = _subject_teachers(class_lessons, group_by_id, cls.id, part)
        subject_teachers = dict(teachers_by_group[cls.id, part])
        students.append(
            BakalariStudent(
                user_id=user_id,
                full_name=f"{last} {first}",
                class_id=cls.id,
                group_part=part,
                subject_teachers=subject_teachers,
                username=f"{_ascii(last)[:8]}{_ascii(first)[:3]}{index:04d}",
                password=f"heslo-{_digest(seed, index, 'password')[:10]}",
                refresh_token=f"bak-rt-{_digest(seed, index, user_id, 'refresh')[:48]}",
            )
        )

    operator_id = pool.new(4, "U")
    operator = BakalariOperator(
        user_id=operator_id,
        full_name="Ing. Rozvrhová Správkyně",
        username=OPERATOR_USERNAME,
        password=OPERATOR_PASSWORD,
        refresh_token=f"bak-rt-{_digest(seed, 'operator', operator_id, 'refresh')[:48]}",
    )
    return SampleSchool(
        name=SCHOOL_NAME,
        seed=seed,
        classes=classes,
        groups=groups,
        subjects=subjects,
        teachers=teachers,
        rooms=rooms,
        lessons=lessons,
        students=students,
        operator=operator,
    )


def _subject_teachers(
    lessons: list[BakalariLesson], group_by_id: dict[str, BakalariGroup], class_id: str, part: int
) -> dict[str, str]:
    """Who teaches a student of ``class_id`` in half-group ``part`` each subject, from the class's lessons."""
    result: dict[str, str] = {}
    for lesson in lessons:
        if lesson.class_id != class_id:
            continue
        if group_by_id[lesson.group_id].part in (0, part):
            result.setdefault(lesson.subject_id, lesson.teacher_id)
    return result


def _week_monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _bakalari_datetime(day: date, hour: int = 0, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SCHOOL_TZ).isoformat()


# Answers that are JSON but not what the API promises: the student's record (or one subject row) is malformed.
MALFORMED_ANSWERS = ("no_class", "subject_without_id")
# ``class_abbrev_without_digits``: the student's ``Class.Abbrev`` loses its digits ("B"): not malformed (EduRPG
# gives such a class grade 1), the class is still known by its id. ``html_page``: the student's
# ``/api/3/subjects`` answers 200 with a proxy's HTML error page instead of JSON.
CORRUPTIONS = (*MALFORMED_ANSWERS, "class_abbrev_without_digits", "html_page")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any], key: bytes) -> str:
    """A compact HS256 JWT of ``claims``."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class BakalariSandbox(SandboxApp):
    """A school's Bakaláři server: ``POST /api/login`` (password and rotating refresh grants) and ``/api/3/*``.

    With ``operator_view="school"`` the operator's ``/api/3/subjects`` lists every (subject, teacher) pair taught
    in the school, one row each, so that a sync can learn every teacher's e-mail, and the operator's timetable holds
    every class's lessons and the whole school in its lookup tables. With ``operator_view="teacher"`` the operator
    is one teacher of the school (``teacher_view()``) and sees what a real teacher account does: the lessons that
    teacher gives in two classes, with the lookup tables of those lessons only, shaped as recorded answers are
    (``"Students": []``, classes named ``""``, each group listed once per lesson and named ``" 4.A"``, subject ids
    padded with a space, keys the sync does not read). A student's answers hold their own class and subjects.
    """

    system = "bakalari"

    def __init__(
        self,
        school: SampleSchool,
        knobs: Knobs | None = None,
        *,
        operator_username: str | None = None,
        operator_password: str | None = None,
        access_token_ttl_seconds: float = 3599,
        refresh_token_ttl_seconds: float = 30 * 24 * 3600,
        user_uid_prefix: str | None = None,
        full_name_with_class: bool = False,
        operator_view: str = "school",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if operator_view not in OPERATOR_VIEWS:
            raise ValueError(f"operator_view must be one of {OPERATOR_VIEWS}, not {operator_view!r}")
        super().__init__(knobs)
        self.operator_view = operator_view
        self.school = copy.deepcopy(school)
        if operator_username is not None:
            self.school.operator.username = operator_username
        if operator_password is not None:
            self.school.operator.password = operator_password
        self.access_token_ttl_seconds = access_token_ttl_seconds
        self.refresh_token_ttl_seconds = refresh_token_ttl_seconds
        self.user_uid_prefix = user_uid_prefix
        self.full_name_with_class = full_name_with_class
        self.clock = clock
        self._lock = threading.RLock()
        self._refresh_by_user: dict[str, tuple[str, float]] = {}
        self._user_by_refresh: dict[str, str] = {}
        self._redeemed: set[str] = set()
        self._access: dict[str, tuple[str, float]] = {}
        self._jwt_key = secrets.token_bytes(32)
        self.logins: Counter[str] = Counter()
        self.login_failures: Counter[str] = Counter()
        self._corrupt: dict[str, set[str]] = {}
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._added = 0
        now = self.clock()
        for student in self.school.students:
            self._set_refresh(student.user_id, student.refresh_token, now)
        self._set_refresh(self.school.operator.user_id, self.school.operator.refresh_token, now)
        self._reindex()

    @classmethod
    def from_sample(cls, size: int, seed: int = 7, knobs: Knobs | None = None) -> BakalariSandbox:
        return cls(generate_school(size, seed), knobs)

    # -- indexes ------------------------------------------------------------------------------------------
    def _reindex(self) -> None:
        school = self.school
        self._students = {student.user_id: student for student in school.students}
        self._by_username: dict[str, str] = {student.username: student.user_id for student in school.students}
        self._by_username[school.operator.username] = school.operator.user_id
        self._classes = {cls.id: cls for cls in school.classes}
        self._groups = {group.id: group for group in school.groups}
        self._subjects = {subject.id: subject for subject in school.subjects}
        self._teachers = {teacher.id: teacher for teacher in school.teachers}
        self._rooms = {room.id: room for room in school.rooms}
        self._cache.clear()

    def _password_of(self, user_id: str) -> str:
        if user_id == self.school.operator.user_id:
            return self.school.operator.password
        return self._students[user_id].password

    # -- tokens ---------------------------------------------------------------------------------------------
    def _set_refresh(self, user_id: str, token: str, issued_at: float) -> None:
        old = self._refresh_by_user.get(user_id)
        if old is not None:
            self._user_by_refresh.pop(old[0], None)
            self._redeemed.add(old[0])
        self._refresh_by_user[user_id] = (token, issued_at)
        self._user_by_refresh[token] = user_id

    def _revoke_refresh(self, user_id: str) -> None:
        old = self._refresh_by_user.pop(user_id, None)
        if old is not None:
            self._user_by_refresh.pop(old[0], None)

    def _new_access_token(self, user_id: str, ttl_seconds: float, age_seconds: float = 0.0) -> str:
        """A JWT access token for ``user_id``, issued ``age_seconds`` ago and valid ``ttl_seconds`` from then.

        ``exp`` is wall-clock Unix time; the server itself judges validity by its own ``clock``, consistently."""
        now = self.clock()
        issued = time.time() - age_seconds
        token = make_jwt(
            {
                "iss": "bakalari-sandbox",
                "sub": user_id,
                "bak:UserId": self._user_uid(user_id),
                "scope": SCOPE.split(),
                "iat": int(issued),
                "nbf": int(issued),
                "exp": int(issued + ttl_seconds),
                "jti": secrets.token_hex(8),
            },
            self._jwt_key,
        )
        if len(self._access) > 10_000:
            self._access = {t: entry for t, entry in self._access.items() if entry[1] > now}
        self._access[token] = (user_id, now - age_seconds + ttl_seconds)
        return token

    def login_access_token(
        self, user_id: str, *, ttl_seconds: float | None = None, age_seconds: float = 0.0
    ) -> str:
        """What EduRPG's login keeps of a student's password login: the access token (a JWT with ``exp``).

        The login is counted as a password login; the student's refresh token is left as it was (EduRPG drops the
        new one). ``age_seconds``: the login happened that long ago (``>= ttl``: the token has expired)."""
        with self._lock:
            if user_id not in self._students:
                raise ValueError(f"unknown Bakaláři student: {user_id!r}")
            self.logins["password"] += 1
            ttl = self.access_token_ttl_seconds if ttl_seconds is None else ttl_seconds
            return self._new_access_token(user_id, ttl, age_seconds)

    def _issue_tokens(self, user_id: str) -> dict[str, Any]:
        now = self.clock()
        access = self._new_access_token(user_id, self.access_token_ttl_seconds)
        refresh = f"bak-rt-{secrets.token_urlsafe(36)}"
        self._set_refresh(user_id, refresh, now)
        return {
            "bak:ApiVersion": API_VERSION,
            "bak:AppVersion": APP_VERSION,
            "bak:UserId": user_id,
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": max(int(self.access_token_ttl_seconds), 0),
            "scope": SCOPE,
        }

    def _authenticated_user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        entry = self._access.get(token.strip())
        if entry is None or entry[1] <= self.clock():
            return None
        user_id = entry[0]
        if user_id != self.school.operator.user_id and user_id not in self._students:
            return None
        return user_id

    # -- responses ------------------------------------------------------------------------------------------
    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(text=dumps(data), status=status, content_type="application/json")

    @staticmethod
    def _cached(body: bytes) -> web.Response:
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    def _login_error(self, error: str, description: str) -> web.Response:
        self.login_failures[error] += 1
        return self._json({"error": error, "error_description": description}, status=400)

    @staticmethod
    def _denied() -> web.Response:
        return web.Response(
            text=dumps(DENIED),
            status=401,
            content_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )

    # -- routes -----------------------------------------------------------------------------------------------
    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/login", self._login)
        router.add_get("/api/3/user", self._user)
        router.add_get("/api/3/subjects", self._subjects_endpoint)
        router.add_get("/api/3/timetable/permanent", self._timetable_permanent)
        router.add_get("/api/3/timetable/actual", self._timetable_actual)
        router.add_get("/api/3/marks", self._marks)

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type = str(form.get("grant_type", "") or "")
        client_id = str(form.get("client_id", "") or "")
        with self._lock:
            if not grant_type:
                return self._login_error(
                    "invalid_request", "The mandatory 'grant_type' parameter is missing."
                )
            if not client_id:
                return self._login_error("invalid_client", "The mandatory 'client_id' parameter is missing.")
            if client_id != CLIENT_ID:
                return self._login_error("invalid_client", "The specified 'client_id' is invalid.")
            if grant_type == "password":
                username = str(form.get("username", "") or "")
                password = str(form.get("password", "") or "")
                if not username or not password:
                    return self._login_error(
                        "invalid_request",
                        "The mandatory 'username' and/or 'password' parameters are missing.",
                    )
                user_id = self._by_username.get(username)
                if user_id is None or self._password_of(user_id) != password:
                    return self._login_error("invalid_grant", "Špatný login nebo heslo")
                self.logins["password"] += 1
                return self._json(self._issue_tokens(user_id))
            if grant_type == "refresh_token":
                token = str(form.get("refresh_token", "") or "")
                if not token:
                    return self._login_error(
                        "invalid_request", "The mandatory 'refresh_token' parameter is missing."
                    )
                user_id = self._user_by_refresh.get(token)
                if user_id is None:
                    if token in self._redeemed:
                        return self._login_error(
                            "invalid_grant", "The specified refresh token has already been redeemed."
                        )
                    return self._login_error("invalid_grant", "The specified token is invalid.")
                issued_at = self._refresh_by_user[user_id][1]
                if self.clock() - issued_at > self.refresh_token_ttl_seconds:
                    self._revoke_refresh(user_id)
                    return self._login_error(
                        "invalid_grant", "The specified refresh token is no longer valid."
                    )
                self.logins["refresh_token"] += 1
                return self._json(self._issue_tokens(user_id))
            return self._login_error(
                "unsupported_grant_type", "The specified 'grant_type' parameter is not supported."
            )

    async def _user(self, request: web.Request) -> web.Response:
        with self._lock:
            user_id = self._authenticated_user(request)
            if user_id is None:
                return self._denied()
            return self._json(self._user_record(user_id))

    def _user_uid(self, user_id: str) -> str:
        return f"{self.user_uid_prefix}/{user_id}" if self.user_uid_prefix else user_id

    def _user_record(self, user_id: str) -> dict[str, Any]:
        operator = self.school.operator
        if user_id == operator.user_id:
            return {
                "UserUID": self._user_uid(user_id),
                "Class": None,
                "FullName": operator.full_name,
                "SchoolOrganizationName": self.school.name,
                "SchoolType": None,
                "UserType": "teacher",
                "UserTypeText": "učitel",
                "StudyYear": None,
                "EnabledModules": _modules(teacher=True),
                "SettingModules": {},
            }
        student = self._students[user_id]
        cls = self._classes[student.class_id]
        class_json = self._class_json(cls, user_id)
        full_name = student.full_name
        if self.full_name_with_class:
            full_name = f"{full_name}, {cls.abbrev}"
        return {
            "UserUID": self._user_uid(user_id),
            "Class": class_json,
            "FullName": full_name,
            "SchoolOrganizationName": self.school.name,
            "SchoolType": None,
            "UserType": "student",
            "UserTypeText": "žák",
            "StudyYear": cls.grade,
            "EnabledModules": _modules(teacher=False),
            "SettingModules": {},
        }

    def _class_json(self, cls: BakalariClass, user_id: str | None = None) -> dict[str, str] | None:
        corruption = self._corrupt.get(user_id or "", set())
        if "no_class" in corruption:
            return None
        abbrev = cls.abbrev
        if "class_abbrev_without_digits" in corruption:
            abbrev = re.sub(r"[0-9.\s]", "", abbrev) or "X"
        return {"Id": cls.id, "Abbrev": abbrev, "Name": cls.name}

    async def _subjects_endpoint(self, request: web.Request) -> web.Response:
        with self._lock:
            user_id = self._authenticated_user(request)
            if user_id is None:
                return self._denied()
            if user_id == self.school.operator.user_id:
                key: tuple[Any, ...] = ("subjects", "operator", self.operator_view)
                if key not in self._cache:
                    pairs: dict[tuple[str, str], None] = {}
                    taught = (
                        self._teacher_lessons() if self.operator_view == "teacher" else self.school.lessons
                    )
                    for lesson in taught:
                        pairs.setdefault((lesson.subject_id, lesson.teacher_id), None)
                    rows = [self._subject_row(subject, teacher) for subject, teacher in pairs]
                    rows.sort(key=lambda row: (row["SubjectName"], row["TeacherName"]))
                    self._cache[key] = dumps({"Subjects": rows}).encode()
                return self._cached(self._cache[key])
            student = self._students[user_id]
            if "html_page" in self._corrupt.get(user_id, set()):
                return web.Response(
                    status=200, text="<html><body>502 Proxy Error</body></html>", content_type="text/html"
                )
            rows = [
                self._subject_row(s, t) for s, t in student.subject_teachers.items() if s in self._subjects
            ]
            if rows and "subject_without_id" in self._corrupt.get(user_id, set()):
                rows[0]["SubjectID"] = None
            return self._json({"Subjects": rows})

    def _subject_row(self, subject_id: str, teacher_id: str) -> dict[str, Any]:
        subject = self._subjects[subject_id]
        teacher = self._teachers[teacher_id]
        return {
            "SubjectID": subject.id,
            "SubjectName": subject.name,
            "SubjectAbbrev": subject.abbrev,
            "TeacherID": teacher.id,
            "TeacherName": teacher.name,
            "TeacherAbbrev": teacher.abbrev,
            "TeacherEmail": teacher.email,
            "TeacherWeb": "",
            "TeacherSchoolPhone": None,
            "TeacherHomePhone": None,
            "TeacherMobilePhone": None,
        }

    async def _timetable_permanent(self, request: web.Request) -> web.Response:
        return self._timetable(request, _week_monday(date.today()), permanent=True)

    async def _timetable_actual(self, request: web.Request) -> web.Response:
        raw = request.query.get("date")
        try:
            day = date.fromisoformat(raw[:10]) if raw else date.today()
        except ValueError:
            with self._lock:
                if self._authenticated_user(request) is None:
                    return self._denied()
            return self._json(
                {
                    "Message": "The request is invalid.",
                    "ModelState": {
                        "$type": "HttpError",
                        "date": {
                            "$type": "String[]",
                            "$values": [f"The value '{raw}' is not valid for Nullable`1."],
                        },
                    },
                },
                status=400,
            )
        return self._timetable(request, _week_monday(day), permanent=False)

    def _timetable(self, request: web.Request, monday: date, permanent: bool) -> web.Response:
        with self._lock:
            user_id = self._authenticated_user(request)
            if user_id is None:
                return self._denied()
            if user_id == self.school.operator.user_id:
                key: tuple[Any, ...] = ("timetable", permanent, monday, None, 0, frozenset())
            else:
                student = self._students[user_id]
                corruption = frozenset(
                    self._corrupt.get(user_id, set()) & {"no_class", "class_abbrev_without_digits"}
                )
                key = ("timetable", permanent, monday, student.class_id, student.group_part, corruption)
            body = self._cache.get(key)
            if body is None:
                body = dumps(self._build_timetable(user_id, monday, permanent)).encode()
                self._cache[key] = body
            return self._cached(body)

    def teacher_view(self) -> tuple[BakalariTeacher, list[str]]:
        """The teacher a teacher-shaped operator account is, and the ids of the classes it sees: the first teacher
        who teaches in at least ``TEACHER_VIEW_CLASSES`` classes, and the first of those classes."""
        for teacher in self.school.teachers:
            taught = list(
                dict.fromkeys(
                    lesson.class_id for lesson in self.school.lessons if lesson.teacher_id == teacher.id
                )
            )
            if len(taught) >= TEACHER_VIEW_CLASSES:
                return teacher, taught[:TEACHER_VIEW_CLASSES]
        raise ValueError("no teacher of this school teaches in two classes")

    def _teacher_lessons(self) -> list[BakalariLesson]:
        teacher, class_ids = self.teacher_view()
        return [
            lesson
            for lesson in self.school.lessons
            if lesson.teacher_id == teacher.id and lesson.class_id in class_ids
        ]

    def _build_teacher_timetable(self, monday: date, permanent: bool) -> dict[str, Any]:
        """A teacher's own timetable, as real teacher accounts answer it (see the class's doc)."""
        teacher, class_ids = self.teacher_view()
        lessons = self._teacher_lessons()
        body = self._timetable_body(lessons, monday, permanent, pad_subject_ids=True)
        body["Classes"] = [
            {"Id": class_id, "Abbrev": self._classes[class_id].abbrev, "Name": ""} for class_id in class_ids
        ]
        body["Groups"] = [
            {
                "ClassId": self._groups[lesson.group_id].class_id,
                "Id": lesson.group_id,
                "Abbrev": " " + self._groups[lesson.group_id].abbrev,
                "Name": " " + self._groups[lesson.group_id].abbrev,
            }
            for lesson in lessons
            for _ in lesson.slots
        ]
        subject_ids = dict.fromkeys(lesson.subject_id for lesson in lessons)
        body["Subjects"] = [
            {"Id": " " + s, "Abbrev": self._subjects[s].abbrev, "Name": self._subjects[s].name}
            for s in subject_ids
        ]
        body["Teachers"] = [{"Id": teacher.id, "Abbrev": teacher.abbrev, "Name": teacher.name}]
        body["Students"] = []
        return body

    def _build_timetable(self, user_id: str, monday: date, permanent: bool) -> dict[str, Any]:
        school = self.school
        if user_id == school.operator.user_id and self.operator_view == "teacher":
            return self._build_teacher_timetable(monday, permanent)
        if user_id == school.operator.user_id:
            lessons = school.lessons
            classes = [self._class_json(cls) for cls in school.classes]
            groups = school.groups
        else:
            student = self._students[user_id]
            lessons = [
                lesson
                for lesson in school.lessons
                if lesson.class_id == student.class_id
                and self._groups[lesson.group_id].part in (0, student.group_part)
            ]
            class_json = self._class_json(self._classes[student.class_id], user_id)
            classes = [class_json] if class_json is not None else []
            groups = [group for group in school.groups if group.class_id == student.class_id]
        body = self._timetable_body(lessons, monday, permanent)
        if user_id == school.operator.user_id:
            subjects = school.subjects
            teachers = school.teachers
            body["Rooms"] = [{"Id": r.id, "Abbrev": r.abbrev, "Name": r.name} for r in school.rooms]
        else:
            subjects = [self._subjects[s] for s in dict.fromkeys(lesson.subject_id for lesson in lessons)]
            teachers = [self._teachers[t] for t in dict.fromkeys(lesson.teacher_id for lesson in lessons)]
        body["Classes"] = [cls for cls in classes if cls is not None]
        body["Groups"] = [
            {"ClassId": group.class_id, "Id": group.id, "Abbrev": group.abbrev, "Name": group.name}
            for group in groups
        ]
        body["Subjects"] = [{"Id": s.id, "Abbrev": s.abbrev, "Name": s.name} for s in subjects]
        body["Teachers"] = [{"Id": t.id, "Abbrev": t.abbrev, "Name": t.name} for t in teachers]
        return body

    def _timetable_body(
        self, lessons: list[BakalariLesson], monday: date, permanent: bool, pad_subject_ids: bool = False
    ) -> dict[str, Any]:
        """The week of ``lessons`` (``Hours``, ``Days``, ``Rooms``, ``Cycles``); the caller adds the lookup tables.
        ``pad_subject_ids``: subject ids as some servers give them, with a leading space."""
        atoms_by_day: dict[int, list[tuple[int, dict[str, Any]]]] = {day: [] for day in range(1, 6)}
        for lesson in lessons:
            for day, hour in lesson.slots:
                atom = {
                    "HourId": hour,
                    "GroupIds": [lesson.group_id],
                    "SubjectId": (" " if pad_subject_ids else "") + lesson.subject_id,
                    "TeacherId": lesson.teacher_id,
                    "RoomId": lesson.room_id,
                    "CycleIds": ["1", "2"] if permanent else [],
                    "Change": None,
                    "HomeworkIds": [],
                    "Theme": "",
                }
                if pad_subject_ids:  # a key real teacher timetables carry
                    atom["AssistanceAtoms"] = []
                atoms_by_day[day].append((hour, atom))
        days = []
        for day in range(1, 6):
            atoms = [atom for _, atom in sorted(atoms_by_day[day], key=lambda item: item[0])]
            days.append(
                {
                    "Atoms": atoms,
                    "DayOfWeek": day,
                    "Date": _bakalari_datetime(monday + timedelta(days=day - 1)),
                    "DayDescription": "",
                    "DayType": "WorkDay",
                }
            )
        rooms = [self._rooms[r] for r in dict.fromkeys(lesson.room_id for lesson in lessons)]
        return {
            "Hours": HOURS,
            "Days": days,
            "Rooms": [{"Id": r.id, "Abbrev": r.abbrev, "Name": r.name} for r in rooms],
            "Cycles": CYCLES if permanent else [],
        }

    async def _marks(self, request: web.Request) -> web.Response:
        with self._lock:
            user_id = self._authenticated_user(request)
            if user_id is None:
                return self._denied()
            if user_id == self.school.operator.user_id:
                return self._json({"Subjects": []})
            student = self._students[user_id]
            return self._json(
                {
                    "Subjects": [
                        self._subject_marks(student, s, t)
                        for s, t in student.subject_teachers.items()
                        if s in self._subjects
                    ]
                }
            )

    def _subject_marks(self, student: BakalariStudent, subject_id: str, teacher_id: str) -> dict[str, Any]:
        subject = self._subjects[subject_id]
        rng = random.Random(f"{student.user_id}:{subject_id}")
        start = date(2025, 9, 8)
        marks = []
        total = 0.0
        weights = 0
        for number in range(rng.randint(1, 4)):
            value = rng.choice([1, 1, 2, 2, 2, 3, 3, 4, 5])
            weight = rng.randint(1, 5)
            total += value * weight
            weights += weight
            mark_day = start + timedelta(days=14 * number + rng.randint(0, 10))
            marks.append(
                {
                    "MarkDate": _bakalari_datetime(mark_day),
                    "EditDate": _bakalari_datetime(mark_day + timedelta(days=rng.randint(0, 5)), 15, 30),
                    "Caption": f"Písemná práce {number + 1}",
                    "Theme": "",
                    "MarkText": str(value),
                    "TeacherId": teacher_id,
                    "Type": "W",
                    "TypeNote": "písemka střední",
                    "Weight": weight,
                    "SubjectId": subject.id,
                    "IsNew": False,
                    "IsPoints": False,
                    "CalculatedMarkText": "",
                    "ClassRankText": None,
                    "Id": _digest(student.user_id, subject_id, number)[:10].upper(),
                    "PointsText": "",
                    "MaxPoints": 0,
                }
            )
        average = f"{total / weights:.2f}".replace(".", ",") + " "
        return {
            "Marks": marks,
            "Subject": {"Id": subject.id, "Abbrev": subject.abbrev, "Name": subject.name},
            "AverageText": average,
            "TemporaryMark": "",
            "SubjectNote": "",
            "TemporaryMarkNote": "",
            "PointsOnly": False,
            "MarkPredictionEnabled": True,
        }

    # -- state ------------------------------------------------------------------------------------------------
    def state_snapshot(self) -> dict[str, Any]:
        with self._lock:
            school = self.school
            operator = school.operator
            return {
                "system": self.system,
                "school": school.name,
                "classes": [
                    {"id": c.id, "abbrev": c.abbrev, "name": c.name, "grade": c.grade} for c in school.classes
                ],
                "groups": [
                    {"id": g.id, "class_id": g.class_id, "part": g.part, "abbrev": g.abbrev, "name": g.name}
                    for g in school.groups
                ],
                "subjects": [{"id": s.id, "abbrev": s.abbrev, "name": s.name} for s in school.subjects],
                "teachers": [
                    {"id": t.id, "abbrev": t.abbrev, "name": t.name, "email": t.email}
                    for t in school.teachers
                ],
                "students": [
                    {
                        "id": s.user_id,
                        "full_name": s.full_name,
                        "username": s.username,
                        "password": s.password,
                        "class_id": s.class_id,
                        "group_part": s.group_part,
                        "subject_ids": s.subject_ids,
                        "subject_teachers": dict(s.subject_teachers),
                        "refresh_token": self._current_refresh(s.user_id),
                        "needs_login": self._current_refresh(s.user_id) is None,
                        "corrupt": sorted(self._corrupt.get(s.user_id, set())),
                    }
                    for s in school.students
                ],
                "operator": {
                    "id": operator.user_id,
                    "username": operator.username,
                    "full_name": operator.full_name,
                    "refresh_token": self._current_refresh(operator.user_id),
                    "needs_login": self._current_refresh(operator.user_id) is None,
                },
                "logins": {
                    "password": self.logins["password"],
                    "refresh_token": self.logins["refresh_token"],
                },
                "login_failures": dict(self.login_failures),
                "active_access_tokens": sum(
                    1 for _, expires in self._access.values() if expires > self.clock()
                ),
            }

    def _current_refresh(self, user_id: str) -> str | None:
        entry = self._refresh_by_user.get(user_id)
        return entry[0] if entry else None

    def apply_state_change(self, change: dict[str, Any]) -> None:
        """Actions (``change["action"]``):

        - ``revoke_refresh_token`` {user_id}: the account's refresh token stops working; it must log in again.
        - ``expire_access_tokens`` {user_id?}: every access token (or that account's) answers 401 from now on.
        - ``rename_class`` {class_id, name?, abbrev?}: also renames the class's groups.
        - ``remove_subject`` {subject_id}: gone from the lookups, the timetable and every student's subjects.
        - ``add_student`` {full_name, class_id, user_id?, group_part? (1|2, default 1), username?, password?,
          refresh_token?, subject_ids? (default: the class's subjects)}: omitted fields are generated and can be
          read back from ``state_snapshot()``.
        - ``remove_student`` {user_id}: the student leaves the school; their tokens stop working.
        - ``move_student`` {user_id, class_id}: the student's subjects and teachers become the new class's.
        - ``set_operator_password`` {password}: password logins with the old one fail; issued tokens keep working.
        - ``corrupt`` {user_id, what}: ``what`` in ``no_class`` (``Class`` null), ``class_abbrev_without_digits``,
          ``subject_without_id`` (first ``/subjects`` row has ``SubjectID`` null), or ``none`` to repair.
        """
        action = change.get("action")
        with self._lock:
            if action == "revoke_refresh_token":
                self._revoke_refresh(self._known_account(change))
            elif action == "expire_access_tokens":
                user_id = change.get("user_id")
                self._access = {
                    t: e for t, e in self._access.items() if user_id is not None and e[0] != user_id
                }
            elif action == "rename_class":
                cls = self._class(change.get("class_id"))
                cls.name = change.get("name", cls.name)
                cls.abbrev = change.get("abbrev", cls.abbrev)
                for group in self.school.groups:
                    if group.class_id == cls.id:
                        group.abbrev, group.name = _group_labels(cls, group.part)
            elif action == "remove_subject":
                subject_id = change.get("subject_id")
                if subject_id not in self._subjects:
                    raise ValueError(f"unknown subject: {subject_id!r}")
                self.school.subjects = [s for s in self.school.subjects if s.id != subject_id]
                self.school.lessons = [
                    lesson for lesson in self.school.lessons if lesson.subject_id != subject_id
                ]
                for student in self.school.students:
                    student.subject_teachers.pop(subject_id, None)
            elif action == "add_student":
                self._add_student(change)
            elif action == "remove_student":
                user_id = self._known_account(change)
                self.school.students = [s for s in self.school.students if s.user_id != user_id]
                self._revoke_refresh(user_id)
                self._corrupt.pop(user_id, None)
            elif action == "move_student":
                student = self._student(change.get("user_id"))
                cls = self._class(change.get("class_id"))
                student.class_id = cls.id
                student.subject_teachers = _subject_teachers(
                    self.school.lessons, self._groups, cls.id, student.group_part
                )
            elif action == "set_operator_password":
                password = change.get("password")
                if not isinstance(password, str) or not password:
                    raise ValueError("set_operator_password needs a non-empty 'password'")
                self.school.operator.password = password
            elif action == "corrupt":
                student = self._student(change.get("user_id"))
                what = change.get("what")
                if what == "none":
                    self._corrupt.pop(student.user_id, None)
                elif what in CORRUPTIONS:
                    self._corrupt.setdefault(student.user_id, set()).add(what)
                else:
                    raise ValueError(f"unknown corruption {what!r}; known: {[*CORRUPTIONS, 'none']}")
            else:
                raise ValueError(f"unknown Bakaláři sandbox action: {action!r}")
            self._reindex()

    def _known_account(self, change: dict[str, Any]) -> str:
        user_id = change.get("user_id")
        if user_id != self.school.operator.user_id and user_id not in self._students:
            raise ValueError(f"unknown Bakaláři user: {user_id!r}")
        return str(user_id)

    def _student(self, user_id: Any) -> BakalariStudent:
        if user_id not in self._students:
            raise ValueError(f"unknown Bakaláři student: {user_id!r}")
        return self._students[user_id]

    def _class(self, class_id: Any) -> BakalariClass:
        if class_id not in self._classes:
            raise ValueError(f"unknown Bakaláři class: {class_id!r}")
        return self._classes[class_id]

    def _add_student(self, change: dict[str, Any]) -> None:
        full_name = change.get("full_name")
        if not isinstance(full_name, str) or not full_name.strip():
            raise ValueError("add_student needs a 'full_name'")
        cls = self._class(change.get("class_id"))
        self._added += 1
        user_id = change.get("user_id")
        if user_id is None:
            user_id = f"UN{self._added:03d}"
            while user_id in self._students or user_id == self.school.operator.user_id:
                self._added += 1
                user_id = f"UN{self._added:03d}"
        elif (
            user_id in self._students or user_id in self._teachers or user_id == self.school.operator.user_id
        ):
            raise ValueError(f"Bakaláři user {user_id!r} already exists")
        part = int(change.get("group_part", 1))
        if part not in (1, 2):
            raise ValueError("group_part must be 1 or 2")
        username = change.get("username") or f"{_ascii(full_name)[:11]}{user_id.lower()}"
        if username in self._by_username:
            raise ValueError(f"username {username!r} is taken")
        class_teachers = _subject_teachers(self.school.lessons, self._groups, cls.id, part)
        subject_ids = change.get("subject_ids")
        if subject_ids is None:
            subject_teachers = class_teachers
        else:
            subject_teachers = {}
            for subject_id in subject_ids:
                teacher_id = class_teachers.get(subject_id) or next(
                    (lesson.teacher_id for lesson in self.school.lessons if lesson.subject_id == subject_id),
                    None,
                )
                if teacher_id is None:
                    raise ValueError(f"subject {subject_id!r} is not taught in this school")
                subject_teachers[subject_id] = teacher_id
        student = BakalariStudent(
            user_id=user_id,
            full_name=full_name,
            class_id=cls.id,
            group_part=part,
            subject_teachers=subject_teachers,
            username=username,
            password=change.get("password") or f"heslo-{user_id}",
            refresh_token=change.get("refresh_token") or f"bak-rt-{_digest('added', user_id)[:48]}",
        )
        self.school.students.append(student)
        self._set_refresh(user_id, student.refresh_token, self.clock())


def _modules(teacher: bool) -> list[dict[str, Any]]:
    modules = [
        {"Module": "Komens", "Rights": ["ShowReceivedMessages", "ShowSentMessages", "SendMessages"]},
        {"Module": "Timetable", "Rights": ["ShowTimetable"]},
        {"Module": "Substitutions", "Rights": ["ShowSubstitutions"]},
        {"Module": "Subjects", "Rights": ["ShowSubjects", "ShowSubjectThemes"]},
        {"Module": "Events", "Rights": ["ShowEvents"]},
    ]
    if not teacher:
        modules.append({"Module": "Marks", "Rights": ["ShowMarks", "PredictMarks"]})
        modules.append({"Module": "Absence", "Rights": ["ShowAbsence", "ShowAbsencePercentage"]})
    return modules
