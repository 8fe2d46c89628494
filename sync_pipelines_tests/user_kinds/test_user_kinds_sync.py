"""The ``user_kinds`` sync end to end: the Portail DF sandbox over HTTP, a real PostgreSQL ZLV database."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.portaildf import ADMIN_EMAIL, KINDS, NOT_FOUND, STRUCTURES_DISAGREE, normalise_email
from sync_pipelines.sync import SyncStateStore
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord
from sync_pipelines.sync.shards import SHARD_KEYS, shard_of
from sync_pipelines_tests.user_kinds.conftest import LOOKUP, ZlvWorld, make_world

pytestmark = pytest.mark.integration


def observation(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The run summary (or dry-run plan) the asset reports, as plain values."""
    events = [event for event in result.all_events if event.event_type_value == "ASSET_OBSERVATION"]
    assert len(events) == 1
    metadata = events[0].event_specific_data.asset_observation.metadata  # type: ignore[union-attr]
    return {name: value.value for name, value in metadata.items()}


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    failure = result.failure_data_for_node("user_kinds")
    assert failure is not None and failure.error is not None
    texts, error = [], failure.error
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return "\n".join(texts)


def expected_outcomes_in_scope(world: ZlvWorld) -> Counter[str]:
    active = set(world.active_ids())
    return Counter(outcome for user_id, outcome in world.sample.expected.items() if user_id in active)


def test_full_sync_writes_exactly_what_portaildf_says(world: ZlvWorld) -> None:
    before = world.kinds()
    result = world.run({"batch_size": 25})
    assert result.success, failure_text(result)
    after = world.kinds()
    assert after == world.expected_kinds()
    # Deleted users are out of scope by default: their kind is left as it was.
    for user_id in world.sample.cases["deleted"]:
        assert after[user_id] == before[user_id]
    # The four mapping cases, each present and written.
    for kind in KINDS:
        chosen = [u for u in world.sample.cases[kind] if u in set(world.active_ids())]
        assert chosen and all(after[user_id] == kind for user_id in chosen)
    # Not found and records that disagree: left unchanged and counted.
    for case in (NOT_FOUND, STRUCTURES_DISAGREE):
        left = [u for u, outcome in world.sample.expected.items() if outcome == case]
        assert left and all(after[user_id] == before[user_id] for user_id in left)
    changes = {u: k for u, k in world.sample.changes().items() if u in set(world.active_ids())}
    outcomes = expected_outcomes_in_scope(world)
    summary = observation(result)
    assert summary["updated"] == len(changes)
    assert summary["failed"] == 0
    assert summary["not_found"] == outcomes[NOT_FOUND]
    assert summary["structures_disagree"] == outcomes[STRUCTURES_DISAGREE]
    several = [u for u in world.sample.cases["several_structures"] if u in set(world.active_ids())]
    assert several and all(after[user_id] == world.sample.expected[user_id] for user_id in several)
    assert summary["several_structures"] == len(several)
    assert summary["processed"] == len(world.active_ids()) - sum(
        1 for u in world.sample.users if u.deleted_at is None and u.email is None
    )
    assert summary["unchanged"] == sum(outcomes[kind] for kind in KINDS) - len(changes)
    assert [
        summary["kind_prestataire"],
        summary["kind_gestionnaire"],
        summary["kind_both"],
        summary["kind_aucun"],
    ] == [outcomes[kind] for kind in KINDS]
    assert summary["lookup_seconds"] > 0 and summary["write_rows_per_second"] > 0
    # Only changed users were written, one set-based statement per batch of 25.
    assert world.updates() == (math.ceil(len(changes) / 25), len(changes))
    # One lookup per user with a non-blank email: no more, and every one of them through the API.
    assert world.handle.requests(LOOKUP) == outcomes.total() - outcomes["no_email"]
    # A materialization per shard, with numeric counts that add up to the run's.
    materializations = result.asset_materializations_for_node("user_kinds")
    assert sorted(m.partition for m in materializations) == SHARD_KEYS
    assert sum(m.metadata["updated_in_shard"].value for m in materializations) == len(changes)
    assert sum(m.metadata["processed_in_shard"].value for m in materializations) == summary["processed"]
    gestionnaires = sum(m.metadata["kind_gestionnaire_in_shard"].value for m in materializations)
    assert gestionnaires == outcomes["gestionnaire"]
    assert all(isinstance(m.metadata["not_found_in_shard"], dg.IntMetadataValue) for m in materializations)


def test_awkward_emails_are_found(world_v2: ZlvWorld) -> None:
    """Spaces, capitals, accents and '+' tags: URL-encoded and compared trimmed and case-insensitively."""
    users = [u for u in world_v2.sample.users if u.deleted_at is None and u.email]
    awkward = {
        "plus and unicode": [u for u in users if "zoë" in u.email and "+" in u.email],
        "spaces": [u for u in users if u.email != u.email.strip() and u.email.strip()],
        "capitals": [u for u in users if u.email != u.email.lower()],
        "plus": [u for u in users if "+" in u.email],
    }
    found = {
        shape: [u for u in chosen if world_v2.sample.expected[u.id] in KINDS]
        for shape, chosen in awkward.items()
    }
    assert all(found.values()), {shape: len(chosen) for shape, chosen in found.items()}
    assert world_v2.run().success
    after = world_v2.kinds()
    for chosen in found.values():
        assert all(after[u.id] == world_v2.sample.expected[u.id] for u in chosen)


def test_contained_and_near_miss_records_are_not_mistaken_for_the_user(world_v2: ZlvWorld) -> None:
    cases = world_v2.sample.cases
    assert cases["contained"] and cases["near_miss"]
    assert world_v2.run().success
    after = world_v2.kinds()
    for user_id in cases["contained"] + cases["near_miss"]:
        assert after[user_id] == world_v2.expected_kinds()[user_id]


@pytest.fixture
def structures_world(pg_url: str) -> Iterator[ZlvWorld]:
    """Portail DF answering pages of ``results`` alone (no ``count`` or ``next``), records as recorded answers
    carry them: ``structure`` as an id or an object, ``+01:00`` dates, keys the sync does not read."""
    yield from make_world(pg_url, "v1", page_shape="results_only")


def test_a_person_in_several_structures(structures_world: ZlvWorld) -> None:
    world = structures_world
    sample, active = world.sample, set(world.active_ids())
    agreeing = [u for u in sample.cases["several_structures"] if u in active]
    disagreeing = [u for u in sample.cases["duplicate"] if u in active]
    assert agreeing and disagreeing
    assert any(isinstance(a["structure"], dict) for a in world.sandbox.state_snapshot()["accounts"])
    before = world.kinds()

    preview = observation(world.run({"dry_run": True}))
    for user_id in disagreeing:
        ids = [
            a["id_user"] for a in sample.accounts if a["email"] == normalise_email(sample.user(user_id).email)
        ]
        line = next(line for line in preview["plan"].splitlines() if line.startswith(f"| {user_id} |"))
        assert "| structures_disagree |" in line and all(f"id_user {i} " in line for i in ids), line

    result = world.run()
    assert result.success, failure_text(result)
    after = world.kinds()
    assert after == world.expected_kinds()
    assert all(after[u] == sample.expected[u] and sample.expected[u] in KINDS for u in agreeing)
    assert all(after[u] == before[u] for u in disagreeing)
    summary = observation(result)
    assert summary["several_structures"] == len(agreeing)
    assert summary["structures_disagree"] == len(disagreeing)
    # Stored with surrounding spaces: asked for trimmed, its case kept.
    stored = [u.email for u in sample.users if u.id in active and u.email and u.email.strip()]
    assert any(email != email.strip() for email in stored)
    assert set(world.sandbox.emails_asked) == {email.strip() for email in stored}

    written = world.updates()
    rerun = world.run()
    assert rerun.success and world.updates() == written
    assert observation(rerun)["updated"] == 0


def test_second_run_writes_zero_rows(world: ZlvWorld) -> None:
    assert world.run().success
    written = world.updates()
    assert written[1] > 0
    second = world.run()
    assert second.success
    assert world.updates() == written
    summary = observation(second)
    assert summary["updated"] == 0 and summary["unchanged"] > 0


def test_dry_run_writes_zero_rows_and_shows_the_plan(world_v2: ZlvWorld) -> None:
    before = world_v2.kinds()
    result = world_v2.run({"dry_run": True})
    assert result.success
    assert world_v2.kinds() == before and world_v2.updates() == (0, 0)
    assert result.asset_materializations_for_node("user_kinds") == []
    plan = observation(result)
    changes = {u: k for u, k in world_v2.sample.changes().items() if u in set(world_v2.active_ids())}
    assert plan["dry_run"] is True and plan["planned_updates"] == len(changes)
    some_id, some_kind = next(iter(changes.items()))
    assert f"| {some_id} | update | kind |" in plan["plan"] and some_kind in plan["plan"]


def test_deleted_users_are_included_with_the_setting(world_v2: ZlvWorld) -> None:
    deleted_changes = [u for u in world_v2.sample.cases["deleted"] if u in world_v2.sample.changes()]
    assert deleted_changes
    assert world_v2.run(include_deleted=True).success
    assert world_v2.kinds() == world_v2.expected_kinds(include_deleted=True)


def test_limit_processes_the_first_users_by_id(world_v2: ZlvWorld) -> None:
    in_scope = sorted(u.id for u in world_v2.sample.users if u.deleted_at is None and u.email is not None)
    first = set(in_scope[:40])
    result = world_v2.run({"limit": 40})
    assert result.success
    assert observation(result)["processed"] == 40
    expected = {
        user_id: kind if user_id in first else world_v2.sample.user(user_id).kind
        for user_id, kind in world_v2.expected_kinds().items()
    }
    assert world_v2.kinds() == expected


def test_one_shard_writes_only_its_users(world_v2: ZlvWorld) -> None:
    result = world_v2.run_shard("shard-03")
    assert result.success
    assert [m.partition for m in result.asset_materializations_for_node("user_kinds")] == ["shard-03"]
    expected = {
        user_id: kind if shard_of(user_id) == "shard-03" else world_v2.sample.user(user_id).kind
        for user_id, kind in world_v2.expected_kinds().items()
    }
    assert world_v2.kinds() == expected
    assert world_v2.updates()[1] == sum(
        1 for u in world_v2.sample.changes() if shard_of(u) == "shard-03" and u in set(world_v2.active_ids())
    )


def test_pending_audit_rows_of_an_interrupted_run_are_settled(world_v2: ZlvWorld) -> None:
    state = SyncStateStore.from_url(None)
    user = world_v2.sample.users[0]
    record = PlannedRecord(
        user.id, Action.UPDATE, {"kind": "aucun"}, (FieldChange("kind", user.kind, "aucun"),)
    )
    state.write_ahead.begin("killed-run", "user_kinds", [record])
    assert state.settlement.pending("user_kinds")
    assert world_v2.run().success
    assert state.settlement.pending("user_kinds") == {}
    rows = [row for row in state.audit.rows("user_kinds") if row["run_id"] == "killed-run"]
    expected_status = "applied" if world_v2.kinds()[user.id] == "aucun" else "not_applied"
    assert [row["status"] for row in rows] == [expected_status]


def test_audit_log_records_every_write(world_v2: ZlvWorld) -> None:
    result = world_v2.run()
    assert result.success
    rows = SyncStateStore.from_url(None).audit.rows("user_kinds", run_id=result.run_id)
    changes = {u: k for u, k in world_v2.sample.changes().items() if u in set(world_v2.active_ids())}
    assert {row["record_key"]: row["new_value"] for row in rows} == changes
    assert {row["status"] for row in rows} == {"applied"}


def test_full_refresh_is_accepted_and_rewrites_nothing_unchanged(world_v2: ZlvWorld) -> None:
    assert world_v2.run().success
    written = world_v2.updates()
    result = world_v2.run({"full_refresh": True})
    assert result.success and world_v2.updates() == written


def test_kinds_written_by_hand_are_repaired(world_v2: ZlvWorld) -> None:
    assert world_v2.run().success
    target = next(u for u in world_v2.sample.cases["gestionnaire"] if u in set(world_v2.active_ids()))
    with world_v2.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE users SET kind = 'aucun' WHERE id = CAST(:id AS uuid)"), {"id": target}
        )
    result = world_v2.run()
    assert result.success and observation(result)["updated"] == 1
    assert world_v2.kinds()[target] == "gestionnaire"


def test_deleted_users_are_included_from_the_environment(
    world_v2: ZlvWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZLV_INCLUDE_DELETED_USERS", "true")
    assert world_v2.run().success
    assert world_v2.kinds() == world_v2.expected_kinds(include_deleted=True)
    monkeypatch.setenv("ZLV_INCLUDE_DELETED_USERS", "maybe")
    result = world_v2.run()
    assert not result.success
    assert "ZLV_INCLUDE_DELETED_USERS: must be true or false, got 'maybe'" in failure_text(result)


def _updated_at(world: ZlvWorld) -> dict[str, Any]:
    with world.engine.connect() as connection:
        return {str(i): t for i, t in connection.execute(sa.text("SELECT id, updated_at FROM users"))}


def _age_every_row(world: ZlvWorld) -> Any:
    with world.engine.begin() as connection:
        connection.execute(sa.text("UPDATE users SET updated_at = '2020-01-01T00:00:00Z'"))
    return next(iter(_updated_at(world).values()))


@pytest.mark.parametrize("stamp", [True, False])
def test_a_kind_write_sets_updated_at_as_zlv_does(world_v2: ZlvWorld, stamp: bool) -> None:
    """Written rows get ``updated_at = now()`` in the same statement (one UPDATE per batch still), dry runs and
    untouched rows keep theirs; with ``set_updated_at`` off nothing but ``kind`` moves. Undo writes stamp too."""
    old = _age_every_row(world_v2)
    counted = world_v2.updates()
    assert world_v2.run({"dry_run": True}, set_updated_at=stamp).success
    assert set(_updated_at(world_v2).values()) == {old}
    result = world_v2.run({"batch_size": 25}, set_updated_at=stamp)
    assert result.success, failure_text(result)
    assert world_v2.kinds() == world_v2.expected_kinds()
    written = {u for u in world_v2.sample.changes() if u in set(world_v2.active_ids())}
    stamps = _updated_at(world_v2)
    assert written and {u for u, t in stamps.items() if t != old} == (written if stamp else set())
    assert all(stamps[u] > old for u in written) if stamp else True
    statements, rows = world_v2.updates()
    assert (statements - counted[0], rows - counted[1]) == (math.ceil(len(written) / 25), len(written))
    if stamp:  # an undo is a kind write like any other: ZLV sees it as a change of the user
        from sync_pipelines_tests.user_kinds.test_user_kinds_plans_and_undo import undo

        old = _age_every_row(world_v2)
        assert undo(world_v2, result.run_id, dry_run=False).success
        stamps = _updated_at(world_v2)
        assert {u for u, t in stamps.items() if t != old} == written


def test_users_not_found_keep_their_kind_or_are_cleared_as_zlv_does(world_v2: ZlvWorld) -> None:
    """``keep`` (default, the seed's rule) leaves a user Portail DF does not find as they are; ``clear`` writes
    NULL, as ZLV's login hook does; the count of users not found is the same either way."""
    not_found = [u for u in world_v2.active_ids() if world_v2.sample.expected[u] == NOT_FOUND]
    had_kind = [u for u in not_found if world_v2.sample.user(u).kind is not None]
    assert had_kind
    kept = world_v2.run()
    assert kept.success and all(world_v2.kinds()[u] == world_v2.sample.user(u).kind for u in not_found)
    cleared = world_v2.run(kind_when_not_found="clear")
    assert cleared.success, failure_text(cleared)
    after = world_v2.kinds()
    assert all(after[u] is None for u in not_found)
    summary = observation(cleared)
    assert summary["updated"] == len(had_kind) and summary["not_found"] == observation(kept)["not_found"]
    assert world_v2.run(kind_when_not_found="sometimes").success is False


def test_the_users_table_is_zlvs_and_the_sync_leaves_its_neighbours_alone(world_v2: ZlvWorld) -> None:
    """The table the tests run on is shaped as ZLV's migrations leave it (checked here, so a harness change
    cannot quietly make it easier), and a sync changes nothing but ``kind`` and ``updated_at`` there."""
    users = sa.Table("users", sa.MetaData(), autoload_with=world_v2.engine)
    assert users.c.email.nullable is False and users.c.kind.nullable is True
    assert users.c.updated_at.nullable is False and users.c.password.nullable is True
    assert {"deleted_at", "suspended_at", "suspended_cause"} <= set(users.c.keys())
    inspector = sa.inspect(world_v2.engine)
    referring = {
        t
        for t in inspector.get_table_names()
        for fk in inspector.get_foreign_keys(t)
        if fk["referred_table"] == "users"
    }
    assert referring == {"auth_users", "users_establishments", "campaigns", "events", "notes"}
    columns = [c.name for c in users.c if c.name not in ("kind", "updated_at")]

    def everything_else() -> set[tuple]:
        with world_v2.engine.connect() as connection:
            rows = set(connection.execute(sa.select(*(users.c[c] for c in columns))).all())
            rows |= {("auth_users", *r) for r in connection.execute(sa.text("SELECT * FROM auth_users"))}
        return rows

    before = everything_else()
    with world_v2.engine.connect() as connection:
        admin = connection.execute(
            sa.text("SELECT id, password FROM users WHERE email = :e"), {"e": ADMIN_EMAIL}
        )
        assert [row.password for row in admin] == [""]
    assert world_v2.run().success
    assert everything_else() == before
    assert world_v2.kinds() == world_v2.expected_kinds()
    with world_v2.engine.begin() as connection:  # unique, and case-sensitively so, as ZLV's constraint is
        connection.execute(
            sa.text("UPDATE users SET email = upper(email) WHERE email = :e"), {"e": ADMIN_EMAIL}
        )
    with pytest.raises(sa.exc.IntegrityError), world_v2.engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO users (id, email) VALUES (gen_random_uuid(), upper(:e))"), {"e": ADMIN_EMAIL}
        )
