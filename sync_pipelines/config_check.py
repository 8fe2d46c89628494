"""``python -m sync_pipelines.config_check``: every configuration problem of the code location, one line each,
before the daemon starts.

The code location loads whatever its settings hold (a wrong setting is reported, not fatal to the other systems),
so loading it says nothing about them: this command does, and exits 1 while any problem is left, 0 with one ok
line otherwise. It reads the same environment the daemon and the code server will, and checks every numeric
setting (the shared ones, retention included, and each enabled system's) by the rule the runs read them by.
"""

from __future__ import annotations

import sys

from sync_pipelines.core.secret_files import load_secret_files
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import configuration_problems, enabled_systems


def main() -> int:
    # The package read the secret files already; reading them again names their problems here too.
    problems = [*load_secret_files(), *configuration_problems(SYNCS)]
    for problem in problems:
        print(problem)
    if problems:
        return 1
    systems = ", ".join(sorted(enabled_systems(SYNCS))) or "none (set SYNC_SYSTEMS or a system's variables)"
    print(f"configuration ok; enabled systems: {systems}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
