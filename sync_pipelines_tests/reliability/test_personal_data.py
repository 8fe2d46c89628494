"""Personal data stays where it belongs: every sync, run as an operator runs it (dry run, first run, delta run, a
failing run, an undo), leaves no student's, teacher's or ZLV agent's name or e-mail in Dagster's storage (run and
event storage, step logs under ``DAGSTER_HOME``) or in what the command printed; the sync state database holds no
value a sync does not write (students' names, ZLV e-mails), and the names the Bakaláři sync does write only in
the audit rows and saved plans that review and undo need. Servers whose error answers (400) repeat what they were
sent, and name the person, leave no e-mail anywhere either."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from devkit.sandbox.bakalari import generate_school
from devkit.sandbox.portaildf import generate_portaildf_sample
from devkit.sandbox.sample_data import generate_students
from sync_pipelines.core.database import create_database_engine
from sync_pipelines_tests.harness.world import SEED, JobResult, SyncWorld, start_world

SIZE = 20
# A student of the student system renamed to something no other text can hold by chance.
PROBE_STUDENT = ("Quirinella", "Leakprobe-Žďárská")
# A ZLV agent's address with capitals, as ZLV stores it, and a Portail DF account for it.
PROBE_EMAIL = "Quirin.LEAKPROBE@Ddt-Probe.gouv.fr"
# The rows where the values a sync writes may be kept: what review and undo need.
REVIEW_TABLES = {"sync_audit", "sync_plans"}


@pytest.fixture
def world(postgres_server) -> Iterator[SyncWorld]:
    with ExitStack() as stack:
        yield start_world(stack, size=SIZE, postgres=postgres_server)


@pytest.fixture
def world_with_sqlite_state(world: SyncWorld, tmp_path: Path) -> SyncWorld:
    """The sync state on SQLite, outside DAGSTER_HOME: its audit rows may hold names, Dagster's may not."""
    world.env["SYNC_STATE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'sync_state.sqlite'}"
    return world


def _forms(text: str) -> set[str]:
    """``text`` as it may be stored: itself, JSON-escaped (``\\u017e``), URL-encoded, and lower-cased."""
    forms = {text, json.dumps(text)[1:-1], quote(text, safe="")}
    return forms | {form.lower() for form in forms}


def people(world: SyncWorld) -> dict[str, set[str]]:
    """The personal values of each source: those a sync never writes (``unwritten``) and those the Bakaláři
    sync writes to EduRPG (``written``)."""
    students = {f"{s.first_name} {s.last_name}" for s in generate_students(SIZE, seed=SEED)}
    school = generate_school(SIZE, SEED)
    emails = {u.email.strip() for u in generate_portaildf_sample(SIZE, seed=SEED).users if u.email.strip()}
    written = {s.full_name for s in school.students} | {t.name for t in school.teachers}
    written |= {t.email for t in school.teachers if t.email}
    return {"unwritten": students | {" ".join(PROBE_STUDENT)} | emails | {PROBE_EMAIL}, "written": written}


def seed_probes(world: SyncWorld) -> None:
    students = create_database_engine(world.url("STUDENTS_DATABASE_URL"), "STUDENTS_DATABASE_URL")
    with students.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE students SET first_name = :f, last_name = :l "
                "WHERE student_id = (SELECT min(student_id) FROM students WHERE rt_user_id IS NOT NULL)"
            ),
            {"f": PROBE_STUDENT[0], "l": PROBE_STUDENT[1]},
        )
    zlv = create_database_engine(world.url("ZLV_DATABASE_URL"), "ZLV_DATABASE_URL")
    with zlv.begin() as connection:
        connection.execute(
            sa.text("UPDATE users SET email = :e WHERE id = (SELECT min(id::text) FROM users)::uuid"),
            {"e": PROBE_EMAIL},
        )
    world.sandboxes["portaildf"].change_state(
        {"action": "add_account", "email": PROBE_EMAIL.lower(), "exterieur": True, "gestionnaire": False}
    )


@dataclass
class Outcome:
    """A run as the scenario needs it, from either way of running a job."""

    succeeded: bool
    run_id: str | None
    output: str  # what the command printed; "" for a run in this process


class Runner(Protocol):
    def __call__(self, world: SyncWorld, job: str, config: dict | None = None, **env: str) -> Outcome: ...


def run_command(world: SyncWorld, job: str, config: dict | None = None, **env: str) -> Outcome:
    """``dagster job execute``, as an operator runs it: its output is checked too."""
    result = world.run_job(job, config, env={**world.env, **env})
    return Outcome(result.succeeded, run_id_of(result) if result.succeeded else None, result.output)


def run_here(world: SyncWorld, job: str, config: dict | None = None, **env: str) -> Outcome:
    """The same job in this process, on the world's DAGSTER_HOME instance (its storage is checked)."""
    result = world.run_in_process(job, config, env={**world.env, **env})
    return Outcome(result.success, result.run_id, "")


def edit_behind_the_syncs(world: SyncWorld) -> None:
    """What the delta runs repair: a grade in the student system, a person's name in EduRPG, a kind in ZLV."""
    students = create_database_engine(world.url("STUDENTS_DATABASE_URL"), "STUDENTS_DATABASE_URL")
    with students.begin() as connection:
        connection.execute(sa.text("UPDATE students SET grade = (grade + 1) % 13"))
    edurpg = create_database_engine(world.url("EDURPG_DATABASE_URL"), "EDURPG_DATABASE_URL")
    with edurpg.begin() as connection:
        connection.execute(
            sa.text(
                'UPDATE "User" SET name = \'Hand Edited\' WHERE id = (SELECT min(id) FROM "User" '
                "WHERE role = 'STUDENT')"
            )
        )
    zlv = create_database_engine(world.url("ZLV_DATABASE_URL"), "ZLV_DATABASE_URL")
    with zlv.begin() as connection:
        connection.execute(sa.text("UPDATE users SET kind = 'aucun' WHERE kind IS NOT NULL"))


def failing_runs(world: SyncWorld, run: Runner) -> list[Outcome]:
    """One failing run per sync: an RT user that does not exist (a row error, made to fail the run by a threshold
    of 0 so that its failure line is printed too), refused credentials."""
    students = create_database_engine(world.url("STUDENTS_DATABASE_URL"), "STUDENTS_DATABASE_URL")
    with students.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE students SET rt_user_id = 99999, grade = 3 WHERE rt_user_id = "
                "(SELECT max(rt_user_id) FROM students)"
            )
        )
    return [
        run(world, "rt_user_sync", SYNC_MAX_RECORD_ERRORS_PERCENT="0"),
        run(world, "bakalari_sync", BAKALARI_PASSWORD="not-the-password"),
        run(world, "user_kind_sync", PORTAILDF_PASSWORD="not-the-password"),
    ]


# Each sync's job, its asset (the op taking the run config) and its undo job's op.
SYNCS = {
    "rt_user_sync": ("rt_user_custom_fields", "rt_user_custom_fields_undo"),
    "bakalari_sync": ("bakalari_entities", "bakalari_entities_undo"),
    "user_kind_sync": ("user_kinds", "user_kinds_undo"),
}


def run_id_of(result: JobResult) -> str:
    """The run id in ``dagster job execute``'s log lines (``<time> - dagster - <level> - <job> - <run id> - ...``)."""
    line = next(line for line in result.output.splitlines() if " - RUN_SUCCESS - " in line)
    return line.split(" - ")[4]


def found(text: str, values: set[str]) -> set[str]:
    return {value for value in values for form in _forms(value) if form in text}


def every_kind_of_run(world: SyncWorld, run: Runner, again: Runner | None = None) -> list[Outcome]:
    """Each sync as an operator runs it: a dry run, a first run, a dry run and a delta run after edits, a failing
    run, and the undo of the first run. ``again`` (default ``run``) runs the second dry run, the delta run and the
    undo: runs of a kind ``run`` already ran, whose output adds no new kind of line."""
    again = again or run
    seed_probes(world)

    def dry_run(job: str, runner: Runner = run) -> Outcome:
        return runner(world, job, {"ops": {SYNCS[job][0]: {"config": {"dry_run": True}}}})

    outcomes = [dry_run(job) for job in SYNCS]
    firsts = {job: run(world, job) for job in SYNCS}
    outcomes += firsts.values()
    assert all(result.succeeded for result in outcomes), [
        r.output[-2000:] for r in outcomes if not r.succeeded
    ]
    edit_behind_the_syncs(world)
    for job in SYNCS:
        outcomes += [dry_run(job, again), again(world, job)]
        assert outcomes[-1].succeeded, outcomes[-1].output[-2000:]
    failing = failing_runs(world, run)
    assert not any(result.succeeded for result in failing)
    outcomes += failing
    for job, (_, op) in SYNCS.items():
        undo = again(
            world,
            f"{job}_undo",
            {"ops": {op: {"config": {"run_id": firsts[job].run_id, "dry_run": False}}}},
        )
        assert undo.succeeded, undo.output[-2000:]
        outcomes.append(undo)
    return outcomes


def assert_no_personal_data_in_dagster_or_the_state(world: SyncWorld) -> None:
    """No personal value in Dagster's storage (run and event storage, step logs under DAGSTER_HOME); in the sync
    state only the values a sync writes, and only in the rows review and undo need."""
    values = people(world)
    everything = values["unwritten"] | values["written"]
    home = Path(world.env["DAGSTER_HOME"])
    stored = [path for path in home.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in stored)
    for path in stored:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert found(text, everything) == set(), path

    state = create_database_engine(world.env["SYNC_STATE_DATABASE_URL"], "SYNC_STATE_DATABASE_URL")
    holding: dict[str, set[str]] = {}
    with state.connect() as connection:
        for table in sa.inspect(state).get_table_names():
            rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            text = "\n".join(" ".join(str(value) for value in row) for row in rows)
            holding[table] = found(text, everything)
    state.dispose()
    assert all(not (held & values["unwritten"]) for held in holding.values()), holding
    assert {table for table, held in holding.items() if held} <= REVIEW_TABLES, holding
    assert holding["sync_audit"] & values["written"]  # the names the Bakaláři sync wrote, for its undo


@pytest.mark.e2e
def test_no_name_or_email_reaches_dagster_or_the_output(world: SyncWorld) -> None:
    """Every kind of run through ``dagster job execute`` (its output is checked), the repeated kinds in this
    process on the same DAGSTER_HOME (their storage is checked)."""
    outputs = every_kind_of_run(world, run_command, again=run_here)
    values = people(world)
    everything = values["unwritten"] | values["written"]
    printed = "\n".join(result.output for result in outputs)
    assert found(printed, everything) == set()
    assert_no_personal_data_in_dagster_or_the_state(world)


@pytest.mark.integration
def test_with_the_state_on_sqlite_no_name_or_email_reaches_dagster_and_the_state_keeps_only_what_undo_needs(
    world_with_sqlite_state: SyncWorld,
) -> None:
    """The same runs with the sync state on SQLite, run in this process: what the commands print is the test
    above's; here, what Dagster stores under DAGSTER_HOME and what the SQLite state holds."""
    every_kind_of_run(world_with_sqlite_state, run_here)
    assert_no_personal_data_in_dagster_or_the_state(world_with_sqlite_state)


# What an echoing server names besides what it was sent: an address no other text holds.
ECHOED_EMAIL = "Echo.Leakprobe@Skola-Probe.cz"


@pytest.mark.e2e
def test_error_answers_that_repeat_personal_data_leave_no_email_anywhere(world: SyncWorld) -> None:
    """Each sync meets a 400 that repeats its request and names the person: RT's PUT of every user, Bakaláři's
    refresh grant of every student, Portail DF's lookup of one agent. The runs report those records (by id, the
    answer's message masked), and no e-mail of those answers is found under ``DAGSTER_HOME``, in what the
    commands printed or in the state database."""
    seed_probes(world)
    echo = {"echo_text": f"for {ECHOED_EMAIL}"}
    world.sandboxes["rt"].set_knobs(echo_errors_for=["PUT /REST/2.0/user/"], **echo)
    world.sandboxes["bakalari"].set_knobs(echo_errors_for=["grant_type=refresh_token"], **echo)
    world.sandboxes["portaildf"].set_knobs(echo_errors_for=[PROBE_EMAIL], **echo)
    # One Portail DF agent among many is a row error of a green run: a threshold of 0 makes it fail the run, so
    # that its failure line, reasons included, is printed too.
    results = {
        job: run_command(
            world, job, **({"SYNC_MAX_RECORD_ERRORS_PERCENT": "0"} if job == "user_kind_sync" else {})
        )
        for job in SYNCS
    }
    assert not results["rt_user_sync"].succeeded and not results["user_kind_sync"].succeeded
    assert "RT answered HTTP 400: " in results["rt_user_sync"].output
    assert "lookup failed: Portail DF GET utilisateurs: HTTP 400: " in results["user_kind_sync"].output
    assert results["bakalari_sync"].succeeded, results["bakalari_sync"].output[-2000:]
    assert "login_refused" in results["bakalari_sync"].output
    for name in world.sandboxes:
        assert world.sandboxes[name].stats()["statuses"].get("400", 0) > 0, name

    emails = {ECHOED_EMAIL, PROBE_EMAIL} | {
        u.email.strip() for u in generate_portaildf_sample(SIZE, seed=SEED).users if u.email.strip()
    }
    printed = "\n".join(result.output for result in results.values())
    assert "@" not in "".join(line for line in printed.splitlines() if "HTTP 400" in line)
    assert found(printed, emails) == set()
    for path in (p for p in Path(world.env["DAGSTER_HOME"]).rglob("*") if p.is_file()):
        assert found(path.read_bytes().decode("utf-8", errors="replace"), emails) == set(), path
    state = create_database_engine(world.env["SYNC_STATE_DATABASE_URL"], "SYNC_STATE_DATABASE_URL")
    with state.connect() as connection:
        for table in sa.inspect(state).get_table_names():
            rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            assert found("\n".join(" ".join(map(str, row)) for row in rows), emails) == set(), table
