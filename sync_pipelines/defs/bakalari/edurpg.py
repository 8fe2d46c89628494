"""EduRPG's tables as the sync sees them, and every read and small write the sync makes to them.

EduRPG's schema comes from Prisma (``prisma/schema.prisma``): quoted mixed-case identifiers, PostgreSQL enum types
for ``role`` and ``level``, and ids (``cuid()``) and ``"updatedAt"`` that the Prisma *client* fills in. A row this
sync inserts therefore brings its own unique string id, and sets ``"createdAt"`` and ``"updatedAt"`` together, to the
same UTC instant, as Prisma's client does: the column default (``CURRENT_TIMESTAMP``) would be later than
``"updatedAt"`` and, ``TIMESTAMP(3)`` having no zone, in the server's ``timezone`` rather than UTC.

EduRPG's committed migrations never create ``"ExternalRef"`` (only ``prisma db push`` of the schema does). Without
it the sync stops with an error saying so and how to fix it; with ``EDURPG_CREATE_EXTERNAL_REF=true`` it creates the
table itself, exactly as Prisma would (``EXTERNAL_REF_DDL``), in one transaction.

The same table objects work on SQLite, where the demo keeps its EduRPG database (``metadata.create_all``: the
demo's only way to make the schema, since Prisma's harness is PostgreSQL-only).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.database import describe_connection_error, is_postgresql, serialized_transaction
from sync_pipelines.core.errors import ConfigurationError

SETTING = "EDURPG_DATABASE_URL"
CREATE_EXTERNAL_REF_SETTING = "EDURPG_CREATE_EXTERNAL_REF"
USER_ROLES = ("OPERATOR", "TEACHER", "STUDENT")
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")

metadata = sa.MetaData()


def _enum(name: str, values: tuple[str, ...]) -> sa.types.TypeEngine:
    """Text on SQLite; the Prisma-created enum type on PostgreSQL (a VARCHAR parameter is refused there)."""
    return sa.String().with_variant(postgresql.ENUM(*values, name=name, create_type=False), "postgresql")


_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _timestamps(updated: bool = True) -> list[sa.Column]:
    columns = [
        sa.Column("createdAt", sa.DateTime, nullable=False, server_default=sa.func.current_timestamp())
    ]
    if updated:
        columns.append(sa.Column("updatedAt", sa.DateTime, nullable=False))
    return columns


user = sa.Table(
    "User",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", _enum("UserRole", USER_ROLES), nullable=False),
    sa.Column("classId", sa.Text),
    sa.Column("bakalariId", sa.Text),
    sa.Column("bakalariToken", sa.Text),
    *_timestamps(),
    sa.Index("User_email_key", "email", unique=True),
    sa.Index("User_bakalariId_key", "bakalariId", unique=True),
)
klass = sa.Table(
    "Class",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("grade", sa.Integer, nullable=False),
    *_timestamps(),
)
subject = sa.Table(
    "Subject",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    *_timestamps(),
    sa.Index("Subject_code_key", "code", unique=True),
)
enrollment = sa.Table(
    "Enrollment",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False),
    sa.Column("subjectId", sa.Text, nullable=False),
    sa.Column("classId", sa.Text, nullable=False),
    *_timestamps(),
    sa.Index("Enrollment_userId_subjectId_key", "userId", "subjectId", unique=True),
)
external_ref = sa.Table(
    "ExternalRef",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("externalId", sa.Text, nullable=False),
    sa.Column("internalId", sa.Text, nullable=False),
    sa.Column("metadata", _JSON),
    *_timestamps(),
    sa.Index("ExternalRef_type_externalId_key", "type", "externalId", unique=True),
)
system_log = sa.Table(
    "SystemLog",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("level", _enum("LogLevel", LOG_LEVELS), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("userId", sa.Text),
    sa.Column("requestId", sa.Text),
    sa.Column("metadata", _JSON),
    *_timestamps(updated=False),
)

# EduRPG's game history off "User" (the demo seeds a little of it, to show that the sync never deletes any).
xp_audit = sa.Table(
    "XPAudit",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, sa.ForeignKey("User.id", ondelete="CASCADE"), nullable=False),
    sa.Column("amount", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requestId", sa.Text),
    *_timestamps(updated=False),
)

# "ExternalRef" exactly as ``prisma db push`` creates it from EduRPG's ``schema.prisma`` on PostgreSQL (the model:
# id String @id @default(cuid()); type, externalId, internalId String; metadata Json?; createdAt @default(now());
# updatedAt @updatedAt; @@unique([type, externalId]); @@index([type]); @@index([internalId])).
EXTERNAL_REF_DDL = (
    """CREATE TABLE "ExternalRef" (
    "id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "externalId" TEXT NOT NULL,
    "internalId" TEXT NOT NULL,
    "metadata" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "ExternalRef_pkey" PRIMARY KEY ("id")
)""",
    'CREATE INDEX "ExternalRef_type_idx" ON "ExternalRef"("type")',
    'CREATE INDEX "ExternalRef_internalId_idx" ON "ExternalRef"("internalId")',
    'CREATE UNIQUE INDEX "ExternalRef_type_externalId_key" ON "ExternalRef"("type", "externalId")',
)
MISSING_EXTERNAL_REF = (
    'the database has no table "ExternalRef": EduRPG\'s committed migrations (prisma migrate deploy) do not create '
    "it, only its schema.prisma does. Run `npx prisma db push` in EduRPG (it adds the missing table), or create it "
    "with the SQL of EduRPG's schema: "
    + "; ".join(" ".join(statement.split()) for statement in EXTERNAL_REF_DDL)
    + f"; or set {CREATE_EXTERNAL_REF_SETTING}=true to let the sync create it"
)

# Entity kind (the prefix of a plan key) -> its table and its ExternalRef ``type`` (EduRPG's names).
ENTITY_TABLES: dict[str, sa.Table] = {
    "Class": klass,
    "Subject": subject,
    "User": user,
    "Enrollment": enrollment,
}
REF_TYPES: dict[str, str] = {
    "Class": "class",
    "Subject": "subject",
    "User": "user",
    "Enrollment": "enrollment",
}
# The columns the sync needs; a database without them is not EduRPG's (or an older migration).
REQUIRED_COLUMNS: dict[sa.Table, list[str]] = {
    table: [column.name for column in table.columns]
    for table in (user, klass, subject, enrollment, external_ref, system_log)
}


def new_id() -> str:
    """A unique string id shaped like Prisma's ``cuid()`` (25 characters starting with ``c``)."""
    return "c" + uuid.uuid4().hex[:24]


def utc_now() -> datetime:
    """Now, as Prisma stores ``DateTime``: UTC, no time zone, millisecond precision."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class StudentAccount:
    """A student as EduRPG knows them: whose Bakaláři account the sync reads with the stored refresh token."""

    user_id: str
    bakalari_id: str
    token: str | None


@dataclass
class EduRpgSnapshot:
    """The rows the sync compares against, indexed the ways the mapping looks them up."""

    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    subjects: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    enrollments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    refs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        self.users_by_bakalari_id = {
            row["bakalariId"]: row for row in self.users.values() if row.get("bakalariId") is not None
        }
        self.users_by_email = {row["email"]: row for row in self.users.values()}
        self.users_by_bare_id: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(self.users.values(), key=lambda r: r["id"]):
            if row.get("bakalariId") is not None:
                bare = str(row["bakalariId"]).rsplit("/", 1)[-1]
                self.users_by_bare_id.setdefault(bare, []).append(row)
        self.subjects_by_code = {row["code"]: row for row in self.subjects.values()}
        self.classes_by_name: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(self.classes.values(), key=lambda r: (str(r.get("createdAt") or ""), r["id"])):
            self.classes_by_name.setdefault(row["name"], []).append(row)
        self.referenced: dict[str, set[str]] = {}
        for (ref_type, _), ref in self.refs.items():
            self.referenced.setdefault(ref_type, set()).add(ref["internalId"])

    def ref(self, ref_type: str, external_id: str) -> dict[str, Any] | None:
        return self.refs.get((ref_type, external_id))

    def refs_of_type(self, ref_type: str) -> list[dict[str, Any]]:
        return [ref for (kind, _), ref in sorted(self.refs.items()) if kind == ref_type]


@dataclass(frozen=True)
class VanishedEntity:
    """An ``ExternalRef`` whose Bakaláři entity is gone: reported and marked, its EduRPG row left alone."""

    key: str
    ref_type: str
    external_id: str
    internal_id: str
    name: str | None
    metadata: Mapping[str, Any]

    @property
    def already_reported(self) -> bool:
        return bool(self.metadata.get("vanishedAt"))


class EduRpgStore:
    """EduRPG's database: the snapshot the plan compares against, token storage, ``"SystemLog"`` events."""

    def __init__(self, engine: Engine, setting: str = SETTING, *, create_external_ref: bool = False) -> None:
        self.engine = engine
        self.created_external_ref = False
        self._require_schema(setting, create_external_ref)

    def _require_schema(self, setting: str, create_external_ref: bool = False) -> None:
        """One sentence naming the setting when a table or column the sync needs is missing (one catalog query)."""
        try:
            found = sa.inspect(self.engine).get_multi_columns(filter_names=[t.name for t in REQUIRED_COLUMNS])
        except SQLAlchemyError as error:
            raise ConfigurationError(
                setting, f"cannot read the schema: {describe_connection_error(error)}"
            ) from None
        columns = {
            table_name: {column["name"] for column in found_columns}
            for (_, table_name), found_columns in found.items()
        }
        if external_ref.name not in columns and all(
            t.name in columns for t in REQUIRED_COLUMNS if t is not external_ref
        ):
            if not create_external_ref:
                raise ConfigurationError(setting, MISSING_EXTERNAL_REF)
            self.create_external_ref(setting)
            columns[external_ref.name] = {column.name for column in external_ref.columns}
        for table, wanted in REQUIRED_COLUMNS.items():
            if table.name not in columns:
                raise ConfigurationError(
                    setting, f"the database has no table {table.name!r}; is EduRPG's Prisma schema migrated?"
                )
            missing = [name for name in wanted if name not in columns[table.name]]
            if missing:
                raise ConfigurationError(
                    setting, f"table {table.name!r} has no column(s) {', '.join(map(repr, missing))}"
                )

    def create_external_ref(self, setting: str = SETTING) -> None:
        """Create ``"ExternalRef"`` as EduRPG's schema defines it, in one transaction (PostgreSQL: Prisma's exact
        DDL; SQLite, the demo: from the table object). A concurrent creator wins harmlessly."""
        try:
            with serialized_transaction(self.engine, "EduRPG ExternalRef") as connection:
                if is_postgresql(self.engine):
                    exists = connection.exec_driver_sql(
                        "SELECT to_regclass('\"ExternalRef\"') IS NOT NULL"
                    ).scalar_one()
                    if not exists:
                        for statement in EXTERNAL_REF_DDL:
                            connection.exec_driver_sql(statement)
                else:
                    external_ref.create(connection, checkfirst=True)
        except SQLAlchemyError as error:
            raise ConfigurationError(
                setting,
                f'could not create "ExternalRef" ({describe_connection_error(error)}); {MISSING_EXTERNAL_REF}',
            ) from None
        self.created_external_ref = True

    # -- student accounts and their tokens -----------------------------------------------------------------
    def student_accounts(self) -> list[StudentAccount]:
        """Every student with a Bakaláři id, ordered by it; ``token`` is None for those who never logged in."""
        query = (
            sa.select(user.c.id, user.c.bakalariId, user.c.bakalariToken)
            .where((user.c.role == "STUDENT") & user.c.bakalariId.is_not(None))
            .order_by(user.c.bakalariId)
        )
        with self.engine.connect() as connection:
            return [
                StudentAccount(row.id, row.bakalariId, row.bakalariToken) for row in connection.execute(query)
            ]

    def read_token(self, bakalari_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(user.c.bakalariToken).where(user.c.bakalariId == bakalari_id)
            ).scalar_one_or_none()

    def save_token(self, bakalari_id: str, token: str) -> bool:
        """Commit a rotated refresh token at once, in its own transaction.

        ``"updatedAt"`` is left alone: a rotated credential is bookkeeping, not a change to the student, and
        touching it every run would make every student look edited every 15 minutes.
        """
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(user).where(user.c.bakalariId == bakalari_id).values(bakalariToken=token)
            )
        return result.rowcount == 1

    # -- the snapshot -----------------------------------------------------------------------------------------
    def snapshot(self) -> EduRpgSnapshot:
        with self.engine.connect() as connection:
            classes = {
                row.id: dict(row._mapping)
                for row in connection.execute(
                    sa.select(klass.c.id, klass.c.name, klass.c.grade, klass.c.createdAt)
                )
            }
            subjects = {
                row.id: dict(row._mapping)
                for row in connection.execute(sa.select(subject.c.id, subject.c.name, subject.c.code))
            }
            users = {
                row.id: dict(row._mapping)
                for row in connection.execute(
                    sa.select(
                        user.c.id, user.c.email, user.c.name, user.c.role, user.c.classId, user.c.bakalariId
                    )
                )
            }
            enrollments = {
                (row.userId, row.subjectId): dict(row._mapping)
                for row in connection.execute(
                    sa.select(
                        enrollment.c.id, enrollment.c.userId, enrollment.c.subjectId, enrollment.c.classId
                    )
                )
            }
            refs = {
                (row.type, row.externalId): dict(row._mapping)
                for row in connection.execute(
                    sa.select(
                        external_ref.c.id,
                        external_ref.c.type,
                        external_ref.c.externalId,
                        external_ref.c.internalId,
                        external_ref.c.metadata,
                    ).where(external_ref.c.type.in_(list(REF_TYPES.values())))
                )
            }
        return EduRpgSnapshot(classes, subjects, users, enrollments, refs)

    # -- events ---------------------------------------------------------------------------------------------
    def log_event(
        self, level: str, message: str, run_id: str, details: Mapping[str, Any] | None = None
    ) -> None:
        """One ``"SystemLog"`` row (``sync_start``, ``sync_ok``, ``sync_fail``) with ``metadata.runId``."""
        with self.engine.begin() as connection:
            connection.execute(sa.insert(system_log), [self._log_row(level, message, run_id, details)])

    @staticmethod
    def _log_row(level: str, message: str, run_id: str, details: Mapping[str, Any] | None) -> dict[str, Any]:
        return {
            "id": new_id(),
            "level": level,
            "message": message,
            "userId": None,
            "requestId": run_id,
            "metadata": {"runId": run_id, **(details or {})},
            "createdAt": utc_now(),
        }

    def report_vanished(
        self, vanished: Iterable[VanishedEntity], run_id: str, include_reported: bool, shown: int = 200
    ) -> list[VanishedEntity]:
        """Mark newly vanished entities' refs (``metadata.vanishedAt``) and log one WARN row listing them, in one
        transaction, so each disappearance is reported exactly once (every still-vanished one with
        ``include_reported``). Nothing is deleted. Returns the entities listed in the WARN row."""
        vanished = list(vanished)
        new = [entity for entity in vanished if not entity.already_reported]
        listed = vanished if include_reported else new
        if not listed:
            return []
        now = utc_now()
        with self.engine.begin() as connection:
            for entity in new:
                connection.execute(
                    sa.update(external_ref)
                    .where(
                        (external_ref.c.type == entity.ref_type)
                        & (external_ref.c.externalId == entity.external_id)
                    )
                    .values(
                        metadata={
                            **entity.metadata,
                            "vanishedAt": now.isoformat(timespec="milliseconds") + "Z",
                        },
                        updatedAt=now,
                    )
                )
            details = {
                "count": len(listed),
                "newlyVanished": len(new),
                "entities": [
                    {
                        "type": entity.ref_type,
                        "externalId": entity.external_id,
                        "internalId": entity.internal_id,
                        "name": entity.name,
                        "vanishedAt": entity.metadata.get("vanishedAt"),
                    }
                    for entity in listed[:shown]
                ],
                "note": "gone from Bakaláři; kept in EduRPG (deleting would cascade into game history)",
            }
            connection.execute(
                sa.insert(system_log), [self._log_row("WARN", "sync_vanished", run_id, details)]
            )
        return listed
