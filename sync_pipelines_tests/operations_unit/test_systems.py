"""``SYNC_SYSTEMS``: one organisation, one sync. Only the enabled systems' schedules and sensors start RUNNING,
and only their checks are in ``sync_checks``; a system listed without its variables is reported, one line per
variable, and the code location still loads every asset. Every registered sync is expected what its spec says
(``harness.registry``), so a sync added to the registry is tested here unchanged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from sync_pipelines.defs.rt.sync import RT_SYNC
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_builder import build_sync
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import configuration_problems, enabled_systems
from sync_pipelines_tests.harness import warm_python
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.harness.registry import every_variable, expected_checks

SPECS = {spec.system: spec for spec in SYNCS}
EVERY_VARIABLE = {name: "set" for name in every_variable(SYNCS)}
ONLY = {spec.system: {name: "set" for name in spec.required_variables} for spec in SYNCS}

LOAD = """
import json
from sync_pipelines.definitions import defs
repo = defs.get_repository_def()
job = repo.get_job("sync_checks")
print(json.dumps({
    "schedules": {s.name: s.default_status.value for s in repo.schedule_defs},
    "sensors": {s.name: s.default_status.value for s in repo.sensor_defs},
    "checks": sorted(key.name for key in job.asset_layer.asset_graph.asset_check_keys),
}))
"""


def load(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in EVERY_VARIABLE and k != "SYNC_SYSTEMS"}
    return warm_python.run(["-c", LOAD], env={**clean, **env})


@pytest.mark.unit
def test_every_configured_system_is_enabled_by_default() -> None:
    assert enabled_systems(SYNCS, {}) == frozenset()
    for system, variables in ONLY.items():
        assert enabled_systems(SYNCS, variables) == {system}
    assert enabled_systems(SYNCS, EVERY_VARIABLE) == set(SPECS)
    assert enabled_systems(SYNCS, {**ONLY["rt"], "RT_TOKEN": "  "}) == frozenset()  # blank is unset
    listed = {**EVERY_VARIABLE, "SYNC_SYSTEMS": " rt , user_kinds"}
    assert enabled_systems(SYNCS, listed) == {"rt", "user_kinds"}


@pytest.mark.unit
def test_a_listed_system_without_its_variables_is_reported_one_line_per_variable() -> None:
    environ = {**ONLY["rt"], "SYNC_SYSTEMS": "rt,bakalari"}
    assert enabled_systems(SYNCS, environ) == {"rt", "bakalari"}
    problems = [problem for problem in configuration_problems(SYNCS, environ) if problem.system == "bakalari"]
    assert [str(problem) for problem in problems] == [
        f"{name}: is not set (bakalari is listed in SYNC_SYSTEMS); its runs fail until it is"
        for name in ("BAKALARI_URL", "BAKALARI_USERNAME", "BAKALARI_PASSWORD", "EDURPG_DATABASE_URL")
    ]
    assert all(problem.stops_runs for problem in problems)
    unknown = configuration_problems(SYNCS, {"SYNC_SYSTEMS": "zlv,user_kinds"})
    assert str(unknown[0]) == (
        f"SYNC_SYSTEMS: unknown system(s) 'zlv', left out; the systems are {', '.join(SPECS)}"
    )
    assert enabled_systems(SYNCS, {"SYNC_SYSTEMS": "zlv,user_kinds"}) == {"user_kinds"}


ALWAYS_RUNNING = {"prune_run_history_weekly", "sync_failure_alert", "run_worker_watchdog"}


def automation(system: str) -> set[str]:
    """The schedule and sensors of ``system``'s sync (RT's: ``students_changed``)."""
    from sync_pipelines.definitions import location

    built = location.syncs[system]
    return {SPECS[system].schedule.name, *(sensor.name for sensor in built.sensors)}


@pytest.mark.unit
def test_rts_sensor_is_its_own() -> None:
    assert automation("rt") == {"rt_user_sync_daily", "students_changed"}


@pytest.mark.integration
@pytest.mark.parametrize("system", list(SPECS))
@pytest.mark.parametrize("how", ["variables", "SYNC_SYSTEMS"])
def test_one_system_alone_runs_only_its_automation_and_checks(system: str, how: str) -> None:
    env = ONLY[system] if how == "variables" else {**EVERY_VARIABLE, "SYNC_SYSTEMS": system}
    loaded = load(env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    running = {
        name
        for kind in ("schedules", "sensors")
        for name, status in found[kind].items()
        if status == "RUNNING"
    }
    assert running == automation(system) | ALWAYS_RUNNING
    assert set(found["checks"]) == expected_checks(SPECS[system])
    if system == "rt":  # the interface's names: RT's custom fields are checked with RT alone
        assert "rt_custom_fields_exist" in found["checks"]


LOAD_ASSETS = """
import json
import dagster as dg
from sync_pipelines.definitions import defs
repo = defs.get_repository_def()
print(json.dumps({
    "assets": sorted(key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()),
    "rt": repo.assets_defs_by_key[dg.AssetKey("rt_user_custom_fields")].descriptions_by_key[
        dg.AssetKey("rt_user_custom_fields")
    ],
    "user_kinds": repo.assets_defs_by_key[dg.AssetKey("user_kinds")].descriptions_by_key[dg.AssetKey("user_kinds")],
}))
"""
RT_TOKEN_LINE = "RT_TOKEN: is not set (rt is listed in SYNC_SYSTEMS); its runs fail until it is"


@pytest.mark.integration
def test_a_listed_system_without_its_token_is_reported_and_every_asset_loads() -> None:
    environ = {**ONLY["rt"], **ONLY["user_kinds"], "SYNC_SYSTEMS": "rt,user_kinds"}
    del environ["RT_TOKEN"]
    clean = {k: v for k, v in os.environ.items() if k not in EVERY_VARIABLE and not k.endswith("_SYNC_CRON")}
    env = {**clean, **environ}
    env.pop("SYNC_TIMEZONE", None)
    loaded = warm_python.run(["-c", LOAD_ASSETS], env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert found["assets"] == ["bakalari_entities", "rt_user_custom_fields", "students", "user_kinds"]
    assert found["rt"].startswith("Not configured: rt cannot run: RT_TOKEN is not set")
    assert not found["user_kinds"].startswith("Not configured")
    checked = warm_python.run(["-m", "sync_pipelines.config_check"], env=env)
    assert (checked.returncode, checked.stdout.splitlines()) == (1, [RT_TOKEN_LINE]), checked.stderr[-2000:]
    environ["RT_TOKEN"] = "set"
    fixed = warm_python.run(["-m", "sync_pipelines.config_check"], env={**env, **environ})
    assert (fixed.returncode, fixed.stdout.strip()) == (
        0,
        "configuration ok; enabled systems: rt, user_kinds",
    )


@pytest.mark.integration
def test_an_unconfigured_systems_undo_and_check_fail_in_the_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not only the sync: the undo job and the checks of a system missing RT_TOKEN fail naming it, reading no
    variable through Dagster (whose missing ``EnvVar`` would be a traceback)."""
    for name in EVERY_VARIABLE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNC_SYSTEMS", "rt")
    monkeypatch.setenv("STUDENTS_DATABASE_URL", "sqlite:///unused.db")
    monkeypatch.setenv("RT_URL", "http://127.0.0.1:9")
    built = build_sync(RT_SYNC)
    line = "rt cannot run: RT_TOKEN is not set (rt is listed in SYNC_SYSTEMS); set it or leave rt out of SYNC_SYSTEMS"
    resources = {
        **built.definitions.resources,
        "sync_state": SyncStateResource(database_url=f"sqlite:///{tmp_path}/s.db"),
    }
    with instance_with_events_in_memory() as instance:
        undo = built.undo_job.execute_in_process(
            run_config={"ops": {"rt_user_custom_fields_undo": {"config": {"run_id": "any"}}}},
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        # The RT asset's prerequisite check, run alone as sync_checks runs it.
        check = dg.materialize(
            [built.asset],
            selection=dg.AssetSelection.checks(
                dg.AssetCheckKey(dg.AssetKey("rt_user_custom_fields"), "rt_custom_fields_exist")
            ),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        for result in (undo, check):
            assert not result.success
            [failure] = [event for event in result.all_events if event.is_step_failure]
            assert (
                failure.step_failure_data.error.message.strip()
                == f"dagster._core.definitions.events.Failure: {line}"
            )
