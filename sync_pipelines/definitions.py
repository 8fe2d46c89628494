"""The code location: built from the registered syncs (``defs.syncs``), nothing defined here.

``location.syncs[<system>]`` holds each sync's asset, jobs and schedule.
"""

from sync_pipelines.defs.code_location import code_location
from sync_pipelines.defs.syncs import SYNCS

location = code_location(SYNCS)
defs = location.definitions
