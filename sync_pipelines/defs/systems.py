"""Which systems this deployment syncs (``SYNC_SYSTEMS``, or every system whose required variables are set), and
every configuration problem of the code location, collected rather than raised.

The three syncs belong to three organisations, so a deployment usually runs one. Every job and asset stays
defined (a run with the right environment works whatever is enabled), but only the enabled systems' schedules
and sensors start RUNNING, and only their checks are in ``sync_checks``: a school with Request Tracker alone is
not woken every 15 minutes by a Bakaláři sync that cannot work.

A wrong setting never stops the code location's load: the web UI would show an error page instead of every asset
and the daemon would run no schedule of any system, so a broken RT setting would stop the ZLV sync too. Each
problem is one ``ConfigurationProblem`` line ("VARIABLE: problem"); a system missing its variables, or one of whose
numeric settings is wrong, keeps its assets and jobs, whose runs fail at once naming them
(``defs.shared.sync_builder``), a bad cron leaves that one schedule out, a bad ``SYNC_TIMEZONE`` runs the schedules
in UTC, a wrong shared numeric setting (``core.settings.SHARED_SETTINGS``) fails the runs that read it, naming it,
and ``python -m sync_pipelines.config_check`` prints them all before the daemon starts.

Nothing here names a system: each function reads the spec, or the list of registered specs (``defs.syncs``), it
is given, so the builder can ask whether its system is enabled without importing every domain.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from sync_pipelines.core.env import NumberSetting, env_text, env_timezone
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.settings import SHARED_SETTINGS
from sync_pipelines.defs.operations.run_workers import CHECK_INTERVAL
from sync_pipelines.defs.shared.sync_spec import SyncSpec

SETTING = "SYNC_SYSTEMS"
SCHEDULE_OFF = "off"
FALLBACK_TIMEZONE = "UTC"
# Any registered sync: the functions below read a spec, or the list of them they are given (``defs.syncs``'s).
Spec = SyncSpec[Any]


@dataclass(frozen=True)
class ConfigurationProblem:
    """One wrong or missing setting, read as one line: ``VARIABLE: problem``.

    ``system`` is the system it concerns (``None``: the whole code location); ``stops_runs`` says the system's
    runs cannot work (a missing variable, a wrong numeric setting), rather than falling back (a bad cron, timezone
    or runtime limit); ``refusal`` is the setting's own refusal line when its value is wrong (not missing)."""

    setting: str
    problem: str
    system: str | None = None
    stops_runs: bool = False
    refusal: str | None = None

    def __str__(self) -> str:
        return f"{self.setting}: {self.problem}"


class SystemNotConfigured(ConfigurationError):
    """A run of a system whose settings are missing or wrong: one line naming each variable to fix."""

    def __init__(self, system: str, problems: tuple[ConfigurationProblem, ...]) -> None:
        super().__init__(", ".join(problem.setting for problem in problems), "")
        missing = [problem.setting for problem in problems if problem.refusal is None]
        causes = [problem.refusal for problem in problems if problem.refusal is not None]
        if missing:
            one = len(missing) == 1
            causes.insert(
                0,
                f"{', '.join(missing)} {'is' if one else 'are'} not set ({system} is listed in {SETTING}); set "
                f"{'it' if one else 'them'} or leave {system} out of {SETTING}",
            )
        self.args = (f"{system} cannot run: {'; '.join(causes)}",)

    def __str__(self) -> str:
        return str(self.args[0])


def _missing(spec: Spec, environ: Mapping[str, str]) -> list[str]:
    return [name for name in spec.required_variables if not environ.get(name, "").strip()]


def _listed(environ: Mapping[str, str]) -> list[str]:
    raw = environ.get(SETTING, "")
    return [part.strip().lower() for part in raw.split(",") if part.strip()]


def is_enabled(spec: Spec, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``SYNC_SYSTEMS`` names the system (configured or not: its problems are reported), or, while it is
    unset, whether the system's required variables are all set."""
    environ = os.environ if environ is None else environ
    named = _listed(environ)
    return spec.system in named if named else not _missing(spec, environ)


def enabled_systems(specs: Sequence[Spec], environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The enabled systems among ``specs`` (``is_enabled``)."""
    return frozenset(spec.system for spec in specs if is_enabled(spec, environ))


def _cron_problem(spec: Spec) -> ConfigurationProblem | None:
    setting = env_text(spec.cron_variable, "")
    if not setting or setting.lower() == SCHEDULE_OFF:
        return None
    try:
        dg.ScheduleDefinition(name="cron_check", job_name="cron_check", cron_schedule=setting)
    except dg.DagsterInvalidDefinitionError:
        return ConfigurationProblem(
            spec.cron_variable,
            f"{setting!r} is not a cron expression of 5 fields (minute hour day month weekday), e.g. "
            f"{spec.schedule.default_cron!r}, or {SCHEDULE_OFF!r}; the schedule {spec.schedule.name} is left out",
            spec.system,
        )
    return None


def _setting_problem(
    system: str | None, read: Callable[[], object], fallback: str
) -> ConfigurationProblem | None:
    """The problem of one setting read by ``read`` (raising ``ConfigurationError``), or ``None``."""
    try:
        read()
    except ConfigurationError as error:
        problem = str(error).removeprefix(f"{error.setting}: ")
        return ConfigurationProblem(error.setting, f"{problem}; {fallback}", system)
    return None


def _number_problem(setting: NumberSetting, system: str | None = None) -> ConfigurationProblem | None:
    """The problem of a numeric setting whose wrong value fails the runs that read it (``system``'s: all of them)."""
    try:
        setting.read()
    except ConfigurationError as error:
        return ConfigurationProblem(
            setting.name,
            f"{str(error).removeprefix(f'{setting.name}: ')}; the runs reading it fail until it is fixed",
            system,
            stops_runs=system is not None,
            refusal=str(error),
        )
    return None


def system_problems(spec: Spec, environ: Mapping[str, str] | None = None) -> tuple[ConfigurationProblem, ...]:
    """The problems of one system's settings: its variables when ``SYNC_SYSTEMS`` lists it, its cron, its runtime."""
    environ = os.environ if environ is None else environ
    problems: list[ConfigurationProblem | None] = []
    if spec.system in _listed(environ):
        problems += [
            ConfigurationProblem(
                name,
                f"is not set ({spec.system} is listed in {SETTING}); its runs fail until it is",
                spec.system,
                stops_runs=True,
            )
            for name in _missing(spec, environ)
        ]
    problems.append(_cron_problem(spec))
    problems.append(
        _setting_problem(
            spec.system,
            spec.max_runtime_setting.read,
            f"the default {int(spec.max_runtime.total_seconds())} is used",
        )
    )
    if is_enabled(spec, environ):
        problems += [_number_problem(setting, spec.system) for setting in spec.settings]
    return tuple(problem for problem in problems if problem is not None)


def run_stopping_problems(spec: Spec) -> tuple[ConfigurationProblem, ...]:
    """The problems that fail every run of ``spec``'s jobs at once (its missing variables)."""
    return tuple(problem for problem in system_problems(spec) if problem.stops_runs)


def configuration_problems(
    specs: Sequence[Spec], environ: Mapping[str, str] | None = None
) -> tuple[ConfigurationProblem, ...]:
    """Every configuration problem of a code location of ``specs``, the code location's own first, then each
    system's."""
    environ = os.environ if environ is None else environ
    systems = [spec.system for spec in specs]
    unknown = [name for name in _listed(environ) if name not in systems]
    problems: list[ConfigurationProblem | None] = []
    if unknown:
        problems.append(
            ConfigurationProblem(
                SETTING,
                f"unknown system(s) {', '.join(map(repr, unknown))}, left out; the systems are "
                f"{', '.join(systems)}",
            )
        )
    problems.append(_setting_problem(None, env_timezone, f"the schedules run in {FALLBACK_TIMEZONE}"))
    problems += [_number_problem(setting) for setting in SHARED_SETTINGS]
    problems.append(
        _setting_problem(
            None, CHECK_INTERVAL.read, f"run_worker_watchdog checks every {CHECK_INTERVAL.default} s"
        )
    )
    problems += [problem for spec in specs for problem in system_problems(spec, environ)]
    # A shared setting (SYNC_DEADLINE_SECONDS) is one of every system's too: one line for it.
    lines = {str(problem): problem for problem in problems if problem is not None}
    return tuple(lines.values())


def schedule_timezone() -> str:
    """``SYNC_TIMEZONE``, or UTC while it is not a timezone name (the problem is reported, not raised)."""
    try:
        return env_timezone()
    except ConfigurationError:
        return FALLBACK_TIMEZONE


def schedule_status(spec: Spec) -> dg.DefaultScheduleStatus:
    """RUNNING for an enabled system's schedules, STOPPED for the others'."""
    return dg.DefaultScheduleStatus.RUNNING if is_enabled(spec) else dg.DefaultScheduleStatus.STOPPED


def sensor_status(spec: Spec) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if is_enabled(spec) else dg.DefaultSensorStatus.STOPPED
