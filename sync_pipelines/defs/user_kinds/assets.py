"""The ``user_kinds`` asset: ZLV's ``users.kind``, kept equal to what Portail DF says about each user."""

from datetime import timedelta

import dagster as dg

from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase
from sync_pipelines.defs.user_kinds.source import TARGET, UserKindsSource
from sync_pipelines.sync import SyncRunConfig
from sync_pipelines.sync.run import run_sync


@sync_asset(
    name=TARGET,
    group="user_kinds",
    pool="portaildf_api",
    fresh_within=timedelta(days=1),
    kinds={"rest", "postgres"},
    description="users.kind in the Zéro Logement Vacant database, from the Portail DF exterieur / gestionnaire "
    "flags of each user's account.",
)
def user_kinds(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    portaildf: PortailDfResource,
    zlv_database: ZlvDatabase,
    sync_state: SyncStateResource,
):
    yield from run_sync(context, config, UserKindsSource(portaildf, zlv_database), sync_state.store())
