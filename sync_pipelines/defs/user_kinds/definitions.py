"""The user-kinds domain's definitions: its sync, built from its spec (``defs/user_kinds/sync.py``)."""

from sync_pipelines.defs.shared.sync_builder import build_sync
from sync_pipelines.defs.user_kinds.sync import USER_KINDS_SYNC

user_kind = build_sync(USER_KINDS_SYNC)
user_kinds, user_kind_sync, user_kind_sync_undo = user_kind.asset, user_kind.job, user_kind.undo_job
user_kind_sync_daily = user_kind.schedule
defs = user_kind.definitions
