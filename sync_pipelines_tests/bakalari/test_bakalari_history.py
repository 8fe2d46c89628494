"""Record history of ``bakalari_entities``: a student moved to another class and renamed shows the class change
old -> new (with the classes' names) and the name change as personal data, not shown; asking reads the student's
account as a run does, the rotated token stored."""

from __future__ import annotations

import logging

import pytest

from devkit.sandbox.bakalari import OPERATOR_PASSWORD, OPERATOR_USERNAME, BakalariSandbox, SampleSchool
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.defs.operations.record_history import ask_about
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.sync.disclosure import PERSONAL_CHANGE
from sync_pipelines_tests.bakalari.helpers import (
    engine_for,
    rows,
    run_sync,
    stored_tokens_match,
    sync_resources,
)

pytestmark = pytest.mark.integration


def test_a_class_change_shows_old_and_new_and_a_name_change_stays_personal(
    school: SampleSchool, bakalari: ThreadedSandbox, edurpg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "BAKALARI_URL": bakalari.url,
        "BAKALARI_USERNAME": OPERATOR_USERNAME,
        "BAKALARI_PASSWORD": OPERATOR_PASSWORD,
        "EDURPG_DATABASE_URL": edurpg_url,
    }.items():
        monkeypatch.setenv(name, value)
    resources = sync_resources(bakalari.url, edurpg_url)
    student = school.students[0]
    old_class = school.class_by_id(student.class_id)
    new_class = next(cls for cls in school.classes if cls.id != student.class_id and cls.abbrev[0].isdigit())
    old_name, new_name = student.full_name, "Nováková Přejmenovaná"

    first = run_sync(resources)
    assert first.success
    bakalari.change_state({"action": "move_student", "user_id": student.user_id, "class_id": new_class.id})
    sandbox = bakalari.sandbox
    assert isinstance(sandbox, BakalariSandbox)
    next(s for s in sandbox.school.students if s.user_id == student.user_id).full_name = new_name
    second = run_sync(resources)
    assert second.success

    engine = engine_for(edurpg_url)
    [row] = rows(engine, "User", f"WHERE \"bakalariId\" = '{student.user_id}'")
    log = logging.getLogger("test")
    for asked in (student.user_id, row["id"]):
        answer = ask_about(SYNCS, "bakalari", asked, log, SyncStateResource())
        assert answer.subject.keys == (f"User:{student.user_id}",)
        changes = [e for e in answer.events if e.run_id == second.run_id and e.status == "applied"]
        by_field = {event.field: event for event in changes}
        assert {"classId", "name"} <= set(by_field)
        table = answer.events_table()
        class_change = by_field["classId"]
        assert answer.change(class_change) == (
            f"{class_change.old} ({old_class.abbrev}) -> {class_change.new} ({new_class.abbrev})"
        )
        assert answer.change(by_field["name"]) == PERSONAL_CHANGE
        assert f"| name | {PERSONAL_CHANGE} | applied |" in table
        shown = answer.markdown()
        for name in (old_name, new_name):
            assert name not in shown
        # Now: EduRPG holds what Bakaláři wants; the name is shown as personal data.
        now = {r.field: r for r in answer.fields}
        assert now["classId"].why == now["name"].why == "in step"
        assert f"{now['classId'].held} ({new_class.abbrev})" in answer.now_table()
        assert (
            "| name | (personal data, not shown) | (personal data, not shown) | in step |"
            in answer.now_table()
        )
        assert answer.last_change is not None and answer.last_change.run_id == second.run_id
    # Reading the student's account rotated the token; EduRPG holds the one Bakaláři accepts now.
    assert stored_tokens_match(engine, bakalari.state())
