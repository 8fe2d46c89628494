"""The options of one run, as the engine reads them: plain values, whatever set them (run config, a benchmark).

The Dagster run config that sets them (the README's "Run config") is ``defs.shared.run_config``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class SyncRunConfig:
    """What a run does: a dry run or not, how many records, in which batches, and whether to read every record."""

    dry_run: bool = False
    limit: int | None = None  # only the first N records, ordered by their key
    batch_size: int | None = None  # records per batch; unset: the source's default
    batch_delay_seconds: float = 0.0  # pause between batches
    full_refresh: bool = False  # ignore what earlier runs recorded; compare and write every record

    def effective_batch_size(self, default: int) -> int:
        return self.batch_size or default

    def take(self, records: Sequence[T]) -> list[T]:
        """The first ``limit`` records (the caller orders them by key)."""
        return list(records if self.limit is None else records[: self.limit])
