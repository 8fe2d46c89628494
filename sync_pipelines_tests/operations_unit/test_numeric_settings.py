"""Every numeric setting goes through one rule (``core.env.env_number``): a number, finite, within its bounds, or
refused in one line naming the variable, where it is read and by ``python -m sync_pipelines.config_check``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from sync_pipelines.code_server_stop import grace_seconds
from sync_pipelines.core.database import timeout_setting
from sync_pipelines.core.env import NumberSetting
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.settings import SHARED_SETTINGS, api_limits
from sync_pipelines.defs.bakalari.accounts import save_patience
from sync_pipelines.defs.operations.run_history import default_retention_days, state_retention
from sync_pipelines.defs.operations.run_workers import CHECK_INTERVAL, check_interval_seconds
from sync_pipelines.defs.rt.sync import RT_SYNC
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_builder import build_sync, run_tags_of
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import configuration_problems
from sync_pipelines.sync.lease import lease_wait_seconds
from sync_pipelines.sync.record_errors import max_record_errors_percent
from sync_pipelines.sync.replay import plan_max_age
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory

EVERY_SETTING: dict[str, NumberSetting] = {
    setting.name: setting
    for setting in (
        *SHARED_SETTINGS,
        *(setting for spec in SYNCS for setting in spec.settings),
        *(spec.max_runtime_setting for spec in SYNCS),
        CHECK_INTERVAL,
    )
}
README = (Path(__file__).parents[2] / "README.md").read_text()


def _api(system: str) -> Callable[[], Any]:
    return lambda: api_limits(system, None, None, 30.0, 5)


# Where the code reads each setting: the reader must refuse a wrong value naming it.
READERS: dict[str, Callable[[], Any]] = {
    "SYNC_DEADLINE_SECONDS": _api("RT"),
    "SYNC_LEASE_WAIT_SECONDS": lease_wait_seconds,
    "SYNC_PLAN_MAX_AGE_HOURS": plan_max_age,
    "SYNC_LOCK_TIMEOUT_SECONDS": lambda: timeout_setting("SYNC_LOCK_TIMEOUT_SECONDS"),
    "SYNC_STATEMENT_TIMEOUT_SECONDS": lambda: timeout_setting("SYNC_STATEMENT_TIMEOUT_SECONDS"),
    "SYNC_CONNECT_TIMEOUT_SECONDS": lambda: timeout_setting("SYNC_CONNECT_TIMEOUT_SECONDS"),
    "SYNC_RUN_RETENTION_DAYS": default_retention_days,
    "SYNC_AUDIT_RETENTION_DAYS": state_retention,
    "SYNC_PLAN_RETENTION_DAYS": state_retention,
    "SYNC_WRITE_AHEAD_RETENTION_DAYS": state_retention,
    "SYNC_CODE_SERVER_STOP_GRACE_SECONDS": grace_seconds,
    "SYNC_MAX_RECORD_ERRORS_PERCENT": max_record_errors_percent,
    "SYNC_RUN_WORKER_CHECK_SECONDS": check_interval_seconds,
    "BAKALARI_TOKEN_SAVE_PATIENCE_SECONDS": save_patience,
    **{
        f"{system}_{name}": _api(system)
        for system in ("RT", "BAKALARI", "PORTAILDF")
        for name in ("MAX_CONCURRENCY", "REQUESTS_PER_SECOND", "MAX_ANSWER_BYTES", "DEADLINE_SECONDS")
    },
    **{
        spec.max_runtime_variable: (lambda spec=spec: spec.max_runtime_setting.number())  # type: ignore[misc]
        for spec in SYNCS
    },
}


def wrong_values(setting: NumberSetting) -> list[str]:
    """Text, NaN, infinities, too long a number, and the numbers just past each bound."""
    values = ["soon", "nan", "NaN", "inf", "-inf", "1e999", "9" * 5000]
    low = setting.above if setting.above is not None else (setting.minimum or 0)
    values.append(
        str(low) if setting.above is not None else str(low - (1 if setting.kind is int else 0.0005))
    )
    if setting.maximum is not None:
        values.append(str(int(setting.maximum) + 1))
    if setting.kind is int:
        values.append(f"{max(low, 0) + 1}.5")
    return values


@pytest.mark.unit
def test_every_setting_has_a_reader_here() -> None:
    assert set(READERS) == set(EVERY_SETTING)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(EVERY_SETTING))
def test_every_numeric_setting_refuses_what_it_does_not_take_in_one_line_naming_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = EVERY_SETTING[name]
    for value in wrong_values(setting):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError) as refused:
            READERS[name]()
        message = str(refused.value)
        assert refused.value.setting == name, value
        assert message.startswith(f"{name}: must be ") and "\n" not in message and len(message) < 160, message
    monkeypatch.delenv(name)
    READERS[name]()  # unset: the default


@pytest.mark.unit
def test_the_run_retention_is_refused_rather_than_taken_as_90_days(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, message in {
        "0": "SYNC_RUN_RETENTION_DAYS: must be at least 1 day, got '0'",
        "ninety": "SYNC_RUN_RETENTION_DAYS: must be a whole number of days, got 'ninety'",
        "30.5": "SYNC_RUN_RETENTION_DAYS: must be a whole number of days, got '30.5'",
        "99999999": "SYNC_RUN_RETENTION_DAYS: must be at most 36500 days, got '99999999'",
    }.items():
        monkeypatch.setenv("SYNC_RUN_RETENTION_DAYS", value)
        with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
            default_retention_days()
    monkeypatch.setenv("SYNC_RUN_RETENTION_DAYS", " 30 ")
    assert default_retention_days() == 30


@pytest.mark.unit
def test_the_configuration_check_reports_every_wrong_numeric_setting_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retention settings, a shared limit (once, though every system reads it) and an enabled system's own;
    a system that is not enabled is not checked."""
    environ = {name: "set" for name in RT_SYNC.required_variables}
    for name, value in {
        "SYNC_RUN_RETENTION_DAYS": "0",
        "SYNC_AUDIT_RETENTION_DAYS": "a year",
        "SYNC_DEADLINE_SECONDS": "nan",
        "RT_REQUESTS_PER_SECOND": "nan",
        "BAKALARI_MAX_CONCURRENCY": "0",  # bakalari is not enabled
    }.items():
        monkeypatch.setenv(name, value)
    lines = [str(problem) for problem in configuration_problems(SYNCS, environ)]
    suffix = "; the runs reading it fail until it is fixed"
    assert lines == [
        "SYNC_DEADLINE_SECONDS: must be a finite number of seconds, got 'nan'" + suffix,
        "SYNC_RUN_RETENTION_DAYS: must be at least 1 day, got '0'" + suffix,
        "SYNC_AUDIT_RETENTION_DAYS: must be a whole number of days, got 'a year'" + suffix,
        "RT_REQUESTS_PER_SECOND: must be a finite number, got 'nan'" + suffix,
    ]
    problems = {problem.setting: problem for problem in configuration_problems(SYNCS, environ)}
    assert problems["RT_REQUESTS_PER_SECOND"].stops_runs and problems["RT_REQUESTS_PER_SECOND"].system == "rt"
    assert not problems["SYNC_RUN_RETENTION_DAYS"].stops_runs


@pytest.mark.integration
def test_a_wrong_setting_of_an_enabled_system_fails_its_runs_in_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``RT_REQUESTS_PER_SECOND=nan``: the RT sync is defined as not runnable, and the check that guards it fails
    with the variable's line, not "1 blocking asset check failed"."""
    for name in RT_SYNC.required_variables:
        monkeypatch.setenv(
            name, "sqlite:///unused.db" if name.endswith("DATABASE_URL") else "http://127.0.0.1:9"
        )
    monkeypatch.setenv("SYNC_SYSTEMS", "rt")
    monkeypatch.setenv("RT_REQUESTS_PER_SECOND", "nan")
    monkeypatch.setenv("RT_MAX_CONCURRENCY", "0")
    line = (
        "rt cannot run: RT_MAX_CONCURRENCY: must be at least 1, got '0'; "
        "RT_REQUESTS_PER_SECOND: must be a finite number, got 'nan'"
    )
    built = build_sync(RT_SYNC)
    description = built.asset.descriptions_by_key[dg.AssetKey("rt_user_custom_fields")]
    assert description.startswith(f"Not configured: {line}. ")
    with instance_with_events_in_memory() as instance:
        # The RT asset's prerequisite check, run alone as sync_checks runs it.
        check = dg.materialize(
            [built.asset],
            selection=dg.AssetSelection.checks(
                dg.AssetCheckKey(dg.AssetKey("rt_user_custom_fields"), "rt_custom_fields_exist")
            ),
            resources={
                **built.definitions.resources,
                "sync_state": SyncStateResource(database_url=f"sqlite:///{tmp_path}/state.db"),
            },
            instance=instance,
            raise_on_error=False,
        )
    [failure] = [event for event in check.all_events if event.is_step_failure]
    assert (
        failure.step_failure_data.error.message.strip() == f"dagster._core.definitions.events.Failure: {line}"
    )


@pytest.mark.unit
def test_a_wrong_max_runtime_keeps_the_specs_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SYNCS[0]
    monkeypatch.setenv(spec.max_runtime_variable, str(7 * 86_400 + 1))
    assert run_tags_of(spec)["dagster/max_runtime"] == str(int(spec.max_runtime.total_seconds()))


def readme_name(name: str) -> str:
    """How the README's table names a setting: one row for each API setting of the three systems, and for the
    jobs' runtime limits."""
    if name in {spec.max_runtime_variable for spec in SYNCS}:
        return "<JOB>_MAX_RUNTIME_SECONDS"
    api = re.fullmatch(
        r"(RT|BAKALARI|PORTAILDF)_(MAX_CONCURRENCY|REQUESTS_PER_SECOND|MAX_ANSWER_BYTES|DEADLINE_SECONDS)",
        name,
    )
    return f"<SYSTEM>_{api.group(2)}" if api else name


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(EVERY_SETTING))
def test_the_readme_gives_every_numeric_setting_and_its_bounds(name: str) -> None:
    shown = readme_name(name)
    rows = [line for line in README.splitlines() if line.startswith(f"| `{shown}` |")]
    assert len(rows) == 1, f"no row for {shown} in the README's table of numeric settings"
    assert f"| {EVERY_SETTING[name].bounds()} |" in rows[0], rows[0]
