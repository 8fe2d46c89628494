"""The operations domain's definitions."""

import dagster as dg

from sync_pipelines.defs.operations.checks_job import sync_checks

defs = dg.Definitions(jobs=[sync_checks])
