"""A code location for the lost-run-worker tests: a run that holds the RT target's run slots and an ``rt_api``
pool slot until it is killed, and the project's ``run_worker_watchdog``.

A real sync finishes in seconds on the stand-ins; a run that waits is what lets the test kill its worker
mid-run.
"""

import time

import dagster as dg

from sync_pipelines.defs.operations.run_workers import run_worker_executor, run_worker_watchdog

# Tags and pool of the RT sync: the run limits of deploy/dagster.yaml hold one such run at a time.
RT_SYNC_TAGS = {"sync/target": "rt", "sync/api": "rt"}


@dg.op(pool="rt_api")
def wait_until_killed() -> None:
    time.sleep(900)


@dg.job(name="rt_sync_that_waits", tags=RT_SYNC_TAGS, executor_def=run_worker_executor)
def rt_sync_that_waits() -> None:
    wait_until_killed()


# A run that ends on its own within the code server's stop grace period.
SHORT_RUN_SECONDS = 6


@dg.op(pool="rt_api")
def wait_a_little() -> None:
    time.sleep(SHORT_RUN_SECONDS)


@dg.job(name="rt_sync_that_ends", tags=RT_SYNC_TAGS, executor_def=run_worker_executor)
def rt_sync_that_ends() -> None:
    wait_a_little()


defs = dg.Definitions(jobs=[rt_sync_that_waits, rt_sync_that_ends], sensors=[run_worker_watchdog])
