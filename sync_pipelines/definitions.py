"""The code location: every domain's definitions merged into one ``Definitions`` (nothing is defined here)."""

import dagster as dg

from sync_pipelines.defs.operations import definitions as operations
from sync_pipelines.defs.rt import definitions as rt
from sync_pipelines.defs.shared import definitions as shared
from sync_pipelines.defs.students import definitions as students

defs = dg.Definitions.merge(
    shared.defs,
    students.defs,
    rt.defs,
    operations.defs,
)
