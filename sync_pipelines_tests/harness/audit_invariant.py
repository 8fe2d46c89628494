"""The audit matches the target: the fields a run changed are exactly its audited ``applied`` rows.

One checker for every sync and every kind of run (plain runs, reviewed plans, undos): a snapshot of the target
is taken before and after the run (``{record key: {field: value}}``, ``None`` for a record the target does not
hold), and compared with the run's rows in ``sync_audit``. A field that changed without an ``applied`` row is a
write nobody can undo; an ``applied`` row whose field did not change to its new value is an audit without a
write. A record the run created counts as written in every field it audited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sync_pipelines.sync.plan import Value, values_equal
from sync_pipelines.sync.state import APPLIED

Snapshot = Mapping[str, Mapping[str, Value] | None]


def _same(a: Value, b: Value) -> bool:
    blank = (None, "", [])
    return values_equal(None if a in blank else a, None if b in blank else b)


def changed_fields(before: Snapshot, after: Snapshot, ignored: Iterable[str] = ()) -> set[tuple[str, str]]:
    """``(record, field)`` for every field whose value differs between the snapshots (``ignored``: bookkeeping
    columns a write stamps, such as ``updatedAt``)."""
    skip = set(ignored)
    changed = set()
    for key in set(before) | set(after):
        old, new = before.get(key) or {}, after.get(key) or {}
        for field in (set(old) | set(new)) - skip:
            if not _same(old.get(field), new.get(field)):
                changed.add((key, field))
    return changed


def audit_mismatches(
    before: Snapshot, after: Snapshot, audit: Iterable[Mapping[str, Any]], ignored: Iterable[str] = ()
) -> list[str]:
    """What breaks the invariant between one run's snapshots and its audit rows, one line each (empty: none)."""
    applied = [row for row in audit if row["status"] == APPLIED]
    audited = {(row["record_key"], row["field"]) for row in applied}
    changed = changed_fields(before, after, ignored)
    problems = [
        f"{key} {field}: changed without an applied audit row" for key, field in sorted(changed - audited)
    ]
    for row in applied:
        key, field = row["record_key"], row["field"]
        old, new = before.get(key), after.get(key)
        created = old is None and new is not None
        if new is None or not _same(new.get(field), row["new_value"]):
            held = None if new is None else new.get(field)
            problems.append(
                f"{key} {field}: audited applied -> {row['new_value']!r}, the target holds {held!r}"
            )
        elif not created and (key, field) not in changed:
            problems.append(f"{key} {field}: audited applied, the target did not change")
        elif not created and not _same((old or {}).get(field), row["old_value"]):
            problems.append(
                f"{key} {field}: audited old {row['old_value']!r}, the target held {(old or {}).get(field)!r}"
            )
    return problems


def assert_audit_matches(
    before: Snapshot, after: Snapshot, audit: Iterable[Mapping[str, Any]], ignored: Iterable[str] = ()
) -> None:
    problems = audit_mismatches(before, after, list(audit), ignored)
    assert not problems, "the audit does not match the target:\n" + "\n".join(problems)
