"""CI's run of ``sync_checks``: every system seeded with known data, every target synced, then every check.

``python -m sync_pipelines_tests.ci_checks`` exits non-zero when a sync fails or when ``sync_checks`` fails, that
is when a check that should pass fails (checks that only warn are printed, not fatal).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

from sync_pipelines_tests.harness.world import check_names, start_world, sync_everything


def main() -> int:
    with ExitStack() as stack:
        world = start_world(stack)
        for result in sync_everything(world):
            print(f"{result.job}: {'ok' if result.succeeded else 'FAILED'}", flush=True)
            if not result.succeeded:
                print(result.output[-4000:])
                return 1
        checks = world.run_job("sync_checks")
        for name, outcome in sorted(check_names(checks.output).items()):
            print(f"  check {name}: {outcome}")
        print(f"sync_checks: {'ok' if checks.succeeded else 'FAILED'}", flush=True)
        if not checks.succeeded:
            print(checks.output[-4000:])
        return checks.exit_code


if __name__ == "__main__":
    sys.exit(main())
