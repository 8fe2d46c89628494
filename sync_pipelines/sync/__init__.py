"""The sync engine the three pipelines share: read desired, read current, plan, apply with limits, audit, report."""

from sync_pipelines.sync.apply import ApplyResult, apply_plan
from sync_pipelines.sync.config import SyncRunConfig
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord, Skip, SyncPlan, plan_changes
from sync_pipelines.sync.state import SyncStateStore

__all__ = [
    "Action",
    "ApplyResult",
    "FieldChange",
    "PlannedRecord",
    "Skip",
    "SyncPlan",
    "SyncRunConfig",
    "SyncStateStore",
    "apply_plan",
    "plan_changes",
]
