"""The code location loaded in a process of its own, as the daemon or ``dagster job execute`` loads it: the modules
read the environment when they are imported, so a setting is tested where a fresh process meets it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def load_code_location(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``import sync_pipelines.definitions`` in a child process with ``env``: its exit code and output."""
    return subprocess.run(
        [sys.executable, "-c", "import sync_pipelines.definitions"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
