"""``bakalari_sync`` of the deployed code location (run config and environment as an operator gives them), and a
``dagster job execute`` process killed right after a refresh."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
import yaml

from devkit.sandbox.bakalari import (
    OPERATOR_PASSWORD,
    OPERATOR_USERNAME,
    BakalariSandbox,
    SampleSchool,
)
from devkit.sandbox.server import Knobs, ThreadedSandbox
from sync_pipelines.core.job_command import job_execute_command
from sync_pipelines.definitions import defs
from sync_pipelines_tests.bakalari.helpers import (
    counts,
    engine_for,
    failure_message,
    observation,
    run_sync,
    sandbox_tokens,
    stored_tokens_match,
    sync_resources,
    system_logs,
    tokens,
)

REPO = Path(__file__).resolve().parents[2]


def job_env(tmp_path: Path, bakalari_url: str, edurpg_url: str, **extra: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {key: value for key, value in os.environ.items() if key != "SYNC_STATE_DATABASE_URL"}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "BAKALARI_URL": bakalari_url,
            "BAKALARI_USERNAME": OPERATOR_USERNAME,
            "BAKALARI_PASSWORD": OPERATOR_PASSWORD,
            "EDURPG_DATABASE_URL": edurpg_url,
            "PYTHONWARNINGS": "ignore",
            **extra,
        }
    )
    return env


def job_command(config: Path | None = None) -> list[str]:
    return job_execute_command("bakalari_sync", config)


def write_config(tmp_path: Path, name: str, **config: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"ops": {"bakalari_entities": {"config": config}}}))
    return path


def run_deployed_job(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, config: Path | None = None
) -> dg.ExecuteInProcessResult:
    """``bakalari_sync`` of the deployed code location in this process: resources from ``env`` (as ``dagster job
    execute`` resolves them), the run config file ``-c`` would read, the instance of ``env``'s DAGSTER_HOME."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run_config = yaml.safe_load(config.read_text()) if config is not None else None
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def("bakalari_sync").execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )


@pytest.mark.integration
def test_the_deployed_job_syncs_and_dry_runs(
    tmp_path: Path,
    bakalari: ThreadedSandbox,
    edurpg_url: str,
    school: SampleSchool,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    engine = engine_for(edurpg_url)
    env = job_env(tmp_path, bakalari.url, edurpg_url)
    monkeypatch.delenv("SYNC_STATE_DATABASE_URL", raising=False)
    result = run_deployed_job(env, monkeypatch)
    output = capfd.readouterr()
    assert result.success, failure_message(result)
    found = counts(engine)
    assert found["Class"] == len(school.classes)
    assert found["Enrollment"] == sum(len(student.subject_ids) for student in school.students)
    assert stored_tokens_match(engine, bakalari.state())
    logs = system_logs(engine)
    assert [row["message"] for row in logs] == ["sync_start", "sync_ok"]
    assert OPERATOR_PASSWORD not in output.out + output.err

    bakalari.change_state({"action": "rename_class", "class_id": school.classes[0].id, "abbrev": "9.Z"})
    dry = write_config(tmp_path, "dry.yaml", dry_run=True)
    result = run_deployed_job(env, monkeypatch, dry)
    assert result.success, failure_message(result)
    with engine.connect() as connection:
        names = set(connection.execute(sa.text('SELECT "name" FROM "Class"')).scalars())
    assert "9.Z" not in names  # planned, not written
    assert len(system_logs(engine)) == 2


@pytest.mark.e2e
def test_a_process_killed_right_after_a_refresh_leaves_a_working_token(
    tmp_path: Path, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    first = sorted(school.students, key=lambda student: student.user_id)[0]
    seeded = tokens(engine)[first.user_id]
    # Slow answers and one request at a time: the kill lands while the first student's reads are under way.
    with ThreadedSandbox(BakalariSandbox(school, Knobs(latency_ms=300))) as server:
        env = job_env(tmp_path, server.url, edurpg_url, BAKALARI_MAX_CONCURRENCY="1")
        config = write_config(tmp_path, "one.yaml", limit=1)
        process = subprocess.Popen(
            job_command(config),
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while tokens(engine)[first.user_id] == seeded:
                assert process.poll() is None, "the run ended before refreshing the token"
                assert time.monotonic() < deadline, "no refreshed token was committed in time"
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        assert process.returncode == -signal.SIGKILL

        stored = tokens(engine)[first.user_id]
        assert stored != seeded
        assert stored == sandbox_tokens(server.state())[first.user_id]
        assert counts(engine)["Class"] == 0  # killed before any entity was written
        assert [row["message"] for row in system_logs(engine)] == ["sync_start"]
        with httpx.Client(base_url=server.url) as http:
            old = http.post(
                "/api/login",
                data={"client_id": "ANDR", "grant_type": "refresh_token", "refresh_token": seeded},
            )
        assert old.json()["error"] == "invalid_grant"  # the seeded token died with the refresh

        # The next run opens the account with the token the killed run committed.
        result = run_sync(sync_resources(server.url, edurpg_url))
        assert result.success
        metadata = observation(result)
        assert metadata["students_read"] == len(school.students)
        assert metadata["students_needing_login"] == 0
        assert stored_tokens_match(engine, server.state())
