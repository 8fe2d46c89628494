"""``sync_checks``: the enabled systems' asset checks against the live systems, writing nothing to RT, EduRPG or
ZLV (for CI).

Every check whose failure means the data is wrong (ERROR severity) is blocking, so its failure fails its step and
the run: the job turns red and ``dagster job execute -j sync_checks`` exits non-zero. Checks that only warn
(drift, coverage, students needing to log in) are recorded without failing the run. Only the systems this
deployment syncs are checked (``SYNC_SYSTEMS``); with none configured, every check runs, and each names the
variables it lacks. A sync asset's own prerequisite checks (``rt_custom_fields_exist``) run without the sync,
and only when its system is checked; its ``records_synced`` is left out: it reports on a sync run's records,
which this job does not sync. An upstream asset's checks (``students``') run with every system that reads it.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from sync_pipelines.defs.operations.run_workers import run_worker_executor
from sync_pipelines.defs.shared.run_report import RECORDS_CHECK
from sync_pipelines.defs.shared.sync_spec import SyncSpec
from sync_pipelines.defs.systems import is_enabled

JOB = "sync_checks"


def checks_selection(specs: Sequence[SyncSpec[Any]]) -> dg.AssetSelection:
    """The enabled systems' checks (each on its spec's ``checked_assets``), else every check; never a sync's
    ``records_synced``."""
    enabled = [spec for spec in specs if is_enabled(spec)]
    if not enabled:
        every: dg.AssetSelection = dg.AssetSelection.all_asset_checks()
    else:
        keys = [dg.AssetKey(name) for spec in enabled for name in spec.checked_assets()]
        every = dg.AssetSelection.checks_for_assets(*keys)
    records = [dg.AssetCheckKey(dg.AssetKey(spec.target), RECORDS_CHECK) for spec in specs]
    return every - dg.AssetSelection.checks(*records)


def sync_checks_job(specs: Sequence[SyncSpec[Any]]) -> UnresolvedAssetJobDefinition:
    """``sync_checks`` over a code location of ``specs``."""
    return dg.define_asset_job(
        name=JOB,
        selection=checks_selection(specs),
        executor_def=run_worker_executor,
        description="The enabled systems' asset checks against the live systems; writes nothing to RT, EduRPG or "
        "ZLV.",
    )
