"""The Bakaláři domain's definitions."""

import dagster as dg

from sync_pipelines.defs.bakalari.assets import bakalari_entities
from sync_pipelines.defs.bakalari.automation import bakalari_sync_every_15_minutes
from sync_pipelines.defs.bakalari.checks import (
    bakalari_students_needing_login,
    edurpg_external_refs_resolve,
    edurpg_unique_bakalari_ids,
)
from sync_pipelines.defs.bakalari.jobs import bakalari_sync, bakalari_sync_undo
from sync_pipelines.defs.bakalari.resources import BakalariResource, EduRpgDatabase

defs = dg.Definitions(
    assets=[bakalari_entities],
    asset_checks=[edurpg_external_refs_resolve, edurpg_unique_bakalari_ids, bakalari_students_needing_login],
    jobs=[bakalari_sync, bakalari_sync_undo],
    schedules=[bakalari_sync_every_15_minutes],
    resources={
        "bakalari": BakalariResource(
            url=dg.EnvVar("BAKALARI_URL"),
            username=dg.EnvVar("BAKALARI_USERNAME"),
            password=dg.EnvVar("BAKALARI_PASSWORD"),
        ),
        "edurpg_database": EduRpgDatabase(database_url=dg.EnvVar("EDURPG_DATABASE_URL")),
    },
)
