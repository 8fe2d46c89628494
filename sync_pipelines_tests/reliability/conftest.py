"""Shared tools of the reliability suite: sync jobs as killable subprocesses, a PostgreSQL gate that holds a
sync's write where a test wants to kill it, EduRPG read back by Bakaláři id, the audit log checked against a
target, the places a secret could leak to, and a webhook receiver for alerts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from devkit.sandbox.bakalari import SampleSchool
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.core.job_command import job_execute_command
from sync_pipelines.sync.plan import values_equal
from sync_pipelines.sync.state import APPLIED, FAILED, NOT_APPLIED
from sync_pipelines_tests.harness.alerts import AlertReceiver

REPO = Path(__file__).resolve().parents[2]
GATE_KEY = 7_341_001


def with_password(url: str, password: str) -> str:
    """``postgresql://postgres@host/db`` -> ``postgresql://postgres:<password>@host/db``.

    The test server trusts local connections, so the password is accepted and ignored: it is there to be
    leaked, and must not be.
    """
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


# -- sync jobs as subprocesses -----------------------------------------------------------------------------------
class JobRunner:
    """``dagster job execute`` of one job, as an operator runs it, against one ``DAGSTER_HOME``."""

    def __init__(self, home: Path, job: str, asset: str, env: dict[str, str]) -> None:
        self.home = home
        self.job = job
        self.asset = asset
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        base = {key: value for key, value in os.environ.items() if key != "SYNC_STATE_DATABASE_URL"}
        self.env = {**base, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore", **env}
        self._configs = 0

    def command(self, config: dict[str, Any] | None = None) -> list[str]:
        if not config:
            return job_execute_command(self.job)
        self._configs += 1
        path = self.home / f"run-config-{self._configs}.yaml"
        path.write_text(yaml.safe_dump({"ops": {self.asset: {"config": config}}}))
        return job_execute_command(self.job, path)

    def run(self, config: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(config), env=self.env, cwd=REPO, capture_output=True, text=True, timeout=300
        )

    def start(self, config: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
        """In its own session, so the kill reaches every process the job started."""
        return subprocess.Popen(
            self.command(config),
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll ``condition`` while the held run stays alive (it is never released, so a wrong wait fails here)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended while the test waited for it"
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.05)


# -- holding a write -------------------------------------------------------------------------------------------
class WriteGate:
    """An advisory lock held by the test; a trigger that takes it makes the sync's transaction wait there.

    The sync then sits at a known point (a batch written but not yet settled, or half written) for as long
    as the test wants, which is where the test kills it: no timing guesswork.
    """

    def __init__(self, url: str, setting: str) -> None:
        self.engine = create_database_engine(url, setting)
        self._holder = self.engine.connect()
        self._holder.execute(sa.text(f"SELECT pg_advisory_lock({GATE_KEY})"))
        self._holder.commit()

    @staticmethod
    def wait_statement() -> str:
        """The PL/pgSQL statement a trigger runs to wait at the gate."""
        return f"PERFORM pg_advisory_xact_lock({GATE_KEY})"

    def _waiting_pids(self) -> list[int]:
        query = sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = :key "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        with self.engine.connect() as connection:
            return [row.pid for row in connection.execute(query, {"key": GATE_KEY})]

    def wait_until_held(self, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self._waiting_pids():
            assert process.poll() is None, "the run ended before reaching the held write"
            assert time.monotonic() < deadline, "the run never reached the held write"
            time.sleep(0.05)

    def release(self) -> None:
        """End the transactions of the killed process, then open the gate.

        PostgreSQL notices a vanished client only when it next talks to it; ending its backend stands for
        that, so the transaction the kill interrupted is rolled back now rather than at some later moment.
        """
        with self.engine.connect() as connection:
            for pid in self._waiting_pids():
                connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        self._holder.execute(sa.text(f"SELECT pg_advisory_unlock({GATE_KEY})"))
        self._holder.close()


# -- what EduRPG holds, by Bakaláři id -----------------------------------------------------------------------------
@dataclass
class EduRpgView:
    """EduRPG's entities named by their Bakaláři ids (through ``"ExternalRef"``), and every row's fields keyed
    as the sync's plan records are (``Class:<id>``, ``Enrollment:<student>-<subject>``, ...)."""

    classes: dict[str, tuple[str, int]] = field(default_factory=dict)
    subjects: dict[str, tuple[str, str]] = field(default_factory=dict)
    users: dict[str, tuple[str, str, str | None, str]] = field(default_factory=dict)
    enrollments: set[tuple[str, str, str]] = field(default_factory=set)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    ref_counts: dict[str, int] = field(default_factory=dict)

    def entities(self) -> tuple[Any, ...]:
        return self.classes, self.subjects, self.users, self.enrollments


def _rows(connection: sa.Connection, table: str) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(sa.text(f'SELECT * FROM "{table}"'))]


def read_edurpg(engine: sa.Engine) -> EduRpgView:
    with engine.connect() as connection:
        tables = {name: _rows(connection, name) for name in ("Class", "Subject", "User", "Enrollment")}
        refs = _rows(connection, "ExternalRef")
    view = EduRpgView(
        row_counts={name: len(found) for name, found in tables.items()},
        ref_counts=dict(Counter(ref["type"] for ref in refs)),
    )
    by_id = {name: {row["id"]: row for row in found} for name, found in tables.items()}
    bakalari_id: dict[str, dict[str, str]] = {"Class": {}, "Subject": {}, "User": {}}
    kinds = {"class": "Class", "subject": "Subject", "user": "User"}
    for ref in refs:
        if ref["type"] in kinds:
            bakalari_id[kinds[ref["type"]]][ref["internalId"]] = ref["externalId"]
    for ref in refs:
        kind = kinds.get(ref["type"], "Enrollment")
        row = by_id[kind].get(ref["internalId"])
        if row is None:
            continue
        if kind == "Enrollment":
            student = bakalari_id["User"].get(row["userId"])
            subject = bakalari_id["Subject"].get(row["subjectId"])
            key = f"Enrollment:{student}-{subject}"
            view.enrollments.add((student, subject, bakalari_id["Class"].get(row["classId"])))
            held = {name: row[name] for name in ("id", "userId", "subjectId", "classId")}
        else:
            key = f"{kind}:{ref['externalId']}"
            held = {name: value for name, value in row.items() if name not in ("createdAt", "updatedAt")}
            held.pop("bakalariToken", None)
        held["ref"] = {"internalId": ref["internalId"], "metadata": ref["metadata"]}
        view.fields[key] = held
        if kind == "Class":
            view.classes[ref["externalId"]] = (row["name"], row["grade"])
        elif kind == "Subject":
            view.subjects[ref["externalId"]] = (row["name"], row["code"])
        elif kind == "User":
            school_class = bakalari_id["Class"].get(row["classId"]) if row["classId"] else None
            view.users[ref["externalId"]] = (row["name"], row["role"], school_class, row["email"])
    return view


def expected_edurpg(school: SampleSchool) -> EduRpgView:
    """What a complete sync of ``school`` leaves in EduRPG (students seeded as ``seed_edurpg`` seeds them)."""
    teaching = {lesson.teacher_id for lesson in school.lessons}  # the operator's /subjects shows their e-mail
    view = EduRpgView()
    view.classes = {cls.id: (cls.abbrev, cls.grade) for cls in school.classes}
    view.subjects = {subject.id: (subject.name, subject.abbrev) for subject in school.subjects}
    for teacher in school.teachers:
        email = teacher.email if teacher.id in teaching and teacher.email else f"{teacher.id}@bakalari.local"
        view.users[teacher.id] = (teacher.name, "TEACHER", None, email)
    for student in school.students:
        view.users[student.user_id] = (
            student.full_name,
            "STUDENT",
            student.class_id,
            f"{student.user_id}@bakalari.local",
        )
        view.enrollments |= {(student.user_id, subject, student.class_id) for subject in student.subject_ids}
    view.row_counts = {
        "Class": len(view.classes),
        "Subject": len(view.subjects),
        "User": len(view.users),
        "Enrollment": len(view.enrollments),
    }
    view.ref_counts = {
        "class": len(view.classes),
        "subject": len(view.subjects),
        "user": len(view.users),
        "enrollment": len(view.enrollments),
    }
    return view


# -- the audit log ------------------------------------------------------------------------------------------------
def check_audit(audit: list[dict[str, Any]], held: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit log agrees with the target: every row settled, exactly one ``applied`` row per changed
    (record, field), and each holds the value the target holds now. Returns the applied rows."""
    assert {row["status"] for row in audit} <= {APPLIED, FAILED, NOT_APPLIED}
    applied = [row for row in audit if row["status"] == APPLIED]
    twice = [
        key for key, count in Counter((r["record_key"], r["field"]) for r in applied).items() if count > 1
    ]
    assert twice == [], "a change was applied (and audited) twice"
    mismatched = [
        (row["record_key"], row["field"], row["new_value"], held.get(row["record_key"], {}).get(row["field"]))
        for row in applied
        if row["record_key"] not in held
        or not values_equal(held[row["record_key"]].get(row["field"]), row["new_value"])
    ]
    assert mismatched == [], "applied audit rows that the target does not hold"
    return applied


# -- where secrets could leak -------------------------------------------------------------------------------------
def recorded_texts(home: Path) -> list[str]:
    """Everything Dagster kept of the runs under ``home``: run config and tags, every event (messages, metadata
    of materializations and observations, errors) and the captured compute logs."""
    texts: list[str] = []
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            for record in instance.get_run_records():
                run = record.dagster_run
                texts.append(json.dumps(run.run_config, default=str))
                texts.append(json.dumps(run.tags, default=str))
                for entry in instance.all_logs(run.run_id):
                    texts.append(entry.user_message or "")
                    if entry.dagster_event is not None:
                        texts.append(repr(entry.dagster_event))
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    texts += compute_logs(home)
    return texts


def compute_logs(home: Path) -> list[str]:
    return [
        path.read_text(errors="replace")
        for path in (home / "storage").rglob("*")
        if path.is_file() and path.suffix in {".out", ".err", ".log"}
    ]


def leaked(secrets: list[str], texts: list[str]) -> list[str]:
    """The secrets found in any of ``texts`` (empty when none leaked)."""
    return sorted({secret for secret in secrets for text in texts if secret and secret in text})


# -- alerts -------------------------------------------------------------------------------------------------------
@pytest.fixture
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    yield receiver
    receiver.close()
