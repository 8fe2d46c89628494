"""Per sync job, a small world to run it in under the real webserver and daemon: its sandbox server (in this
process, reached over loopback by the daemon's run workers), its databases on PostgreSQL, the environment
variables pointing at them, and a way to tell which records the target does not hold yet.

Adding a job to the web UI tests is one entry in ``WORLDS``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from devkit.sandbox.bakalari import (
    OPERATOR_PASSWORD,
    OPERATOR_USERNAME,
    BakalariSandbox,
    generate_school,
)
from devkit.sandbox.databases import seed_students
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME, PortailDfSandbox
from devkit.sandbox.rt import DEFAULT_TOKEN, RequestTrackerSandbox
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import ThreadedSandbox
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.core.database import create_database_engine

NewDatabase = Callable[[], str]


@dataclass
class SyncWorld:
    """One job's systems, seeded so that a first sync has work in several shards."""

    job: str
    asset: str
    sandbox: ThreadedSandbox
    env: dict[str, str]
    # Keys of the records the target still lacks or holds wrong; a record's shard is ``shard_of(key)``.
    stale: Callable[[], set[str]]
    # The assets the UI's "Materialize" selects (on the job's asset graph) to sync one shard.
    materialize_selection: tuple[str, ...]
    # Per-shard materialization counts that are writes to the target.
    written_counts: tuple[str, ...]
    # Whether those counts add up to the stale records exactly (one write per stale record).
    one_write_per_stale_record: bool
    databases: dict[str, str] = field(default_factory=dict)


def rt_world(new_database: NewDatabase, stack: contextlib.ExitStack, size: int = 120) -> SyncWorld:
    """Students on PostgreSQL and an RT whose users mostly lack or hold stale custom fields."""
    students = generate_students(size, seed=11)
    students_url = new_database()
    seed_students(students_url, students, schema="django")
    rt = stack.enter_context(ThreadedSandbox(RequestTrackerSandbox.from_sample(size, seed=11)))
    expected = {str(s.rt_user_id): ([s.grade], [s.student_id]) for s in students if s.rt_user_id is not None}

    def stale() -> set[str]:
        users = rt.state()["users"]
        current = {
            key: (user["CustomFields"].get("Grade", []), user["CustomFields"].get("Student ID", []))
            for key, user in users.items()
        }
        return {key for key, value in expected.items() if current.get(key) != value}

    return SyncWorld(
        job="rt_user_sync",
        asset="rt_user_custom_fields",
        sandbox=rt,
        env={"STUDENTS_DATABASE_URL": students_url, "RT_URL": rt.url, "RT_TOKEN": DEFAULT_TOKEN},
        stale=stale,
        materialize_selection=("students", "rt_user_custom_fields"),
        written_counts=("updated",),
        one_write_per_stale_record=True,
        databases={"students": students_url},
    )


def bakalari_world(new_database: NewDatabase, stack: contextlib.ExitStack, size: int = 40) -> SyncWorld:
    """A Bakaláři school and EduRPG as its students' logins left it: no ExternalRef for anyone yet."""
    school = generate_school(size, 5)
    edurpg_url = new_database()
    seed_edurpg(edurpg_url, school)
    bakalari = stack.enter_context(ThreadedSandbox(BakalariSandbox(school)))
    engine = create_database_engine(edurpg_url, "EDURPG_DATABASE_URL")
    stack.callback(engine.dispose)
    students = {student.user_id for student in school.students}

    def stale() -> set[str]:
        query = sa.text('SELECT "externalId" FROM "ExternalRef" WHERE "type" = \'user\'')
        with engine.connect() as connection:
            synced = {row[0] for row in connection.execute(query)}
        return students - synced

    return SyncWorld(
        job="bakalari_sync",
        asset="bakalari_entities",
        sandbox=bakalari,
        env={
            "BAKALARI_URL": bakalari.url,
            "BAKALARI_USERNAME": OPERATOR_USERNAME,
            "BAKALARI_PASSWORD": OPERATOR_PASSWORD,
            "EDURPG_DATABASE_URL": edurpg_url,
        },
        stale=stale,
        materialize_selection=("bakalari_entities",),
        # Classes, subjects, teachers and enrollments are written too: more writes than stale students.
        written_counts=("created", "updated"),
        one_write_per_stale_record=False,
        databases={"edurpg": edurpg_url},
    )


def user_kinds_world(new_database: NewDatabase, stack: contextlib.ExitStack, size: int = 200) -> SyncWorld:
    """Portail DF (v2 authentication) and ZLV's users table seeded from the same sample."""
    portaildf = PortailDfSandbox.from_sample(size, 7, auth_version="v2")
    sample = portaildf.sample
    assert sample is not None
    zlv_url = new_database()
    engine = seed_zlv(zlv_url, sample.users)
    stack.callback(engine.dispose)
    handle = stack.enter_context(ThreadedSandbox(portaildf))
    after_sync = sample.kinds_after_sync()
    # Deleted users are out of the sync's scope and keep their kind.
    expected = {
        user.id: after_sync[user.id] if user.deleted_at is None else user.kind for user in sample.users
    }

    def stale() -> set[str]:
        with engine.connect() as connection:
            kinds = {str(i): k for i, k in connection.execute(sa.text("SELECT id, kind FROM users"))}
        return {user_id for user_id, kind in expected.items() if kinds.get(user_id) != kind}

    return SyncWorld(
        job="user_kind_sync",
        asset="user_kinds",
        sandbox=handle,
        env={
            "PORTAILDF_API_URL": f"{handle.url}/api",
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
            "PORTAILDF_AUTH_VERSION": "v2",
            "ZLV_DATABASE_URL": zlv_url,
        },
        stale=stale,
        materialize_selection=("user_kinds",),
        written_counts=("updated",),
        one_write_per_stale_record=True,
        databases={"zlv": zlv_url},
    )


# job name -> how to set up its world
WORLDS: dict[str, Callable[[NewDatabase, contextlib.ExitStack], SyncWorld]] = {
    "rt_user_sync": rt_world,
    "bakalari_sync": bakalari_world,
    "user_kind_sync": user_kinds_world,
}
