"""The operations domain's definitions, for a code location of the given syncs (``sync_checks`` and
``record_history`` name them)."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from sync_pipelines.defs.operations.alerts import sync_failure_alert
from sync_pipelines.defs.operations.checks_job import sync_checks_job
from sync_pipelines.defs.operations.record_history import record_history_job
from sync_pipelines.defs.operations.run_history import prune_run_history, prune_run_history_weekly
from sync_pipelines.defs.operations.run_workers import run_worker_watchdog
from sync_pipelines.defs.shared.sync_spec import SyncSpec


def operations_definitions(specs: Sequence[SyncSpec[Any]]) -> dg.Definitions:
    return dg.Definitions(
        jobs=[sync_checks_job(specs), prune_run_history, record_history_job(specs)],
        schedules=[prune_run_history_weekly],
        sensors=[sync_failure_alert, run_worker_watchdog],
    )
