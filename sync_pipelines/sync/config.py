"""Run config every sync asset accepts (the README's "Run config"), defined once here rather than per pipeline."""

from collections.abc import Sequence
from typing import TypeVar

import dagster as dg
from pydantic import Field

T = TypeVar("T")


class SyncRunConfig(dg.Config):
    """``ops: {<asset>: {config: {...}}}`` in a ``-c`` file or the launchpad."""

    dry_run: bool = Field(
        default=False, description="Compute and show the full plan of changes; write nothing."
    )
    limit: int | None = Field(
        default=None, ge=1, description="Process only the first N records, ordered by their key."
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="Records per batch (each batch is applied and committed on its own)."
    )
    batch_delay_seconds: float = Field(
        default=0.0, ge=0, description="Pause between batches, for overloaded servers."
    )
    full_refresh: bool = Field(
        default=False, description="Ignore what earlier runs recorded; compare and write every record."
    )

    apply_plan_id: str | None = Field(
        default=None,
        description="Apply exactly the plan a dry run saved under this id (its run id): only the fields it changes, "
        "each only where the target still holds the plan's old value; the others are reported as conflicts, field "
        "by field. Plans expire after SYNC_PLAN_MAX_AGE_HOURS (default 24).",
    )

    def effective_batch_size(self, default: int) -> int:
        return self.batch_size or default

    def take(self, records: Sequence[T]) -> list[T]:
        """The first ``limit`` records (the caller orders them by key)."""
        return list(records if self.limit is None else records[: self.limit])
