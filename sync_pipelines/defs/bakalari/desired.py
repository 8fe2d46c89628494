"""What EduRPG should hold: pure functions of Bakaláři's answers and EduRPG's current rows (no I/O).

EduRPG's own mapping (``app/lib/services/sync-bakalari.ts``) is kept: a class is named by its abbreviation and
its grade is the abbreviation's leading digits, 1 when it has none (``"X.A"``; reported as "grade defaulted");
a subject's ``code`` is its abbreviation (its ref's metadata ``bakalariSubjectCode``, as EduRPG writes it); a user's role comes
from ``UserType``; new users get ``<bakalariId>@bakalari.local`` unless Bakaláři gives an e-mail; each entity
is tracked by an ``"ExternalRef"`` (types ``class``, ``subject``, ``user``, ``enrollment``; an enrollment's
``externalId`` is ``<userId>-<subjectInternalId>``).

A teacher's ``"bakalariId"`` is written in the form EduRPG's login stores for that teacher (``UserUID``, which may
be ``prefix/<id>``: the prefix is the school's, read from the operator's ``UserUID``), so a teacher who logs in
later finds the row the sync made instead of creating a second one.

Rows EduRPG created itself are adopted rather than duplicated: a user by ``"bakalariId"`` (a teacher's with or
without the ``prefix/``), a class by the name
EduRPG's login gives it (when no ``"ExternalRef"`` claims that row yet), a subject by ``code``, an enrollment by
``(userId, subjectId)``.

Every plan record compares the row's fields *and* its ``"ExternalRef"`` (the ``ref`` field: internal id and
metadata), so an unchanged entity plans no write at all, and a missing or stale ref alone is repaired without
touching the row.

A Bakaláři account sees only its own part of the school: a teacher's timetable holds that teacher's lessons, a
student's answers that student's class and subjects. The desired state is the union of every answer: the
operator's and each student's. A student not read this run (another shard, a token that no longer works, past
``limit``) still shows what EduRPG holds for them: their class and their enrollments' subjects. So an entity is
judged gone (``find_vanished``) only when no account shows it, this run or as EduRPG holds it, never for lying
outside one account's view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sync_pipelines.defs.bakalari.accounts import MALFORMED, SchoolReading, StudentReading
from sync_pipelines.defs.bakalari.answers import ClassInfo, SubjectInfo, TeacherInfo, bare_id, edurpg_grade
from sync_pipelines.defs.bakalari.edurpg import EduRpgSnapshot, VanishedEntity, new_id
from sync_pipelines.sync.plan import Skip
from sync_pipelines.sync.shards import shard_of

REF = "ref"  # the record's "ExternalRef" as {"internalId", "metadata"}; compared like any other field
PLACEHOLDER_EMAIL_DOMAIN = "bakalari.local"
ROLES = {"student": "STUDENT", "teacher": "TEACHER"}
KIND_ORDER = ("Class", "Subject", "User", "Enrollment")

# Skip categories decided here.
EMAIL_IN_USE = "email_in_use"
CODE_IN_USE = "code_in_use"
UNSUPPORTED_ACCOUNT = "unsupported_account"
DEPENDS_ON_SKIPPED = "depends_on_skipped"

Row = dict[str, Any]


@dataclass
class DesiredEntities:
    """Input of ``plan_changes`` plus what only this pipeline needs (dependencies, vanished entities)."""

    desired: dict[str, Row] = field(default_factory=dict)
    current: dict[str, Row | None] = field(default_factory=dict)
    skips: list[Skip] = field(default_factory=list)
    vanished: list[VanishedEntity] = field(default_factory=list)
    # record key -> keys of the records whose rows it points at (written first, or it cannot be written)
    depends_on: dict[str, list[str]] = field(default_factory=dict)
    # abbreviations of the classes given EduRPG's default grade (no leading digits), sorted
    grade_defaulted: list[str] = field(default_factory=list)


def kind_of(key: str) -> str:
    return key.split(":", 1)[0]


def record_shard(key: str) -> str:
    """The shard of a plan record: a student's records follow the student's Bakaláři id."""
    kind, _, rest = key.partition(":")
    if kind == "Enrollment":
        rest = rest.rsplit("-", 1)[0]
    return shard_of(rest)


# What an address's local part may hold unquoted (RFC 5322's atext, and dots between atoms); ``%`` is not kept,
# so the percent-encoding of anything else stays one-to-one.
_ATEXT = "!#$&'*+-/=?^_`{|}~."


def placeholder_email(bakalari_id: str) -> str:
    """``<bakalariId>@bakalari.local``, EduRPG's placeholder, as a valid address: a character an address cannot
    hold unquoted (a space of ``"U  12"``, a letter outside ASCII) is percent-encoded (``U%20%2012``), and so are
    dots that would open, close or double up the local part."""
    local = quote(bakalari_id, safe=_ATEXT)
    if local.startswith(".") or local.endswith(".") or ".." in local:
        local = local.replace(".", "%2E")
    return f"{local}@{PLACEHOLDER_EMAIL_DOMAIN}"


def ref_field(internal_id: str, metadata: Row) -> Row:
    return {REF: {"internalId": internal_id, "metadata": metadata}}


def subject_codes(subjects: Iterable[SubjectInfo], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{subject id: code}``: the abbreviation, made unique with the id where two subjects share one.

    ``known`` (``{subject id: abbreviation}`` of the subjects EduRPG already tracks) counts too: a run that sees
    only some subjects (a teacher's view, a shard) gives a subject the code a run seeing them all gives it."""
    subjects = list(subjects)
    abbrevs = {**(known or {}), **{subject.id: subject.abbrev for subject in subjects}}
    counts = Counter(abbrev for abbrev in abbrevs.values() if abbrev)
    return {
        subject.id: (
            subject.abbrev
            if subject.abbrev and counts[subject.abbrev] == 1
            else f"{subject.abbrev} ({subject.id})"
            if subject.abbrev
            else subject.id
        )
        for subject in subjects
    }


class _Resolver:
    """Finds the EduRPG row (and ref) a Bakaláři entity maps to, or assigns a new id."""

    def __init__(self, snapshot: EduRpgSnapshot, make_id: Callable[[], str]) -> None:
        self.snapshot = snapshot
        self.make_id = make_id
        self.claimed: set[str] = set()
        self.enrollments_by_id = {row["id"]: row for row in snapshot.enrollments.values()}

    def _found(self, row: Row | None, ref: Row | None) -> tuple[str, Row | None]:
        if row is None:
            return self.make_id(), None
        self.claimed.add(row["id"])
        current = dict(row)
        current[REF] = {"internalId": ref["internalId"], "metadata": ref["metadata"]} if ref else None
        return row["id"], current

    def _unclaimed(self, ref_type: str, rows: Iterable[Row | None]) -> Row | None:
        referenced = self.snapshot.referenced.get(ref_type, set())
        return next(
            (row for row in rows if row and row["id"] not in referenced and row["id"] not in self.claimed),
            None,
        )

    def school_class(self, info: ClassInfo) -> tuple[str, Row | None]:
        ref = self.snapshot.ref("class", info.id)
        row = self.snapshot.classes.get(ref["internalId"]) if ref else None
        if row is None:
            row = self._unclaimed("class", self.snapshot.classes_by_name.get(info.abbrev, []))
        return self._found(row, ref)

    def subject(self, info: SubjectInfo, code: str) -> tuple[str, Row | None]:
        ref = self.snapshot.ref("subject", info.id)
        row = self.snapshot.subjects.get(ref["internalId"]) if ref else None
        if row is None:
            row = self._unclaimed("subject", [self.snapshot.subjects_by_code.get(code)])
        return self._found(row, ref)

    def user(self, bakalari_id: str) -> tuple[str, Row | None]:
        ref = self.snapshot.ref("user", bakalari_id)
        row = self.snapshot.users.get(ref["internalId"]) if ref else None
        if row is None:
            candidate = self.snapshot.users_by_bakalari_id.get(bakalari_id)
            row = candidate if candidate and candidate["id"] not in self.claimed else None
        return self._found(row, ref)

    def teacher(self, teacher_id: str, login_id: str) -> tuple[str, Row | None]:
        """A teacher's row: by ref; else the user whose ``bakalariId`` is the login's form, the timetable id, or
        any ``prefix/<timetable id>`` (EduRPG's login may have stored it under another school prefix)."""
        ref = self.snapshot.ref("user", teacher_id)
        row = self.snapshot.users.get(ref["internalId"]) if ref else None
        if row is None:
            candidates = [
                self.snapshot.users_by_bakalari_id.get(login_id),
                self.snapshot.users_by_bakalari_id.get(teacher_id),
                *self.snapshot.users_by_bare_id.get(teacher_id, []),
            ]
            row = next((c for c in candidates if c and c["id"] not in self.claimed), None)
        return self._found(row, ref)

    def enrollment(self, user_id: str, subject_id: str) -> tuple[str, Row | None]:
        ref = self.snapshot.ref("enrollment", f"{user_id}-{subject_id}")
        row = self.enrollments_by_id.get(ref["internalId"]) if ref else None
        if row is None:
            candidate = self.snapshot.enrollments.get((user_id, subject_id))
            row = candidate if candidate and candidate["id"] not in self.claimed else None
        return self._found(row, ref)


class _Builder:
    def __init__(self, snapshot: EduRpgSnapshot, make_id: Callable[[], str]) -> None:
        self.snapshot = snapshot
        self.resolve = _Resolver(snapshot, make_id)
        self.out = DesiredEntities()
        self.records: dict[str, list[tuple[str, Row, Row | None]]] = {kind: [] for kind in KIND_ORDER}
        self.emails: dict[str, str] = {row["email"]: row["id"] for row in snapshot.users.values()}

    def add(self, key: str, desired: Row, current: Row | None, depends_on: list[str] | None = None) -> None:
        self.records[kind_of(key)].append((key, desired, current))
        if depends_on:
            self.out.depends_on[key] = depends_on

    def skip(self, key: str, category: str, reason: str) -> None:
        self.out.skips.append(Skip(key, category, reason))

    def claim_email(self, email: str, user_id: str) -> bool:
        """Whether ``email`` is free for ``user_id`` (EduRPG's ``"User_email_key"`` is unique)."""
        owner = self.emails.get(email)
        if owner is not None and owner != user_id:
            return False
        self.emails[email] = user_id
        return True

    def finish(self) -> DesiredEntities:
        for kind in KIND_ORDER:
            for key, desired, current in sorted(self.records[kind], key=lambda item: item[0]):
                self.out.desired[key] = desired
                self.out.current[key] = current
        return self.out


def build_desired(
    school: SchoolReading,
    students: list[StudentReading],
    snapshot: EduRpgSnapshot,
    make_id: Callable[[], str] = new_id,
    *,
    complete: bool = True,
) -> DesiredEntities:
    """Desired rows for every entity the operator's and the students' answers show, keyed
    ``<Kind>:<Bakaláři id>``.

    Classes, subjects and teachers are the union of the operator's view (a teacher's timetable holds that
    teacher's lessons only) and of each student read; students and enrollments only for the accounts read.
    Records that cannot be mapped are skipped with a reason, and so are records that point at them. ``complete``:
    the run read every student account EduRPG holds (all shards, no ``limit``), which teachers need to be judged
    gone (``find_vanished``).
    """
    build = _Builder(snapshot, make_id)
    for problem in school.problems:
        build.skip(problem.key, MALFORMED, problem.reason)
    read = [reading for reading in students if reading.ok and reading.user is not None]

    # -- classes: the operator's lookups, plus any class only a student's answer names ------------------------
    classes: dict[str, ClassInfo] = {}
    for class_info in [
        *school.lookups.classes,
        *(reading.user.school_class for reading in read if reading.user),
    ]:
        classes.setdefault(class_info.id, class_info)
    groups: dict[str, set[str]] = {}
    for group in school.lookups.groups:  # a timetable lists a group once per lesson
        groups.setdefault(group.class_id, set()).add(group.id)
    class_ids: dict[str, str] = {}
    class_problems: dict[str, str] = {}
    for class_id, class_info in classes.items():
        key = f"Class:{class_id}"
        grade, defaulted = edurpg_grade(class_info.abbrev)
        if grade is None:
            class_problems[class_id] = (
                f"class abbreviation {class_info.abbrev!r} starts with too many digits for a grade"
            )
            build.skip(key, MALFORMED, class_problems[class_id])
            continue
        if defaulted:
            build.out.grade_defaulted.append(class_info.abbrev)
        internal, current = build.resolve.school_class(class_info)
        class_ids[class_id] = internal
        metadata = {
            "bakalariClassId": class_id,
            "bakalariClassAbbrev": class_info.abbrev,
            "bakalariGroupIds": sorted(groups.get(class_id, set())),
        }
        desired = {"id": internal, "name": class_info.abbrev, "grade": grade, **ref_field(internal, metadata)}
        build.add(key, desired, current)

    # -- subjects: timetable lookups, the operator's subject rows, the students' subject rows --------------------
    subjects: dict[str, SubjectInfo] = {}
    for info in school.lookups.subjects:
        subjects.setdefault(info.id, info)
    for row in [*school.subject_rows, *(row for reading in read for row in reading.subject_rows)]:
        subjects.setdefault(row.subject.id, row.subject)
    known_codes = {
        ref["externalId"]: str((ref["metadata"] or {}).get("bakalariSubjectCode") or "")
        for ref in snapshot.refs_of_type("subject")
    }
    codes = subject_codes(subjects.values(), known_codes)
    subject_ids: dict[str, str] = {}
    claimed_codes: dict[str, str] = {}
    for subject_id, info in subjects.items():
        key, code = f"Subject:{subject_id}", codes[subject_id]
        internal, current = build.resolve.subject(info, code)
        holder = snapshot.subjects_by_code.get(code)
        if (holder is not None and holder["id"] != internal) or claimed_codes.get(code, internal) != internal:
            build.skip(key, CODE_IN_USE, f"EduRPG already has another subject with code {code!r}")
            continue
        claimed_codes[code] = internal
        subject_ids[subject_id] = internal
        metadata = {"bakalariSubjectId": subject_id, "bakalariSubjectCode": info.abbrev or code}
        desired = {"id": internal, "name": info.name, "code": code, **ref_field(internal, metadata)}
        build.add(key, desired, current)

    # -- teachers: the timetable's teachers, with e-mails from the subject rows ------------------------------------
    teachers: dict[str, TeacherInfo] = {teacher.id: teacher for teacher in school.lookups.teachers}
    emails: dict[str, str] = {}
    for row in [*school.subject_rows, *(row for reading in read for row in reading.subject_rows)]:
        if row.teacher is None:
            continue
        teachers.setdefault(row.teacher.id, row.teacher)
        if row.teacher.email and row.teacher.id not in emails:
            emails[row.teacher.id] = row.teacher.email
    student_ids = {bare_id(reading.account.bakalari_id) for reading in students}
    prefix = school.uid_prefix
    for teacher_id, teacher in teachers.items():
        if teacher_id in student_ids:
            continue
        key = f"User:{teacher_id}"
        login_id = f"{prefix}/{teacher_id}" if prefix else teacher_id
        internal, current = build.resolve.teacher(teacher_id, login_id)
        role: str | None = "OPERATOR" if current and current.get("role") == "OPERATOR" else "TEACHER"
        bakalari_id = login_id
        held = current.get("bakalariId") if current else None
        holder = snapshot.users_by_bakalari_id.get(login_id)
        if held and bare_id(held) == teacher_id and (not prefix or (holder and holder["id"] != internal)):
            bakalari_id = held  # the prefix is unknown, or another row holds the login's form: left as it is
        desired = {"id": internal, "name": teacher.name, "role": role, "bakalariId": bakalari_id}
        email = emails.get(teacher_id) or (None if current else placeholder_email(teacher_id))
        if email is not None and (current is None or email != current.get("email")):
            if build.claim_email(email, internal):
                desired["email"] = email
            elif current is None:
                build.skip(
                    key,
                    EMAIL_IN_USE,
                    f"another EduRPG user ({build.emails.get(email)}) already has this user's e-mail",
                )
                continue
        metadata = {"bakalariUserId": teacher_id, "bakalariUserType": "teacher"}
        build.add(key, {**desired, **ref_field(internal, metadata)}, current)

    # -- students and their enrollments ---------------------------------------------------------------------------
    read_users: set[str] = set()  # EduRPG ids of the students whose answers were read this run
    judged_users: set[str] = set()  # ... and whose subject list was read whole
    enrollment_refs: set[str] = set()
    for reading in read:
        bakalari_id, user = reading.account.bakalari_id, reading.user
        assert user is not None
        key = f"User:{bakalari_id}"
        role = ROLES.get(user.user_type)
        if role is None:
            build.skip(
                key, UNSUPPORTED_ACCOUNT, f"UserType {user.user_type!r} is neither a student nor a teacher"
            )
            continue
        class_key = f"Class:{user.school_class.id}"
        class_internal = class_ids.get(user.school_class.id)
        if class_internal is None:
            reason = class_problems.get(user.school_class.id, "the class was not synced")
            build.skip(key, DEPENDS_ON_SKIPPED, f"class {user.school_class.abbrev!r} skipped: {reason}")
            continue
        internal, current = build.resolve.user(bakalari_id)
        read_users.add(internal)
        if current and current.get("role") == "OPERATOR":
            role = "OPERATOR"
        desired = {
            "id": internal,
            "name": user.full_name,
            "role": role,
            "classId": class_internal,
            "bakalariId": bakalari_id,
        }
        if current is None:
            email = placeholder_email(bakalari_id)
            if not build.claim_email(email, internal):
                build.skip(
                    key,
                    EMAIL_IN_USE,
                    f"another EduRPG user ({build.emails.get(email)}) already has this user's e-mail",
                )
                continue
            desired["email"] = email
        metadata = {"bakalariUserId": bakalari_id, "bakalariUserType": user.user_type}
        build.add(key, {**desired, **ref_field(internal, metadata)}, current, [class_key])
        if role != "STUDENT":
            continue
        for problem in reading.problems:
            build.skip(problem.key, MALFORMED, problem.reason)
        if not reading.problems:
            judged_users.add(internal)
        seen: set[str] = set()
        for row in reading.subject_rows:
            subject_id = row.subject.id
            if subject_id in seen:
                continue
            seen.add(subject_id)
            enrollment_key = f"Enrollment:{bakalari_id}-{subject_id}"
            subject_internal = subject_ids.get(subject_id)
            if subject_internal is None:
                build.skip(enrollment_key, DEPENDS_ON_SKIPPED, f"subject {subject_id} was not synced")
                continue
            external_id = f"{internal}-{subject_internal}"
            enrollment_refs.add(external_id)
            enrollment_internal, enrollment_current = build.resolve.enrollment(internal, subject_internal)
            pointers = {"userId": internal, "subjectId": subject_internal, "classId": class_internal}
            build.add(
                enrollment_key,
                {"id": enrollment_internal, **pointers, **ref_field(enrollment_internal, pointers)},
                enrollment_current,
                [key, f"Subject:{subject_id}", class_key],
            )

    build.out.grade_defaulted.sort()
    every_account_read = complete and all(reading.ok and not reading.problems for reading in students)
    build.out.vanished = find_vanished(
        snapshot,
        Shown(set(classes), set(subjects), set(teachers) if every_account_read else None),
        read_users,
        judged_users,
        enrollment_refs,
    )
    return build.finish()


@dataclass(frozen=True)
class Shown:
    """The Bakaláři ids this run's answers showed; ``teachers`` is None when teachers cannot be judged (a student
    account was not read whole, and EduRPG keeps no link from a teacher to the students they teach)."""

    classes: set[str]
    subjects: set[str]
    teachers: set[str] | None


def held_for_unread(snapshot: EduRpgSnapshot, read_users: set[str], judged_users: set[str]) -> Shown:
    """What the students not read this run show, as EduRPG holds it: their class, and their enrollments'
    subjects (also of the students read whose subject list was incomplete)."""
    class_ids = {ref["internalId"]: ref["externalId"] for ref in snapshot.refs_of_type("class")}
    subject_ids = {ref["internalId"]: ref["externalId"] for ref in snapshot.refs_of_type("subject")}
    classes = {
        class_ids[row["classId"]]
        for row in snapshot.users.values()
        if row["id"] not in read_users and row.get("classId") in class_ids
    }
    subjects = {
        subject_ids[subject]
        for (user, subject) in snapshot.enrollments
        if user not in judged_users and subject in subject_ids
    }
    return Shown(classes, subjects, None)


def find_vanished(
    snapshot: EduRpgSnapshot,
    shown: Shown,
    read_users: set[str],
    judged_users: set[str],
    enrollment_refs: set[str],
) -> list[VanishedEntity]:
    """Refs whose Bakaláři entity no account shows any more: not the answers read this run (``shown``), and not
    what EduRPG holds for the students not read (``held_for_unread``). A class or subject outside the
    operator's view, or known only to students of other shards, is therefore never judged gone. Teachers are
    judged only when ``shown.teachers`` is known (every student account read whole). Students cannot be judged
    (an account that stopped working may have left the school or just need a new login); enrollments only for
    students read completely."""
    held = held_for_unread(snapshot, read_users, judged_users)
    class_ids, subject_ids = shown.classes | held.classes, shown.subjects | held.subjects
    vanished: list[VanishedEntity] = []

    def add(kind: str, ref: Row, name: str | None) -> None:
        vanished.append(
            VanishedEntity(
                f"{kind}:{ref['externalId']}",
                ref["type"],
                ref["externalId"],
                ref["internalId"],
                name,
                dict(ref["metadata"] or {}),
            )
        )

    for ref in snapshot.refs_of_type("class"):
        if ref["externalId"] not in class_ids:
            add("Class", ref, (snapshot.classes.get(ref["internalId"]) or {}).get("name"))
    for ref in snapshot.refs_of_type("subject"):
        if ref["externalId"] not in subject_ids:
            add("Subject", ref, (snapshot.subjects.get(ref["internalId"]) or {}).get("name"))
    for ref in snapshot.refs_of_type("user"):
        metadata = ref["metadata"] or {}
        if (
            shown.teachers is not None
            and metadata.get("bakalariUserType") == "teacher"
            and ref["externalId"] not in shown.teachers
        ):
            add("User", ref, (snapshot.users.get(ref["internalId"]) or {}).get("name"))
    for ref in snapshot.refs_of_type("enrollment"):
        metadata = ref["metadata"] or {}
        if metadata.get("userId") in judged_users and ref["externalId"] not in enrollment_refs:
            user_name = (snapshot.users.get(metadata.get("userId") or "") or {}).get("name")
            subject_name = (snapshot.subjects.get(metadata.get("subjectId") or "") or {}).get("name")
            add("Enrollment", ref, f"{user_name} – {subject_name}")
    return vanished
