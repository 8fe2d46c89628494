"""Errors that end a run with one clear sentence naming what to fix."""

from __future__ import annotations

from sync_pipelines.core.redaction import mask_personal


class SyncError(Exception):
    """Base of the project's errors: the message is meant for an operator, not a developer."""


class StopsTheRun(SyncError):
    """An error after which no other record can go through either (refused credentials, a held lock, a passed
    deadline): the engine stops at once instead of trying the batch's records one by one."""


class ConfigurationError(SyncError):
    """A setting is missing or wrong; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {problem}")


class AuthenticationError(StopsTheRun):
    """An external system refused our credentials: nothing else can work, so the run stops at once."""

    def __init__(self, system: str, variables: str, detail: str) -> None:
        self.system = system
        self.variables = variables
        super().__init__(f"{system} refused the credentials ({detail}); check {variables}")


class UnauthorizedError(AuthenticationError):
    """401/403 from a system that renewing could not fix; carries the status and the (redacted) path."""

    def __init__(self, system: str, variables: str, status: int, path: str) -> None:
        self.status = status
        self.path = path
        super().__init__(system, variables, f"HTTP {status} on {path}")


class TooManyRecordErrors(SyncError):
    """More row errors than ``SYNC_MAX_RECORD_ERRORS_PERCENT`` allows, raised after every other record was
    processed and reported (``sync.record_errors``): the run fails, so the alert fires; the next run retries
    them. ``failures`` lists ``(record, what went wrong: reason)``."""

    def __init__(self, target: str, failures: list[tuple[str, str]], message: str) -> None:
        self.target = target
        self.failures = failures
        super().__init__(message)


class DatabaseTimeout(StopsTheRun):
    """A statement waited for a lock longer than ``SYNC_LOCK_TIMEOUT_SECONDS``, or ran longer than
    ``SYNC_STATEMENT_TIMEOUT_SECONDS``: the run stops rather than hold its slot without limit."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(problem)


# -- HTTP: a request that gave no usable answer ------------------------------------------------------------


class ApiError(SyncError):
    """A request that did not give a usable answer; the message never holds a secret, nor an e-mail address
    (a transport error may quote a URL whose query holds one: masked here, whoever built the message)."""

    def __init__(self, system: str, method: str, path: str, message: str, status: int | None = None) -> None:
        self.system = system
        self.method = method
        self.path = path
        self.status = status
        super().__init__(mask_personal(f"{system} {method} {path}: {message}"))


class TransientApiError(ApiError):
    """429, 5xx or a transport failure: worth retrying; raised once the retries are spent."""

    def __init__(
        self,
        system: str,
        method: str,
        path: str,
        message: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(system, method, path, message, status)


class UnreachableError(TransientApiError):
    """Every attempt failed before an answer came (refused, timed out, name not found): names the URL's setting."""

    problem = "unreachable"


class UnconfirmedError(ApiError):
    """A request that is not safe to resend (a PUT, a POST) timed out or lost its connection after it was sent:
    the server may or may not have acted on it. Not a ``TransientApiError``: no retry policy resends it; the caller
    verifies what the server holds before sending it again (``ApiClient.request_unless_applied``)."""

    problem = "no answer"


class MalformedResponseError(ApiError):
    """The server answered, but not with the JSON its API promises (e.g. an HTML error page)."""


class ResponseTooLargeError(MalformedResponseError):
    """An answer longer than ``max_answer_bytes`` (after decompression): not read further, not retried."""


class RunStoppedError(StopsTheRun):
    """The run must stop now, whatever record it was working on: no per-record handler catches it (it is not
    an ``ApiError``). ``setting`` names what to change, when a setting is the remedy."""

    def __init__(self, system: str, message: str, setting: str | None = None) -> None:
        self.system = system
        self.setting = setting
        super().__init__(message)


class DeadlineExceededError(RunStoppedError):
    """The sync run passed its deadline: the client sends nothing more."""


class SystemRefusingError(RunStoppedError):
    """The circuit breaker: a system failed almost every request after its retries."""


class PagingError(SyncError):
    """An answer not shaped as a page, or more pages than the bound (the paginator's default error)."""


class PagesDoNotAdvance(PagingError):
    """A page repeats one already read (its number, or its very items): the server's paging is broken."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the pages do not advance ({reason}): the server's paging is broken")


class TooManyPages(PagingError):
    """More pages than the paginator's bound (``max_pages``)."""

    def __init__(self, max_pages: int) -> None:
        self.max_pages = max_pages
        super().__init__(f"more than {max_pages} pages of results (max_pages={max_pages})")
