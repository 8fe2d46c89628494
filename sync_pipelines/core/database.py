"""Database URLs as users write them, and engines that fail with one sentence naming the setting.

Every PostgreSQL connection the project opens (targets, sources, the state store) carries three limits, so a
run never waits without limit (and without a log line) while holding its target's run-queue slot:

* ``SYNC_LOCK_TIMEOUT_SECONDS`` (default 60): how long a statement waits for a lock another session holds (a
  ``LOCK TABLE``, a long migration) before it fails with ``DatabaseTimeout`` naming the table and the setting;
* ``SYNC_STATEMENT_TIMEOUT_SECONDS`` (default 900): how long one statement may run;
* ``SYNC_CONNECT_TIMEOUT_SECONDS`` (default 10): how long connecting may take (an unreachable host).

``0`` switches a limit off. They are sent as libpq ``options`` (``-c lock_timeout=...``), after any ``options``
the URL itself gives.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import cast
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from sync_pipelines.core.env import NumberSetting
from sync_pipelines.core.errors import ConfigurationError, DatabaseTimeout
from sync_pipelines.core.redaction import describe_error, redact, redact_url_password
from sync_pipelines.core.settings import CONNECT_TIMEOUT, LOCK_TIMEOUT, STATEMENT_TIMEOUT

_DRIVERLESS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}

LOCK_TIMEOUT_SETTING = LOCK_TIMEOUT.name
STATEMENT_TIMEOUT_SETTING = STATEMENT_TIMEOUT.name
CONNECT_TIMEOUT_SETTING = CONNECT_TIMEOUT.name
TIMEOUTS: dict[str, NumberSetting] = {
    setting.name: setting for setting in (LOCK_TIMEOUT, STATEMENT_TIMEOUT, CONNECT_TIMEOUT)
}
_KEY_VALUE_DSN = re.compile(r"^\s*[a-z_]+\s*=", re.IGNORECASE)


def timeout_setting(name: str) -> float:
    """Seconds from ``name`` (one of ``TIMEOUTS``); 0 means no limit."""
    return TIMEOUTS[name].number()


def _encode_userinfo(url: str) -> str:
    """``scheme://user:p@ss/word@host/db`` -> the password percent-encoded: the last ``@`` before the host ends the
    user-info (libpq and SQLAlchemy would otherwise cut the password at its first ``@``)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    head, query_mark, query = rest.partition("?")
    at = head.rfind("@")
    if at < 0:
        return url
    userinfo, location = head[:at], head[at + 1 :]
    user, colon, password = userinfo.partition(":")
    if not colon or ("@" not in userinfo and "/" not in userinfo):
        return url
    return f"{scheme}://{user}{colon}{quote(password, safe='')}@{location}{query_mark}{query}"


def _from_key_value(dsn: str) -> URL:
    """A libpq key=value DSN (``host=h dbname=d user=u password=...``) as a SQLAlchemy URL."""
    from psycopg.conninfo import conninfo_to_dict

    params = {key: str(value) for key, value in conninfo_to_dict(dsn).items() if value is not None}
    port = params.pop("port", None)
    return URL.create(
        "postgresql+psycopg",
        username=params.pop("user", None),
        password=params.pop("password", None),
        host=params.pop("host", None),
        port=int(port) if port and port.isdigit() else None,
        database=params.pop("dbname", None),
        query=params,
    )


def normalize_database_url(url: str, setting: str) -> URL:
    """Accept ``postgresql://user:pass@host/db`` (the seeds' form), explicit SQLAlchemy URLs, a password holding an
    unencoded ``@``, and libpq key=value DSNs (``host=... dbname=... user=... password=...``)."""
    if not url or not url.strip():
        raise ConfigurationError(
            setting, "is not set; give a database URL such as postgresql://user:pass@host:5432/db"
        )
    try:
        if "://" not in url and _KEY_VALUE_DSN.match(url):
            return _from_key_value(url.strip())
        parsed = make_url(_encode_userinfo(url.strip()))
    except Exception:
        raise ConfigurationError(
            setting,
            f"is not a database URL ({redact(url)!r}); expected e.g. postgresql://user:pass@host/db",
        ) from None
    if parsed.drivername in _DRIVERLESS:
        parsed = parsed.set(drivername=_DRIVERLESS[parsed.drivername])
    if "password" in parsed.query and parsed.password is None:
        # ``?password=`` (libpq accepts it): held as the URL's password, which every rendering of it hides.
        password = parsed.query["password"]
        parsed = parsed.set(password=password if isinstance(password, str) else password[-1])
        parsed = parsed.difference_update_query(["password"])
    return parsed


def is_postgresql(bind: Engine | sa.Connection) -> bool:
    """Whether ``bind`` (an engine or one of its connections) talks to PostgreSQL: the one place the project
    asks which database it is on (the other is SQLite, ``is_sqlite``)."""
    return bind.dialect.name == "postgresql"


def is_sqlite(bind: Engine | sa.Connection) -> bool:
    return bind.dialect.name == "sqlite"


def upsert_into(bind: Engine | sa.Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` into ``table`` with ``ON CONFLICT`` (``on_conflict_do_update``), in ``bind``'s dialect: PostgreSQL's
    or SQLite's, which spell it alike."""
    return postgresql.insert(table) if is_postgresql(bind) else sqlite.insert(table)


def describe_connection_error(error: BaseException) -> str:
    """The driver's first line, without passwords or parameters: enough to tell refused from unknown host from
    bad login."""
    original = getattr(error, "orig", None) or error
    text = describe_error(error)
    prefix = f"{type(original).__name__}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _pg_options(existing: str | None, lock: float, statement: float) -> str:
    options = [existing.strip()] if existing and existing.strip() else []
    options.append(f"-c lock_timeout={int(lock * 1000)}")
    options.append(f"-c statement_timeout={int(statement * 1000)}")
    return " ".join(options)


@lru_cache(maxsize=32)
def _cached_engine(url: str, lock: float, statement: float, connect: float) -> Engine:
    parsed = make_url(url)
    kwargs: dict[str, bool | dict[str, str | int]] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"timeout": 30}}
    elif parsed.get_backend_name() == "postgresql":
        given = parsed.query.get("options")  # a tuple when the URL repeats it
        existing = " ".join(given) if isinstance(given, tuple) else given
        connect_args: dict[str, str | int] = {"options": _pg_options(existing, lock, statement)}
        if connect:
            connect_args["connect_timeout"] = max(1, int(connect))
        parsed = parsed.difference_update_query(["options"])
        kwargs["connect_args"] = connect_args
    return sa.create_engine(parsed, **kwargs)


def timeout_error(error: BaseException, what: str) -> DatabaseTimeout | None:
    """``error`` as a ``DatabaseTimeout`` naming ``what`` (e.g. ``table "users" of ZLV_DATABASE_URL``) and the
    setting that limited it, when it is a lock or statement timeout; else None."""
    original = getattr(error, "orig", None) or error
    code = getattr(original, "sqlstate", None)
    message = str(original)
    if code == "55P03" or "lock timeout" in message:
        seconds = timeout_setting(LOCK_TIMEOUT_SETTING)
        return DatabaseTimeout(
            LOCK_TIMEOUT_SETTING,
            f"{what}: waited {seconds:g} s for a lock another session holds (a LOCK TABLE, a migration, a long "
            f"transaction) and gave up; find it in pg_locks / pg_stat_activity, or raise {LOCK_TIMEOUT_SETTING}",
        )
    if code == "57014" and "statement timeout" in message:
        seconds = timeout_setting(STATEMENT_TIMEOUT_SETTING)
        return DatabaseTimeout(
            STATEMENT_TIMEOUT_SETTING,
            f"{what}: a statement ran longer than {seconds:g} s and was cancelled; raise "
            f"{STATEMENT_TIMEOUT_SETTING} if that is expected",
        )
    return None


@contextlib.contextmanager
def timeouts_named(what: str) -> Iterator[None]:
    """Turn a lock or statement timeout inside the block into a ``DatabaseTimeout`` naming ``what``."""
    try:
        yield
    except SQLAlchemyError as error:
        timeout = timeout_error(error, what)
        if timeout is None:
            raise
        raise timeout from None


def create_database_engine(url: str, setting: str, check: bool = True) -> Engine:
    """An engine for ``url`` (read from ``setting``); with ``check`` it connects once so a bad URL fails here."""
    parsed = normalize_database_url(url, setting)
    limits = tuple(timeout_setting(name) for name in TIMEOUTS)
    try:
        engine = _cached_engine(parsed.render_as_string(hide_password=False), *limits)
    except (ArgumentError, ImportError, SQLAlchemyError) as error:
        raise ConfigurationError(setting, f"cannot be used: {describe_connection_error(error)}") from None
    if check:
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as error:
            raise ConfigurationError(
                setting,
                f"could not connect to {redact_url_password(parsed.render_as_string(hide_password=True))}: "
                f"{describe_connection_error(error)}",
            ) from None
    return engine


@contextlib.contextmanager
def serialized_transaction(engine: Engine, name: str) -> Iterator[sa.Connection]:
    """A transaction that runs alone among those of the same ``name`` on one database, for work that looks at
    the schema and then changes it (create a table unless it exists, replace a table): checking and changing
    in two sessions at once fails on PostgreSQL's catalog indexes, or on SQLite writes into one table twice.
    PostgreSQL takes a transaction-scoped advisory lock keyed by ``hashtext(name)`` (freed at commit or
    rollback, a killed session's too); SQLite takes the database's write lock first with ``BEGIN IMMEDIATE``,
    as the sqlite3 driver would otherwise open its transaction only before an INSERT and leave DDL outside it.
    The others wait, up to the lock timeout (``SYNC_LOCK_TIMEOUT_SECONDS``; SQLite's 30 s)."""
    with engine.begin() as connection:
        if is_postgresql(engine):
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
        elif is_sqlite(engine):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


def create_tables(engine: Engine, metadata: sa.MetaData) -> None:
    """``metadata.create_all``, safe when several processes open a fresh database at once (two runs started
    together): the check for each table and its ``CREATE`` in one serialized transaction. A database that has
    them all is only read, so opening it neither waits for another run's writes (SQLite's write lock) nor
    fails when it is read-only."""
    if set(metadata.tables) <= set(sa.inspect(engine).get_table_names()):
        return
    with serialized_transaction(engine, "sync_pipelines tables") as connection:
        metadata.create_all(connection)


def require_table(engine: Engine, table: str, setting: str, columns: list[str] | None = None) -> sa.Table:
    """Reflect ``table`` or fail naming the setting, the table and the columns that are missing."""
    try:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise ConfigurationError(setting, f"the database has no table {table!r}") from None
    missing = [column for column in (columns or []) if column not in reflected.c]
    if missing:
        raise ConfigurationError(
            setting,
            f"table {table!r} has no column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(reflected.c.keys())}",
        )
    return reflected


def pg_text_array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal (``{"a","b, c",NULL}``), to be cast to ``text[]`` (or ``uuid[]``).

    One string parameter instead of a list: the driver would otherwise adapt every element on its own, which
    costs more than a set-based statement over thousands of rows.
    """
    items = list(values)
    if not items:
        return "{}"
    if None not in items:
        strings = cast("list[str]", items)  # no None among them
        plain = "".join(strings)
        if '"' not in plain and "\\" not in plain:
            # Ids, e-mails, kinds: nothing to escape, so C-level joins do all the work.
            return '{"' + '","'.join(strings) + '"}'
    quoted = (
        "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in items
    )
    return "{" + ",".join(quoted) + "}"


def default_state_url() -> str:
    """Where the sync state lives when ``SYNC_STATE_DATABASE_URL`` is unset: SQLite in the instance's home
    (``DAGSTER_HOME``, else ``.dagster_home`` in the working directory), beside the runs it records."""
    home = os.environ.get("DAGSTER_HOME") or str(Path.cwd() / ".dagster_home")
    Path(home).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(home) / 'sync_state.sqlite'}"
