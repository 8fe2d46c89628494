"""The Bakaláři domain's definitions: its sync, built from its spec (``defs/bakalari/sync.py``)."""

from sync_pipelines.defs.bakalari.sync import BAKALARI_SYNC
from sync_pipelines.defs.shared.sync_builder import build_sync

bakalari = build_sync(BAKALARI_SYNC)
bakalari_entities, bakalari_sync, bakalari_sync_undo = bakalari.asset, bakalari.job, bakalari.undo_job
bakalari_sync_every_15_minutes = bakalari.schedule
defs = bakalari.definitions
