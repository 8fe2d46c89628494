"""Record history of ``rt_user_custom_fields``: an RT user changed by a sync, that sync undone, its student then
skipped (no RT user), and a reviewed plan meeting a hand edit in RT: the history lists the four runs in order with
their ids, and what RT and the students table hold now; asked by student id, by RT user id, and from the shell."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from devkit.sandbox.rt import DEFAULT_TOKEN
from sync_pipelines import history as history_command
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.definitions import defs
from sync_pipelines.defs.operations.record_history import ask_about
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.sync.record_history import RecordHistory
from sync_pipelines_tests.rt.test_rt_sync import RtWorld, rt_world

pytestmark = pytest.mark.integration

SIZE = 40


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with rt_world(make_pg_url, monkeypatch, size=SIZE) as world:
        yield world


def history(record: str) -> RecordHistory:
    return ask_about(SYNCS, "rt", record, logging.getLogger("test"), SyncStateResource())


def set_rt_user(world: RtWorld, student_id: str, rt_user_id: int | None) -> None:
    engine = create_database_engine(world.students_url, "STUDENTS_DATABASE_URL")
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE students SET rt_user_id = :rt WHERE student_id = :id"),
            {"rt": rt_user_id, "id": student_id},
        )


def summary(result: Any) -> dict[str, Any]:
    events = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    return {k: v.value for k, v in events[-1].event_specific_data.asset_observation.metadata.items()}


def test_changed_undone_skipped_and_conflicting_in_order_with_the_live_values(
    world: RtWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    differing = world.differing()
    student = next(
        s
        for s in sorted(world.students, key=lambda s: s.student_id)
        if s.rt_user_id in differing and s.active
    )
    user = str(student.rt_user_id)
    initial = world.rt_values()[student.rt_user_id]

    synced = world.run()  # changes the user
    assert synced.success
    undone = defs.resolve_job_def("rt_user_sync_undo").execute_in_process(
        run_config={
            "ops": {"rt_user_custom_fields_undo": {"config": {"run_id": synced.run_id, "dry_run": False}}}
        },
        instance=world.instance,
        raise_on_error=False,
    )
    assert undone.success and world.rt_values()[student.rt_user_id] == initial
    set_rt_user(world, student.student_id, None)
    skipped = world.run()  # the student has no RT user: skipped
    assert skipped.success
    set_rt_user(world, student.student_id, student.rt_user_id)
    dry = world.run({"dry_run": True})
    assert dry.success
    answer = httpx.put(
        f"{world.rt.url}/REST/2.0/user/{user}",
        json={"CustomFields": {"Grade": "2040"}},
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    assert answer.status_code == 200
    applied = world.run({"apply_plan_id": dry.run_id})  # the hand edit meets the reviewed plan
    assert applied.success and summary(applied)["conflicts"] >= 1

    for asked in (student.student_id, user, f"rt:{user}", f"student:{student.student_id}"):
        shown = history(asked)
        assert set(shown.subject.keys) == {user, student.student_id}, asked
        runs = [(event.run_id, event.kind, event.status) for event in shown.events]
        order = list(dict.fromkeys(run_id for run_id, _, _ in runs))
        assert order == [synced.run_id, undone.run_id, skipped.run_id, dry.run_id, applied.run_id], asked
        kinds = {run_id: kind for run_id, kind, _ in runs}
        assert kinds[synced.run_id] == "sync"
        assert kinds[undone.run_id] == f"undo of run {synced.run_id}"
        assert kinds[skipped.run_id] == "sync"
        assert kinds[dry.run_id] == "dry run"
        assert kinds[applied.run_id] == f"apply of plan {dry.run_id}"
        statuses = {run_id: {s for r, _, s in runs if r == run_id} for run_id in order}
        assert statuses[synced.run_id] == statuses[undone.run_id] == {"applied"}
        assert statuses[skipped.run_id] == {"skipped"} and statuses[dry.run_id] == {"planned"}
        assert "conflict" in statuses[applied.run_id]
        skip = next(event for event in shown.events if event.run_id == skipped.run_id)
        assert (skip.key, skip.category) == (student.student_id, "no_rt_user")

        # Now, read live: RT holds the hand edit, the students table wants the grade; the conflict says why.
        grade = next(row for row in shown.fields if row.key == user and row.field == "Grade")
        assert (grade.held, grade.wanted) == ("2040", student.grade)
        assert grade.why.startswith(
            f"conflict in run {applied.run_id} (apply of plan {dry.run_id}): changed since"
        )
        student_id = next(row for row in shown.fields if row.key == user and row.field == "Student ID")
        assert student_id.held == student_id.wanted == student.student_id and student_id.why == "in step"
        # The last change: the apply's, where it wrote the user's other field, else the undo's.
        last = applied.run_id if "applied" in statuses[applied.run_id] else undone.run_id
        assert shown.last_change is not None and shown.last_change.run_id == last
        assert shown.undo_command is not None and f'"run_id": "{last}"' in shown.undo_command
        assert "-j rt_user_sync_undo" in shown.undo_command

    # The same answer from the shell.
    assert history_command.main(["rt", student.student_id]) == 0
    printed = capsys.readouterr().out
    for run_id in (synced.run_id, undone.run_id, skipped.run_id, dry.run_id, applied.run_id):
        assert run_id in printed
    assert "skipped (no_rt_user): student has no rt_user_id" in printed
    assert "| Grade | 2040 |" in printed


def test_the_shell_says_in_one_line_what_it_cannot_answer(world: RtWorld, capsys, monkeypatch) -> None:
    assert history_command.main(["nope", "1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "system: 'nope' is not a sync; ask about one of rt, bakalari, user_kinds (as named in SYNC_SYSTEMS)"
    )
    monkeypatch.delenv("RT_TOKEN")
    assert history_command.main(["rt", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("RT_TOKEN: is not set") and len(err.splitlines()) == 1
