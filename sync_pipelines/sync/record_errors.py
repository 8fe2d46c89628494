"""Row errors: the records of a run that could not go through, by where they failed, and when they fail the run.

One policy for every sync. A record whose source answer cannot be used, that the target would not give, or whose
write the target refused is a row error: reported by id with its reason, kept out of the last-written state (so
the next run retries it), its shard not materialized. The run still succeeds, its summary saying "with N record
error(s)", unless the errors are more than ``SYNC_MAX_RECORD_ERRORS_PERCENT`` (default 10) percent of the run's
records: then it fails in one line. A source or target that is unusable as a whole (refused credentials, no
answer, a passed deadline) stops the run before this point, as it always did.

Where an error came from is part of what it says: "3 record(s) unusable in Portail DF's answer" is a problem of
the source system's data, "3 record(s) could not be written to user_kinds" one of the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sync_pipelines.core.errors import TooManyRecordErrors
from sync_pipelines.core.settings import MAX_RECORD_ERRORS

MAX_PERCENT_SETTING = MAX_RECORD_ERRORS.name
DEFAULT_MAX_PERCENT = float(MAX_RECORD_ERRORS.default or 0)


def max_record_errors_percent() -> float:
    """``SYNC_MAX_RECORD_ERRORS_PERCENT``: a number from 0 (any row error fails the run) to 100 (none does)."""
    return float(MAX_RECORD_ERRORS.number())


@dataclass
class RecordErrors:
    """A run's row errors by origin, each ``{key: reason}``, and the run's size they are measured against."""

    target: str
    source: str  # the system whose answers give the desired state, as a person names it ("Portail DF")
    records: int  # the records the run considered: planned to write, unchanged, skipped or failed
    max_percent: float = DEFAULT_MAX_PERCENT
    unusable: dict[str, str] = field(default_factory=dict)  # the source's answer for it cannot be used
    unreadable: dict[str, str] = field(default_factory=dict)  # the target would not give the record
    refused: dict[str, str] = field(default_factory=dict)  # the target refused the write

    def __len__(self) -> int:
        return len(self.unusable) + len(self.unreadable) + len(self.refused)

    def origins(self) -> list[tuple[str, Mapping[str, str]]]:
        """Each origin as a person reads it, with its records; origins without errors left out."""
        named = [
            (f"unusable in {self.source}'s answer", self.unusable),
            (f"could not be read from {self.target}", self.unreadable),
            (f"could not be written to {self.target}", self.refused),
        ]
        return [(what, errors) for what, errors in named if errors]

    def rows(self) -> list[tuple[str, str, str]]:
        """(record, what went wrong, reason) for every error, by record key; a reason that starts by saying what
        went wrong (``unusable in Portail DF's answer: record 12: ...``) is not made to say it twice."""
        return sorted(
            (key, what, reason.removeprefix(f"{what}: "))
            for what, errors in self.origins()
            for key, reason in errors.items()
        )

    def counts(self) -> str:
        """``2 record(s) unusable in Portail DF's answer, 1 record(s) could not be written to user_kinds``."""
        return ", ".join(f"{len(errors)} record(s) {what}" for what, errors in self.origins())

    def summary(self) -> str:
        """The run's closing words about them: empty without errors, else ``with N record error(s) (...)``."""
        if not self:
            return ""
        return f"with {len(self)} record error(s) ({self.counts()}; the next run retries them)"

    @property
    def percent(self) -> float:
        return 100.0 * len(self) / self.records if self.records else 0.0

    @property
    def too_many(self) -> bool:
        return len(self) > 0 and self.percent > self.max_percent

    def raise_if_too_many(self, shown: int = 20) -> None:
        """Fail the run, in one line, when the errors are more than ``SYNC_MAX_RECORD_ERRORS_PERCENT`` allows."""
        if not self.too_many:
            return
        rows = self.rows()
        listed = "; ".join(" ".join(f"{key}: {reason}".split()) for key, _, reason in rows[:shown])
        more = f" (and {len(rows) - shown} more)" if len(rows) > shown else ""
        raise TooManyRecordErrors(
            self.target,
            [(key, f"{what}: {reason}") for key, what, reason in rows],
            f"{self.target}: {len(self)} record error(s) in {self.records} record(s) ({self.percent:.0f} %), more "
            f"than {MAX_PERCENT_SETTING}={self.max_percent:g} allows: {self.counts()}; the next run retries "
            f"them: {listed}{more}",
        )
