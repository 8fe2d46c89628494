"""The shared sync engine: plans, dry runs, batches, the audit log and the last-written state."""

from __future__ import annotations

import asyncio
import json

import pytest

from sync_pipelines.core.errors import AuthenticationError, ConfigurationError
from sync_pipelines.defs.shared.run_report import plan_metadata
from sync_pipelines.sync import Action, SyncStateStore, apply_plan, plan_changes
from sync_pipelines.sync.config import SyncRunConfig
from sync_pipelines.sync.plan import Skip, values_equal
from sync_pipelines.sync.report import changes_table
from sync_pipelines.sync.run import execute
from sync_pipelines.sync.shards import SHARD_KEYS
from sync_pipelines.sync.source import Current, Desired, RunScope, SyncSource

pytestmark = pytest.mark.integration

DESIRED = {
    "1": {"Grade": "9", "Student ID": "S1"},
    "2": {"Grade": "10", "Student ID": "S2"},
    "3": {"Grade": "K", "Student ID": "S3"},
}


def test_plan_classifies_every_record() -> None:
    current = {"1": {"Grade": "9", "Student ID": "S1"}, "2": {"Grade": "9", "Student ID": "S2"}}
    plan = plan_changes("rt", DESIRED, current, [Skip("4", "no_rt_user", "student has no rt_user_id")])
    by_key = {record.key: record for record in plan.records}
    assert by_key["1"].action is Action.UNCHANGED
    assert by_key["2"].action is Action.UPDATE
    assert [(c.field, c.old, c.new) for c in by_key["2"].changes] == [("Grade", "9", "10")]
    assert by_key["3"].action is Action.CREATE
    assert by_key["4"].action is Action.SKIP and by_key["4"].reason == "student has no rt_user_id"
    assert plan.counts() == {"create": 1, "update": 1, "unchanged": 1, "skip": 1}
    assert plan.skip_counts() == {"no_rt_user": 1}
    assert [r.key for r in plan.to_write] == ["2", "3"]


def test_plan_only_compares_fields_it_owns() -> None:
    plan = plan_changes("t", {"1": {"a": 1}}, {"1": {"a": 1, "b": "someone else's"}})
    assert plan.records[0].action is Action.UNCHANGED


def test_values_equal_treats_text_and_numbers_alike() -> None:
    assert values_equal(9, "9")
    assert not values_equal(None, "")
    assert not values_equal(True, "True")
    assert not values_equal(["a"], "a")


def test_plan_metadata_shows_the_exact_changes() -> None:
    plan = plan_changes("rt", DESIRED, {"2": {"Grade": "9", "Student ID": "S2"}})
    table = changes_table(plan)
    assert "| 2 | update | Grade | 9 -> 10 |" in table
    assert "| 1 | create | Grade | ∅ -> 9 |" in table
    metadata = plan_metadata(plan, dry_run=True)
    assert metadata["planned_updates"].value == 1 and metadata["planned_creates"].value == 2


def test_a_skip_reason_is_shown_whole_in_the_plan_table() -> None:
    reason = (
        "the Portail DF account's email matches 3 ZLV users (2 record(s) for other emails containing it); "
        "check ZLV_EMAIL_COLUMN"
    )
    plan = plan_changes("rt", {}, {}, skips=[Skip("7", "ambiguous", reason)])
    assert f"| 7 | ambiguous | {reason} |" in changes_table(plan)


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path) -> SyncStateStore:
    if request.param == "sqlite":
        return SyncStateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    return SyncStateStore.from_url(request.getfixturevalue("pg_url"))


class FakeTarget:
    """A target held in a dict; a key listed in ``refuse`` fails."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:
        self.data: dict[str, dict] = {}
        self.refuse = set(refuse)
        self.batches: list[list[str]] = []

    def write(self, records):
        self.batches.append([r.key for r in records])
        failures = {}
        for record in records:
            if record.key in self.refuse:
                failures[record.key] = "refused by the target"
            else:
                self.data.setdefault(record.key, {}).update(record.desired)
        return failures


def run(plan, target, state, **kwargs):
    return asyncio.run(
        apply_plan(
            plan,
            target.write,
            state=state,
            run_id=kwargs.pop("run_id", "run-1"),
            batch_size=kwargs.pop("batch_size", 2),
            **kwargs,
        )
    )


def test_apply_writes_in_batches_and_audits_each_change(state: SyncStateStore) -> None:
    target = FakeTarget()
    plan = plan_changes("rt", DESIRED, {})
    result = run(plan, target, state, remember_written=True)
    assert target.batches == [["1", "2"], ["3"]]
    assert result.written == 3 and result.failed == 0 and result.field_changes == 6
    audit = state.audit.rows("rt")
    assert len(audit) == 6
    assert {row["status"] for row in audit} == {"applied"}
    assert {(row["record_key"], row["field"], row["new_value"]) for row in audit} == {
        (key, field, value) for key, fields in DESIRED.items() for field, value in fields.items()
    }
    assert state.last_written.read("rt") == DESIRED


def test_second_apply_of_the_same_state_changes_nothing(state: SyncStateStore) -> None:
    target = FakeTarget()
    run(plan_changes("rt", DESIRED, {}), target, state, remember_written=True)
    second = plan_changes("rt", DESIRED, state.last_written.read("rt"))
    assert second.to_write == []
    result = run(second, target, state, run_id="run-2", remember_written=True)
    assert result.written == 0 and target.batches == [["1", "2"], ["3"]]
    assert state.audit.rows("rt", run_id="run-2") == []


class DictSource(SyncSource):
    """A source over ``FakeTarget``: desired values given, current values read from the target's dict."""

    target = "rt"
    remembers_written = True

    def __init__(self, desired, target: FakeTarget, skips=(), unreadable=()) -> None:
        self.desired = desired
        self.fake = target
        self.skips = list(skips)
        self.unreadable = set(unreadable)
        self.events: list[str] = []

    async def read_desired(self, scope):
        return Desired(dict(self.desired), list(self.skips))

    async def read_current(self, keys):
        failures = {key: "RT answered HTTP 500" for key in keys if key in self.unreadable}
        return Current({key: self.fake.data.get(key) for key in keys if key not in failures}, failures)

    def write(self, batch):
        return self.fake.write(batch)

    async def started(self, scope):
        self.events.append("started")

    async def applied(self, scope, outcome):
        self.events.append("applied")


def scope(dry_run: bool, run_id: str = "run-1") -> RunScope:
    import logging

    return RunScope(run_id, frozenset(SHARD_KEYS), SyncRunConfig(dry_run=dry_run), logging.getLogger("test"))


def test_dry_run_after_a_killed_run_shows_the_settlement_and_writes_nothing(state: SyncStateStore) -> None:
    target = FakeTarget()
    killed = plan_changes("rt", DESIRED, {})
    state.write_ahead.begin("killed-run", "rt", killed.to_write)
    target.data["1"] = dict(DESIRED["1"])  # the killed run wrote record 1 only
    source = DictSource(DESIRED, target)
    outcome = asyncio.run(execute(source, state, scope(dry_run=True)))
    assert outcome.result is None and len(outcome.plan.to_write) == 2
    assert outcome.settlement.counts() == {"applied": 2, "not_applied": 4}
    # Nothing reached the target or the state: the batch is still in flight, nothing audited or remembered.
    assert target.batches == [] and source.events == []
    assert state.audit.rows() == [] and state.last_written.read("rt") == {}
    assert set(state.settlement.pending("rt")) == {"1", "2", "3"}
    assert "| 1 | Grade | 9 | applied |" in changes_table(outcome.plan, settlement=outcome.settlement)

    real = asyncio.run(execute(source, state, scope(dry_run=False, run_id="run-2")))
    assert real.result is not None and real.result.written == 2 and source.events == ["started", "applied"]
    assert state.settlement.pending("rt") == {} and state.last_written.read("rt") == DESIRED
    assert {(r["run_id"], r["status"]) for r in state.audit.rows("rt")} == {
        ("killed-run", "applied"),
        ("killed-run", "not_applied"),
        ("run-2", "applied"),
    }


def test_settling_leaves_changes_of_records_not_read_in_flight(state: SyncStateStore) -> None:
    state.write_ahead.begin("killed-run", "rt", plan_changes("rt", DESIRED, {}).to_write)
    # Record 2 could not be read: its changes are neither applied nor guessed not applied.
    current = {"1": dict(DESIRED["1"]), "3": None}
    outcome = state.settlement.settle(state.settlement.judge("rt", current), remember_written=True)
    assert outcome == {"applied": 2, "not_applied": 2}
    assert state.settlement.pending("rt") == {"2": DESIRED["2"]}
    assert {r["record_key"] for r in state.audit.rows("rt")} == {"1", "3"}


def test_failed_records_are_audited_and_not_remembered(state: SyncStateStore) -> None:
    target = FakeTarget(refuse={"2"})
    result = run(plan_changes("rt", DESIRED, {}), target, state, remember_written=True)
    assert result.failures == {"2": "refused by the target"}
    assert set(state.last_written.read("rt")) == {"1", "3"}
    failed = [row for row in state.audit.rows("rt") if row["status"] == "failed"]
    assert {row["record_key"] for row in failed} == {"2"} and failed[0]["error"] == "refused by the target"
    # The next run sees record 2 as still different and retries it.
    retry = plan_changes(
        "rt", DESIRED, {**state.last_written.read("rt"), "2": {"Grade": None, "Student ID": None}}
    )
    assert [record.key for record in retry.to_write] == ["2"]


def test_a_batch_that_raises_is_retried_record_by_record(state: SyncStateStore) -> None:
    calls = []

    def writer(records):
        calls.append([r.key for r in records])
        if "1" in calls[-1]:
            raise RuntimeError("deadlock detected")
        return {}

    result = asyncio.run(
        apply_plan(
            plan_changes("rt", DESIRED, {}),
            writer,
            state=state,
            run_id="r",
            batch_size=2,
            remember_written=True,
        )
    )
    # The batch [1, 2] rolled back; written alone, record 2 goes through and only record 1 fails.
    assert calls == [["1", "2"], ["1"], ["2"], ["3"]]
    assert result.failures == {"1": "rolled back: RuntimeError: deadlock detected"}
    assert set(state.last_written.read("rt")) == {"2", "3"}
    statuses = {(row["record_key"], row["status"]) for row in state.audit.rows("rt")}
    assert ("1", "failed") in statuses and ("2", "applied") in statuses


def test_failure_reasons_keep_only_the_first_line_of_a_database_error(state: SyncStateStore) -> None:
    import sqlalchemy as sa

    def writer(records):
        raise sa.exc.IntegrityError(
            "INSERT INTO users ... VALUES (%(name)s)",
            {"name": "Jana Nováková"},
            Exception("duplicate key\nDETAIL: x"),
        )

    result = asyncio.run(
        apply_plan(plan_changes("rt", {"1": {"a": 1}}, {}), writer, state=state, run_id="r", batch_size=5)
    )
    assert result.failures == {"1": "rolled back: Exception: duplicate key"}
    assert "Nováková" not in json.dumps(state.audit.rows("rt"), default=str)


def test_pending_rows_of_a_killed_run_are_settled_by_what_the_target_holds(state: SyncStateStore) -> None:
    plan = plan_changes("rt", DESIRED, {})
    # A run logged its batch, wrote record 1 only, and was killed before settling.
    state.write_ahead.begin("killed-run", "rt", plan.to_write)
    current = {"1": dict(DESIRED["1"]), "2": {"Grade": None}, "3": None}
    assert set(state.settlement.pending("rt")) == {"1", "2", "3"}
    outcome = state.settlement.settle(state.settlement.judge("rt", current), remember_written=True)
    assert outcome == {"applied": 2, "not_applied": 4}
    statuses = {(r["record_key"], r["status"]) for r in state.audit.rows("rt")}
    assert ("1", "applied") in statuses and ("2", "not_applied") in statuses
    assert state.settlement.pending("rt") == {}
    assert state.last_written.read("rt") == {"1": DESIRED["1"]}


def test_refused_credentials_stop_with_every_outcome_recorded_and_nothing_unsent_in_flight(
    state: SyncStateStore,
) -> None:
    """Batch 1 written, batch 2 refused half-way, batch 3 written ahead but never sent: batch 1 is audited,
    batch 2 stays in flight for the next run to settle, batch 3 leaves no trace."""
    desired = {str(n): {"a": n} for n in range(1, 6)}
    sent: list[list[str]] = []

    def writer(records):
        sent.append([r.key for r in records])
        if "3" in sent[-1]:
            raise AuthenticationError("RT", "RT_TOKEN", "HTTP 401 on /user/3")
        return {}

    with pytest.raises(AuthenticationError):
        asyncio.run(apply_plan(plan_changes("t", desired, {}), writer, state=state, run_id="r", batch_size=2))
    assert sent == [["1", "2"], ["3", "4"]]
    assert {(row["record_key"], row["status"]) for row in state.audit.rows("t")} == {
        ("1", "applied"),
        ("2", "applied"),
    }
    assert state.settlement.pending("t") == {"3": {"a": 3}, "4": {"a": 4}}


def test_batch_delay_is_applied_between_batches(state: SyncStateStore) -> None:
    import time

    started = time.monotonic()
    run(plan_changes("rt", DESIRED, {}), FakeTarget(), state, batch_size=1, batch_delay_seconds=0.2)
    assert time.monotonic() - started >= 0.4


def test_last_written_round_trips_awkward_values(state: SyncStateStore) -> None:
    awkward = {"k,1": {"name": 'a "quoted", {braced} \\ value', "n": 12, "none": None, "list": ["x", "y"]}}
    state.last_written.remember("t", "run-1", awkward)
    state.last_written.remember("t", "run-2", {"k,1": {"n": 13}})
    assert state.last_written.read("t") == {"k,1": {**awkward["k,1"], "n": 13}}


def scope_with(limit: int | None = None, shards=SHARD_KEYS) -> RunScope:
    import logging

    return RunScope("run-1", frozenset(shards), SyncRunConfig(limit=limit), logging.getLogger("test"))


def test_limit_holds_for_skipped_records_too(state: SyncStateStore) -> None:
    skips = [Skip(f"S{n:03d}", "no_rt_user", "student has no rt_user_id") for n in range(30)]
    source = DictSource(DESIRED, FakeTarget(), skips=skips)
    dry = RunScope("run-1", frozenset(SHARD_KEYS), SyncRunConfig(dry_run=True, limit=2), scope(True).log)
    outcome = asyncio.run(execute(source, state, dry))
    assert [r.key for r in outcome.plan.records if r.action is Action.SKIP] == ["S000", "S001"]


def test_each_record_is_counted_once_and_each_shard_carries_its_own_counts(state: SyncStateStore) -> None:
    import dagster as dg

    from sync_pipelines.defs.shared.run_report import RECORDS_CHECK, RUN_TOTALS, report
    from sync_pipelines.sync.shards import shard_of

    desired = {str(n): {"a": n} for n in range(1, 41)}
    source = DictSource(
        desired, FakeTarget(), skips=[Skip("S1", "no_rt_user", "no RT user")], unreadable={"7"}
    )
    run_scope = scope_with()
    outcome = asyncio.run(execute(source, state, run_scope))
    # One row error in 41 records: reported, and the run goes on (it is under SYNC_MAX_RECORD_ERRORS_PERCENT).
    *shards, summary, check = report(
        dg.AssetKey("t"), run_scope, source, outcome, run_scope.shards, check=True
    )
    assert {e.partition for e in shards} == set(SHARD_KEYS) - {shard_of("7")}
    # Only the run's last materialization, which the asset's Overview shows, carries the run's totals: first, under
    # the plain names, then that shard's own figures under names of their own.
    last = list(shards[-1].metadata)
    assert last[:5] == ["created", "updated", "failed", "unchanged", "skipped"]
    assert not any(name in RUN_TOTALS for event in shards[:-1] for name in event.metadata)
    assert shards[-1].metadata["failed"].value == 1
    assert shards[-1].metadata["created"].value == summary.metadata["created"].value
    totals: dict[str, int] = {}
    for event in shards:
        for name, value in event.metadata.items():
            if name.endswith("_in_shard"):
                totals[name] = totals.get(name, 0) + value.value
    # Every record of a healthy shard once; record 7 (unreadable) only as failed, and its shard not materialized.
    failed_shard = shard_of("7")
    created = sum(1 for key in desired if shard_of(key) != failed_shard)
    skipped = int(shard_of("S1") != failed_shard)
    assert totals == {
        "created_in_shard": created,
        "updated_in_shard": 0,
        "unchanged_in_shard": 0,
        "failed_in_shard": 0,
        "skipped_no_rt_user_in_shard": skipped,
    }
    assert summary.metadata["failed"].value == 1
    assert summary.metadata["skipped"].value == 1 and summary.metadata["skipped_read_failed"].value == 0
    # The warning check names the record by id, and says the target would not give it.
    assert isinstance(check, dg.AssetCheckResult) and check.check_name == RECORDS_CHECK
    assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
    assert "| 7 | could not be read from rt |" in check.metadata["errors"].value
    assert (
        check.description
        == "1 record error(s): 1 record(s) could not be read from rt; the next run retries them"
    )


def test_row_errors_past_the_threshold_fail_the_run_in_one_line(
    state: SyncStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from sync_pipelines.core.errors import TooManyRecordErrors
    from sync_pipelines.defs.shared.run_report import report

    desired = {str(n): {"a": n} for n in range(1, 11)}
    monkeypatch.setenv("SYNC_MAX_RECORD_ERRORS_PERCENT", "15")
    source = DictSource(desired, FakeTarget(), unreadable={"3", "7"})
    run_scope = scope_with()
    outcome = asyncio.run(execute(source, state, run_scope))
    events = []
    with pytest.raises(TooManyRecordErrors) as raised:
        for event in report(dg.AssetKey("t"), run_scope, source, outcome, run_scope.shards, check=True):
            events.append(event)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "rt: 2 record error(s) in 10 record(s) (20 %), more than SYNC_MAX_RECORD_ERRORS_PERCENT=15 allows: "
        "2 record(s) could not be read from rt; the next run retries them: 3: "
    )
    # Everything was recorded first: the healthy shards, the summary and the check.
    assert isinstance(events[-1], dg.AssetCheckResult) and not events[-1].passed
    assert sum(isinstance(event, dg.AssetMaterialization) for event in events) >= 8


@pytest.mark.parametrize("value", ["ten", "nan", "-1", "101"])
def test_a_bad_threshold_is_refused_naming_it_before_anything_is_read(
    value: str, state: SyncStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_MAX_RECORD_ERRORS_PERCENT", value)
    target = FakeTarget()
    with pytest.raises(ConfigurationError, match=r"^SYNC_MAX_RECORD_ERRORS_PERCENT: must be "):
        asyncio.run(execute(DictSource(DESIRED, target), state, scope_with()))
    assert target.batches == []
