"""A user custom field as RT defines it, and how RT takes and compares its values (pure).

RT 5 (5.0.3, measured by the suite's contract tests against a real RT 5):

- A ``Select`` checks a value against its list ignoring case, and stores and quotes its list's spelling: ``k`` sent
  to a list holding ``K`` is stored as ``K`` and answered ``Level K added``.
- It refuses a value its list lacks with ``Invalid value for custom field`` (naming no field), nothing trimmed
  (`` 1 `` is refused where ``1`` is listed); the other fields of the PUT are written.
- It counts a held value as the one sent when they differ only in case: a user holding ``k`` (written while the
  field was free-form) keeps it when sent ``K``, and the PUT answers no message at all.
- Every other type (``Freeform``, ``Combobox``, ...) takes any value its pattern allows and compares exactly.

So the sync sends a Select's value in its list's spelling (the value RT stores, and the value the audit records),
leaves a held value RT counts as the wanted one alone, and sends no value the list lacks: such values are
reported once per run, by field, with the users that wanted them (``NotListed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SELECT = "Select"
SHOWN_VALUES = 10  # values of one field named in a report line
SHOWN_USERS = 5  # users named as examples in a report line


def holds(held: Any, wanted: Any) -> bool:
    """Whether RT holds exactly ``wanted``: a blank wanted value (``None``, ``""``) is held as no value at all."""
    return (held in (None, "", [])) if wanted in (None, "") else str(held) == str(wanted)


@dataclass(frozen=True)
class RtField:
    """One user custom field: its ``type`` and ``max_values`` from RT's field listing; ``listed``, a Select's
    values in their order (``None``: RT takes any value, as for a field that is not a Select, or a Select whose
    values RT's record of it does not give)."""

    id: str
    name: str
    type: str = "Freeform"
    max_values: int = 1
    listed: tuple[str, ...] | None = None

    @property
    def is_select(self) -> bool:
        return self.type == SELECT

    def spelled(self, value: str) -> str | None:
        """``value`` as RT stores it: a Select's own spelling of it (matched ignoring case), None when its list
        lacks it; any other field's value as it is."""
        if not self.is_select or self.listed is None or value == "":
            return value
        lowered = value.lower()
        return next((listed for listed in self.listed if listed.lower() == lowered), None)

    def counts_as(self, held: Any, wanted: Any) -> bool:
        """Whether RT counts what a user holds as ``wanted`` (a PUT of ``wanted`` would change nothing): a Select
        ignores case, every other type compares exactly."""
        if self.is_select and isinstance(held, str) and isinstance(wanted, str) and wanted:
            return held.lower() == wanted.lower()
        return holds(held, wanted)


@dataclass
class NotListed:
    """Desired values a Select's list lacks, never sent: ``{field: {value: [record keys]}}``."""

    values: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, field_name: str, value: str, key: str) -> None:
        self.values.setdefault(field_name, {}).setdefault(value, []).append(key)

    def __bool__(self) -> bool:
        return bool(self.values)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {value: len(keys) for value, keys in by_value.items()}
            for name, by_value in self.values.items()
        }

    def lines(self, settings: Mapping[str, str]) -> list[str]:
        """One line per field: the values its list lacks, how many users wanted them (a few named by RT user id),
        and what to change (``settings``: the setting that names each field)."""
        lines = []
        for name, by_value in self.values.items():
            values = list(by_value)
            shown = ", ".join(map(repr, values[:SHOWN_VALUES])) + (
                f" and {len(values) - SHOWN_VALUES} more" if len(values) > SHOWN_VALUES else ""
            )
            users = sorted(
                {key for keys in by_value.values() for key in keys}, key=lambda key: (len(key), key)
            )
            examples = ", ".join(users[:SHOWN_USERS]) + (", ..." if len(users) > SHOWN_USERS else "")
            setting = settings.get(name, "the setting naming it")
            lines.append(
                f"RT's custom field {name!r} is a Select whose values do not include {shown}: not sent for "
                f'{len(users)} user(s) (RT users {examples}), as RT would refuse them ("Invalid value for custom '
                f"field\"); add them to the field's values in RT, or point {setting} at a field that takes them"
            )
        return lines


def as_rt_takes(
    desired: Mapping[str, Mapping[str, Any]], fields: Mapping[str, RtField]
) -> tuple[dict[str, dict[str, Any]], NotListed]:
    """The desired records as RT will store them (a Select's values in its list's spelling), without the values
    a field does not take: those are returned apart, by field and value, with the records that wanted them."""
    taken: dict[str, dict[str, Any]] = {}
    not_listed = NotListed()
    for key, values in desired.items():
        record: dict[str, Any] = {}
        for name, value in values.items():
            definition = fields.get(name)
            spelled = (
                definition.spelled(value) if definition is not None and isinstance(value, str) else value
            )
            if spelled is None:
                not_listed.add(name, value, key)
            else:
                record[name] = spelled
        taken[key] = record
    return taken, not_listed


def held_as_wanted(
    current: Mapping[str, Mapping[str, Any] | None],
    desired: Mapping[str, Mapping[str, Any]],
    fields: Mapping[str, RtField],
) -> dict[str, dict[str, Any] | None]:
    """``current`` with each held value RT counts as the desired one (a Select's ``k`` for ``K``) given as the
    desired value: the plan finds nothing to write there, as RT would change nothing."""
    seen: dict[str, dict[str, Any] | None] = {}
    for key, held in current.items():
        wanted = desired.get(key)
        if held is None or wanted is None:
            seen[key] = None if held is None else dict(held)
            continue
        values = dict(held)
        for name, value in wanted.items():
            definition = fields.get(name)
            if definition is not None and name in values and definition.counts_as(values[name], value):
                values[name] = value
        seen[key] = values
    return seen
