"""Database URLs as users write them, and engines that fail with one sentence naming the setting."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.redaction import redact_url_password

_DRIVERLESS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def normalize_database_url(url: str, setting: str) -> URL:
    """Accept ``postgresql://user:pass@host/db`` (the seeds' form) as well as explicit SQLAlchemy URLs."""
    if not url or not url.strip():
        raise ConfigurationError(
            setting, "is not set; give a database URL such as postgresql://user:pass@host:5432/db"
        )
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise ConfigurationError(
            setting,
            f"is not a database URL ({redact_url_password(url)!r}); expected e.g. postgresql://user:pass@host/db",
        ) from None
    if parsed.drivername in _DRIVERLESS:
        parsed = parsed.set(drivername=_DRIVERLESS[parsed.drivername])
    return parsed


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def describe_connection_error(error: BaseException) -> str:
    """The driver's first line, without passwords: enough to tell refused from unknown host from bad login."""
    original = getattr(error, "orig", None) or error
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    return redact_url_password(first_line)


@lru_cache(maxsize=32)
def _cached_engine(url: str) -> Engine:
    parsed = make_url(url)
    kwargs: dict = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"timeout": 30}}
    return sa.create_engine(parsed, **kwargs)


def create_database_engine(url: str, setting: str, check: bool = True) -> Engine:
    """An engine for ``url`` (read from ``setting``); with ``check`` it connects once so a bad URL fails here."""
    parsed = normalize_database_url(url, setting)
    try:
        engine = _cached_engine(parsed.render_as_string(hide_password=False))
    except (ArgumentError, ImportError, SQLAlchemyError) as error:
        raise ConfigurationError(setting, f"cannot be used: {describe_connection_error(error)}") from None
    if check:
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as error:
            raise ConfigurationError(
                setting,
                f"could not connect to {parsed.render_as_string(hide_password=True)}: "
                f"{describe_connection_error(error)}",
            ) from None
    return engine


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
        plain = "".join(items)  # type: ignore[arg-type]
        if '"' not in plain and "\\" not in plain:
            # Ids, e-mails, kinds: nothing to escape, so C-level joins do all the work.
            return '{"' + '","'.join(items) + '"}'  # type: ignore[arg-type]
    quoted = (
        "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in items
    )
    return "{" + ",".join(quoted) + "}"
