"""Keeps secrets out of log lines, metadata, error messages, the audit log and alerts: one redactor for every
path out.

Three kinds of secret are masked (``***``):

* database passwords in every form SQLAlchemy and libpq accept: the user-info of a URL
  (``postgresql://user:secret@host/db``, also with an unencoded ``@`` or ``/`` in the password, which makes the
  last ``@`` the separator), a ``password=`` query parameter (``postgresql://user@host/db?password=secret``) and
  ``password=`` in a key=value DSN (``host=h password='se cret'``);
* the values of the settings that hold secrets, read from the environment (``environment_secrets``): passwords,
  tokens, database and webhook URLs, libpq's ``PGPASSWORD``; and the passwords inside those URLs, as written and
  percent-decoded;
* values registered at run time (``Redactor.add``): the tokens a run learns.

``describe_error`` is the one way an exception reaches an operator: its kind and first line, redacted. A database
error's full text repeats the statement and every parameter of the batch (``[parameters: ...]``: other people's
names and grades), which must not reach logs, alerts or the audit log.

Personal data is masked the same way (``mask_personal``): a server's error answer may repeat what it was sent (the
e-mail address a lookup asked about) or name the person, and an error message goes everywhere (the run's page,
Dagster's event storage and compute logs, the terminal, the state database). Every e-mail address is masked, in
the forms an answer may carry it (as written, URL-encoded, JSON-escaped), and so are the values the request sent
(``known``), whatever their case.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote

MASK = "***"

# scheme://[user]:password@host — the password runs to the last "@" of the authority (an unencoded "@" in a
# password is then masked whole, not cut at its first "@").
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):(?P<password>[^\s'\"/?#]*)@"
)
# password=... as a URL query parameter or in a key=value DSN (quoted with '...' or bare).
_KEY_PASSWORD = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_-])(?:password|passwd|pwd|sslpassword|pgpassword)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,'\")\]]+)",
    re.IGNORECASE,
)
# Settings whose values are secrets, by name: *PASSWORD*, *TOKEN*, *SECRET*, database and webhook URLs.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|_DATABASE_URL$|_POSTGRES_URL$|WEBHOOK_URL$|^PGPASS")
_SECRET_SETTINGS = ("DAGSTER_POSTGRES_URL", "PGPASSWORD", "PGSERVICEFILE")
_NOT_SECRET = {"PGPASSFILE"}  # a file name


def redact_url_password(text: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; also ``?password=secret``,
    key=value DSNs (``password='secret'``) and passwords holding an unencoded ``@``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    return _KEY_PASSWORD.sub(lambda m: f"{m.group('key')}{MASK}", text)


def url_passwords(value: str) -> list[str]:
    """The passwords written in a database URL or DSN, as written and percent-decoded."""
    found: list[str] = []
    for match in _URL_PASSWORD.finditer(value):
        found.append(match.group("password"))
    for match in _KEY_PASSWORD.finditer(value):
        found.append(match.group("value").strip("'"))
    return [form for password in found for form in {password, unquote(password)} if form]


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of the environment: settings named like secrets, and the passwords in their URLs."""
    environ = os.environ if environ is None else environ
    secrets: list[str] = []
    for name, value in environ.items():
        upper = name.upper()
        if upper in _NOT_SECRET or not value:
            continue
        if upper in _SECRET_SETTINGS or _SECRET_NAME.search(upper):
            secrets.append(value)
            secrets.extend(url_passwords(value))
    return secrets


class Redactor:
    """Replaces every known secret value (and URL passwords) with ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        # Very short values would mask ordinary words; real secrets are longer than this.
        if secret and len(secret) >= 4:
            self._secrets.add(secret)
            for password in url_passwords(secret):
                if len(password) >= 4:
                    self._secrets.add(password)

    def __call__(self, text: object) -> str:
        result = str(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in result:
                result = result.replace(secret, MASK)
        return redact_url_password(result)


# An e-mail address as an answer may quote it: as written, URL-encoded (``%40``) or JSON-escaped (``\u0040``).
# A match starts only where a local part can start (the lookbehind), so a long run of word characters is tried
# once, not from each of its characters: linear in the text's length.
_EMAIL = re.compile(r"(?<![\w.+'%\\-])[\w.+'%\\-]+(?:@|%40|\\u0040)[\w\\-]+(?:\.[\w\\-]+)+", re.IGNORECASE)
# A value sent shorter than this, or made of digits alone (an id, a page number, a grade), is not masked: it
# would mask ordinary words and numbers of the message, and names no one.
MIN_PERSONAL_LENGTH = 4


def personal_forms(value: str) -> set[str]:
    """The forms ``value`` may take in an answer that repeats it: as sent, trimmed, URL-encoded, JSON-escaped."""
    forms = {value, value.strip(), quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    return {form for form in forms if len(form) >= MIN_PERSONAL_LENGTH}


def mask_personal(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every e-mail address and every ``known`` value (a request's e-mail, a name it sent) masked,
    case-insensitively. Values shorter than ``MIN_PERSONAL_LENGTH`` or of digits alone are left alone."""
    values = {
        form
        for value in known
        if len(value.strip()) >= MIN_PERSONAL_LENGTH and not value.strip().replace(".", "").isdigit()
        for form in personal_forms(value)
    }
    if values:
        pattern = "|".join(re.escape(value) for value in sorted(values, key=len, reverse=True))
        text = re.sub(pattern, MASK, text, flags=re.IGNORECASE)
    return _EMAIL.sub(MASK, text)


def redact(text: object, extra: Iterable[str | None] = ()) -> str:
    """``text`` with the environment's secrets, ``extra`` and every database password masked."""
    return Redactor([*environment_secrets(), *extra])(text)


def describe_error(error: BaseException, width: int = 300) -> str:
    """The error's kind and first line, redacted: never the statement or the parameters a database error carries
    (SQLAlchemy appends ``[SQL: ...]`` and ``[parameters: ...]`` after the driver's message)."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    for marker in ("[SQL:", "[parameters:", "(Background on this error"):
        text = text.split(marker, 1)[0].strip()
    lines = text.splitlines()
    first = lines[0][:width] if lines else ""
    return redact(f"{type(original).__name__}: {first}".rstrip(": "))
