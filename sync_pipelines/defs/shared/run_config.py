"""The run config every sync asset and every undo job accepts (the README's "Run config"), defined once here.

Dagster validates these and shows them in the launchpad; the engine reads the plain ``sync.config.SyncRunConfig``
made from them.
"""

import dagster as dg
from pydantic import Field

from sync_pipelines.sync.config import SyncRunConfig


class SyncAssetConfig(dg.Config):
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

    def run_config(self) -> SyncRunConfig:
        """The engine's options of this run."""
        return SyncRunConfig(
            dry_run=self.dry_run,
            limit=self.limit,
            batch_size=self.batch_size,
            batch_delay_seconds=self.batch_delay_seconds,
            full_refresh=self.full_refresh,
        )


class UndoConfig(dg.Config):
    """``ops: {<sync>_undo: {config: {run_id: ..., dry_run: false}}}``."""

    run_id: str = Field(description="The run whose applied changes to reverse (its id in the Runs list).")
    dry_run: bool = Field(
        default=True,
        description="Show (and save) the undo's plan only; false: apply it, conflicts left alone.",
    )
    batch_size: int | None = Field(default=None, ge=1, description="Records per batch.")
    batch_delay_seconds: float = Field(default=0.0, ge=0, description="Pause between batches.")

    def run_config(self) -> SyncRunConfig:
        """The engine's options of the undo's run."""
        return SyncRunConfig(
            dry_run=self.dry_run, batch_size=self.batch_size, batch_delay_seconds=self.batch_delay_seconds
        )
