"""The project's errors as Dagster failures a person reads in one line: the cause and the setting to check.

A ``SyncError`` escaping an asset or a check would reach the CLI and the run page under Dagster's wrapper
("Error occurred while executing op ...") and a stack trace of our own frames, with the cause far below. As a
``dagster.Failure`` its message is the description, shown first, and the details go into its metadata.

A database error escaping (``SQLAlchemyError``) becomes a ``Failure`` too: its kind and first line only, since
its full text carries the statement and every parameter (other students' names and grades). Every description
and reason goes through the one redactor (``sync_pipelines.core.redaction``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.database import timeout_error
from sync_pipelines.core.errors import SyncError, TooManyRecordErrors
from sync_pipelines.core.redaction import describe_error, redact

F = TypeVar("F", bound=Callable[..., Any])
SHOWN_FAILURES = 50


def as_failure(error: BaseException) -> dg.Failure:
    """``error`` as a ``Failure``: its one-line message as the description, what it names as metadata."""
    if not isinstance(error, SyncError):  # a database error (SQLAlchemy's, or the driver's)
        timeout = timeout_error(error, "the database")
        if timeout is None:
            return dg.Failure(
                description=f"database error: {describe_error(error)}",
                metadata={"error": type(getattr(error, "orig", None) or error).__name__},
                allow_retries=False,
            )
        error = timeout
    description = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    description = redact(description)
    metadata: dict[str, Any] = {"error": type(error).__name__}
    setting = getattr(error, "setting", None) or getattr(error, "variables", None)
    if setting:
        metadata["setting_to_check"] = setting
    if isinstance(error, TooManyRecordErrors):
        lines = ["| record | error |", "| --- | --- |"]
        lines += [
            f"| {key} | {redact(reason).replace('|', '/')} |"
            for key, reason in error.failures[:SHOWN_FAILURES]
        ]
        metadata["failed_records"] = dg.MetadataValue.md("\n".join(lines))
        metadata["failed"] = len(error.failures)
    return dg.Failure(description=description, metadata=metadata, allow_retries=False)


def reported_as_failures(fn: F) -> F:
    """Wrap an asset's or a check's body (plain or generator) so a ``SyncError`` leaves it as a ``Failure``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generate(*args: Any, **kwargs: Any) -> Any:
            try:
                return (yield from fn(*args, **kwargs))
            except (SyncError, SQLAlchemyError) as error:
                raise as_failure(error) from None

        # functools.wraps gives the wrapper fn's signature, which mypy cannot follow.
        return cast(F, generate)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SyncError, SQLAlchemyError) as error:
            raise as_failure(error) from None

    return cast(F, call)
