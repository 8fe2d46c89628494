"""The registered syncs: the one list the code location, ``SYNC_SYSTEMS`` and ``sync_checks`` are built from."""

from sync_pipelines.defs.bakalari.sync import BAKALARI_SYNC
from sync_pipelines.defs.rt.sync import RT_SYNC
from sync_pipelines.defs.shared.sync_spec import SyncSpec
from sync_pipelines.defs.user_kinds.sync import USER_KINDS_SYNC

SYNCS: tuple[SyncSpec, ...] = (RT_SYNC, BAKALARI_SYNC, USER_KINDS_SYNC)
