"""The code location: every domain's definitions merged into one ``Definitions`` (nothing is defined here)."""

import dagster as dg

from sync_pipelines.defs.bakalari import definitions as bakalari
from sync_pipelines.defs.operations import definitions as operations
from sync_pipelines.defs.rt import definitions as rt
from sync_pipelines.defs.shared import definitions as shared
from sync_pipelines.defs.students import definitions as students
from sync_pipelines.defs.user_kinds import definitions as user_kinds

defs = dg.Definitions.merge(
    shared.defs,
    students.defs,
    rt.defs,
    bakalari.defs,
    user_kinds.defs,
    operations.defs,
)
