"""Random Portail DF and Bakaláři answers (hypothesis): no run crashes on a bad record, every bad record is
reported with a reason, good records still sync.

Many examples go straight at the parsing and mapping functions; a few go through the pipelines against the
sandboxes, whose fault hooks serve them (Portail DF ``set_record_fields`` / ``html_for_email``, Bakaláři
``corrupt`` and ``add_student`` with odd names).
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from devkit.sandbox.bakalari import MALFORMED_ANSWERS, BakalariSandbox, SampleSchool, generate_school
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.portaildf import (
    INVALID,
    KINDS,
    NOT_FOUND,
    STRUCTURES_DISAGREE,
    PortailDfSandbox,
    expected_outcomes,
    normalise_email,
    record_kind,
)
from devkit.sandbox.server import ThreadedSandbox
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.defs.bakalari.accounts import MALFORMED, SchoolReading, StudentReading
from sync_pipelines.defs.bakalari.answers import (
    MalformedAnswer,
    edurpg_grade,
    parse_subject_rows,
    parse_timetable_lookups,
    parse_user,
)
from sync_pipelines.defs.bakalari.desired import KIND_ORDER, build_desired, kind_of
from sync_pipelines.defs.bakalari.edurpg import EduRpgSnapshot, StudentAccount
from sync_pipelines.defs.user_kinds.mapping import INVALID_ANSWER, select_outcome
from sync_pipelines.sync.plan import Skip, plan_changes
from sync_pipelines.sync.report import PREVIEW_ROWS
from sync_pipelines_tests.bakalari.helpers import (
    engine_for,
    failure_message,
    observation,
    run_sync,
    sandbox_tokens,
    sync_resources,
    tokens,
)
from sync_pipelines_tests.harness.row_errors import errors_table
from sync_pipelines_tests.reliability.conftest import expected_edurpg, read_edurpg
from sync_pipelines_tests.user_kinds.conftest import ZlvWorld
from sync_pipelines_tests.user_kinds.test_user_kinds_sync import failure_text
from sync_pipelines_tests.user_kinds.test_user_kinds_sync import observation as kinds_observation

pytestmark = pytest.mark.integration

# -- random JSON, and the odd values real answers carry ----------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
ODD_TEXTS = [
    "",
    "   ",
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "Ñoño Ďurica 🙂",
    "\u200b",
    "null",
    "true",
    "0",
    "١٢.A",
]
huge_texts = st.integers(5_000, 30_000).map(lambda size: "x" * size)
odd_values = st.one_of(json_values, st.sampled_from(ODD_TEXTS), huge_texts, st.text(max_size=40))


# -- Portail DF answers at the mapping ------------------------------------------------------------------------------
EMAIL = "anna.martin@exemple.fr"
looked_up = st.sampled_from([EMAIL, " Anna.Martin@Exemple.FR ", "ANNA.MARTIN@EXEMPLE.FR"])
record_emails = st.one_of(
    st.sampled_from([EMAIL, "  ANNA.martin@exemple.fr", "jo" + EMAIL, EMAIL + ".evil", "anna.martin@"]),
    odd_values,
)
flags = st.one_of(st.booleans(), odd_values)
records = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id_user": st.one_of(st.integers(1, 10**6), odd_values),
            "email": record_emails,
            "exterieur": flags,
            "gestionnaire": flags,
            "structure": odd_values,
            "groupe": odd_values,
        },
    ),
)


def exact_records(email: str, results: list[Any]) -> list[dict[str, Any]]:
    return [
        record
        for record in results
        if isinstance(record, dict)
        and isinstance(record.get("email"), str)
        and normalise_email(record["email"]) == normalise_email(email)
    ]


def expected_outcome(email: str, results: list[Any]) -> str:
    """The sandbox's documented rule: the records with this very email (trimmed, case-insensitive) decide."""
    exact = exact_records(email, results)
    if not exact:
        return NOT_FOUND
    kinds = {record_kind(record) for record in exact}
    if INVALID in kinds:
        return INVALID_ANSWER
    return kinds.pop() if len(kinds) == 1 else STRUCTURES_DISAGREE


@given(looked_up, st.lists(records, max_size=6))
@settings(max_examples=500, deadline=None)
def test_every_portaildf_answer_maps_to_a_kind_or_a_reason(email: str, results: list[Any]) -> None:
    outcome = select_outcome(email, results)
    assert (outcome.kind or outcome.category) == expected_outcome(email, results)
    if outcome.kind is None:
        assert outcome.reason.strip()
    if outcome.category == INVALID_ANSWER:
        assert outcome.reason.startswith("unusable in Portail DF's answer: ")
        for record in exact_records(email, results):
            for flag in ("exterieur", "gestionnaire"):
                if not isinstance(record.get(flag), bool):
                    assert f"'{flag}'" in outcome.reason


# -- Bakaláři answers at the parsers --------------------------------------------------------------------------------
def loose_or_plausible(fields: dict[str, Any], plausible: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Garbage, an object with any of the fields holding anything, or an object shaped as the API answers
    (whose values may still be odd)."""
    extra = {name: value for name, value in fields.items() if name not in plausible}
    return st.one_of(
        json_values,
        st.fixed_dictionaries({}, optional=fields),
        st.fixed_dictionaries(plausible, optional=extra),
    )


plain_ids = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=3)
ids = st.one_of(plain_ids, odd_values)
names = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(ODD_TEXTS), huge_texts)
abbrevs = st.one_of(
    st.sampled_from(["1.A", "2.B", " 3C", "4", "B", "", "10.X", "١.A", "2.B S1"]),
    st.from_regex(r"\s?[0-9]{1,9}\.[A-Z]", fullmatch=True),
    odd_values,
)
classes = loose_or_plausible(
    {"Id": ids, "Abbrev": abbrevs, "Name": odd_values},
    {"Id": plain_ids, "Abbrev": st.from_regex(r"[1-4]\.[A-D]", fullmatch=True)},
)
named_items = loose_or_plausible(
    {"Id": ids, "Abbrev": odd_values, "Name": odd_values}, {"Id": plain_ids, "Name": names}
)
groups = loose_or_plausible(
    {"Id": ids, "ClassId": ids, "Abbrev": odd_values, "Name": odd_values},
    {"Id": plain_ids, "ClassId": plain_ids},
)
user_answers = loose_or_plausible(
    {
        "UserUID": ids,
        "FullName": odd_values,
        "UserType": st.one_of(st.sampled_from(["student", "teacher", "parents", "STUDENT"]), odd_values),
        "Class": st.one_of(st.none(), classes),
    },
    {"UserUID": plain_ids, "FullName": names, "UserType": st.just("student"), "Class": classes},
)
subject_rows = loose_or_plausible(
    {
        "SubjectID": ids,
        "SubjectName": odd_values,
        "SubjectAbbrev": st.one_of(st.sampled_from(["AJ", "M", "AJ (X1)"]), odd_values),
        "TeacherID": ids,
        "TeacherName": odd_values,
        "TeacherEmail": st.one_of(st.sampled_from(["a@b.cz", "X1@bakalari.local"]), odd_values),
    },
    {
        "SubjectID": plain_ids,
        "SubjectName": names,
        "SubjectAbbrev": st.sampled_from(["AJ", "M", "F", "AJ (X1)"]),
    },
)
subjects_answers = loose_or_plausible(
    {"Subjects": st.one_of(st.lists(subject_rows, max_size=6), json_values)},
    {"Subjects": st.lists(subject_rows, max_size=6)},
)
timetables = loose_or_plausible(
    {
        "Classes": st.one_of(st.lists(classes, max_size=4), json_values),
        "Groups": st.lists(groups, max_size=4),
        "Subjects": st.lists(named_items, max_size=4),
        "Teachers": st.lists(named_items, max_size=4),
    },
    {
        "Classes": st.lists(classes, max_size=4),
        "Subjects": st.lists(named_items, max_size=4),
        "Teachers": st.lists(named_items, max_size=4),
    },
)


def listed(body: Any, name: str) -> list[Any]:
    return body[name] if isinstance(body, dict) and isinstance(body.get(name), list) else []


@given(user_answers)
@settings(max_examples=500, deadline=None)
def test_a_user_answer_is_a_student_record_or_malformed(body: Any) -> None:
    try:
        user = parse_user(body)
    except MalformedAnswer as error:
        assert str(error).strip()
        return
    assert user.uid and user.school_class.id
    assert edurpg_grade(user.school_class.abbrev)[0] is not None  # digits, or EduRPG's grade 1 without them


@given(subjects_answers)
@settings(max_examples=500, deadline=None)
def test_every_subject_row_is_kept_or_reported(body: Any) -> None:
    owner = "Enrollment:U1"
    try:
        rows, problems = parse_subject_rows(body, owner)
    except MalformedAnswer as error:
        assert str(error).strip()
        assert not isinstance(body, dict) or not isinstance(body.get("Subjects"), (list, type(None)))
        return
    assert len(rows) + len(problems) == len(listed(body, "Subjects"))
    assert all(row.subject.id and row.subject.name for row in rows)
    assert all(problem.key.startswith(owner) and problem.reason.strip() for problem in problems)


@given(timetables)
@settings(max_examples=500, deadline=None)
def test_every_timetable_entity_is_kept_or_reported(body: Any) -> None:
    try:
        lookups = parse_timetable_lookups(body)
    except MalformedAnswer as error:
        assert str(error).strip()
        return
    problems = [problem.key.split(":", 1)[0] for problem in lookups.problems]
    assert all(problem.reason.strip() for problem in lookups.problems)
    assert len(lookups.classes) + problems.count("Class") == len(listed(body, "Classes"))
    assert len(lookups.subjects) + problems.count("Subject") == len(listed(body, "Subjects"))
    assert len(lookups.teachers) + problems.count("User") == len(listed(body, "Teachers"))
    assert all(cls.id and cls.abbrev for cls in lookups.classes)


def read_answers(bakalari_id: str, user_body: Any, subjects_body: Any) -> StudentReading:
    """What ``read_student`` makes of a student's two answers (without the HTTP around them)."""
    reading = StudentReading(StudentAccount(f"c-{bakalari_id}", bakalari_id, "token"))
    try:
        reading.user = parse_user(user_body)
        reading.subject_rows, reading.problems = parse_subject_rows(
            subjects_body, owner=f"Enrollment:{bakalari_id}"
        )
    except MalformedAnswer as error:
        reading.user, reading.category, reading.reason = None, MALFORMED, str(error)
    return reading


plain_classes = st.fixed_dictionaries(
    {"Id": plain_ids, "Abbrev": st.from_regex(r"[1-4]\.[A-D]", fullmatch=True)}, optional={"Name": names}
)
subjects_objects = st.fixed_dictionaries({"Subjects": st.lists(subject_rows, max_size=6)})
plain_users = st.fixed_dictionaries(
    {"UserUID": plain_ids, "FullName": names, "UserType": st.just("student"), "Class": plain_classes}
)
student_answers = st.lists(
    st.tuples(
        st.text(alphabet="UVWXYZ0123", min_size=1, max_size=3),
        st.one_of(user_answers, plain_users, plain_users),
        st.one_of(subjects_answers, subjects_objects, subjects_objects),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda answers: answers[0],
)
# Top-level shapes that parse (garbage at the top is the parsers' tests' business): items may still be anything.
timetable_objects = st.fixed_dictionaries(
    {"Classes": st.lists(classes, max_size=4)},
    optional={
        "Groups": st.lists(groups, max_size=4),
        "Subjects": st.lists(named_items, max_size=4),
        "Teachers": st.lists(named_items, max_size=4),
    },
)


@given(timetable_objects, subjects_objects, student_answers)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_answers_plan_every_entity_or_skip_it_with_a_reason(
    timetable: Any, operator_subjects: Any, students: list[tuple[str, Any, Any]]
) -> None:
    lookups = parse_timetable_lookups(timetable)
    operator_rows, operator_problems = parse_subject_rows(operator_subjects, owner="Subject:operator")
    school = SchoolReading(lookups, operator_rows, [*lookups.problems, *operator_problems])
    readings = [read_answers(*answers) for answers in students]
    counter = itertools.count()
    entities = build_desired(school, readings, EduRpgSnapshot(), make_id=lambda: f"c{next(counter):024d}")
    skips = [Skip(r.key, r.category, r.reason or "") for r in readings if r.category]
    plan = plan_changes("bakalari_entities", entities.desired, entities.current, [*skips, *entities.skips])

    assert all(skip.category and skip.reason.strip() for skip in [*skips, *entities.skips])
    assert all(kind_of(key) in KIND_ORDER for key in entities.desired)
    for key, dependencies in entities.depends_on.items():
        assert key in entities.desired and all(d in entities.desired for d in dependencies)
    event(f"students read: {sum(1 for reading in readings if reading.ok)}")
    planned = {record.key for record in plan.records}
    for reading in readings:
        assert reading.key in planned  # written, or skipped with a reason: never silently dropped
    for cls in lookups.classes:
        assert f"Class:{cls.id}" in planned
    for subject in lookups.subjects:
        assert f"Subject:{subject.id}" in planned


def test_a_name_that_is_only_the_class_suffix_is_malformed() -> None:
    body = {
        "UserUID": "U1",
        "FullName": ", 2.B",
        "UserType": "student",
        "Class": {"Id": "C1", "Abbrev": "2.B"},
    }
    with pytest.raises(MalformedAnswer):
        parse_user(body)


# -- Portail DF answers through the pipeline -----------------------------------------------------------------------
PORTAILDF_USERS = 60

flag_changes = st.dictionaries(
    st.sampled_from(["exterieur", "gestionnaire", "id_user"]), odd_values, min_size=1
)
portaildf_faults = st.one_of(
    st.fixed_dictionaries({"fields": flag_changes}),
    st.fixed_dictionaries(
        {"drop": st.lists(st.sampled_from(["exterieur", "gestionnaire"]), min_size=1, unique=True)}
    ),
    st.fixed_dictionaries({"email": st.sampled_from(["upper", "padded", "longer"])}),
    st.fixed_dictionaries({"html": st.sampled_from([200, 502])}),
)


def apply_portaildf_fault(world: ZlvWorld, email: str, fault: dict[str, Any]) -> str | None:
    """Serve ``fault`` for ``email``; returns the email whose lookups now answer an HTML page, if any."""
    if "html" in fault:
        world.handle.change_state({"action": "html_for_email", "email": email, "status": fault["html"]})
        return normalise_email(email)
    if "email" in fault:
        stored = normalise_email(email)
        changed = {"upper": stored.upper(), "padded": f"  {stored} ", "longer": f"jo{stored}"}[fault["email"]]
        world.handle.change_state(
            {"action": "set_record_fields", "email": email, "fields": {"email": changed}}
        )
        return None
    world.handle.change_state({"action": "set_record_fields", "email": email, **fault})
    return None


@given(st.lists(st.tuples(st.integers(0, 10**6), portaildf_faults), min_size=1, max_size=5))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_portaildf_answers_through_the_user_kinds_sync(make_pg_url, faults) -> None:
    sandbox = PortailDfSandbox.from_sample(PORTAILDF_USERS, 3)
    sample = sandbox.sample
    assert sample is not None
    zlv_url = make_pg_url()
    seed_zlv(zlv_url, sample.users)
    active = [user for user in sample.users if user.deleted_at is None and user.email and user.email.strip()]
    with_records = {normalise_email(str(account["email"])) for account in sample.accounts}
    candidates = sorted(user.email for user in active if normalise_email(user.email) in with_records)
    with ThreadedSandbox(sandbox) as handle:
        world = ZlvWorld(handle, sample, zlv_url, "v2")
        html: set[str] = set()
        touched: set[str] = set()
        for index, fault in faults:
            email = candidates[index % len(candidates)]
            if normalise_email(email) in touched:
                continue  # one fault per email: a changed email would no longer find its records
            touched.add(normalise_email(email))
            page = apply_portaildf_fault(world, email, fault)
            if page:
                html.add(page)
        outcomes = expected_outcomes(sample.users, handle.state()["accounts"])
        result = world.run()
        kinds = world.kinds()

    failed_lookup = {user.id for user in active if normalise_email(user.email) in html}
    invalid = {user.id for user in active if outcomes[user.id] == INVALID and user.id not in failed_lookup}
    event(f"bad users: {len(failed_lookup) + len(invalid)}")
    summary = kinds_observation(result)
    # Bad answers are row errors: the run fails only when they are more than 10 % of its records.
    bad = len(failed_lookup) + len(invalid)
    assert result.success == (100 * bad <= 10 * summary["processed"]), failure_text(result)
    table = errors_table(result, "user_kinds")
    unusable = "| unusable in Portail DF's answer |"
    if bad <= PREVIEW_ROWS:
        assert all(f"| {user_id} {unusable} lookup failed" in table for user_id in failed_lookup), table
        # The reason names the record by its id_user, or says it has none.
        records = ("record", "a record without id_user")
        assert all(
            any(f"| {user_id} {unusable} {record}" in table for record in records) for user_id in invalid
        ), (invalid, table)
    if not result.success:
        assert f"{bad} record(s) unusable in Portail DF's answer" in failure_text(result)
    assert (summary["lookup_failed"], summary["invalid_answer"]) == (len(failed_lookup), len(invalid))
    # Good records still sync; bad ones keep their kind.
    synced = {user.id for user in active} - failed_lookup - invalid
    for user in sample.users:
        wanted = outcomes[user.id] if user.id in synced and outcomes[user.id] in KINDS else user.kind
        assert kinds[user.id] == wanted, (user.id, outcomes[user.id])


# -- Bakaláři answers through the pipeline --------------------------------------------------------------------------
BAKALARI_STUDENTS = 24
ODD_NAMES = [
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    'Robert\'); DROP TABLE "User";--',
    "Ďurica Šťastný 🙂",
    "  Mezerová Jana  ",
    "نور الهدى",
    "Z̷̧a̶l̵g̸o",
    "Tab\tName",
    "Line\nBreak",
    "\u200bZero Width",
]
odd_names = st.one_of(
    st.sampled_from(ODD_NAMES),
    huge_texts,
    # NUL is left out here: it is a known bug with a test of its own below.
    st.text(
        alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        min_size=1,
        max_size=40,
    ),
).filter(lambda name: name.strip())


def add_student(server: ThreadedSandbox, engine: sa.Engine, user_id: str, name: str, class_id: str) -> None:
    """A new student in Bakaláři, who has logged in to EduRPG (so EduRPG holds their token)."""
    server.change_state(
        {"action": "add_student", "user_id": user_id, "full_name": name, "class_id": class_id}
    )
    token = sandbox_tokens(server.state())[user_id]
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                'INSERT INTO "User" ("id", "email", "name", "role", "bakalariId", "bakalariToken", "updatedAt") '
                "VALUES (:id, :email, 'Nový žák', 'STUDENT', :bak, :token, now())"
            ),
            {"id": f"c-{user_id}", "email": f"{user_id}@bakalari.local", "bak": user_id, "token": token},
        )


def name_as_kept(name: str, abbrev: str) -> str:
    """What EduRPG keeps of a Bakaláři FullName: trimmed, without a trailing ", <class>"."""
    name = name.strip()
    suffix = f", {abbrev}"
    return name[: -len(suffix)].strip() if name.endswith(suffix) else name


@given(
    st.lists(odd_names, max_size=4),
    st.dictionaries(st.integers(0, BAKALARI_STUDENTS - 1), st.sampled_from(MALFORMED_ANSWERS), max_size=3),
    st.sets(st.integers(0, BAKALARI_STUDENTS - 1), max_size=2),
)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_odd_names_and_corrupt_answers_through_the_bakalari_sync(
    make_pg_url, names: list[str], corrupt: dict[int, str], revoked: set[int]
) -> None:
    school = generate_school(BAKALARI_STUDENTS, 9)
    edurpg_url = make_pg_url()
    engine = seed_edurpg(edurpg_url, school)
    revoked -= set(corrupt)
    new_students = [
        (f"UX{number:02d}", name, school.classes[number % len(school.classes)])
        for number, name in enumerate(names)
    ]
    assume(all(name_as_kept(name, cls.abbrev) for _, name, cls in new_students))
    with ThreadedSandbox(BakalariSandbox(school)) as server:
        added = {}
        for user_id, name, cls in new_students:
            add_student(server, engine, user_id, name, cls.id)
            added[user_id] = (name_as_kept(name, cls.abbrev), cls.id)
        for index, what in corrupt.items():
            server.change_state(
                {"action": "corrupt", "user_id": school.students[index].user_id, "what": what}
            )
        for index in revoked:
            server.change_state({"action": "revoke_refresh_token", "user_id": school.students[index].user_id})
        before = tokens(engine)
        result = run_sync(sync_resources(server.url, edurpg_url))
        state = server.state()

    assert result.success, failure_message(result)
    event(f"students added {len(added)}, corrupt {len(corrupt)}, logged out {len(revoked)}")
    metadata = observation(result)
    class_broken = {school.students[i].user_id for i, what in corrupt.items() if what != "subject_without_id"}
    rows_broken = {school.students[i].user_id for i, what in corrupt.items() if what == "subject_without_id"}
    logged_out = {school.students[i].user_id for i in revoked}
    assert metadata.get("skipped_malformed", 0) == len(class_broken) + len(rows_broken)
    assert metadata.get("skipped_needs_login", 0) == len(logged_out)
    for user_id in class_broken:
        assert f"| User:{user_id} | malformed |" in metadata["plan"]
    for user_id in rows_broken:
        assert (
            f"| Enrollment:{user_id}-(row 1) | malformed | subject row without a SubjectID"
            in metadata["plan"]
        )

    held = read_edurpg(engine)
    expected = {s.user_id: (s.full_name, s.class_id, s.subject_ids) for s in school.students}
    expected.update(
        {user_id: (name, cls, _subjects(state, user_id)) for user_id, (name, cls) in added.items()}
    )
    for user_id, (name, class_id, subjects) in expected.items():
        if user_id in class_broken | logged_out:
            assert user_id not in held.users  # left as EduRPG had it, no ref, nothing guessed
            continue
        assert held.users[user_id] == (name, "STUDENT", class_id, f"{user_id}@bakalari.local")
        enrolled = {subject for student, subject, _ in held.enrollments if student == user_id}
        assert enrolled == set(subjects[1:] if user_id in rows_broken else subjects)
    current = sandbox_tokens(state)
    stored = tokens(engine)
    for user_id in expected:
        assert stored[user_id] == (before[user_id] if user_id in logged_out else current[user_id])


def _subjects(state: dict[str, Any], user_id: str) -> list[str]:
    return next(student["subject_ids"] for student in state["students"] if student["id"] == user_id)


# -- known bugs: one bad record takes good ones down with it ---------------------------------------------------------
def missing_apart_from(
    engine: sa.Engine, school: SampleSchool, classes: set[str], students: set[str]
) -> list[str]:
    """Entities of ``school`` EduRPG does not hold as expected, leaving out the bad ones and their students."""
    held, expected = read_edurpg(engine), expected_edurpg(school)
    wrong = [
        f"Class:{key}"
        for key, value in expected.classes.items()
        if key not in classes and held.classes.get(key) != value
    ]
    wrong += [f"Subject:{key}" for key, value in expected.subjects.items() if held.subjects.get(key) != value]
    left_out = students | {s.user_id for s in school.students if s.class_id in classes}
    wrong += [
        f"User:{key}"
        for key, value in expected.users.items()
        if key not in left_out and held.users.get(key) != value
    ]
    return wrong


def report_text(result: dg.ExecuteInProcessResult) -> str:
    return observation(result)["plan"] + ("" if result.success else failure_message(result))


@pytest.fixture
def small_school(make_pg_url) -> Iterator[tuple[SampleSchool, str, ThreadedSandbox]]:
    school = generate_school(BAKALARI_STUDENTS, 9)
    edurpg_url = make_pg_url()
    seed_edurpg(edurpg_url, school)
    with ThreadedSandbox(BakalariSandbox(school)) as server:
        yield school, edurpg_url, server


def test_a_grade_too_big_for_edurpg_fails_only_its_class(small_school) -> None:
    school, edurpg_url, server = small_school
    bad = school.classes[0]
    server.change_state({"action": "rename_class", "class_id": bad.id, "abbrev": "12345678901.A"})
    result = run_sync(sync_resources(server.url, edurpg_url))
    assert missing_apart_from(engine_for(edurpg_url), school, {bad.id}, set()) == []
    assert f"Class:{bad.id}" in report_text(result)


def test_thousands_of_digits_in_a_class_abbreviation_do_not_crash_the_run(small_school) -> None:
    school, edurpg_url, server = small_school
    bad = school.classes[0]
    server.change_state({"action": "rename_class", "class_id": bad.id, "abbrev": "1" * 5000 + ".A"})
    result = run_sync(sync_resources(server.url, edurpg_url))
    assert result.success or "ValueError" not in failure_message(result)
    assert missing_apart_from(engine_for(edurpg_url), school, {bad.id}, set()) == []


def test_a_nul_in_a_name_fails_only_that_student(small_school) -> None:
    school, edurpg_url, server = small_school
    engine = engine_for(edurpg_url)
    add_student(server, engine, "UX00", "Nov\x00ák Jan", school.classes[1].id)
    result = run_sync(sync_resources(server.url, edurpg_url))
    assert missing_apart_from(engine, school, set(), {"UX00"}) == []
    # Reported, or written without the NUL.
    assert "User:UX00" in report_text(result) or read_edurpg(engine).users["UX00"][0] == "Novák Jan"


def test_an_html_page_for_one_student_is_a_row_error_everyone_else_written(small_school) -> None:
    """Not JSON for one account: a read failure, reported with the answer's kind, in a run that succeeds (one
    record among the school's classes, subjects, teachers, students and enrollments); the next run retries it."""
    school, edurpg_url, server = small_school
    bad = school.students[0]
    server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "html_page"})
    result = run_sync(sync_resources(server.url, edurpg_url))
    assert result.success, failure_message(result)
    table = errors_table(result, "bakalari_entities")
    assert f"User:{bad.user_id}" in table and "| unusable in Bakaláři's answer |" in table
    assert "text/html, not JSON" in table
    assert missing_apart_from(engine_for(edurpg_url), school, set(), {bad.user_id}) == []
    report = report_text(result)
    assert f"User:{bad.user_id}" in report and "text/html, not JSON" in report

    server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "none"})
    again = run_sync(sync_resources(server.url, edurpg_url))
    assert again.success, failure_message(again)
    assert missing_apart_from(engine_for(edurpg_url), school, set(), set()) == []
