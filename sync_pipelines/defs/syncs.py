"""The registered syncs: the one list of specs the code location, ``SYNC_SYSTEMS``, ``sync_checks``, the
configuration check and record history are derived from, and the only module that imports the domains.

Adding a sync is its folder under ``defs/`` and one line here.
"""

from typing import Any

from sync_pipelines.defs.bakalari.sync import BAKALARI_SYNC
from sync_pipelines.defs.rt.sync import RT_SYNC
from sync_pipelines.defs.shared.sync_spec import SyncSpec
from sync_pipelines.defs.user_kinds.sync import USER_KINDS_SYNC

SYNCS: tuple[SyncSpec[Any], ...] = (
    RT_SYNC,
    BAKALARI_SYNC,
    USER_KINDS_SYNC,
)
