"""``sync_checks``: every asset check against the live systems, writing nothing to RT, EduRPG or ZLV (for CI).

Every check whose failure means the data is wrong (ERROR severity) is blocking, so its failure fails its step and
the run: the job turns red and ``dagster job execute -j sync_checks`` exits non-zero. Checks that only warn
(drift, coverage, students needing to log in) are recorded without failing the run.
"""

import dagster as dg

sync_checks = dg.define_asset_job(
    name="sync_checks",
    selection=dg.AssetSelection.all_asset_checks(),
    executor_def=dg.in_process_executor,
    description="Every asset check against the live systems; writes nothing to RT, EduRPG or ZLV.",
)
