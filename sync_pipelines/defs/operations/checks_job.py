"""``sync_checks``: the enabled systems' asset checks against the live systems, writing nothing to RT, EduRPG or
ZLV (for CI).

Every check whose failure means the data is wrong (ERROR severity) is blocking, so its failure fails its step and
the run: the job turns red and ``dagster job execute -j sync_checks`` exits non-zero. Checks that only warn
(drift, coverage, students needing to log in) are recorded without failing the run. Only the systems this
deployment syncs are checked (``SYNC_SYSTEMS``); with none configured, every check runs, and each names the
variables it lacks. A sync asset's own prerequisite checks (``rt_custom_fields_exist``) run without the sync;
its ``records_synced`` is left out: it reports on a sync run's records, which this job does not sync.
"""

import dagster as dg

from sync_pipelines.defs.operations.run_workers import run_worker_executor
from sync_pipelines.defs.shared.run_report import RECORDS_CHECK
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import enabled_systems

# Each system's checked assets, from its spec: the sync's target and the assets its checks watch.
CHECKED_ASSETS = {spec.system: spec.checked_assets() for spec in SYNCS}


RECORDS_CHECKS = [dg.AssetCheckKey(dg.AssetKey(spec.target), RECORDS_CHECK) for spec in SYNCS]


def checks_selection() -> dg.AssetSelection:
    systems = enabled_systems()
    if not systems:
        every: dg.AssetSelection = dg.AssetSelection.all_asset_checks()
    else:
        keys = [dg.AssetKey(name) for system in sorted(systems) for name in CHECKED_ASSETS[system]]
        every = dg.AssetSelection.checks_for_assets(*keys)
    return every - dg.AssetSelection.checks(*RECORDS_CHECKS)


sync_checks = dg.define_asset_job(
    name="sync_checks",
    selection=checks_selection(),
    executor_def=run_worker_executor,
    description="The enabled systems' asset checks against the live systems; writes nothing to RT, EduRPG or ZLV.",
)
