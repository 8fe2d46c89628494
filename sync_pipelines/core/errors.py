"""Errors that end a run with one clear sentence naming what to fix."""

from __future__ import annotations


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


class FailedRecordsError(SyncError):
    """Raised after every other record was processed, so that the run fails and the alert fires."""

    def __init__(self, target: str, failures: list[tuple[str, str]], shown: int = 20) -> None:
        self.target = target
        self.failures = failures
        # One line, whatever the keys and reasons hold (a server's answer may carry line breaks).
        listed = "; ".join(" ".join(f"{key}: {reason}".splitlines()) for key, reason in failures[:shown])
        more = f" (and {len(failures) - shown} more)" if len(failures) > shown else ""
        super().__init__(
            f"{len(failures)} record(s) could not be written to {target}; the next run retries them: "
            f"{listed}{more}"
        )


class DatabaseTimeout(StopsTheRun):
    """A statement waited for a lock longer than ``SYNC_LOCK_TIMEOUT_SECONDS``, or ran longer than
    ``SYNC_STATEMENT_TIMEOUT_SECONDS``: the run stops rather than hold its slot without limit."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(problem)
