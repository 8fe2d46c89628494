"""What a report may show of a record: the one place that decides how records are named and which of their
fields are personal.

Plan tables, failure lists and log lines reach Dagster's event log, which anyone with access to the UI reads and
which is kept as long as the run history. So a record is named by its ids (a student id, an RT user id, a ZLV user
id, a Bakaláři id), never by a name or an email, and a change of a personal field (a person's name, an email) is
shown as changed without its values: a reviewer who may read them finds them in the sync state database (the
saved plan, the audit rows), which an undo needs anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from sync_pipelines.sync.plan import Value

PERSONAL_VALUE = "(personal data, not shown)"
# A change of a personal value, as a run's plan table and a record's history show it.
PERSONAL_CHANGE = f"changed {PERSONAL_VALUE}"


def _key(key: str) -> str:
    return key


@dataclass(frozen=True)
class Disclosure:
    """``label`` names a record (by its ids); ``personal`` maps a record kind (the part of its key before
    ``:``, or ``"*"`` for every record) to the fields whose values are personal."""

    label: Callable[[str], str] = _key
    personal: Mapping[str, Collection[str]] = field(default_factory=dict)

    def is_personal(self, key: str, field_name: str) -> bool:
        kind = key.partition(":")[0] if ":" in key else ""
        return field_name in self.personal.get(kind, ()) or field_name in self.personal.get("*", ())

    def value(self, key: str, field_name: str, value: Value) -> Value:
        """``value`` as a report may show it: itself, or a marker for a personal field's value."""
        return PERSONAL_VALUE if value is not None and self.is_personal(key, field_name) else value

    def change(self, key: str, field_name: str, old: Value, new: Value) -> tuple[Value, Value] | None:
        """``(old, new)`` as shown; None when the field is personal (the report says only that it changed)."""
        return None if self.is_personal(key, field_name) else (old, new)


PLAIN = Disclosure()
