"""``rt_user_sync`` against a real Request Tracker 5 (devkit/request_tracker.py), students on PostgreSQL.

One RT per module (a start costs ~2 s); each test creates its own RT users, so tests do not see each other's
writes. Requests are counted from RT's access log, values read back from RT's database. ``bcrypt_cost=4`` keeps a
request cheap (~10-25 ms instead of ~0.2-0.4 s): these tests are about what RT answers, not its pace.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import dagster as dg
import pytest
from hypothesis import strategies as st

from devkit.request_tracker import RequestTracker5, RequestTrackerMissing, UserField
from devkit.sandbox.databases import seed_students
from devkit.sandbox.sample_data import SampleStudent, generate_students
from sync_pipelines.definitions import defs
from sync_pipelines.defs.rt.desired import graduation_year
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.harness.audit_invariant import (
    Snapshot,
    SyncUnderTest,
    assert_audit_matches,
    check_every_run,
)
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.harness.row_errors import errors_table

pytestmark = pytest.mark.e2e

FIELDS = (
    "Grade",
    "Student ID",
    UserField("Legacy Grade", applied=False, description="exists, not applied to users"),
    UserField("Retired", disabled=True),
    UserField("Checked Grade", pattern=r"^([1-9]|1[0-2])$", description="refuses K"),
)
SIZE = 40
# The audit invariant's property test against real RT: interleavings tried, and steps in each.
REAL_RT_EXAMPLES, REAL_RT_STEPS = 4, 6


@dataclass
class RealRt:
    rt: RequestTracker5
    token: str
    no_rights_token: str
    see_only_token: str
    names: Iterator[int]


@pytest.fixture(scope="module")
def real_rt() -> Iterator[RealRt]:
    try:
        rt = RequestTracker5(workers=2, bcrypt_cost=4)
    except RequestTrackerMissing as exc:
        pytest.skip(str(exc))
    rt.start()
    try:
        rt.create_user_fields(*FIELDS)
        yield RealRt(
            rt,
            rt.create_token("sync-bot"),
            rt.create_token("no-rights", rights=()),
            rt.create_token("see-only", rights=("AdminUsers", "SeeCustomField")),
            itertools.count(1),
        )
    finally:
        rt.stop()


@dataclass
class World:
    rt: RequestTracker5
    students: list[SampleStudent]
    students_url: str
    instance: dg.DagsterInstance
    mark: int = 0

    @property
    def ids(self) -> list[int]:
        return [s.rt_user_id for s in self.students if s.rt_user_id is not None]

    def run(self, config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        self.mark = len(self.rt.access_log_entries())
        job = defs.resolve_job_def("rt_user_sync")
        run_config = {"ops": {"rt_user_custom_fields": {"config": config}}} if config else None
        return job.execute_in_process(run_config=run_config, instance=self.instance, raise_on_error=False)

    def undo(self, run_id: str, dry_run: bool) -> dg.ExecuteInProcessResult:
        job = defs.resolve_job_def("rt_user_sync_undo")
        run_config = {
            "ops": {"rt_user_custom_fields_undo": {"config": {"run_id": run_id, "dry_run": dry_run}}}
        }
        return job.execute_in_process(run_config=run_config, instance=self.instance, raise_on_error=False)

    def audit(self, run_id: str) -> list[dict[str, Any]]:
        state = SyncStateStore.from_url(os.environ["SYNC_STATE_DATABASE_URL"])
        return state.audit.rows("rt_user_custom_fields", run_id=run_id)

    def snapshot(self) -> Snapshot:
        """Every custom field RT holds for the students' users, keyed as the audit keys them."""
        return {str(key): fields for key, fields in self.values().items()}

    def requests(self) -> list[tuple[str, str, int]]:
        """What RT answered since the last run began: (method, path, status)."""
        return [(e.method, e.path, e.status) for e in self.rt.access_log_entries()[self.mark :]]

    def puts(self) -> list[int]:
        return sorted(int(path.rsplit("/", 1)[1]) for method, path, _ in self.requests() if method == "PUT")

    def values(self) -> dict[int, dict[str, str]]:
        return self.rt.user_fields(self.ids)

    def expected(self, grade=lambda s: s.grade) -> dict[int, dict[str, str]]:
        return {
            s.rt_user_id: {"Grade": grade(s), "Student ID": s.student_id}
            for s in self.students
            if s.rt_user_id is not None
        }

    def differing(self) -> set[int]:
        values = self.values()
        return {key for key, want in self.expected().items() if {k: values[key].get(k) for k in want} != want}

    def reseed(self, students: list[SampleStudent]) -> None:
        self.students = students
        seed_students(self.students_url, students, schema="django")

    def set_value(self, user_id: int, field: str, value: str) -> None:
        """A hand edit in RT."""
        self.rt.perl(
            "my $u = RT::User->new(RT->SystemUser); $u->Load($input->{id});"
            "my ($ok, $msg) = $u->AddCustomFieldValue(Field => $input->{field}, Value => $input->{value});"
            "fail($msg) unless $ok;",
            {"id": user_id, "field": field, "value": value},
        )


@pytest.fixture
def world(real_rt: RealRt, make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """SIZE students with fresh RT users: a third correct already, a third stale, a third empty."""
    batch = next(real_rt.names)
    sample = [s for s in generate_students(SIZE, seed=batch) if s.rt_user_id is not None]
    users = []
    for number, student in enumerate(sample):
        values = [
            {"Grade": student.grade, "Student ID": student.student_id},
            {"Grade": "12" if student.grade != "12" else "11", "Student ID": "old-" + student.student_id},
            {},
        ][number % 3]
        users.append((f"t{batch}-{student.student_id.lower()}", f"t{batch}-{number}@example.test", values))
    ids = real_rt.rt.create_users(users)
    students = [replace(s, rt_user_id=user_id) for s, user_id in zip(sample, ids, strict=True)]
    students_url = make_pg_url()
    seed_students(students_url, students, schema="django")
    for name, value in {
        "STUDENTS_DATABASE_URL": students_url,
        "RT_URL": real_rt.rt.url,
        "RT_TOKEN": real_rt.token,
        "SYNC_STATE_DATABASE_URL": make_pg_url(),
    }.items():
        monkeypatch.setenv(name, value)
    with instance_with_events_in_memory() as instance:
        yield World(real_rt.rt, students, students_url, instance)


def observation(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    events = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    return events[-1].event_specific_data.asset_observation.metadata  # type: ignore[union-attr]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    parts += [e.description or "" for e in result.get_asset_check_evaluations() if not e.passed]
    return "\n".join(parts)


def test_dry_run_writes_nothing(world: World) -> None:
    before = world.values()
    result = world.run({"dry_run": True})
    assert result.success
    assert world.puts() == []
    assert world.values() == before


def test_first_run_writes_the_differing_users_in_pages_and_a_rerun_nothing(world: World) -> None:
    differing = world.differing()
    assert 0 < len(differing) < len(world.ids)
    first = world.run()
    assert first.success, failure_text(first)
    assert world.puts() == sorted(differing)
    assert world.differing() == set()
    requests = world.requests()
    # Users are read in pages of 100, never one GET each; every answer was a 200.
    assert not [
        path for method, path, _ in requests if method == "GET" and path.startswith("/REST/2.0/user/")
    ]
    assert {status for *_, status in requests} == {200}

    rerun = world.run()
    assert rerun.success
    assert world.puts() == []
    assert not [r for r in world.requests() if r[0] == "GET" and r[1] == "/REST/2.0/users" and False]


def test_changed_students_are_exactly_the_puts(world: World) -> None:
    assert world.run().success
    changed = world.students[:3]
    new_grades = {s.student_id: ("1" if s.grade != "1" else "2") for s in changed}
    world.reseed([replace(s, grade=new_grades.get(s.student_id, s.grade)) for s in world.students])
    result = world.run()
    assert result.success, failure_text(result)
    assert world.puts() == sorted(s.rt_user_id for s in changed)
    assert world.differing() == set()


def test_drift_is_repaired_by_full_refresh(world: World) -> None:
    assert world.run().success
    drifted = world.ids[:2]
    world.set_value(drifted[0], "Grade", "99")
    world.set_value(drifted[1], "Student ID", "hand-edit")
    assert world.run().success
    assert world.puts() == []  # remembered values: the sync does not see the hand edits
    result = world.run({"full_refresh": True})
    assert result.success
    assert world.puts() == sorted(drifted)
    assert world.differing() == set()


def test_missing_field_fails_before_any_write(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_GRADE_FIELD", "Class")
    result = world.run()
    assert not result.success
    assert world.puts() == []
    assert "RT has no user custom field 'Class'" in failure_text(result)


def test_disabled_field_fails_before_any_write(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_GRADE_FIELD", "Retired")
    result = world.run()
    assert not result.success and world.puts() == []
    assert "'Retired' is disabled" in failure_text(result)


def test_field_not_applied_to_users_fails_before_any_write(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_GRADE_FIELD", "Legacy Grade")
    result = world.run()
    assert not result.success
    assert world.puts() == []
    assert "'Legacy Grade' exists but is not applied to users" in failure_text(result)


def test_wrong_token_stops_the_run(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TOKEN", "1-2-not-a-token")
    result = world.run()
    assert not result.success
    text = failure_text(result)
    assert "RT refused the credentials" in text and "RT_TOKEN" in text
    assert world.puts() == []
    assert {status for *_, status in world.requests()} == {401}


def test_token_without_rights_names_the_right(
    world: World, real_rt: RealRt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_TOKEN", real_rt.no_rights_token)
    result = world.run()
    assert not result.success
    assert world.puts() == []
    text = failure_text(result)
    assert "SeeCustomField" in text and "ModifyCustomField" in text


def test_token_that_may_see_but_not_modify_fails_each_user_with_rts_words(
    world: World, real_rt: RealRt, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = world.values()
    monkeypatch.setenv("RT_TOKEN", real_rt.see_only_token)
    result = world.run()
    assert not result.success
    assert "Permission Denied" in failure_text(result)
    assert world.values() == before
    # Nothing was counted as written: with the right token the next run writes every differing user.
    monkeypatch.setenv("RT_TOKEN", real_rt.token)
    assert world.run().success
    assert world.differing() == set()


def test_graduation_year(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_GRADE_VALUE", "graduation_year")
    assert world.run().success
    expected = world.expected(lambda s: str(graduation_year(s.grade, date.today())))
    values = world.values()
    assert {key: {k: values[key].get(k) for k in want} for key, want in expected.items()} == expected


def test_bad_users_and_refused_values_fail_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown user, a disabled user and values a field's pattern refuses fail with RT's words, as row errors
    (here allowed up to every record, so the run succeeds whatever their share); the rest is written."""
    monkeypatch.setenv("RT_GRADE_FIELD", "Checked Grade")  # refuses "K"
    unknown, disabled = 999_999, world.ids[1]
    world.rt.perl(
        "my $u = RT::User->new(RT->SystemUser); $u->Load($input->{id}); my ($ok, $m) = $u->SetDisabled(1);",
        {"id": disabled},
    )
    students = list(world.students)
    students[0] = replace(students[0], rt_user_id=unknown)
    kindergarten = [s for s in students[2:] if s.rt_user_id is not None and s.grade == "K"]
    if not kindergarten:
        students[2] = replace(students[2], grade="K")
        kindergarten = [students[2]]
    world.reseed(students)
    monkeypatch.setenv("SYNC_MAX_RECORD_ERRORS_PERCENT", "100")
    result = world.run({"full_refresh": True})
    assert result.success, failure_text(result)
    text = errors_table(result, "rt_user_custom_fields")
    assert f"RT has no user {unknown}" in text
    assert f"RT user {disabled} is disabled" in text
    assert "Input must match ^([1-9]\\|1[0-2])$" in text  # a table cell: its "|" escaped
    assert disabled not in world.puts() and unknown not in world.puts()
    values = world.rt.user_fields(s.rt_user_id for s in students if s.rt_user_id not in (unknown,))
    for student in students:
        if student.rt_user_id in (unknown, disabled) or student.rt_user_id is None:
            continue
        held = values[student.rt_user_id]
        if student.grade == "K":
            assert "Checked Grade" not in held  # refused
        else:
            assert held.get("Checked Grade") == student.grade
        assert held.get("Student ID") == student.student_id  # the other field of the same PUT is written


def test_a_reviewed_plan_leaves_a_hand_edit_of_another_field_alone(world: World) -> None:
    """A student's grade 2 -> 12 is reviewed; someone sets the user's Student ID in RT; the plan is applied: RT
    keeps the hand edit, the Grade write is audited, and its undo restores the grade alone."""
    student = world.students[0]
    user, key = student.rt_user_id, str(student.rt_user_id)
    world.reseed([replace(s, grade="2") if s == student else s for s in world.students])
    assert world.run().success
    world.reseed([replace(s, grade="12") if s.rt_user_id == user else s for s in world.students])
    dry = world.run({"dry_run": True})
    assert dry.success
    plan = {name: value.value for name, value in observation(dry).items()}
    assert plan["planned_field_changes"] == 1
    world.set_value(user, "Student ID", "HAND-EDIT")

    before = world.snapshot()
    applied = world.run({"apply_plan_id": plan["plan_id"]})
    assert applied.success, failure_text(applied)
    after = world.snapshot()
    assert (after[key]["Grade"], after[key]["Student ID"]) == ("12", "HAND-EDIT")
    rows = world.audit(applied.run_id)
    assert [(r["record_key"], r["field"], r["old_value"], r["new_value"], r["status"]) for r in rows] == [
        (key, "Grade", "2", "12", "applied")
    ]
    assert_audit_matches(before, after, rows)

    undone = world.undo(applied.run_id, dry_run=False)
    assert undone.success
    held = world.values()[user]
    assert (held["Grade"], held["Student ID"]) == ("2", "HAND-EDIT")


def test_every_change_real_rt_holds_is_an_audited_applied_row(world: World) -> None:
    """The audit invariant's property test, against a real RT 5: random interleavings of dry runs, hand edits in
    RT (the sync's fields and another), changed grades, plain runs, applied plans, undos and undos of undos; after
    every run, the fields RT changed are exactly the run's audited ``applied`` rows."""
    users = world.ids[:2]  # few users, so that edits, changed students and plans often meet on one user

    def edit(user: int, field: str, value: str) -> Callable[[], None]:
        return lambda: world.set_value(user, field, value)

    def move(user: int, grade: str) -> Callable[[], None]:
        return lambda: world.reseed(
            [replace(s, grade=grade) if s.rt_user_id == user else s for s in world.students]
        )

    sync = SyncUnderTest(
        run=world.run,
        undo=world.undo,
        snapshot=world.snapshot,
        audit=world.audit,
        edits=st.one_of(
            st.builds(
                edit,
                st.sampled_from(users),
                st.sampled_from(["Grade", "Student ID"]),
                st.sampled_from(["2", "11", "12", "HAND-EDIT"]),
            ),
            # A field the sync does not write (its pattern refuses all but 1-12).
            st.builds(
                edit, st.sampled_from(users), st.just("Checked Grade"), st.sampled_from(["2", "11", "12"])
            ),
        ),
        source_changes=st.builds(move, st.sampled_from(users), st.sampled_from(["K", "2", "11", "12"])),
    )
    check_every_run(sync, examples=REAL_RT_EXAMPLES, steps=REAL_RT_STEPS)
    assert sync.steps


def warnings_of(world: World, result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        entry.user_message
        for entry in world.instance.all_logs(result.run_id)
        if entry.level >= 30 and entry.user_message  # logging.WARNING
    ]


def _level_field(world: World, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A free-form field the sync writes grades to (RT_GRADE_FIELD), created for one test."""
    world.rt.create_user_fields(name)
    monkeypatch.setenv("RT_GRADE_FIELD", name)


GRADE_LIST = ("K", *(str(grade) for grade in range(1, 13)))


def test_a_select_holding_another_case_converges(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grades written to a free-form field, the kindergarten ones then set to ``k`` by hand, and the field turned
    into a Select listing ``K``: RT counts ``k`` as ``K`` (a PUT of ``K`` would change nothing), so the sync sends
    no PUT for them, reports nothing wrong about them, and RT keeps its ``k``."""
    name = f"Level {world.ids[0]}"
    _level_field(world, monkeypatch, name)
    students = [replace(s, grade="K") if n % 4 == 0 else s for n, s in enumerate(world.students)]
    world.reseed(students)
    assert world.run().success
    kindergarten = [s.rt_user_id for s in students if s.grade == "K" and s.rt_user_id is not None]
    assert kindergarten
    for user in kindergarten:
        world.set_value(user, name, "k")
    world.rt.change_user_field(name, type="Select", values=GRADE_LIST)

    for config in ({"full_refresh": True}, None):
        result = world.run(config)
        assert result.success, failure_text(result)
        assert world.puts() == []
        assert not [w for w in warnings_of(world, result) if name in w or "did not confirm" in w]
    held = world.rt.user_fields(kindergarten)
    assert {held[user][name] for user in kindergarten} == {"k"}


def test_a_value_a_select_does_not_list_is_reported_once_and_not_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Select listing K..11 and students in grade 12: their grade is never sent, one warning per run names the
    field, the value and how many users, and everything else (their Student ID too) is written."""
    name = f"Level {world.ids[0]}"
    world.rt.create_user_fields(UserField(name, type="Select", values=GRADE_LIST[:-1]))
    monkeypatch.setenv("RT_GRADE_FIELD", name)
    students = [replace(s, grade="12") if n % 3 == 0 else s for n, s in enumerate(world.students)]
    world.reseed(students)
    twelfth = {s.rt_user_id for s in students if s.grade == "12"}

    first = world.run()
    assert first.success, failure_text(first)
    said = [w for w in warnings_of(world, first) if name in w]
    assert len(said) == 1, said
    assert "'12'" in said[0] and f"{len(twelfth)} user" in said[0] and "not sent" in said[0]
    values = world.values()
    for student in students:
        held = values[student.rt_user_id]
        assert held.get("Student ID") == student.student_id
        assert held.get(name) == (None if student.grade == "12" else student.grade)

    for config in (None, {"full_refresh": True}):
        rerun = world.run(config)
        assert rerun.success, failure_text(rerun)
        assert world.puts() == []
        assert len([w for w in warnings_of(world, rerun) if name in w]) == 1
