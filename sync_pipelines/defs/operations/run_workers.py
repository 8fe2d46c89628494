"""A watchdog that fails runs whose run worker process is gone, so they stop holding their slots.

With the ``DefaultRunLauncher`` (docker compose, systemd, ``dagster dev``) a run is a subprocess of a code
server. When that code server goes down with its runs (the ``user_code`` container recreated, the daemon's
service stopped, the machine rebooted), nothing reports the runs' end: Dagster's run monitoring cannot ask this
launcher about its workers, so such a run would stay STARTED until ``max_runtime_seconds`` and hold its
``sync/target`` and ``sync/api`` run slots and its pool slots all that time, and no sync of that target would
start. Sensors are evaluated by the code server, on the same host (or in the same container) as the run
workers, so this one can look at the worker's process itself: the pid the worker logged when it started.
That holds while every code server of the instance runs on one host (or in one container), as under compose
and systemd: a code server elsewhere pointed at the same database would have its runs taken for lost.

Under Kubernetes (``K8sRunLauncher``) the runs are pods that Dagster's run monitoring checks itself, and pids
mean nothing across pods: the sensor skips.
"""

from __future__ import annotations

import dagster as dg
import psutil
from dagster._core.storage.tags import GRPC_INFO_TAG  # set by the DefaultRunLauncher on every run it starts

# How often the workers are checked: a lost run is failed within about this long after the code server
# is back (the sensor's first evaluation after a restart comes at once if the last is older than this).
CHECK_INTERVAL_SECONDS = 60
# A process created later than this after its run logged the pid is another process that got the same pid
# (pids restart from 1 in a new container and after a reboot).
PID_REUSE_SLACK_SECONDS = 5.0
# The worker logs its pid in one of its first engine events; a run's first events are read, not all of it.
FIRST_ENGINE_EVENTS = 20


def run_worker_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, time it was logged) of the run's worker: the first engine event that carries a ``pid``."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=FIRST_ENGINE_EVENTS
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        pid = metadata.get("pid")
        if pid is not None and str(pid.value).isdigit():
            return int(str(pid.value)), record.event_log_entry.timestamp
    return None


def worker_is_alive(pid: int, logged_at: float) -> bool:
    """Whether the process ``pid`` is still the worker that logged it at ``logged_at``."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= logged_at + PID_REUSE_SLACK_SECONDS
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's process that exists: cannot tell, so leave the run alone


def fail_runs_with_lost_workers(instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Fail every STARTED run of this launcher whose worker process is gone; returns (the run ids failed,
    the runs whose worker is alive, each with its pid).

    Its pool slots are given back at once too (run monitoring would only after
    ``free_slots_after_run_end_seconds``). The run counts as a crashed worker, so ``run_retries`` starts it
    again once its target is free.
    """
    failed: list[str] = []
    alive: list[str] = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if GRPC_INFO_TAG not in run.tags:
            continue  # not started through a code server (e.g. `dagster job execute` in a shell)
        worker = run_worker_process(instance, run.run_id)
        if worker is None:
            continue  # no pid logged yet: the worker is still starting (run monitoring's start timeout)
        if worker_is_alive(*worker):
            alive.append(f"{run.run_id} (pid {worker[0]})")
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED:
            continue  # it ended on its own meanwhile
        instance.report_run_failed(
            current,
            message=(
                f"Run worker process {worker[0]} is gone (its code server was restarted or stopped): "
                "failed so that its run and pool slots are free; check the code server's logs."
            ),
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed, alive


@dg.sensor(
    name="run_worker_watchdog",
    minimum_interval_seconds=CHECK_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Fails runs whose worker process died with its code server (compose, systemd), so that their "
        "run and pool slots are freed within minutes instead of at max_runtime_seconds."
    ),
)
def run_worker_watchdog(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    if type(context.instance.run_launcher) is not dg.DefaultRunLauncher:
        return dg.SkipReason(
            f"{type(context.instance.run_launcher).__name__}: run monitoring checks these run workers"
        )
    failed, alive = fail_runs_with_lost_workers(context.instance)
    if failed:
        context.log.warning(f"failed {len(failed)} run(s) whose worker is gone: {', '.join(failed)}")
    return dg.SkipReason(
        f"failed (worker gone): {', '.join(failed) or 'none'}; worker alive: {', '.join(alive) or 'none'}"
    )
