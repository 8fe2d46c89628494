"""Run workers that can be told apart without the wall clock, and a watchdog that fails the runs whose worker is
gone, so they stop holding their slots, and never a run whose worker lives.

With the ``DefaultRunLauncher`` (docker compose, systemd, ``dagster dev``) a run is a subprocess of a code
server. When that code server goes down with its runs (the ``user_code`` container recreated, the code server's
unit killed at the end of its stop timeout, the machine rebooted), nothing reports the runs' end: Dagster's run
monitoring cannot ask this launcher about its workers, so such a run would stay STARTED until
``max_runtime_seconds`` and hold its ``sync/target`` and ``sync/api`` run slots and its pool slots all that time.
Sensors are evaluated by the code server, on the same host (or in the same container) as the run workers, so
this one can look at the worker's process itself.

A worker is known by its identity, which every run records about itself as the first thing its executor does
(``run_worker_executor``): the machine's boot id, its pid and its start time in clock ticks after boot (field 22
of ``/proc/<pid>/stat``). None of the three follows the wall clock, so an NTP step of the clock changes nothing;
a pid taken over by another process after the worker died has another start tick; after a reboot the boot id
differs. (A process's start time as psutil gives it is the boot time plus those ticks, and the boot time is
derived from the wall clock: a 30 s step forward made a live worker look 30 s younger than its run, hence
"started after its run logged it", hence dead.) Before its executor has run, a run has only the pid Dagster's
worker logs: a run whose logged pid no longer exists is gone; one whose pid exists is left alone, as nothing
without the wall clock tells whether that process is still its worker (its executor records the identity within
seconds of that pid; run monitoring's ``max_runtime`` bounds the rest).

The watchdog never frees a run's target while its worker lives: before it marks a run failed it makes sure that
no process carrying the worker's identity is left (terminated, then killed, and waited for), and a process that
only reuses the pid is never touched. This holds while every code server of the instance runs on one host (or in
one container), as under compose and systemd: a code server elsewhere pointed at the same database would have
its runs taken for lost.

Under Kubernetes (``K8sRunLauncher``) the runs are pods that Dagster's run monitoring checks itself, and pids
mean nothing across pods: the sensor skips.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.tags import GRPC_INFO_TAG  # set by the DefaultRunLauncher on every run it starts

from sync_pipelines.core.env import NumberSetting
from sync_pipelines.core.errors import ConfigurationError

# How often the workers are checked: a lost run is failed within about this long after the code server is back
# (the sensor's first evaluation after a restart comes at once if the last is older than this).
CHECK_INTERVAL = NumberSetting(
    "SYNC_RUN_WORKER_CHECK_SECONDS", 60, kind=int, minimum=1, maximum=3600, unit="seconds"
)
# The worker logs its pid, and records its identity, in its first engine events; only those are read.
FIRST_ENGINE_EVENTS = 20
# How long a worker that still carries its identity gets to exit after SIGTERM, then after SIGKILL.
TERMINATE_WAIT_SECONDS = 10.0
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
PROC = Path("/proc")
IDENTITY_MESSAGE = "Run worker identity"
# Process states of /proc/<pid>/stat that are an exited process: zombie, dead.
EXITED_STATES = frozenset("ZXx")


@dataclass(frozen=True)
class WorkerIdentity:
    """A process as the kernel tells it apart: boot id, pid, start time in clock ticks after boot."""

    boot_id: str
    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int, proc: Path = PROC, boot_id_path: Path = BOOT_ID_PATH) -> WorkerIdentity | None:
        """The identity of the process ``pid`` now, or ``None`` if there is no such process."""
        stat = process_stat(pid, proc)
        if stat is None:
            return None
        return cls(boot_id_path.read_text().strip(), pid, int(stat[19]))

    def metadata(self) -> dict[str, str]:
        return {"pid": str(self.pid), "boot_id": self.boot_id, "start_ticks": str(self.start_ticks)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> WorkerIdentity | None:
        values = {key: str(getattr(value, "value", value)) for key, value in metadata.items()}
        if not {"pid", "boot_id", "start_ticks"} <= set(values):
            return None
        if not (values["pid"].isdigit() and values["start_ticks"].isdigit()):
            return None
        return cls(values["boot_id"], int(values["pid"]), int(values["start_ticks"]))

    def describe(self) -> str:
        return f"pid {self.pid} (start tick {self.start_ticks}, boot {self.boot_id[:8]})"


def process_stat(pid: int, proc: Path = PROC) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or ``None`` if no such process."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def runs_as(identity: WorkerIdentity, proc: Path = PROC, boot_id_path: Path = BOOT_ID_PATH) -> bool:
    """Whether the process carrying ``identity`` exists and has not exited (a zombie has)."""
    now = WorkerIdentity.of(identity.pid, proc, boot_id_path)
    if now != identity:
        return False
    stat = process_stat(identity.pid, proc)
    return stat is not None and stat[0] not in EXITED_STATES


def pid_runs(pid: int, proc: Path = PROC) -> bool:
    stat = process_stat(pid, proc)
    return stat is not None and stat[0] not in EXITED_STATES


def terminate(identity: WorkerIdentity, wait: float = TERMINATE_WAIT_SECONDS) -> bool:
    """Ends the process carrying ``identity``, if one is left: SIGTERM, then SIGKILL, each waited for (bounded).
    A process that reuses the pid is left alone. Returns whether none is left."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not runs_as(identity):
            return True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(identity.pid, signum)
        deadline = time.monotonic() + wait
        while runs_as(identity) and time.monotonic() < deadline:
            time.sleep(0.1)
    return not runs_as(identity)


# --- what a run records about its worker -----------------------------------------------------------------------


def _first_engine_events(instance: dg.DagsterInstance, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=FIRST_ENGINE_EVENTS
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.engine_event_data is not None:
            yield event.message or "", dict(event.engine_event_data.metadata)


def run_worker_process(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's worker, as the first engine event that carries one logged it."""
    for _, metadata in _first_engine_events(instance, run_id):
        pid = metadata.get("pid")
        if pid is not None and str(getattr(pid, "value", pid)).isdigit():
            return int(str(getattr(pid, "value", pid)))
    return None


def run_worker_identity(instance: dg.DagsterInstance, run_id: str) -> WorkerIdentity | None:
    """The identity the run's worker recorded about itself (``run_worker_executor``), if it has yet."""
    for message, metadata in _first_engine_events(instance, run_id):
        if message.startswith(IDENTITY_MESSAGE):
            return WorkerIdentity.from_metadata(metadata)
    return None


class _IdentifiedExecutor(dg.Executor):
    """Dagster's in-process executor that first records the worker's identity on the run."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        identity = WorkerIdentity.of(os.getpid())
        if identity is not None:  # no /proc (not Linux): the watchdog goes by the pid alone
            yield dg.DagsterEvent.engine_event(
                plan_context,
                f"{IDENTITY_MESSAGE}: {identity.describe()}",
                _engine_event_data(identity.metadata()),
            )
        yield from self._inner.execute(plan_context, execution_plan)


def _engine_event_data(metadata: dict[str, str]) -> Any:
    from dagster._core.events import EngineEventData

    return EngineEventData(metadata=metadata)


@dg.executor(
    name="in_process",
    config_schema=dg.in_process_executor.config_schema.as_field(),
)
def run_worker_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Every step in the run worker's own process (Dagster's ``in_process_executor``, same config), the worker
    recording its identity first, for ``run_worker_watchdog``."""
    create = dg.in_process_executor.executor_creation_fn
    if create is None:  # Dagster declares the field optional; its in-process executor always sets it
        raise RuntimeError("Dagster's in_process_executor has no executor_creation_fn")
    return _IdentifiedExecutor(create(init_context))


# --- the watchdog --------------------------------------------------------------------------------------------


def check_interval_seconds() -> int:
    """``SYNC_RUN_WORKER_CHECK_SECONDS``; ``ConfigurationError`` naming it if it is wrong."""
    return int(CHECK_INTERVAL.number())


def _check_interval_or_default() -> int:
    """The interval the sensor is defined with: a wrong setting keeps the default (``defs.systems`` reports it),
    so that it never stops the code location's load."""
    try:
        return check_interval_seconds()
    except ConfigurationError:
        return int(CHECK_INTERVAL.default or 60)


def worker_is_gone(instance: dg.DagsterInstance, run_id: str) -> tuple[bool, str] | None:
    """(gone, how the worker was told) for a run of the DefaultRunLauncher; ``None`` while no pid is logged."""
    identity = run_worker_identity(instance, run_id)
    if identity is not None:
        return not runs_as(identity), identity.describe()
    pid = run_worker_process(instance, run_id)
    if pid is None:
        return None  # the worker is still starting (run monitoring's start timeout)
    return not pid_runs(pid), f"pid {pid} (identity not recorded yet)"


def fail_runs_with_lost_workers(instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Fail every STARTED run of this launcher whose worker is gone; returns (the run ids failed, the runs whose
    worker is alive, each with how it was told).

    Its pool slots are given back at once too (run monitoring would only after
    ``free_slots_after_run_end_seconds``). The run counts as a crashed worker, so ``run_retries`` starts it
    again once its target is free.
    """
    failed: list[str] = []
    alive: list[str] = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if GRPC_INFO_TAG not in run.tags:
            continue  # not started through a code server (e.g. `dagster job execute` in a shell)
        verdict = worker_is_gone(instance, run.run_id)
        if verdict is None:
            continue
        gone, worker = verdict
        if not gone:
            alive.append(f"{run.run_id} ({worker})")
            continue
        identity = run_worker_identity(instance, run.run_id)
        if identity is not None and not terminate(identity):
            alive.append(f"{run.run_id} ({worker}, would not exit)")
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED:
            continue  # it ended on its own meanwhile
        instance.report_run_failed(
            current,
            message=(
                f"Run worker {worker} is gone (its code server was restarted or stopped): "
                "failed so that its run and pool slots are free; check the code server's logs."
            ),
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed, alive


@dg.sensor(
    name="run_worker_watchdog",
    minimum_interval_seconds=_check_interval_or_default(),
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
