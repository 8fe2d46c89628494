"""One run as the engine and the sources see it: its options, plain values whatever set them (run config, a
benchmark), and its scope (its id, its shards, where it logs).

The Dagster run config that sets them (the README's "Run config") is ``defs.shared.run_config``.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sync_pipelines.sync.shards import SHARD_COUNT

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


@dataclass(frozen=True)
class RunScope:
    """One run as the source sees it: its id, its shards, its config and where it logs."""

    run_id: str
    shards: frozenset[str]
    config: SyncRunConfig
    log: logging.Logger  # a Dagster run's log is one too

    @property
    def dry_run(self) -> bool:
        return self.config.dry_run

    @property
    def complete(self) -> bool:
        """Whether the run covers every record: all shards and no ``limit``."""
        return len(self.shards) == SHARD_COUNT and self.config.limit is None
