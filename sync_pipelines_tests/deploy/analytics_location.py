"""A minimal code location standing in for a team's own Dagster project (ZLV's ``analytics/dagster``): one asset,
nothing of this project. The "existing Dagster" test loads it next to ``sync_pipelines`` in one workspace."""

import dagster as dg


@dg.asset(group_name="analytics")
def vacancy_counts() -> int:
    return 0


defs = dg.Definitions(assets=[vacancy_counts])
