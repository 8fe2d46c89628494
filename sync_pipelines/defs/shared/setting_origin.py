"""Where a resource's value came from, so that an error about it names what to change.

A resource's URL is set by its variable (``dg.EnvVar("RT_URL")``), or, for one run, in the launchpad's resource
config (``resources: {request_tracker: {config: {url: ...}}}``), which takes its place. A hint saying
"check RT_URL" after a run whose bad URL came from the launchpad sends the operator to the wrong place.
"""

from __future__ import annotations

import os


def setting_origin(variable: str, value: str, resource: str, field: str) -> str:
    """``variable`` when it holds ``value``, else the run's resource config entry that set it."""
    if os.environ.get(variable, "").strip() == value.strip():
        return variable
    return f"the run's resource config (resources.{resource}.config.{field}; {variable} is not used)"
