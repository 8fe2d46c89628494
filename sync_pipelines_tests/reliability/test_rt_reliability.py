"""RT sync under crashes and with secrets in play: nothing lost, nothing written twice, nothing leaked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.databases import seed_students
from devkit.sandbox.rt import RequestTrackerSandbox
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import Knobs, ThreadedSandbox
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.core.job_command import job_execute_command
from sync_pipelines.sync.state import SyncStateStore

pytestmark = pytest.mark.e2e

PUT = "PUT /REST/2.0/user/{id}"
TOKEN = "rt-secret-7f3c9d2e41aa"


def job_command(tmp_path: Path, config: dict | None = None) -> list[str]:
    path = None
    if config:
        path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
        path.write_text(json.dumps({"ops": {"rt_user_custom_fields": {"config": config}}}))
    return job_execute_command("rt_user_sync", path)


@pytest.fixture
def rt_env(make_pg_url, tmp_path: Path):
    students = generate_students(150, seed=5)
    students_url, state_url = make_pg_url(), make_pg_url()
    seed_students(students_url, students, schema="legacy")
    sandbox = RequestTrackerSandbox.from_sample(150, seed=5, knobs=Knobs(seed=3), token=TOKEN)
    with ThreadedSandbox(sandbox) as rt:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(tmp_path),
            "STUDENTS_DATABASE_URL": students_url,
            "SYNC_STATE_DATABASE_URL": state_url,
            "RT_URL": rt.url,
            "RT_TOKEN": TOKEN,
        }
        expected = {s.rt_user_id: ([s.grade], [s.student_id]) for s in students if s.rt_user_id}
        yield rt, env, expected, state_url


def rt_values(rt: ThreadedSandbox) -> dict[int, tuple[list[str], list[str]]]:
    return {
        int(key): (user["CustomFields"].get("Grade", []), user["CustomFields"].get("Student ID", []))
        for key, user in rt.state()["users"].items()
    }


def test_killed_in_the_middle_of_applying_then_rerun(rt_env, tmp_path: Path) -> None:
    rt, env, expected, state_url = rt_env
    differing = {key for key, value in expected.items() if rt_values(rt)[key] != value}
    assert len(differing) > 40
    rt.set_knobs(latency_ms=60)
    process = subprocess.Popen(
        job_command(tmp_path, {"batch_size": 5}),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = create_database_engine(state_url, "SYNC_STATE_DATABASE_URL")
    deadline = time.monotonic() + 120
    applied = 0
    while time.monotonic() < deadline and applied < 10:
        time.sleep(0.1)
        with engine.connect() as connection:
            try:
                applied = connection.execute(
                    sa.text("SELECT count(DISTINCT record_key) FROM sync_audit WHERE status = 'applied'")
                ).scalar()
            except sa.exc.ProgrammingError:
                connection.rollback()
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert applied >= 10, "the run was killed before it applied anything"
    written_before = rt.requests(PUT)
    assert written_before < len(differing), "the run finished before it could be killed"
    # The batch in flight when the process died is still logged as pending: the next run settles it.
    assert SyncStateStore.from_url(state_url).settlement.pending("rt_user_custom_fields")

    rt.set_knobs(latency_ms=0)
    rerun = subprocess.run(job_command(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # Exactly the expected state. Every user is written once over both runs, except the requests the kill cut
    # off (at most one batch of 5): RT dropped those unanswered, so the rerun sends them again.
    assert {k: v for k, v in rt_values(rt).items() if k in expected} == expected
    assert len(differing) <= rt.requests(PUT) <= len(differing) + 5
    # The audit log holds one applied row per changed field, nothing left in flight, and matches RT.
    audit = SyncStateStore.from_url(state_url).audit.rows("rt_user_custom_fields")
    assert SyncStateStore.from_url(state_url).settlement.pending("rt_user_custom_fields") == {}
    applied_rows = [row for row in audit if row["status"] == "applied"]
    assert {int(row["record_key"]) for row in applied_rows} == differing
    for row in applied_rows:
        grades, ids = expected[int(row["record_key"])]
        assert row["new_value"] == (grades[0] if row["field"] == "Grade" else ids[0])


def test_secrets_appear_nowhere(rt_env, tmp_path: Path) -> None:
    rt, env, _, state_url = rt_env
    ok = subprocess.run(
        job_command(tmp_path, {"limit": 20}), env=env, capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert 1 <= rt.requests(PUT) <= 20  # the run config's limit held
    rt.change_state({"action": "set_token", "token": "something-else"})
    failed = subprocess.run(job_command(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0  # a failing sync exits non-zero
    assert "RT_TOKEN" in failed.stdout + failed.stderr
    haystacks = [ok.stdout, ok.stderr, failed.stdout, failed.stderr]
    os.environ["DAGSTER_HOME"] = str(tmp_path)
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            haystacks.append(json.dumps(run.run_config, default=str))
            haystacks.append(json.dumps(run.tags, default=str))
            for entry in instance.all_logs(run.run_id):
                haystacks.append(entry.user_message or "")
                if entry.dagster_event is not None:
                    haystacks.append(repr(entry.dagster_event))
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in {".out", ".err", ".log", ".complete"}:
            haystacks.append(path.read_text(errors="replace"))
    audit = SyncStateStore.from_url(state_url).audit.rows()
    haystacks.append(json.dumps(audit, default=str))
    assert len(haystacks) > 10
    for text in haystacks:
        assert TOKEN not in text
